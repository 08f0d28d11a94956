"""The parts of DQN that run inside TensorFlow: acting, learning, target sync.

Each function returns a ``tf.function``, traced once and then run as a graph:
choosing one action cost 1 to 2 ms on a 2-core Intel Xeon, where ``model.predict``
cost about 110 (it builds a dataset and a progress bar on every call); see
``docs/performance.md``.
"""

from __future__ import annotations

import math
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


class FusedAdam(keras.optimizers.Adam):
    """Keras' Adam, applied with TensorFlow's fused ``ResourceApplyAdam`` kernel.

    Why: Keras 3 updates each variable with several separate element-wise
    operations; TensorFlow's fused kernel does the same arithmetic in one pass
    over memory: one Nature-network update took 27.9 ms against Keras' 30.8 ms on a
    2-core Intel Xeon (``docs/performance.md``). The slots (first and second moments) are Keras' own, so
    checkpoints and everything else about the optimizer stay as they are.

    The maths is Adam's (Kingma and Ba, 2015), exactly as Keras computes it; the
    tests compare both with a float64 reference. Where Keras' internals are not as
    expected, Keras' own update is used and a warning says so once; with
    ``amsgrad=True`` too, silently.
    """

    fused = True
    """Whether the last update went through the fused kernel (False after a fallback)."""

    def update_step(self, gradient, variable, learning_rate):
        """Applies one Adam step to ``variable`` (called by ``apply_gradients``)."""
        moments = self.fused_moments(variable)
        if moments is None:
            return super().update_step(gradient, variable, learning_rate)
        first_moment, second_moment = moments
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=first_moment.value.handle, v=second_moment.value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))

    def fused_moments(self, variable) -> tuple | None:
        """Keras' moment slots of ``variable`` if the fused kernel can update them, else None.

        Why: Keras keeps Adam's moments in private attributes (``_momentums``,
        ``_velocities``, ``_get_variable_index``); a Keras release that changes them
        must not give a wrong update. Then Keras' own update is used and a warning
        says so once (``tests/test_dqn.py`` fails loudly on such a release).
        """
        if self.amsgrad:
            return None  # AMSGrad's third slot has no fused kernel: Keras' own update
        try:
            moments = self._keras_moments(variable)
            for tensor in (variable, *(moment.value for moment in moments)):
                tensor.handle  # a TensorFlow resource variable, as the kernel needs
            if any(moment.shape != variable.shape for moment in moments):
                raise AttributeError("moment slots of another shape")
            return moments
        except (AttributeError, IndexError, KeyError, TypeError) as error:
            if FusedAdam.fused:
                warnings.warn(f"FusedAdam: this Keras version's Adam internals differ "
                              f"({error}); using Keras' own Adam update (same maths, slower)",
                              RuntimeWarning, stacklevel=2)
            FusedAdam.fused = False
            return None

    def _keras_moments(self, variable) -> tuple:
        """Keras 3's first and second moment slots of ``variable`` (private attributes)."""
        index = self._get_variable_index(variable)
        return self._momentums[index], self._velocities[index]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seeds every random generator a run draws from, and optionally makes its ops exact.

    Why: the environment, the exploration and the replay memory take the seed
    themselves, but the networks' initial weights come from Keras' global generator;
    without this, two runs of one seed start from two different networks.

    Args:
        seed: the run's ``--seed``; it seeds Python's ``random``, NumPy's global
            generator, TensorFlow and Keras (``keras.utils.set_random_seed``).
        deterministic: also turn on TensorFlow's op determinism, so that the same
            inputs give bit-identical results. It is process-wide and stays on
            (TensorFlow cannot turn it off); on a GPU an op that has no
            deterministic kernel then raises an error naming it, where it would
            otherwise have run.
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_greedy_policy(q_network: keras.Model) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns a graph function giving the highest-valued action of each observation.

    Args:
        q_network: the online Q-network.

    Returns:
        ``greedy_actions(observations) -> (actions, q_values)``: for a uint8 batch
        ``(batch, *observation_shape)``, the int32 argmax actions ``(batch,)`` and
        the action values ``(batch, num_actions)``.
    """

    @tf.function
    def greedy_actions(observations):
        q_values = q_network(observations, training=False)
        return tf.argmax(q_values, axis=1, output_type=tf.int32), q_values

    return greedy_actions


def choose_action(greedy_actions: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]],
                  observation: np.ndarray, epsilon: float, rng: np.random.Generator,
                  num_actions: int) -> int:
    """Chooses an action epsilon-greedily: at random with probability epsilon, else greedily.

    Why: training, evaluation and the notebooks all act this way; with epsilon 1
    (while the replay memory fills) every action is uniformly random.

    Args:
        greedy_actions: the policy of ``make_greedy_policy``.
        observation: one observation, without a batch axis.
        epsilon: the probability of a random action.
        rng: the exploration random-number generator.
        num_actions: the number of actions to choose among.

    Returns:
        The action's index.
    """
    if rng.random() < epsilon:
        return int(rng.integers(num_actions))
    actions, _ = greedy_actions(observation[np.newaxis])
    return int(actions.numpy()[0])  # read from NumPy: slicing the tensor would cost an op


def make_train_step(q_network: keras.Model, target_network: keras.Model,
                    optimizer: keras.optimizers.Optimizer, gamma: float,
                    max_gradient_norm: float = 10.0,
                    double_dqn: bool = False) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """Returns one DQN update as a graph function.

    Why: this is the learning rule of Mnih et al. (2015), Algorithm 1, with the
    error clipped as the paper does it (a Huber loss with delta 1).

    ``terminated`` must be the environment's ``terminated`` flag, not
    ``terminated or truncated``: a game cut off by the time limit did not end, so
    its target still bootstraps from the next state. A terminal step's target is
    its reward alone, never a constant such as -1.

    Args:
        q_network: the online network, the one being trained.
        target_network: the periodically synced copy used for the targets.
        optimizer: a Keras optimizer, for example ``keras.optimizers.Adam(1e-4)``.
        gamma: discount factor in [0, 1].
        max_gradient_norm: the gradients are rescaled so their global norm is at
            most this. Not in the Nature paper; Stable-Baselines3 uses 10.
        double_dqn: take the next action from the online network and its value from
            the target network (van Hasselt et al., 2016), instead of the target
            network's maximum, which overestimates.

    Returns:
        ``train_step(observations, actions, rewards, next_observations, terminated,
        bootstrap_steps=None) -> (loss, mean_q)`` for a batch of uint8 observations,
        int32 actions and float32 rewards and terminated flags (0 or 1); it applies
        one optimizer step and returns the Huber loss and the mean of the chosen
        Q(s, a). With n-step returns (``ReplayMemory(n_step=N)``), ``rewards`` are the
        discounted sums of up to N rewards and ``bootstrap_steps`` the number ``m`` of
        steps from ``s`` to ``s'``, so the next state's value counts ``gamma ** m``.
    """
    huber = keras.losses.Huber(delta=1.0)
    gamma = tf.constant(gamma, tf.float32)

    @tf.function
    def train_step(observations, actions, rewards, next_observations, terminated,
                   bootstrap_steps=None):
        # The Bellman target, held fixed during this update (no gradient flows into it):
        #   y = r + gamma * max_a' Q_target(s', a') * (1 - terminated)
        # Deviation (n-step): with --n-step N (1 by default), as in Rainbow (Hessel et al.,
        # 2018), r is r_t + gamma * r_t+1 + ... over the m <= N steps to s' = s_t+m, which
        # the replay memory sums (it stops at the episode's end), and gamma becomes gamma^m.
        discounts = gamma if bootstrap_steps is None else tf.pow(gamma, bootstrap_steps)
        next_q_values = target_network(next_observations, training=False)
        if double_dqn:
            # Deviation (double-dqn): with --double-dqn (off by default), van Hasselt et
            # al. (2016): a' = argmax_a' Q(s', a') by the online network, then
            #   y = r + gamma * Q_target(s', a') * (1 - terminated)
            next_actions = tf.argmax(q_network(next_observations, training=False), axis=1,
                                     output_type=tf.int32)
            next_values = tf.gather(next_q_values, next_actions, axis=1, batch_dims=1)
        else:
            next_values = tf.reduce_max(next_q_values, axis=1)
        targets = tf.stop_gradient(rewards + discounts * next_values * (1.0 - terminated))
        with tf.GradientTape() as tape:
            q_values = q_network(observations, training=True)
            chosen_q_values = tf.gather(q_values, actions, axis=1, batch_dims=1)  # Q(s, a)
            loss = huber(targets, chosen_q_values)
        gradients = tape.gradient(loss, q_network.trainable_variables)
        # Deviation (gradient-clipping): Mnih et al. (2015) clip no gradient; Stable-Baselines3
        # clips their global norm to 10.
        gradients, _ = tf.clip_by_global_norm(gradients, max_gradient_norm)
        optimizer.apply_gradients(zip(gradients, q_network.trainable_variables))
        return loss, tf.reduce_mean(chosen_q_values)

    return train_step


def make_target_sync(q_network: keras.Model, target_network: keras.Model) -> Callable[[], None]:
    """Returns a graph function that copies the online weights into the target network.

    Args:
        q_network: the online network (source).
        target_network: a network of the same architecture (destination).

    Returns:
        ``sync_target()``, which assigns every target variable its online value.
    """
    if len(q_network.variables) != len(target_network.variables):
        raise ValueError(f"the target network does not match the online network: "
                         f"{len(target_network.variables)} variables vs {len(q_network.variables)}")
    pairs = list(zip(q_network.variables, target_network.variables))
    for online, target in pairs:
        if online.shape != target.shape:
            raise ValueError(f"the target network does not match the online network: "
                             f"{target.path} {target.shape} vs {online.path} {online.shape}")

    @tf.function
    def sync_target():
        for online, target in pairs:
            target.assign(online)

    return sync_target


class BackgroundLearner:
    """Runs DQN updates on a worker thread while the agent goes on playing.

    Why: on a CPU one update of the Nature network takes several times as long as
    the four steps of play between two updates (28 ms against about 6 ms on a 2-core
    Intel Xeon). Doing both at once instead of in turn makes the whole loop faster
    (``docs/performance.md``).

    With ``overlap=True`` the agent may act while an update is being applied, so
    with weights one update old, or with some layers already updated and others
    not (each variable is read whole: TensorFlow locks it while it is written). The
    updates themselves are the same, in the same order, on the same batches. ``sync_target`` and ``wait`` first let
    the running update finish, so the target network, checkpoints and saved
    models only ever see whole updates. With ``overlap=False`` every update runs
    at once, in the caller's thread.

    Args:
        train_step: the function from ``make_train_step``.
        sync_target: the function from ``make_target_sync``.
        overlap: run updates in the background.
    """

    def __init__(self, train_step: Callable[..., tuple[tf.Tensor, tf.Tensor]],
                 sync_target: Callable[[], None], overlap: bool = True):
        self._train_step = train_step
        self._sync_target = sync_target
        # Deviation (acting-beside-learning): Mnih et al. (2015) act with the newest weights.
        self._executor = ThreadPoolExecutor(1, "dqn-update") if overlap else None
        self._running: Future | None = None
        self.updates = 0
        self._losses: list[float] = []
        self._mean_qs: list[float] = []

    def update(self, batch) -> None:
        """Starts one update on ``batch`` (after the previous one has finished).

        Raises:
            FloatingPointError: if an update's loss was NaN or infinite.
        """
        self.wait()
        if self._executor is None:
            self._record(self._train_step(*batch))
        else:
            self._running = self._executor.submit(self._train_step, *batch)

    def sync_target(self) -> None:
        """Copies the online network into the target network, once no update runs."""
        self.wait()
        self._sync_target()

    def wait(self) -> None:
        """Blocks until the running update, if any, has finished, and records it."""
        if self._running is not None:
            running, self._running = self._running, None
            self._record(running.result())

    def pop_statistics(self) -> tuple[float, float]:
        """Mean loss and mean Q(s, a) of the updates finished since the last call (NaN if none)."""
        losses, mean_qs = self._losses, self._mean_qs
        self._losses, self._mean_qs = [], []
        if not losses:
            return math.nan, math.nan
        return sum(losses) / len(losses), sum(mean_qs) / len(mean_qs)

    def __enter__(self) -> "BackgroundLearner":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Finishes the running update and stops the worker thread."""
        try:
            self.wait()
        finally:
            if self._executor is not None:
                self._executor.shutdown()

    def _record(self, result: tuple[tf.Tensor, tf.Tensor]) -> None:
        loss, mean_q = float(result[0]), float(result[1])
        self.updates += 1
        if not math.isfinite(loss):
            raise FloatingPointError(f"the loss became {loss} in update {self.updates:,}")
        self._losses.append(loss)
        self._mean_qs.append(mean_q)
