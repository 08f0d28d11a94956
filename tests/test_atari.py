"""Behaviour tests of `common/atari.py` on the real Atari emulator.

Each test plays a few hundred emulator frames at most (one whole game of Breakout in
the module-scoped `breakout_game` fixture), so the file runs in a few seconds.
"""

import hashlib
from types import SimpleNamespace

import cv2
import gymnasium as gym
import numpy as np
import pytest

from common.atari import EpisodicLife, FireReset, make_env

BREAKOUT = "BreakoutNoFrameskip-v4"
NOOP, FIRE, RIGHT, LEFT = 0, 1, 2, 3  # Breakout's minimal action set.


def find_wrapper(env, wrapper_class):
    """Returns the first wrapper of `wrapper_class` in `env`'s chain, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_class):
            return env
        env = env.env
    return None


def record_emulator_steps(env):
    """Logs `(action, raw_reward)` for every emulator frame `env` plays from now on."""
    emulator = env.unwrapped
    emulator_step = emulator.step
    log = []

    def logging_step(action):
        result = emulator_step(action)
        log.append((int(action), float(result[1])))
        return result

    # An instance attribute shadows the method; the wrappers call emulator.step().
    emulator.step = logging_step
    return log


def breakout_tracking_action(ale):
    """Moves the paddle under the ball (RAM: 99 is the ball's x, 72 the paddle's)."""
    ram = ale.getRAM()
    ball_x, paddle_x = int(ram[99]), int(ram[72])
    if ball_x == 0:  # No ball on screen.
        return NOOP
    offset = ball_x - (paddle_x + 8)
    return RIGHT if offset > 3 else LEFT if offset < -3 else NOOP


# --- Observations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_id", "num_actions"), [(BREAKOUT, 4), ("PongNoFrameskip-v4", 6)]
)
def test_observations_are_84x84x4_uint8(env_id, num_actions):
    env = make_env(env_id)
    expected_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    assert env.observation_space == expected_space
    assert env.action_space.n == num_actions

    observation, _ = env.reset(seed=0)
    next_observation, *_ = env.step(NOOP)
    for obs in (observation, next_observation):
        assert obs.shape == (84, 84, 4)
        assert obs.dtype == np.uint8
        assert obs in env.observation_space


def test_stack_shifts_one_frame_per_step_newest_last():
    env = make_env(BREAKOUT, noop_max=0)
    observation, _ = env.reset(seed=0)
    # The stack is padded with the reset frame.
    for channel in range(1, 4):
        np.testing.assert_array_equal(observation[..., channel], observation[..., 0])

    newest_changed = False
    for _ in range(8):
        next_observation, *_ = env.step(NOOP)
        np.testing.assert_array_equal(next_observation[..., :3], observation[..., 1:])
        newest_changed |= not np.array_equal(next_observation[..., -1], observation[..., -1])
        observation = next_observation
    assert newest_changed, "the ball moves, so the newest frame must change"


def test_newest_frame_is_max_of_last_two_frames_resized():
    env = make_env(BREAKOUT, noop_max=0)
    ale = env.unwrapped.ale
    ale_actions = ale.getMinimalActionSet()
    env.reset(seed=0)

    max_pool_mattered = False
    for _ in range(6):
        # Play the 4 frames of one step by hand, then rewind and let the wrapper play them.
        state = ale.cloneState()
        screens = []
        for _ in range(4):
            ale.act(ale_actions[RIGHT])
            screens.append(ale.getScreenGrayscale())
        ale.restoreState(state)

        expected = cv2.resize(
            np.maximum(screens[2], screens[3]), (84, 84), interpolation=cv2.INTER_AREA
        )
        last_frame_only = cv2.resize(screens[3], (84, 84), interpolation=cv2.INTER_AREA)
        observation, *_ = env.step(RIGHT)
        np.testing.assert_array_equal(observation[..., -1], expected)
        max_pool_mattered |= not np.array_equal(expected, last_frame_only)
    assert max_pool_mattered, "the moving ball should make the two frames differ"


def test_golden_hash_of_one_preprocessed_frame():
    # If grayscale conversion, resizing, max-pooling or frame skipping changes on
    # purpose (or an opencv/ale-py upgrade changes pixels), look at the frame (the
    # paddle at the right, the ball in flight) and then update this hash.
    golden_sha256 = "991e00a51e5c05c6c97d5ce45f79257ba35ea5d213110263ca657452bafcc21b"
    env = make_env(BREAKOUT, noop_max=0)
    observation, _ = env.reset(seed=0)
    for action in [RIGHT] * 6 + [NOOP] * 6:
        observation, *_ = env.step(action)
    frame = observation[..., -1]
    assert frame.shape == (84, 84) and frame.dtype == np.uint8
    assert hashlib.sha256(frame.tobytes()).hexdigest() == golden_sha256


# --- Resets: no-ops, FIRE, seeding --------------------------------------------------


def test_fire_reset_only_for_games_with_fire():
    for env_id in (BREAKOUT, "PongNoFrameskip-v4"):
        assert find_wrapper(make_env(env_id), FireReset) is not None, env_id
    ms_pacman = make_env("MsPacmanNoFrameskip-v4")  # No FIRE action.
    assert "FIRE" not in ms_pacman.unwrapped.get_action_meanings()
    assert find_wrapper(ms_pacman, FireReset) is None
    assert find_wrapper(ms_pacman, EpisodicLife) is not None
    with pytest.raises(ValueError, match="FIRE"):
        FireReset(ms_pacman.unwrapped)


def test_reset_without_noops_presses_fire_for_one_step():
    env = make_env(BREAKOUT, noop_max=0)
    log = record_emulator_steps(env)
    for seed in range(3):
        log.clear()
        env.reset(seed=seed)
        assert [action for action, _ in log] == [FIRE] * 4  # One step is 4 frames.
        assert env.unwrapped.ale.getEpisodeFrameNumber() == 4


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_reset_plays_1_to_30_random_noops_then_fire():
    env = make_env(BREAKOUT)  # noop_max=30, as in the paper.
    log = record_emulator_steps(env)
    noop_counts = []
    for seed in range(12):
        log.clear()
        env.reset(seed=seed)
        actions = [action for action, _ in log]
        num_noops = len(actions) - 4
        assert actions == [NOOP] * num_noops + [FIRE] * 4
        assert env.unwrapped.ale.getEpisodeFrameNumber() == num_noops + 4
        noop_counts.append(num_noops)
    assert all(1 <= count <= 30 for count in noop_counts), noop_counts
    assert len(set(noop_counts)) >= 4, f"no-op starts should vary: {noop_counts}"


def test_seeded_reset_is_reproducible_even_mid_game():
    first, second = make_env(BREAKOUT), make_env(BREAKOUT)
    observation, _ = first.reset(seed=7)
    terminated = False
    while not terminated:  # Play on until the first lost life, then into the next.
        _, _, terminated, _, _ = first.step(NOOP)
    first.reset()
    first.step(NOOP)
    assert first.unwrapped.ale.lives() == 4
    replayed_observation, _ = first.reset(seed=7)
    fresh_observation, _ = second.reset(seed=7)
    np.testing.assert_array_equal(replayed_observation, observation)
    np.testing.assert_array_equal(fresh_observation, observation)
    assert first.unwrapped.ale.lives() == 5
    assert (
        first.unwrapped.ale.getEpisodeFrameNumber()
        == second.unwrapped.ale.getEpisodeFrameNumber()
    )


# --- Lives and games ----------------------------------------------------------------


@pytest.fixture(scope="module")
def breakout_game():
    """Plays one whole game of Breakout with a paddle-tracking policy (about 4,000 frames).

    Returns a namespace with `life_ends` (one record per terminated learning
    episode), the raw score summed over every emulator frame, the clipped rewards'
    sum, the number of emulator frames, and the lives and frame number after the
    reset that follows the game over.
    """
    env = make_env(BREAKOUT)
    ale = env.unwrapped.ale
    log = record_emulator_steps(env)
    env.reset(seed=0)
    life_ends = []
    clipped_score = 0.0
    while True:
        lives_before = ale.lives()
        _, reward, terminated, truncated, info = env.step(breakout_tracking_action(ale))
        clipped_score += reward
        if not (terminated or truncated):
            continue
        end = SimpleNamespace(
            terminated=terminated,
            truncated=truncated,
            info=info,
            lives_before=lives_before,
            lives_after=ale.lives(),
            game_over=ale.game_over(),
            frame=ale.getEpisodeFrameNumber(),
        )
        life_ends.append(end)
        if end.game_over or truncated:
            break
        env.reset()
        end.lives_after_reset = ale.lives()
        end.frame_after_reset = ale.getEpisodeFrameNumber()

    raw_score = sum(reward for _, reward in log)
    num_frames = len(log)
    env.reset()
    return SimpleNamespace(
        life_ends=life_ends,
        raw_score=raw_score,
        clipped_score=clipped_score,
        num_frames=num_frames,
        lives_after_game_reset=ale.lives(),
        frame_after_game_reset=ale.getEpisodeFrameNumber(),
    )


def test_lost_life_terminates_episode_but_not_game(breakout_game):
    lost_lives = breakout_game.life_ends[:-1]
    assert len(lost_lives) == 4  # Breakout has 5 lives.
    for end in lost_lives:
        assert end.terminated and not end.truncated
        assert not end.game_over
        assert end.lives_after == end.lives_before - 1
        assert "episode" not in end.info  # The game's statistics wait for its end.


def test_reset_after_lost_life_continues_game(breakout_game):
    for end in breakout_game.life_ends[:-1]:
        assert end.lives_after_reset == end.lives_after
        # One no-op step and one FIRE step, 4 frames each; no restart.
        assert end.frame_after_reset == end.frame + 8


def test_last_life_ends_game_with_whole_raw_score(breakout_game):
    last = breakout_game.life_ends[-1]
    assert last.terminated and last.game_over
    assert last.lives_before == 1 and last.lives_after == 0
    episode = last.info["episode"]
    assert episode["r"] == breakout_game.raw_score
    assert episode["l"] == breakout_game.num_frames  # Counts emulator frames.
    # Higher bricks are worth 4 and 7 points; the agent only sees +1 for each.
    assert breakout_game.raw_score > breakout_game.clipped_score > 0


def test_reset_after_game_over_restarts_game(breakout_game):
    assert breakout_game.lives_after_game_reset == 5
    assert 1 + 4 <= breakout_game.frame_after_game_reset <= 30 + 4


class _ScriptedAtari(gym.Env):
    """A stand-in emulator whose lives and game-over steps are scripted."""

    observation_space = gym.spaces.Discrete(1000)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, script):
        self.script = list(script)  # (lives, terminated) for each step.
        self.resets = 0
        self.step_count = 0
        self.ale = SimpleNamespace(lives=lambda: self.current_lives)
        self.current_lives = 2

    def reset(self, *, seed=None, options=None):
        self.resets += 1
        self.current_lives = 2
        return 0, {}

    def step(self, action):
        self.step_count += 1
        self.current_lives, terminated = self.script.pop(0)
        return self.step_count, 0.0, terminated, False, {}


def test_episodic_life_resets_for_real_when_the_noop_step_ends_the_game():
    # Step 1 loses a life; the no-op step of the following reset ends the game.
    emulator = _ScriptedAtari([(1, False), (0, True)])
    env = EpisodicLife(emulator)
    env.reset()
    _, _, terminated, _, _ = env.step(1)
    assert terminated and not env.was_real_game_over
    env.reset()
    assert emulator.resets == 2 and emulator.step_count == 2
    assert env.lives == 2


# --- Rewards ------------------------------------------------------------------------


def test_rewards_are_clipped_but_raw_score_is_kept():
    env = make_env("SpaceInvadersNoFrameskip-v4", noop_max=0)  # 5 to 30 per alien.
    statistics = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics)
    env.reset(seed=0)
    seen_large_reward = False
    for _ in range(300):
        return_before = statistics.episode_returns
        _, reward, terminated, truncated, _ = env.step(FIRE)
        raw_reward = statistics.episode_returns - return_before
        assert reward == np.sign(raw_reward)
        if raw_reward > 1:
            seen_large_reward = True
            break
        assert not (terminated or truncated)
    assert seen_large_reward, "firing for 300 steps should hit an alien"


# --- Errors and video ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env_id",
    ["ALE/Breakout-v5", "Breakout-v4", "BreakoutDeterministic-v4", "BreakoutNoFrameskip-v0"],
)
def test_other_breakout_ids_are_rejected_with_a_hint(env_id):
    with pytest.raises(ValueError, match="BreakoutNoFrameskip-v4") as error:
        make_env(env_id)
    assert "\n" not in str(error.value)


def test_unknown_game_is_a_one_line_value_error():
    with pytest.raises(ValueError, match="NoSuchGameNoFrameskip-v4") as error:
        make_env("NoSuchGameNoFrameskip-v4")
    assert "BreakoutNoFrameskip-v4" in str(error.value)
    assert "\n" not in str(error.value)


def test_video_needs_a_folder():
    with pytest.raises(ValueError, match="video_dir"):
        make_env(BREAKOUT, video_every=10)


def test_game_recorder_wraps_the_raw_emulator(tmp_path):
    from common.video import GameRecorder  # a failing import fails this test

    env = make_env(BREAKOUT, video_dir=str(tmp_path), video_every=2)
    recorder = find_wrapper(env, GameRecorder)
    assert recorder is not None
    assert find_wrapper(recorder.env, gym.wrappers.RecordEpisodeStatistics) is None
    statistics = find_wrapper(env, gym.wrappers.RecordEpisodeStatistics)
    assert statistics.env is recorder


def test_a_game_cut_off_inside_reset_still_reports_its_score():
    """The frame limit can fall in the no-op or FIRE step that reset() plays after a lost life."""
    rng = np.random.default_rng(0)
    env = make_env(BREAKOUT, noop_max=0)
    env.reset(seed=3)
    actions = []
    while True:
        actions.append(int(rng.integers(4)))
        _, _, terminated, _, info = env.step(actions[-1])
        if terminated and "episode" not in info:  # a life lost, the game goes on
            frames_at_life_loss = env.unwrapped.ale.getEpisodeFrameNumber()
            break
    env.close()
    # The same game again, cut off 2 frames after that life was lost: inside reset().
    env = make_env(BREAKOUT, noop_max=0, max_frames_per_game=frames_at_life_loss + 2)
    env.reset(seed=3)
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
    assert terminated and not truncated and "episode" not in info
    _, info = env.reset()
    env.close()
    assert "episode" in info  # the game is counted, with its frames
    assert info["episode"]["l"] >= frames_at_life_loss
