"""The Q-network of Mnih et al. (2015), as a Keras functional model, and its dueling variant."""

from __future__ import annotations

import keras


# The registered name, "dqn>DuelingHead", names no module: a model saved by a script, by
# its standalone copy (which runs as __main__) or by a notebook loads in any of them.
@keras.saving.register_keras_serializable(package="dqn", name="DuelingHead")
class DuelingHead(keras.layers.Layer):
    """Combines a state value and action advantages into action values.

    Why: the dueling architecture of Wang et al. (2016) learns how good a state is
    apart from how much each action adds, which helps where actions often do not
    matter. The advantages are centred on their mean, the paper's equation (9):
    ``Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a')``. A layer of its own rather than a
    ``Lambda``, so a saved model still loads with Keras' safe mode on.
    """

    def call(self, inputs):
        """Returns Q for ``inputs = [value (batch, 1), advantages (batch, num_actions)]``."""
        value, advantages = inputs
        return value + advantages - keras.ops.mean(advantages, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


def build_q_network(observation_shape: tuple[int, ...], num_actions: int,
                    name: str = "q_network", dueling: bool = False) -> keras.Model:
    """Builds the Nature DQN convolutional network.

    Why: this is the network of "Human-level control through deep reinforcement
    learning" (Extended Data Table 1 and Methods): three ReLU convolutions
    (32 8x8 stride 4, 64 4x4 stride 2, 64 3x3 stride 1), a 512-unit ReLU layer
    and one linear output per action. With 4 actions it has 1,686,180 parameters.

    The input is the raw uint8 frame stack. A standard ``Rescaling`` layer
    divides it by 255 inside the model, so the replay memory stays in uint8 (four
    times smaller than float32) and a saved ``.keras`` file loads with Keras'
    safe mode on, which a ``Lambda`` layer would not allow.

    Args:
        observation_shape: shape of one observation, ``(84, 84, 4)`` for Atari.
        num_actions: size of the discrete action space, read from the environment.
        name: the model's name, handy to tell the online and target networks apart.
        dueling: after the convolutions, two streams of 512 ReLU units each, one for
            the state value and one for the action advantages, joined by
            ``DuelingHead`` (Wang et al., 2016), instead of the one 512-unit layer;
            3,292,837 parameters with 4 actions.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(batch, *observation_shape)`` uint8
        to ``(batch, num_actions)`` float32 action values.
    """
    observations = keras.Input(shape=observation_shape, dtype="uint8", name="observations")
    x = keras.layers.Rescaling(1.0 / 255.0)(observations)
    x = keras.layers.Conv2D(32, 8, strides=4, activation="relu")(x)
    x = keras.layers.Conv2D(64, 4, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(64, 3, strides=1, activation="relu")(x)
    x = keras.layers.Flatten()(x)
    if dueling:
        # Deviation (dueling): with --dueling (off by default), Wang et al. (2016): a value
        # stream and an advantage stream, Q = V + A - mean(A). Their rescaling of the
        # gradient entering the convolutions by 1/sqrt(2) is not done.
        value = keras.layers.Dense(512, activation="relu", name="value_hidden")(x)
        value = keras.layers.Dense(1, name="value")(value)
        advantages = keras.layers.Dense(512, activation="relu", name="advantage_hidden")(x)
        advantages = keras.layers.Dense(num_actions, name="advantages")(advantages)
        q_values = DuelingHead(name="q_values")([value, advantages])
    else:
        x = keras.layers.Dense(512, activation="relu")(x)
        q_values = keras.layers.Dense(num_actions, name="q_values")(x)
    return keras.Model(observations, q_values, name=name)
