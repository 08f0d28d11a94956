"""Measures the replay memory's size in RAM and its sampling speed.

Fills a ReplayMemory with Atari-like frames (black background, a few bright bricks,
a paddle and a ball, some noise) in episodes of 100 to 1,000 steps, then samples
minibatches. It prints a short table and, as its last line, one JSON object:

    python benchmarks/replay_memory.py --capacity 100000

Keys of the JSON line: capacity, bytes_per_transition (bytes allocated / capacity),
rss_bytes (resident memory of the process when the memory is full), sample_ms (median
time to sample one minibatch). It does not import TensorFlow.
"""

import argparse
import json
import pathlib
import sys
import time

# Make `common` importable when the script is run from a clean clone.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from common.replay import ReplayMemory  # noqa: E402

FRAME_SHAPE = (84, 84)
HISTORY_LENGTH = 4
POOL_SIZE = 256  # distinct frames, cycled through while filling


def make_frame_pool(rng: np.random.Generator) -> np.ndarray:
    """Returns POOL_SIZE uint8 frames that look like preprocessed Breakout."""
    frames = np.zeros((POOL_SIZE, *FRAME_SHAPE), dtype=np.uint8)
    frames[:, 0:2, :] = 142  # top wall
    frames[:, :, 0:2] = 142  # side walls
    frames[:, :, 82:84] = 142
    for row in range(6):  # rows of bricks, some knocked out
        present = rng.random((POOL_SIZE, 12)) < 0.8
        bricks = np.repeat(present, 7, axis=1)[:, :80] * (60 + 20 * row)
        frames[:, 14 + 3 * row : 16 + 3 * row, 2:82] = bricks[:, None, :].astype(np.uint8)
    for index in range(POOL_SIZE):
        paddle = 2 + (index * 3) % 64
        frames[index, 78:80, paddle : paddle + 16] = 170  # paddle
        ball_row, ball_col = 30 + (index * 5) % 44, 4 + (index * 7) % 76
        frames[index, ball_row : ball_row + 2, ball_col : ball_col + 2] = 200  # ball
    noise = rng.random(frames.shape) < 0.002  # resampling artefacts
    frames[noise] = rng.integers(1, 80, size=int(noise.sum()), dtype=np.uint8)
    return frames


def fill(
    memory: ReplayMemory, num_transitions: int, frames: np.ndarray, rng: np.random.Generator
) -> None:
    """Adds num_transitions transitions in episodes of 100 to 1,000 steps."""
    # Pre-built stacks: stacks[k] holds frames k-3..k of the pool, and reset_stacks[k]
    # holds frame k four times, as FrameStackObservation gives after a reset.
    order = (np.arange(POOL_SIZE)[:, None] + np.arange(-(HISTORY_LENGTH - 1), 1)) % POOL_SIZE
    stacks = np.ascontiguousarray(np.moveaxis(frames[order], 1, -1))
    reset_stacks = np.repeat(frames[..., None], HISTORY_LENGTH, axis=-1)
    actions = rng.integers(0, 4, size=num_transitions)
    rewards = (rng.random(num_transitions) < 0.02).astype(np.float32)
    added = 0
    while added < num_transitions:
        length = min(int(rng.integers(100, 1001)), num_transitions - added)
        terminated = rng.random() < 0.8  # otherwise the episode is truncated
        start = int(rng.integers(POOL_SIZE))
        observation = reset_stacks[start]
        for step in range(length):
            next_observation = stacks[(start + step + 1) % POOL_SIZE]
            last = step == length - 1
            memory.add(
                observation,
                int(actions[added]),
                float(rewards[added]),
                next_observation,
                last and terminated,
                last and not terminated,
            )
            observation = next_observation
            added += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--capacity", type=int, required=True, help="transitions to store (DQN: 1000000)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="transitions per minibatch")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the frames, episodes and sampling"
    )
    parser.add_argument("--samples", type=int, default=1000, help="minibatches to time")
    args = parser.parse_args()

    needed = ReplayMemory.bytes_needed(args.capacity, FRAME_SHAPE)
    available = psutil.virtual_memory().available
    if needed > available:
        sys.exit(f"a memory of {args.capacity} transitions needs {needed / 1e9:.2f} GB, "
                 f"only {available / 1e9:.2f} GB is available; lower --capacity.")

    rng = np.random.default_rng(args.seed)
    frames = make_frame_pool(rng)
    memory = ReplayMemory(args.capacity, FRAME_SHAPE, HISTORY_LENGTH, seed=args.seed)
    start = time.perf_counter()
    fill(memory, args.capacity, frames, rng)
    fill_seconds = time.perf_counter() - start
    rss_bytes = psutil.Process().memory_info().rss

    for _ in range(20):  # warm up
        memory.sample(args.batch_size)
    timings = np.empty(args.samples)
    for index in range(args.samples):
        start = time.perf_counter()
        memory.sample(args.batch_size)
        timings[index] = time.perf_counter() - start
    sample_ms = float(np.median(timings) * 1e3)

    bytes_per_transition = memory.nbytes / args.capacity
    rows = [
        ("capacity (slots)", f"{args.capacity:,}"),
        ("transitions stored", f"{len(memory):,}"),
        ("fill time",
         f"{fill_seconds:.1f} s ({fill_seconds / args.capacity * 1e6:.1f} us per add)"),
        ("allocated",
         f"{memory.nbytes / 1e9:.3f} GB ({bytes_per_transition:,.1f} bytes per transition)"),
        ("process RSS when full", f"{rss_bytes / 1e9:.3f} GB"),
        (f"sample batch of {args.batch_size}",
         f"median {sample_ms:.3f} ms, 90th percentile {np.percentile(timings, 90) * 1e3:.3f} ms"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps({
        "capacity": args.capacity,
        "bytes_per_transition": bytes_per_transition,
        "rss_bytes": rss_bytes,
        "sample_ms": round(sample_ms, 4),
    }))


if __name__ == "__main__":
    main()
