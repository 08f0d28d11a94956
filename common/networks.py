"""The Q-network of Mnih et al. (2015), as a Keras functional model."""

from __future__ import annotations

import keras


def build_q_network(observation_shape: tuple[int, ...], num_actions: int,
                    name: str = "q_network") -> keras.Model:
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
    x = keras.layers.Dense(512, activation="relu")(x)
    q_values = keras.layers.Dense(num_actions, name="q_values")(x)
    return keras.Model(observations, q_values, name=name)
