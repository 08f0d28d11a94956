"""Golden-value tests of `common/dqn.py` against the DQN update worked out by hand in NumPy.

The networks here are tiny and linear (uint8 2x2 frame -> Rescaling(1/255) -> Flatten ->
Dense), with weights set by hand, so every Q-value, target, loss and gradient can be
computed exactly in NumPy and compared with what the graph functions return.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.dqn import (BackgroundLearner, FusedAdam, choose_action, make_greedy_policy,
                        make_target_sync, make_train_step)

FRAME_SHAPE = (2, 2, 1)
NUM_ACTIONS = 3
GAMMA = 0.9

ONLINE_KERNEL = np.array([[0.5, -0.3, 0.2],
                          [0.1, 0.4, -0.6],
                          [-0.2, 0.3, 0.7],
                          [0.6, -0.1, 0.05]])
ONLINE_BIAS = np.array([0.1, -0.2, 0.05])
TARGET_KERNEL = np.array([[1.5, -0.5, 0.3],
                          [0.2, 2.0, -1.0],
                          [-0.4, 0.6, 1.2],
                          [0.9, -0.3, 0.4]])
TARGET_BIAS = np.array([0.3, 0.1, -0.2])

# A batch of four transitions. Pixel values are multiples of 51, so pixel / 255 is a
# round number. With the weights above the TD errors Q(s, a) - y come out as
# -0.6, 0.89, -1.032 and -3.506: two inside the quadratic part of the Huber loss and
# two in its linear part.
OBSERVATIONS = np.array([[0, 51, 102, 153],
                         [255, 0, 51, 0],
                         [102, 102, 0, 204],
                         [51, 153, 255, 102]], np.uint8).reshape(4, *FRAME_SHAPE)
NEXT_OBSERVATIONS = np.array([[204, 0, 51, 102],
                              [0, 255, 153, 51],
                              [51, 51, 204, 0],
                              [153, 0, 102, 255]], np.uint8).reshape(4, *FRAME_SHAPE)
ACTIONS = np.array([0, 2, 1, 1], np.int32)
REWARDS = np.array([1.0, -0.5, 0.0, 2.0], np.float32)
# Sample 0 is terminal with a positive reward, sample 1 terminal with a negative one.
# Sample 2 was cut off by the time limit (truncated, not terminated), so it must
# bootstrap; there the target and online networks also disagree on the best next action.
TERMINATED = np.array([1.0, 1.0, 0.0, 0.0], np.float32)
TRUNCATED = np.array([0.0, 0.0, 1.0, 0.0], np.float32)  # Never passed to train_step.


def linear_q_network(kernel, bias, name):
    """A Q-network whose action values are exactly `frame / 255 @ kernel + bias`."""
    frames = keras.Input(shape=FRAME_SHAPE, dtype="uint8")
    x = keras.layers.Rescaling(1.0 / 255.0)(frames)
    x = keras.layers.Flatten()(x)
    q_values = keras.layers.Dense(NUM_ACTIONS)(x)
    network = keras.Model(frames, q_values, name=name)
    network.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
    return network


def flat(observations):
    return observations.reshape(len(observations), -1).astype(np.float64) / 255


def hand_targets():
    """y = r + gamma * max_a' Q_target(s', a') * (1 - terminated), in float64."""
    next_q_values = flat(NEXT_OBSERVATIONS) @ TARGET_KERNEL + TARGET_BIAS
    return REWARDS + GAMMA * next_q_values.max(axis=1) * (1 - TERMINATED)


def hand_chosen_q_values():
    q_values = flat(OBSERVATIONS) @ ONLINE_KERNEL + ONLINE_BIAS
    return q_values[np.arange(len(ACTIONS)), ACTIONS]


def hand_loss_and_gradients():
    """The mean Huber loss (delta 1) and its gradients for the online kernel and bias."""
    errors = hand_chosen_q_values() - hand_targets()
    losses = np.where(np.abs(errors) <= 1, 0.5 * errors**2, np.abs(errors) - 0.5)
    # d huber / d error is the error clipped to [-1, 1]; the mean divides by the batch size.
    d_chosen_q = np.clip(errors, -1, 1) / len(errors)
    d_q_values = np.zeros((len(errors), NUM_ACTIONS))
    d_q_values[np.arange(len(errors)), ACTIONS] = d_chosen_q  # Only Q(s, a) gets a gradient.
    return losses.mean(), flat(OBSERVATIONS).T @ d_q_values, d_q_values.sum(axis=0)


@pytest.fixture
def networks():
    return (linear_q_network(ONLINE_KERNEL, ONLINE_BIAS, "online"),
            linear_q_network(TARGET_KERNEL, TARGET_BIAS, "target"))


def run_train_step(train_step):
    loss, mean_q = train_step(OBSERVATIONS, ACTIONS, REWARDS, NEXT_OBSERVATIONS, TERMINATED)
    return float(loss), float(mean_q)


def test_hand_values_exercise_every_case():
    """Guards the batch above: it must keep covering both Huber branches and both kinds of end."""
    errors = hand_chosen_q_values() - hand_targets()
    assert np.sum(np.abs(errors) < 1) == 2 and np.sum(np.abs(errors) > 1) == 2
    np.testing.assert_allclose(hand_targets()[:2], [1.0, -0.5])  # Terminal: the reward alone.
    assert TRUNCATED[2] == 1 and TERMINATED[2] == 0 and hand_targets()[2] != REWARDS[2]


def test_loss_and_mean_q_equal_the_hand_computed_values(networks):
    q_network, target_network = networks
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.0), GAMMA)

    loss, mean_q = run_train_step(train_step)

    expected_loss, _, _ = hand_loss_and_gradients()
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert mean_q == pytest.approx(hand_chosen_q_values().mean(), rel=1e-5)


def test_terminal_targets_are_the_reward_and_truncated_ones_bootstrap(networks):
    """With every Q(s, a) forced to 0.25, the loss of a one-sample batch is Huber(0.25 - y)."""
    q_network, target_network = networks
    q_network.set_weights([np.zeros((4, NUM_ACTIONS), np.float32), np.full(NUM_ACTIONS, 0.25, np.float32)])
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.0), GAMMA)

    for sample, expected_target in [(0, 1.0), (1, -0.5), (2, hand_targets()[2])]:
        batch = slice(sample, sample + 1)
        loss, _ = train_step(OBSERVATIONS[batch], ACTIONS[batch], REWARDS[batch],
                             NEXT_OBSERVATIONS[batch], TERMINATED[batch])
        error = 0.25 - expected_target
        expected_loss = 0.5 * error**2 if abs(error) <= 1 else abs(error) - 0.5
        assert float(loss) == pytest.approx(expected_loss, rel=1e-5), f"sample {sample}"


def test_sgd_step_moves_the_weights_by_the_hand_computed_gradient(networks):
    q_network, target_network = networks
    learning_rate = 0.1
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(learning_rate),
                                 GAMMA, max_gradient_norm=1e6)

    run_train_step(train_step)

    _, kernel_gradient, bias_gradient = hand_loss_and_gradients()
    new_kernel, new_bias = q_network.get_weights()
    assert not np.allclose(new_kernel, ONLINE_KERNEL)
    np.testing.assert_allclose(new_kernel, ONLINE_KERNEL - learning_rate * kernel_gradient, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_bias, ONLINE_BIAS - learning_rate * bias_gradient, rtol=1e-5, atol=1e-6)


def test_gradients_are_clipped_by_their_global_norm(networks):
    q_network, target_network = networks
    learning_rate, max_gradient_norm = 1.0, 0.05
    _, kernel_gradient, bias_gradient = hand_loss_and_gradients()
    global_norm = np.sqrt(np.sum(kernel_gradient**2) + np.sum(bias_gradient**2))
    assert global_norm > 5 * max_gradient_norm  # So the clipping does act.
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(learning_rate),
                                 GAMMA, max_gradient_norm=max_gradient_norm)

    run_train_step(train_step)

    new_kernel, new_bias = q_network.get_weights()
    kernel_update, bias_update = new_kernel - ONLINE_KERNEL, new_bias - ONLINE_BIAS
    update_norm = np.sqrt(np.sum(kernel_update**2) + np.sum(bias_update**2))
    assert update_norm == pytest.approx(learning_rate * max_gradient_norm, rel=1e-4)
    # One scale for all variables together: the direction of the full gradient is kept.
    scale = learning_rate * max_gradient_norm / global_norm
    np.testing.assert_allclose(kernel_update, -scale * kernel_gradient, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(bias_update, -scale * bias_gradient, rtol=1e-3, atol=1e-6)


def test_train_step_leaves_the_target_network_alone(networks):
    q_network, target_network = networks
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.1), GAMMA)

    run_train_step(train_step)
    run_train_step(train_step)

    assert not np.allclose(q_network.get_weights()[0], ONLINE_KERNEL)
    new_kernel, new_bias = target_network.get_weights()
    np.testing.assert_array_equal(new_kernel, TARGET_KERNEL.astype(np.float32))
    np.testing.assert_array_equal(new_bias, TARGET_BIAS.astype(np.float32))


def test_target_sync_copies_the_weights_then_only_the_online_network_learns(networks):
    q_network, target_network = networks
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.1), GAMMA)
    sync_target = make_target_sync(q_network, target_network)
    run_train_step(train_step)

    sync_target()
    synced = [weight.copy() for weight in q_network.get_weights()]
    for online, target in zip(synced, target_network.get_weights()):
        np.testing.assert_array_equal(target, online)

    # After the sync the target is computed from the synced weights, not from TARGET_*.
    loss, _ = run_train_step(train_step)
    next_q_values = flat(NEXT_OBSERVATIONS) @ synced[0] + synced[1]
    targets = REWARDS + GAMMA * next_q_values.max(axis=1) * (1 - TERMINATED)
    errors = (flat(OBSERVATIONS) @ synced[0] + synced[1])[np.arange(4), ACTIONS] - targets
    huber = np.where(np.abs(errors) <= 1, 0.5 * errors**2, np.abs(errors) - 0.5)
    assert loss == pytest.approx(huber.mean(), rel=1e-5)

    run_train_step(train_step)
    assert not np.allclose(q_network.get_weights()[0], synced[0])
    for kept, target in zip(synced, target_network.get_weights()):
        np.testing.assert_array_equal(target, kept)


def test_target_sync_rejects_a_network_of_another_shape(networks):
    q_network, _ = networks
    frames = keras.Input(shape=FRAME_SHAPE, dtype="uint8")
    other = keras.Model(frames, keras.layers.Dense(NUM_ACTIONS + 1)(keras.layers.Flatten()(frames)))

    with pytest.raises(ValueError, match="does not match"):
        make_target_sync(q_network, other)


def test_greedy_policy_returns_the_argmax_action_and_the_q_values(networks):
    q_network, _ = networks
    greedy_actions = make_greedy_policy(q_network)

    actions, q_values = greedy_actions(tf.constant(NEXT_OBSERVATIONS))

    expected_q_values = flat(NEXT_OBSERVATIONS) @ ONLINE_KERNEL + ONLINE_BIAS
    assert len(set(expected_q_values.argmax(axis=1))) == 3  # Every action is best somewhere.
    assert actions.dtype == tf.int32
    np.testing.assert_array_equal(actions, expected_q_values.argmax(axis=1))
    np.testing.assert_allclose(q_values, expected_q_values, rtol=1e-5, atol=1e-6)


def test_target_sync_refuses_networks_with_a_different_number_of_variables():
    inputs = keras.Input((2, 2, 1), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    deeper = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(3)(x)))
    shallower = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.raises(ValueError, match="does not match"):
        make_target_sync(deeper, shallower)


def run_learner(overlap, batches):
    """Runs the given batches through a BackgroundLearner; returns it, its networks and stats."""
    online = linear_q_network(ONLINE_KERNEL, ONLINE_BIAS, "online")
    target = linear_q_network(TARGET_KERNEL, TARGET_BIAS, "target")
    train_step = make_train_step(online, target, keras.optimizers.Adam(0.01), GAMMA)
    learner = BackgroundLearner(train_step, make_target_sync(online, target), overlap=overlap)
    statistics = []
    for index, batch in enumerate(batches):
        learner.update(batch)
        if index % 3 == 2:
            learner.sync_target()
        if index % 2 == 1:
            learner.wait()  # so both modes report the same updates
            statistics.append(learner.pop_statistics())
    learner.close()
    return learner, online, target, statistics


def test_overlapped_updates_equal_updates_in_turn():
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 256, (4, *FRAME_SHAPE), dtype=np.uint8), ACTIONS,
                rng.normal(size=4).astype(np.float32),
                rng.integers(0, 256, (4, *FRAME_SHAPE), dtype=np.uint8), TERMINATED)
               for _ in range(8)]
    serial = run_learner(False, batches)
    overlapped = run_learner(True, batches)
    assert serial[0].updates == overlapped[0].updates == 8
    for serial_network, overlapped_network in zip(serial[1:3], overlapped[1:3]):
        for a, b in zip(serial_network.get_weights(), overlapped_network.get_weights()):
            np.testing.assert_array_equal(a, b)
    # The same losses and mean Q-values are reported once each update has finished.
    assert len(serial[3]) == 4 and np.isfinite(np.array(serial[3])).all()
    np.testing.assert_array_equal(np.array(serial[3]), np.array(overlapped[3]))


def test_pop_statistics_averages_finished_updates_then_starts_afresh(networks):
    online, target = networks
    train_step = make_train_step(online, target, keras.optimizers.SGD(0.0), GAMMA)
    learner = BackgroundLearner(train_step, make_target_sync(online, target), overlap=True)
    assert np.isnan(learner.pop_statistics()).all()
    batch = (OBSERVATIONS, ACTIONS, REWARDS, NEXT_OBSERVATIONS, TERMINATED)
    learner.update(batch)
    learner.update(batch)
    learner.wait()
    loss, mean_q = learner.pop_statistics()
    expected_loss = hand_loss_and_gradients()[0]
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    np.testing.assert_allclose(mean_q, hand_chosen_q_values().mean(), rtol=1e-5)
    assert np.isnan(learner.pop_statistics()).all()
    learner.close()


@pytest.mark.parametrize("overlap", [False, True])
def test_a_non_finite_loss_raises(networks, overlap):
    online, target = networks
    train_step = make_train_step(online, target, keras.optimizers.SGD(0.0), GAMMA)
    learner = BackgroundLearner(train_step, make_target_sync(online, target), overlap=overlap)
    rewards = np.array([np.nan, 0.0, 0.0, 0.0], np.float32)
    with pytest.raises(FloatingPointError, match="the loss became nan in update 1"):
        learner.update((OBSERVATIONS, ACTIONS, rewards, NEXT_OBSERVATIONS, TERMINATED))
        learner.wait()
    learner.close()


def numpy_adam(weights, gradients, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
    """Adam (Kingma and Ba, 2015) in float64, as Keras states it."""
    weights = weights.astype(np.float64)
    first, second = np.zeros_like(weights), np.zeros_like(weights)
    for step, gradient in enumerate(gradients, start=1):
        first = beta_1 * first + (1 - beta_1) * gradient
        second = beta_2 * second + (1 - beta_2) * gradient**2
        weights = weights - (learning_rate * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
                             * first / (np.sqrt(second) + epsilon))
    return weights


@pytest.mark.parametrize("optimizer_class", [keras.optimizers.Adam, FusedAdam])
def test_fused_adam_follows_the_adam_rule_like_keras(optimizer_class):
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(6, 3)).astype(np.float32)
    # Gradients from 1e-4 to 10 in size, so that the moments' scaling matters.
    gradients = [(rng.normal(size=(6, 3)) * 10 ** rng.uniform(-4, 1, (6, 3))).astype(np.float32)
                 for _ in range(5)]
    variable = keras.Variable(initial)
    optimizer = optimizer_class(learning_rate=1e-3)

    @tf.function
    def apply(gradient):
        optimizer.apply_gradients([(gradient, variable)])

    for gradient in gradients:
        apply(tf.constant(gradient))
    expected = numpy_adam(initial, gradients, 1e-3)
    assert np.abs(expected - initial).max() > 1e-3  # the weights did move
    np.testing.assert_allclose(variable.numpy(), expected, atol=1e-6)
    assert int(optimizer.iterations) == 5


def test_fused_adam_reaches_the_keras_internals_it_relies_on():
    """Fails loudly when a Keras release moves Adam's private moment slots."""
    variable = keras.Variable(np.ones((2, 3), np.float32))
    optimizer = FusedAdam(learning_rate=1e-3)
    optimizer.build([variable])
    moments = optimizer.fused_moments(variable)
    assert moments is not None, "Keras' Adam internals changed: FusedAdam falls back"
    assert all(moment.shape == variable.shape for moment in moments)
    optimizer.apply_gradients([(tf.ones((2, 3)), variable)])
    assert FusedAdam.fused


def test_fused_adam_falls_back_to_keras_with_one_warning(monkeypatch):
    def renamed(self, variable):  # as if a Keras release renamed the moment slots
        raise AttributeError("'FusedAdam' object has no attribute '_momentums'")

    monkeypatch.setattr(FusedAdam, "_keras_moments", renamed)
    monkeypatch.setattr(FusedAdam, "fused", True)
    variable = keras.Variable(np.ones((2, 3), np.float32))
    reference_variable = keras.Variable(np.ones((2, 3), np.float32))
    optimizer, reference = FusedAdam(learning_rate=1e-3), keras.optimizers.Adam(1e-3)
    gradient = tf.constant(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.warns(RuntimeWarning, match="Adam internals differ") as warned:
        for _ in range(3):
            optimizer.apply_gradients([(gradient, variable)])
            reference.apply_gradients([(gradient, reference_variable)])
    assert len(warned) == 1 and not FusedAdam.fused
    np.testing.assert_allclose(variable.numpy(), reference_variable.numpy())  # never wrong


def test_choose_action_is_uniform_at_epsilon_1_and_greedy_at_0():
    calls = []

    def greedy_actions(observations):
        calls.append(observations.shape)
        return tf.constant([2]), None

    rng = np.random.default_rng(0)
    random_actions = [choose_action(greedy_actions, np.zeros((3,)), 1.0, rng, 4)
                      for _ in range(4000)]
    assert not calls  # epsilon 1 never asks the network
    counts = np.bincount(random_actions, minlength=4)
    assert counts.min() > 900 and counts.max() < 1100  # about 1,000 each
    assert [choose_action(greedy_actions, np.zeros((3,)), 0.0, rng, 4) for _ in range(3)] == [2] * 3
    assert calls == [(1, 3)] * 3  # one observation, given a batch axis
    mixed = [choose_action(greedy_actions, np.zeros((3,)), 0.25, rng, 4) for _ in range(4000)]
    # 75% greedy (action 2) plus a quarter of the 25% random ones.
    assert abs(mixed.count(2) / 4000 - (0.75 + 0.25 / 4)) < 0.03


# Double DQN's targets for the batch above, by hand. Sample 2 (s' = [0.2, 0.2, 0.8, 0]):
# online Q(s') = [0.06, 0.06, 0.53], so a' = 2; target Q(s') = [0.32, 0.88, 0.62], so
# y = 0 + 0.9 * 0.62 = 0.558 where DQN takes the target's maximum: 0.9 * 0.88 = 0.792.
# Sample 3: both networks pick action 0. Samples 0 and 1 are terminal.
DOUBLE_DQN_TARGETS = np.array([1.0, -0.5, 0.558, 3.746])


def test_double_dqn_takes_the_online_action_and_the_target_value(networks):
    q_network, target_network = networks
    online_next = flat(NEXT_OBSERVATIONS) @ ONLINE_KERNEL + ONLINE_BIAS
    target_next = flat(NEXT_OBSERVATIONS) @ TARGET_KERNEL + TARGET_BIAS
    np.testing.assert_allclose(online_next[2], [0.06, 0.06, 0.53], atol=1e-12)
    np.testing.assert_allclose(target_next[2], [0.32, 0.88, 0.62], atol=1e-12)
    np.testing.assert_allclose(
        REWARDS + GAMMA * target_next[np.arange(4), online_next.argmax(axis=1)] * (1 - TERMINATED),
        DOUBLE_DQN_TARGETS, atol=1e-12)
    assert DOUBLE_DQN_TARGETS[2] != pytest.approx(hand_targets()[2])  # the two rules differ

    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.0), GAMMA,
                                 double_dqn=True)
    loss, _ = run_train_step(train_step)
    errors = hand_chosen_q_values() - DOUBLE_DQN_TARGETS
    expected = np.where(np.abs(errors) <= 1, 0.5 * errors**2, np.abs(errors) - 0.5).mean()
    assert loss == pytest.approx(expected, rel=1e-5)
    plain_loss, _ = run_train_step(make_train_step(q_network, target_network,
                                                   keras.optimizers.SGD(0.0), GAMMA))
    assert plain_loss != pytest.approx(loss, rel=1e-3)


# n-step targets for the batch above, by hand, with m = 1, 2, 3 and 2 steps to s': the
# target network's best next values are 0.88 (sample 2) and 1.94 (sample 3), so
# y_2 = 0 + 0.9**3 * 0.88 = 0.64152 and y_3 = 2 + 0.9**2 * 1.94 = 3.5714. Samples 0
# and 1 are terminal: their m does not matter.
BOOTSTRAP_STEPS = np.array([1.0, 2.0, 3.0, 2.0], np.float32)
N_STEP_TARGETS = np.array([1.0, -0.5, 0.64152, 3.5714])


def test_n_step_target_discounts_the_bootstrap_by_gamma_to_the_m(networks):
    q_network, target_network = networks
    target_next = flat(NEXT_OBSERVATIONS) @ TARGET_KERNEL + TARGET_BIAS
    np.testing.assert_allclose(target_next.max(axis=1)[2:], [0.88, 1.94], atol=1e-12)
    train_step = make_train_step(q_network, target_network, keras.optimizers.SGD(0.0), GAMMA)

    loss, _ = train_step(OBSERVATIONS, ACTIONS, REWARDS, NEXT_OBSERVATIONS, TERMINATED,
                         BOOTSTRAP_STEPS)
    errors = hand_chosen_q_values() - N_STEP_TARGETS
    expected = np.where(np.abs(errors) <= 1, 0.5 * errors**2, np.abs(errors) - 0.5).mean()
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # One step each is the one-step target exactly.
    one_step, _ = train_step(OBSERVATIONS, ACTIONS, REWARDS, NEXT_OBSERVATIONS, TERMINATED,
                             np.ones(4, np.float32))
    assert float(one_step) == run_train_step(train_step)[0]
