"""DeepMind-style Atari preprocessing for the `*NoFrameskip-v4` games.

The agent in Mnih et al. (2015) never sees the raw 210x160 colour screen at 60 frames
per second. `make_env` builds the paper's pipeline, as the reference wrappers
(DeepMind dqn_zoo, Stable-Baselines3, CleanRL) do, innermost first:

1. The emulator, `gym.make(env_id)`: one step is one frame, no sticky actions.
2. Optional video: `common.video.GameRecorder` keeps the RGB frames of every N-th
   whole game, before any preprocessing touches them.
3. Raw score: `RecordEpisodeStatistics` adds `info["episode"]["r"]`, the unclipped
   score of a whole game (all lives), on the step where the game really ends.
4. `AtariPreprocessing` (gymnasium):
   a. no-op reset: 1 to `noop_max` (uniformly random) no-op frames after a reset;
   b. action repeat: each agent action is held for 4 frames and their rewards summed;
   c. max-pooling: pixel-wise max of the last two of those 4 frames, because Atari
      sprites flicker and may be drawn on alternate frames only;
   d. grayscale, then resize to 84x84 with area interpolation.
   When a game ends (game over or the frame limit) inside the 4 frames, gymnasium
   stops before reading the screen: the last observation of a game is then not its
   final screen but pools two frames up to 4 frames older (from the step before, if
   the game ended on the 1st to 3rd frame). A terminal step does not bootstrap, so
   only a truncated game's target sees this, once in a 30-minute game.
5. `EpisodicLife`: losing a life ends the learning episode (`terminated=True`) but
   not the game; the next `reset()` carries on where the game left off.
6. `FireReset` (only games whose actions include FIRE): press FIRE after every
   reset and every lost life, so that Breakout's ball is launched.
7. Reward clipping to [-1, 1], as the paper does for every game.
8. Frame stack: the last 4 frames, channels last: observations are `(84, 84, 4)`
   uint8 with the newest frame at `observation[..., -1]`.

gymnasium supplies steps 3, 4, 7 and 8; the two wrappers it lacks are defined here.

The score a student should compare with the paper is `info["episode"]["r"]`, never
the sum of the clipped rewards the agent learns from.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from common.config import ConfigError

__all__ = ["EpisodicLife", "FireReset", "make_env"]

FRAME_SKIP = 4
"""Emulator frames per agent step (the paper's "action repeat")."""

SCREEN_SIZE = 84
"""Height and width of a preprocessed frame, in pixels."""

FRAME_STACK = 4
"""Preprocessed frames in one observation (the paper's "agent history length")."""


class EpisodicLife(gym.Wrapper):
    """Ends the learning episode when a life is lost, without ending the game.

    Why: Mnih et al. (2015) treat a lost life as terminal during training. The agent
    learns that losing a life is final (its value is 0 from there on) long before it
    could learn that from the end of a five-life game.

    The emulator is not reset when a life is lost. After a life-loss
    `terminated=True`, `reset()` only plays one no-op step and returns its
    observation; the game goes on with one life fewer, and the score, the frame
    counter and the 108,000-frame limit all carry over. Only when the game is really
    over (or truncated, or the no-op step itself ends it) does `reset()` restart the
    game. A `reset()` with a `seed` or `options` always restarts the game, so that
    seeded resets are reproducible. Games without lives (Pong) pass through
    unchanged.

    Attributes:
        lives: Lives left, as the emulator reported them after the last step.
        was_real_game_over: Whether the last step ended the game itself (game over or
            truncation), as opposed to only a life.
    """

    def __init__(self, env: gym.Env):
        """Wraps an Atari environment.

        Args:
            env: An environment whose `unwrapped` has an `ale` emulator handle.
        """
        super().__init__(env)
        self.lives = 0
        # True so that the very first reset() restarts the game.
        self.was_real_game_over = True

    def step(self, action):
        """Steps the game and reports a lost life as the end of the episode.

        Args:
            action: The agent's action.

        Returns:
            The inner `(observation, reward, terminated, truncated, info)`, with
            `terminated` also True when a life was lost.
        """
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.was_real_game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        # The 0 < lives guard: some games (Qbert) show 0 lives for a few frames
        # before the game is over; that end is left to the emulator's own flag.
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Restarts the game if it is over, otherwise plays one no-op step.

        Args:
            seed: If given, the game is restarted and the emulator reseeded.
            options: If given, the game is restarted with these options.

        Returns:
            `(observation, info)` of the new learning episode.
        """
        if self.was_real_game_over or seed is not None or options is not None:
            observation, info = self.env.reset(seed=seed, options=options)
        else:
            # Action 0 is NOOP in every Atari minimal action set.
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # the game ended in that step (its frame limit)
                observation, info = _restart_keeping_score(self.env, info)
        self.was_real_game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return observation, info


class FireReset(gym.Wrapper):
    """Presses FIRE once after every reset.

    Why: in games such as Breakout nothing happens until FIRE is pressed; an agent
    that explores with random actions would waste many steps, and the frame stack
    would be full of identical frames. Placed outside `EpisodicLife`, this also fires
    after every lost life, which is what launches the next ball in Breakout. The
    FIRE step is not seen by the agent: its reward (normally 0) is dropped. If that
    step ends the episode, the environment is reset once more, without firing again.

    Stable-Baselines3's `FireResetEnv` (which CleanRL uses) presses FIRE and then
    action 2 (RIGHT in Breakout and Pong); this wrapper presses FIRE only, one agent
    step of 4 frames, so the agent's first decision comes 4 frames sooner.
    """

    def __init__(self, env: gym.Env):
        """Wraps an Atari environment whose actions include FIRE.

        Args:
            env: An environment whose `unwrapped.get_action_meanings()` lists "FIRE".

        Raises:
            ValueError: If the game has no FIRE action.
        """
        super().__init__(env)
        action_meanings = env.unwrapped.get_action_meanings()
        if "FIRE" not in action_meanings:
            raise ValueError(
                f"FireReset needs a game with a FIRE action; this one has {action_meanings}."
            )
        # Index 1 in Breakout and Pong; looked up rather than assumed.
        self.fire_action = action_meanings.index("FIRE")
        # Deviation (fire-reset): Mnih et al. (2015) press no button for the agent; it
        # learns to launch the ball itself.

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Resets the inner environment, then presses FIRE.

        Args:
            seed: Passed on to the inner `reset()`.
            options: Passed on to the inner `reset()`.

        Returns:
            `(observation, info)` after the FIRE step; `info` merges the reset's and
            the step's keys.
        """
        _, reset_info = self.env.reset(seed=seed, options=options)
        observation, _, terminated, truncated, step_info = self.env.step(self.fire_action)
        if terminated or truncated:  # the game ended in the FIRE step (its frame limit)
            return _restart_keeping_score(self.env, {**reset_info, **step_info})
        return observation, {**reset_info, **step_info}


def _restart_keeping_score(env: gym.Env, info: dict[str, Any]):
    """Resets ``env`` after a game ended inside a wrapper's own ``reset()``.

    The ended game's raw score (``info["episode"]``) goes into the new game's reset
    ``info``, so that the training loop and the evaluation count that game too.
    """
    observation, reset_info = env.reset()
    if "episode" in info:
        reset_info = {**reset_info, "episode": info["episode"]}
    return observation, reset_info


def make_env(
    env_id: str,
    *,
    noop_max: int = 30,
    video_dir: str | None = None,
    video_every: int = 0,
    first_game: int = 1,
    max_frames_per_game: int = 108_000,
    video_label: str = "",
) -> gym.Env:
    """Builds one Atari game with the DeepMind preprocessing of Mnih et al. (2015).

    Why: every script builds its environment here, so the preprocessing is written
    and tested once (see the module docstring for the pipeline, step by step).

    An episode ends at every lost life (`terminated=True`), but
    `info["episode"]` (from gymnasium's `RecordEpisodeStatistics`) appears only when
    the whole game ends; its `"r"` is the raw game score and its `"l"` counts
    emulator frames, not agent steps. A game is truncated (`truncated=True`) after
    108,000 frames (30 minutes of play), the limit the `-v4` ids set.

    Args:
        env_id: A gymnasium id ending in "NoFrameskip-v4", e.g.
            "BreakoutNoFrameskip-v4": one frame per step and no sticky actions, so
            that frame skipping and max-pooling happen here.
        noop_max: Most no-op frames played after a real reset (the number is drawn
            from 1..noop_max); 0 turns random no-op starts off.
        video_dir: Folder for recorded games; needed when `video_every` > 0.
        video_every: Record every `video_every`-th whole game; 0 records nothing.
        first_game: Number given to the first game in video file names (to carry on
            a count after resuming a run).
        video_label: Added to the video file names after the game's name, e.g.
            "evaluation" gives "breakout_evaluation_game000001_score12.mp4".
        max_frames_per_game: Emulator frames after which a game is truncated; the
            default is the 30 minutes of the `-v4` ids, the paper's evaluation uses
            18,000 (5 minutes).

    Returns:
        The wrapped environment. Observations are `(84, 84, 4)` uint8 arrays, newest
        frame last; rewards are clipped to [-1, 1].

    Raises:
        ConfigError: If `env_id` is not a known `*NoFrameskip-v4` id (a
            `ValueError` whose message says what to use instead).
        ValueError: If the video options are inconsistent.
    """
    import ale_py  # Imported here so that importing this module registers nothing.

    if not env_id.endswith("NoFrameskip-v4"):
        raise ConfigError(
            f"{env_id!r} is not a NoFrameskip-v4 id; use e.g. 'BreakoutNoFrameskip-v4' "
            "(one frame per step, no sticky actions; frame skipping is done here)."
        )
    if video_every < 0:
        raise ValueError(f"video_every must be 0 (no video) or positive, got {video_every}.")
    if video_every > 0 and video_dir is None:
        raise ValueError("video_every > 0 needs a video_dir to write the recordings to.")

    gym.register_envs(ale_py)
    try:
        # Deviation (time-limit): a training game is cut off (truncated) after 108,000
        # frames, 30 minutes, as the -v4 ids do; the paper names no limit in training.
        env = gym.make(env_id, max_num_frames_per_episode=max_frames_per_game)
    except gym.error.Error as error:
        message = str(error).replace("\n", " ")
        raise ConfigError(
            f"Unknown Atari game {env_id!r} ({message}); use e.g. 'BreakoutNoFrameskip-v4'."
        ) from None

    if video_every > 0:
        from common.video import GameRecorder  # Imported only when recording.

        env = GameRecorder(
            env,
            video_dir,
            every=video_every,
            name_prefix="_".join(filter(None, [env.spec.kwargs["game"], video_label])),
            first_game=first_game,
        )
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=FRAME_SKIP,
        screen_size=SCREEN_SIZE,
        terminal_on_life_loss=False,  # EpisodicLife does this without resetting the game.
        grayscale_obs=True,
        scale_obs=False,  # uint8 keeps the replay memory 4 times smaller than float32.
    )
    env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    # Mnih et al. (2015) clip positive rewards to 1 and negative rewards to -1.
    env = gym.wrappers.ClipReward(env, -1.0, 1.0)
    # Repeats the reset frame to fill the stack; gives (4, 84, 84), oldest first.
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
    # Keras convolutions expect channels last: (84, 84, 4).
    env = gym.wrappers.TransformObservation(
        env,
        lambda stack: np.ascontiguousarray(np.moveaxis(stack, 0, -1)),
        observation_space=gym.spaces.Box(
            low=0, high=255, shape=(SCREEN_SIZE, SCREEN_SIZE, FRAME_STACK), dtype=np.uint8
        ),
    )
    return env
