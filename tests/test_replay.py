"""Golden-value tests of common/replay.py.

The fake environment below numbers every frame it produces, in the order the replay
memory writes them, and stacks frames the way gymnasium's FrameStackObservation does
(after a reset the stack is the reset frame repeated). Every sampled transition must
then be exactly one of the transitions that were added, with no frame of another
episode or of newer data in its stacks.
"""

from collections import deque

import numpy as np
import pytest

from common.replay import Batch, ReplayMemory, saved_capacity

FRAME_SHAPE = (2, 2)
HISTORY = 4


def make_frame(frame_id: int, episode: int) -> np.ndarray:
    """A 2x2 frame whose pixels encode its number (two bytes) and its episode."""
    return np.array([[frame_id // 256, frame_id % 256], [episode % 256, 7]], dtype=np.uint8)


def frame_id_of(frame: np.ndarray) -> int:
    return int(frame[0, 0]) * 256 + int(frame[0, 1])


def play(episode_lengths, ends=None, first_frame_id=0):
    """Plays fake episodes and returns what an agent would add to the memory.

    Args:
        episode_lengths: Number of steps of each episode.
        ends: How each episode ends: "terminated", "truncated" or "open" (the last
            episode goes on); by default they alternate terminated, truncated.
        first_frame_id: Number of the first frame.

    Returns:
        (steps, transitions, next_frame_id): steps are the argument tuples of
        ``add``, in order; transitions maps the number of each transition's next
        frame to (observation, action, reward, next_observation, terminated,
        frame_ids), where frame_ids are the distinct frame numbers of its stacks.
    """
    steps, transitions = [], {}
    frame_id = first_frame_id
    for episode, length in enumerate(episode_lengths):
        end = ends[episode] if ends is not None else ("terminated", "truncated")[episode % 2]
        frame = make_frame(frame_id, episode)
        frame_id += 1
        stack = deque([frame] * HISTORY, maxlen=HISTORY)
        observation = np.stack(stack, axis=-1)
        for step in range(length):
            last = step == length - 1
            stack.append(make_frame(frame_id, episode))
            next_observation = np.stack(stack, axis=-1)
            action = frame_id % 5
            reward = float(frame_id % 3 - 1)
            terminated = last and end == "terminated"
            truncated = last and end == "truncated"
            steps.append((observation, action, reward, next_observation, terminated, truncated))
            ids = {frame_id_of(observation[..., c]) for c in range(HISTORY)} | {frame_id}
            transitions[frame_id] = (observation, action, reward, next_observation, terminated, ids)
            observation = next_observation
            frame_id += 1
    return steps, transitions, frame_id


def fill(memory, episode_lengths, ends=None):
    """Adds fake episodes to the memory; returns (transitions, next_frame_id) of play."""
    steps, transitions, next_frame_id = play(episode_lengths, ends)
    for step in steps:
        memory.add(*step)
    return transitions, next_frame_id


def check_batch(batch: Batch, transitions: dict) -> list[int]:
    """Asserts every sampled transition equals an added one; returns their ids."""
    ids = []
    for b in range(len(batch.actions)):
        key = frame_id_of(batch.next_observations[b, ..., -1])
        assert key in transitions, f"sampled a transition that was not added or is too old: {key}"
        observation, action, reward, next_observation, terminated, _ = transitions[key]
        np.testing.assert_array_equal(batch.observations[b], observation)
        np.testing.assert_array_equal(batch.next_observations[b], next_observation)
        assert batch.actions[b] == action
        assert batch.rewards[b] == reward
        assert batch.terminated[b] == float(terminated)
        ids.append(key)
    return ids


def sampled_ids(memory, check, expected, rounds, batch_size=32) -> set[int]:
    """Samples ``rounds`` batches, checks each against ``expected``; returns the ids seen."""
    seen = set()
    for _ in range(rounds):
        seen.update(check(memory.sample(batch_size), expected))
    return seen


def test_sampled_stacks_equal_added_stacks_and_cover_all():
    memory = ReplayMemory(200, FRAME_SHAPE, HISTORY, seed=1)
    transitions, _ = fill(memory, [1, 2, 3, 7, 15, 30])
    assert len(memory) == len(transitions) == 58
    assert sampled_ids(memory, check_batch, transitions, rounds=40) == set(transitions)


def test_batch_dtypes_shapes_and_contiguity():
    memory = ReplayMemory(50, FRAME_SHAPE, HISTORY, seed=0)
    fill(memory, [10])
    batch = memory.sample(5)
    assert batch.observations.shape == batch.next_observations.shape == (5, 2, 2, 4)
    assert batch.observations.dtype == batch.next_observations.dtype == np.uint8
    assert batch.observations.flags.c_contiguous and batch.next_observations.flags.c_contiguous
    assert batch.actions.dtype == np.int32
    assert batch.rewards.dtype == batch.terminated.dtype == np.float32


def test_episode_start_repeats_its_first_frame_and_never_the_previous_episode():
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=2)
    transitions, _ = fill(memory, [6, 6, 6])
    # The first frames of episodes 1 and 2 are frames 7 and 14.
    firsts = {8: 7, 15: 14}
    found = set()
    for _ in range(50):
        batch = memory.sample(32)
        check_batch(batch, transitions)
        episodes = batch.observations[:, 1, 0, :]  # the episode number of every frame
        assert (episodes == episodes[:, -1:]).all(), "a stack mixes two episodes"
        for b in range(32):
            key = frame_id_of(batch.next_observations[b, ..., -1])
            if key in firsts:
                found.add(key)
                for c in range(HISTORY):
                    assert frame_id_of(batch.observations[b, ..., c]) == firsts[key]
    assert found == set(firsts)


@pytest.mark.parametrize("end", ["terminated", "truncated"])
def test_terminated_and_truncated_both_end_the_episode(end):
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=3)
    transitions, _ = fill(memory, [3, 3, 3], ends=[end] * 3)
    last_steps = {3: 1.0, 7: 1.0, 11: 1.0} if end == "terminated" else {3: 0.0, 7: 0.0, 11: 0.0}
    seen = set()
    for _ in range(20):
        batch = memory.sample(32)
        ids = check_batch(batch, transitions)
        for b, key in enumerate(ids):
            assert batch.terminated[b] == last_steps.get(key, 0.0)
            seen.add(key)
    assert seen == set(transitions)


def test_truncated_transition_bootstraps_from_true_final_observation():
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=4)
    fill(memory, [5, 5], ends=["truncated", "terminated"])
    # Episode 0 is frames 0..5; its last transition ends in frame 5 and is not terminal.
    for _ in range(20):
        batch = memory.sample(32)
        for b in np.flatnonzero(batch.next_observations[:, 0, 1, -1] == 5):
            final_stack = [frame_id_of(batch.next_observations[b, ..., c]) for c in range(4)]
            assert final_stack == [2, 3, 4, 5]
            assert batch.terminated[b] == 0.0
            return
    pytest.fail("the truncated transition was never sampled")


def test_wrap_around_samples_only_recent_unmixed_transitions():
    capacity = 37
    memory = ReplayMemory(capacity, FRAME_SHAPE, HISTORY, seed=5)
    rng = np.random.default_rng(0)
    transitions, next_frame_id = fill(memory, rng.integers(1, 12, size=40).tolist())
    assert next_frame_id > 5 * capacity
    # Frames still in the ring are the last `capacity` written.
    oldest_kept = next_frame_id - capacity
    # A transition is stored while the newest frame of its observation is.
    recent = {key: value for key, value in transitions.items() if key - 1 >= oldest_kept}
    # A transition can be sampled exactly when all of its frames are still stored.
    sampleable = {key for key, value in recent.items() if min(value[5]) >= oldest_kept}
    seen = set()
    for _ in range(60):
        seen.update(check_batch(memory.sample(32), recent))
    assert seen == sampleable
    assert len(memory) == len(recent)


def test_wrap_around_in_a_tiny_ring_excludes_overwritten_history():
    # With 5 slots and one long episode, only the transition whose 4-frame history
    # is entirely inside the ring can be sampled.
    memory = ReplayMemory(HISTORY + 1, FRAME_SHAPE, HISTORY, seed=6)
    transitions, next_frame_id = fill(memory, [23])
    batch = memory.sample(16)
    assert check_batch(batch, transitions) == [next_frame_id - 1] * 16


def assert_sampled_uniformly(memory, check, expected, rounds=200, batch_size=32):
    """Samples ``rounds`` batches: each of ``expected`` comes within 25% of its share."""
    counts = {key: 0 for key in expected}
    for _ in range(rounds):
        for key in check(memory.sample(batch_size), expected):
            counts[key] += 1
    share = rounds * batch_size / len(expected)
    assert all(abs(count - share) < 0.25 * share for count in counts.values())


def test_uniform_over_transitions():
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=7)
    transitions, _ = fill(memory, [4, 9, 7])
    assert_sampled_uniformly(memory, check_batch, transitions)


def test_bytes_per_transition():
    capacity = 100
    memory = ReplayMemory(capacity)
    assert memory.nbytes == ReplayMemory.bytes_needed(capacity)
    assert 84 * 84 < memory.nbytes / capacity < 7_100
    assert ReplayMemory.bytes_needed(1_000_000) < 7.2e9


def test_state_dict_round_trip_through_npz(tmp_path):
    steps, _, _ = play([9, 30, 25], ends=["terminated", "truncated", "open"])
    memory = ReplayMemory(60, FRAME_SHAPE, HISTORY, seed=8)
    for step in steps[:50]:  # the ring wraps and an episode is left open
        memory.add(*step)
    state = memory.state_dict()
    assert all(isinstance(value, np.ndarray) and value.dtype != object for value in state.values())
    path = tmp_path / "replay.npz"
    np.savez(path, **state)

    restored = ReplayMemory(60, FRAME_SHAPE, HISTORY, seed=123)
    with np.load(path, allow_pickle=False) as saved:
        restored.load_state_dict(dict(saved))
    assert len(restored) == len(memory)
    for _ in range(5):
        for expected, actual in zip(memory.sample(32), restored.sample(32)):
            np.testing.assert_array_equal(expected, actual)
    # Both continue the open episode identically.
    for step in steps[50:]:
        memory.add(*step)
        restored.add(*step)
    for expected, actual in zip(memory.sample(32), restored.sample(32)):
        np.testing.assert_array_equal(expected, actual)


def test_load_state_dict_rejects_other_capacity():
    memory = ReplayMemory(60, FRAME_SHAPE, HISTORY, seed=0)
    with pytest.raises(ValueError, match="capacity"):
        ReplayMemory(61, FRAME_SHAPE, HISTORY).load_state_dict(memory.state_dict())


def test_sample_raises_when_empty():
    memory = ReplayMemory(10, FRAME_SHAPE, HISTORY)
    with pytest.raises(ValueError, match="empty"):
        memory.sample(1)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(capacity=4),
        dict(capacity=10, history_length=0),
        dict(capacity=10.5),
        dict(capacity=10, frame_shape=(0, 84)),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ReplayMemory(**kwargs)


def test_add_rejects_channels_first_observations_and_large_actions():
    memory = ReplayMemory(10, FRAME_SHAPE, HISTORY)
    channels_first = np.zeros((HISTORY, *FRAME_SHAPE), dtype=np.uint8)
    with pytest.raises(ValueError, match="stack axis last"):
        memory.add(channels_first, 0, 0.0, channels_first, False, False)
    channels_last = np.zeros((*FRAME_SHAPE, HISTORY), dtype=np.uint8)
    with pytest.raises(ValueError, match="action"):
        memory.add(channels_last, 256, 0.0, channels_last, False, False)


@pytest.mark.parametrize("history", [1, 2, 3])
def test_other_history_lengths(history):
    memory = ReplayMemory(40, (3,), history, seed=9)
    frames = [np.full(3, value, dtype=np.uint8) for value in range(12)]
    stack = deque([frames[0]] * history, maxlen=history)
    added = {}
    for value in range(1, 12):
        observation = np.stack(stack, axis=-1)
        stack.append(frames[value])
        next_observation = np.stack(stack, axis=-1)
        memory.add(observation, value, 0.0, next_observation, False, False)
        added[value] = (observation, next_observation)
    batch = memory.sample(64)
    for b in range(64):
        observation, next_observation = added[int(batch.actions[b])]
        np.testing.assert_array_equal(batch.observations[b], observation)
        np.testing.assert_array_equal(batch.next_observations[b], next_observation)


def test_end_episode_starts_a_new_episode_after_a_restore():
    # A run saved mid-episode, restored, then a new game: what a resume does.
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=3)
    first, next_frame_id = fill(memory, [5, 6], ends=["terminated", "open"])
    restored = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=3)
    restored.load_state_dict(memory.state_dict())
    restored.end_episode()
    steps, second, _ = play([4], ends=["terminated"], first_frame_id=next_frame_id)
    for step in steps:
        restored.add(*step)
    everything = {**first, **second}
    seen = set()
    for _ in range(30):
        seen.update(check_batch(restored.sample(16), everything))
    assert seen == set(everything)  # each stack is exactly what the agent saw, none mixed


def saved_memory(tmp_path, capacity=60):
    steps, _, _ = play([9, 30, 25], ends=["terminated", "truncated", "open"])
    memory = ReplayMemory(capacity, FRAME_SHAPE, HISTORY, seed=8)
    for step in steps[:50]:
        memory.add(*step)
    path = tmp_path / "replay.npz"
    np.savez(path, **memory.state_dict())
    return memory, path


def test_restoring_from_the_archive_reads_in_pieces_into_the_memory(tmp_path, monkeypatch):
    memory, path = saved_memory(tmp_path)
    monkeypatch.setattr("common.replay._READ_CHUNK_BYTES", 1000)  # many pieces per array
    restored = ReplayMemory(60, FRAME_SHAPE, HISTORY, seed=123)
    frames_buffer = restored._frames
    with np.load(path, allow_pickle=False) as archive:
        assert saved_capacity(archive) == 60
        restored.load_state_dict(archive)  # the archive itself, never a dict of copies
    assert restored._frames is frames_buffer  # written in place
    assert len(restored) == len(memory)
    for expected, actual in zip(memory.sample(32), restored.sample(32)):
        np.testing.assert_array_equal(expected, actual)


def test_a_damaged_archive_leaves_the_memory_empty_and_says_why(tmp_path):
    memory, path = saved_memory(tmp_path, capacity=3000)  # frames far larger than one read
    data = path.read_bytes()
    # A bad disk block near the end of the frames: found once they are in the memory.
    block = data.index(b"actions.npy") - 300
    path.write_bytes(data[:block] + b"\xff" * 200 + data[block + 200:])
    restored = ReplayMemory(3000, FRAME_SHAPE, HISTORY, seed=123)
    restored.load_state_dict(memory.state_dict())  # holding transitions before
    with pytest.raises(ValueError, match="the saved replay memory is damaged .*CRC"):
        with np.load(path, allow_pickle=False) as archive:
            restored.load_state_dict(archive)
    assert len(restored) == 0
    restored.add(*play([3])[0][0])  # and it fills again from scratch
    assert len(restored) == 1


# n-step returns (--n-step): every sampled window against a plain loop over the stream.

def naive_n_step_windows(steps, n, gamma):
    """Each transition's n-step window, by a plain loop over the stream of ``add`` calls.

    Returns:
        {newest frame number of the observation: (observation, action, return,
        bootstrap observation, terminated, m)}, for the transitions whose window is
        complete: it holds n transitions or ends with its episode. A window that runs
        past the end of the stream (the episode goes on) is left out.
    """
    windows = {}
    for t, (observation, action, *_) in enumerate(steps):
        discounted_return = 0.0
        for k in range(n):
            if t + k == len(steps):
                break  # the episode goes on beyond what has been added
            _, _, reward, next_observation, terminated, truncated = steps[t + k]
            discounted_return += gamma ** k * reward
            if terminated or truncated or k == n - 1:
                windows[frame_id_of(observation[..., -1])] = (
                    observation, action, discounted_return, next_observation, terminated, k + 1)
                break
    return windows


def check_n_step_batch(batch: Batch, windows: dict) -> list[int]:
    """Asserts every sampled transition is the naive loop's window; returns their ids."""
    ids = []
    for b in range(len(batch.actions)):
        key = frame_id_of(batch.observations[b, ..., -1])
        assert key in windows, f"sampled transition {key}: not stored, or its window is incomplete"
        observation, action, discounted_return, next_observation, terminated, steps = windows[key]
        np.testing.assert_array_equal(batch.observations[b], observation)
        assert batch.actions[b] == action
        assert batch.rewards[b] == pytest.approx(discounted_return, abs=1e-6)
        np.testing.assert_array_equal(batch.next_observations[b], next_observation)
        assert batch.terminated[b] == float(terminated)
        assert batch.bootstrap_steps[b] == steps
        ids.append(key)
    return ids


# The memory sees a lost life and a game over alike: both end the learning episode
# with terminated=True (common/atari.py); a time limit ends it with truncated=True.
LIFE_LOST, GAME_OVER, TIME_LIMIT = "terminated", "terminated", "truncated"


@pytest.mark.parametrize("n", [2, 3, 5])
def test_n_step_windows_equal_a_plain_loop_over_the_stream(n):
    ends = [LIFE_LOST, LIFE_LOST, GAME_OVER, TIME_LIMIT, LIFE_LOST, GAME_OVER, "open"]
    steps, _, _ = play([1, 2, 6, 4, 3, 8, 7], ends)
    memory = ReplayMemory(200, FRAME_SHAPE, HISTORY, seed=10, n_step=n, discount=0.9)
    for step in steps:
        memory.add(*step)
    windows = naive_n_step_windows(steps, n, 0.9)
    seen = sampled_ids(memory, check_n_step_batch, windows, rounds=40)
    assert seen == set(windows)  # all but the open episode's newest n - 1
    assert len(windows) == len(steps) - (n - 1)
    assert {windows[key][5] for key in seen} == set(range(1, n + 1))


@pytest.mark.parametrize("last_end", [LIFE_LOST, TIME_LIMIT])
def test_n_step_windows_of_a_finished_episode_are_all_complete(last_end):
    # Right after an episode ends, its last n - 1 windows are complete (they end with
    # it); while the next, shorter than n - 1, goes on, none of its windows is.
    n = 4
    steps, _, next_frame_id = play([7], [last_end])
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=13, n_step=n, discount=0.9)
    for step in steps:
        memory.add(*step)
    windows = naive_n_step_windows(steps, n, 0.9)
    assert len(windows) == 7
    assert sampled_ids(memory, check_n_step_batch, windows, rounds=10) == set(windows)
    short, _, _ = play([2], ["open"], first_frame_id=next_frame_id)
    for step in short:
        memory.add(*step)
    assert naive_n_step_windows(short, n, 0.9) == {}
    assert sampled_ids(memory, check_n_step_batch, windows, rounds=10) == set(windows)


def test_n_step_sampling_is_uniform_over_complete_windows():
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=14, n_step=3, discount=0.9)
    steps, _, _ = play([4, 9, 7], [LIFE_LOST, TIME_LIMIT, "open"])
    for step in steps:
        memory.add(*step)
    assert_sampled_uniformly(memory, check_n_step_batch, naive_n_step_windows(steps, 3, 0.9))


def test_n_step_windows_across_the_wrap_around():
    capacity, n = 37, 3
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 12, size=40).tolist()
    ends = [str(end) for end in rng.choice([LIFE_LOST, TIME_LIMIT], size=39)] + ["open"]
    steps, _, next_frame_id = play(lengths, ends)
    memory = ReplayMemory(capacity, FRAME_SHAPE, HISTORY, seed=11, n_step=n, discount=0.99)
    for step in steps:
        memory.add(*step)
    assert next_frame_id > 5 * capacity
    oldest_kept = next_frame_id - capacity  # frames still in the ring
    windows = {key: window for key, window in naive_n_step_windows(steps, n, 0.99).items()
               if min(frame_id_of(window[0][..., c]) for c in range(HISTORY)) >= oldest_kept}
    seen = sampled_ids(memory, check_n_step_batch, windows, rounds=80)
    assert seen == set(windows)
    # Some sampled windows do cross the ring's end, from its last slot to its first.
    assert any(key % capacity > (key + windows[key][5]) % capacity for key in seen)


def test_n_step_memory_restored_and_cut_at_a_resume_samples_truncated_windows(tmp_path):
    # A run saved mid-episode with --save-replay, resumed: the memory comes back, and
    # end_episode() cuts the open episode, so its last windows bootstrap like a
    # truncated episode's. The new game's windows never reach into the old one.
    n = 3
    steps, _, next_frame_id = play([9, 6], ends=[LIFE_LOST, "open"])
    memory = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=12, n_step=n, discount=0.9)
    for step in steps:
        memory.add(*step)
    np.savez(tmp_path / "replay.npz", **memory.state_dict())
    restored = ReplayMemory(100, FRAME_SHAPE, HISTORY, seed=12, n_step=n, discount=0.9)
    with np.load(tmp_path / "replay.npz", allow_pickle=False) as archive:
        restored.load_state_dict(archive)
    for expected, actual in zip(memory.sample(32), restored.sample(32)):
        np.testing.assert_array_equal(expected, actual)
    restored.end_episode()
    new_steps, _, _ = play([5], ends=["open"], first_frame_id=next_frame_id)
    for step in new_steps:
        restored.add(*step)
    cut = steps[:-1] + [(*steps[-1][:5], True)]  # the open episode, as if truncated there
    windows = {**naive_n_step_windows(cut, n, 0.9), **naive_n_step_windows(new_steps, n, 0.9)}
    seen = sampled_ids(restored, check_n_step_batch, windows, rounds=30)
    assert seen == set(windows)


def test_one_step_batches_say_one_bootstrap_step():
    memory = ReplayMemory(50, FRAME_SHAPE, HISTORY, seed=0)
    fill(memory, [10])
    batch = memory.sample(5)
    assert batch.bootstrap_steps.dtype == np.float32
    assert (batch.bootstrap_steps == 1.0).all()


@pytest.mark.parametrize("kwargs", [dict(n_step=0), dict(n_step=3), dict(n_step=3, discount=1.5),
                                    dict(n_step=50, discount=0.9), dict(n_step=2.0, discount=0.9)])
def test_constructor_rejects_bad_n_step_arguments(kwargs):
    with pytest.raises(ValueError, match="n_step"):
        ReplayMemory(50, FRAME_SHAPE, HISTORY, **kwargs)
