"""Catch: a tiny game that DQN learns in seconds, for the learning test.

Why: the Atari games take hours to learn, so `tests/test_learning.py` runs the
real training loop of `breakout_dqn.py` on this game instead. It is the Catch
of DeepMind's bsuite: a ball starts in a random column of the top row and falls
one row per step; the paddle on the bottom row moves left, stays or moves
right; when the ball reaches the bottom row the game ends with +1 if the paddle
is under it and -1 otherwise. A random policy scores about -0.6 on a grid five
columns wide; a perfect one scores +1, since the paddle always has time to get
under the ball.

`make_catch_env` wraps it like `common.atari.make_env` wraps an Atari game, so
`breakout_dqn.train` cannot tell the difference: `(rows, columns, 4)` uint8
frame stacks, newest frame last, and the raw score in `info["episode"]["r"]`.
"""

from __future__ import annotations

import contextlib

import gymnasium as gym
import keras
import numpy as np

from common.networks import DuelingHead

ROWS, COLUMNS = 10, 5
FRAME_STACK = 4
LEFT, STAY, RIGHT = 0, 1, 2


class Catch(gym.Env):
    """The bsuite Catch game on a `rows` x `columns` grid.

    Observations are uint8 frames `(rows, columns)`: 255 where the ball and the
    paddle are, 0 elsewhere. Each game lasts `rows - 1` steps and ends with a
    reward of +1 (caught) or -1 (missed); every other step gives 0.

    Args:
        rows: height of the grid; the ball falls from row 0 to row `rows - 1`.
        columns: width of the grid; the paddle starts in the middle column.
    """

    metadata = {"render_modes": []}

    def __init__(self, rows: int = ROWS, columns: int = COLUMNS):
        self.rows, self.columns = rows, columns
        self.observation_space = gym.spaces.Box(0, 255, shape=(rows, columns), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(3)  # LEFT, STAY, RIGHT
        self._ball_row = self._ball_column = self._paddle_column = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # seeds self.np_random
        self._ball_row = 0
        self._ball_column = int(self.np_random.integers(self.columns))
        self._paddle_column = self.columns // 2
        return self._frame(), {}

    def step(self, action):
        self._paddle_column = int(np.clip(self._paddle_column + int(action) - 1,
                                          0, self.columns - 1))
        self._ball_row += 1
        terminated = self._ball_row == self.rows - 1
        reward = 0.0
        if terminated:
            reward = 1.0 if self._paddle_column == self._ball_column else -1.0
        return self._frame(), reward, terminated, False, {}

    def _frame(self) -> np.ndarray:
        frame = np.zeros((self.rows, self.columns), dtype=np.uint8)
        frame[self._ball_row, self._ball_column] = 255
        frame[self.rows - 1, self._paddle_column] = 255
        return frame


def make_catch_env(env_id: str = "Catch", *, video_dir=None, video_every: int = 0,
                   first_game: int = 1, **unused) -> gym.Env:
    """Builds Catch with the wrappers `breakout_dqn.train` expects of `make_env`.

    Args:
        env_id: ignored; there is only one Catch. Present to match `make_env`.
        video_dir, video_every, first_game: ignored; Catch records no video.
        **unused: any other `make_env` argument, ignored.

    Returns:
        Catch wrapped in `RecordEpisodeStatistics` (the score of each game in
        `info["episode"]["r"]`), `FrameStackObservation` and a transform to
        channels last: observations are uint8 `(rows, columns, 4)`.
    """
    env = gym.wrappers.RecordEpisodeStatistics(Catch())
    # Repeats the reset frame to fill the stack; gives (4, rows, columns), oldest first.
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
    env = gym.wrappers.TransformObservation(
        env,
        lambda stack: np.ascontiguousarray(np.moveaxis(stack, 0, -1)),
        observation_space=gym.spaces.Box(0, 255, shape=(ROWS, COLUMNS, FRAME_STACK),
                                         dtype=np.uint8),
    )
    return env


def build_small_q_network(observation_shape: tuple[int, ...], num_actions: int,
                          name: str = "q_network", dueling: bool = False) -> keras.Model:
    """A small fully connected Q-network for Catch, in place of the Nature network.

    Args:
        observation_shape: shape of one observation, `(rows, columns, 4)`.
        num_actions: number of actions, read from the environment.
        name: the model's name.
        dueling: value and advantage streams joined by `common.networks.DuelingHead`,
            as `build_q_network(dueling=True)` builds them.

    Returns:
        An uncompiled `keras.Model` from uint8 `(batch, *observation_shape)` to
        float32 `(batch, num_actions)` action values; like the Nature network it
        rescales inside the model (no `Lambda`), so it loads in safe mode.
    """
    observations = keras.Input(shape=observation_shape, dtype="uint8", name="observations")
    x = keras.layers.Rescaling(1.0 / 255.0)(observations)
    x = keras.layers.Flatten()(x)
    if dueling:
        value = keras.layers.Dense(1, name="value")(keras.layers.Dense(32, activation="relu")(x))
        advantages = keras.layers.Dense(num_actions, name="advantages")(
            keras.layers.Dense(32, activation="relu")(x))
        return keras.Model(observations, DuelingHead(name="q_values")([value, advantages]),
                           name=name)
    x = keras.layers.Dense(64, activation="relu")(x)
    q_values = keras.layers.Dense(num_actions, name="q_values")(x)
    return keras.Model(observations, q_values, name=name)


@contextlib.contextmanager
def playing_catch(*scripts):
    """Runs the game scripts' very ``train`` and ``evaluate`` on Catch with the small network.

    Why: a script's loop calls its module's ``make_env`` and ``build_q_network``
    when it runs, so swapping those two names for the duration is all it takes.
    """
    saved = [(script, script.make_env, script.build_q_network) for script in scripts]
    for script in scripts:
        script.make_env, script.build_q_network = make_catch_env, build_small_q_network
    try:
        yield
    finally:
        for script, make_env, build_q_network in saved:
            script.make_env, script.build_q_network = make_env, build_q_network
