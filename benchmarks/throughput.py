"""Measures agent steps per second of the real training loop, and of a naive one.

Two loops play Breakout with the Nature network on the same settings: one update of a
batch of 32 every 4 agent steps, every action chosen by the network (epsilon 0) after
a warm-up of random play, and the target network synced every 1,000 steps.

1. Ours: `breakout_dqn.train` itself, run in a temporary folder. Its rate is read from
   the `progress.csv` it writes (one row per finished game, with the wall time since
   the loop started): from the first game that ends at least SETTLE_STEPS steps after
   the warm-up (so that tracing the `tf.function`s is not timed) to the last game.
2. Naive: a copy of the loop of the keras-io example "Deep Q-Learning for Atari
   Breakout" (see `naive_loop`): replay in Python lists, an eager model call per action
   and `model.predict` for the targets.

    python benchmarks/throughput.py             # about 4 minutes on 2 CPU cores
    python benchmarks/throughput.py --quick     # a smoke check; its numbers mean little
    python benchmarks/throughput.py --skip-naive --double-dqn --n-step 3 --dueling
                                                # what the options beyond the paper cost
    python benchmarks/throughput.py --skip-naive --script pong_dqn.py
                                                # Pong's loop, with its own defaults
    python benchmarks/throughput.py --skip-naive --deterministic   # what exactness costs

`--script` times that script's `train` with its own `Config` defaults (game, batch size,
`train_every`, target period, options); the flags above override them. The naive loop
always plays Breakout with Breakout's settings.

It prints a table and, as its last line, one JSON object with the keys
steps_per_second, naive_steps_per_second, ratio (ours / naive; null with --skip-naive),
timed_steps, naive_timed_steps, seconds, naive_seconds, warmup_steps, conforming (false
with --quick), tensorflow, cpus, device, load_average (1-minute load averages at
the start, between the loops and at the end: another busy process slows both loops),
script and options (the settings our loop ran with).
"""

import argparse
import contextlib
import csv
import dataclasses
import importlib
import io
import json
import os
import pathlib
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

# Make the scripts and `common` importable when this is run from a clean clone.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import breakout_dqn  # noqa: E402
from common.atari import make_env  # noqa: E402
from common.config import check_config  # noqa: E402
from common.networks import build_q_network  # noqa: E402

SCRIPTS = {"breakout_dqn.py": "breakout_dqn", "pong_dqn.py": "pong_dqn"}
ENV_ID = "BreakoutNoFrameskip-v4"  # the naive loop's game
BATCH_SIZE = 32
TRAIN_EVERY = 4
TARGET_UPDATE_EVERY = 1_000  # breakout_dqn.Config's default
BUFFER_SIZE = 50_000  # larger than any run here, so neither replay memory ever drops anything
SETTLE_STEPS = 100  # steps after the warm-up left untimed: the first updates trace graphs
EXTRA_STEPS = 1_000  # ours runs this much longer, as its timing starts and ends at game ends
MIN_TIMED_STEPS = 2_000


def measure_ours(warmup_steps: int, timed_steps: int, seed: int, script=breakout_dqn,
                 **options) -> tuple[int, float]:
    """Runs a game script's train and returns (timed steps, seconds) read from progress.csv.

    The script's own ``Config`` defaults set the game, the batch size, ``train_every``,
    the target period and the options beyond the paper; ``options`` override them
    (``double_dqn``, ``n_step``, ``dueling``, ``deterministic``), to measure what each
    one costs.
    """
    with tempfile.TemporaryDirectory(prefix="throughput-") as run_dir:
        config = dataclasses.replace(
            script.Config(),
            total_steps=warmup_steps + SETTLE_STEPS + timed_steps + EXTRA_STEPS,
            seed=seed,
            buffer_size=BUFFER_SIZE,
            learning_starts=warmup_steps,  # random play without updates until here
            eps_start=0.0,  # after the warm-up every action is the network's
            eps_end=0.0,
            video_every=0,
            run_dir=run_dir,
            log_every_games=10**9,  # no console lines
            checkpoint_every=10**9,  # only the final checkpoint, after the last row
            **options,
        )
        check_config(config)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            summary = script.train(config)
        if summary.get("stopped"):
            sys.exit(f"the training loop was stopped early: {printed.getvalue().strip()}")
        with open(os.path.join(run_dir, "progress.csv"), newline="") as file:
            rows = [(int(row["step"]), float(row["elapsed_seconds"]))
                    for row in csv.DictReader(file)]
    rows = [row for row in rows if row[0] >= warmup_steps + SETTLE_STEPS]
    if len(rows) < 2:
        sys.exit(f"fewer than two games ended after step {warmup_steps + SETTLE_STEPS:,}; "
                 f"pass a larger --timed-steps")
    (first_step, first_seconds), (last_step, last_seconds) = rows[0], rows[-1]
    return last_step - first_step, last_seconds - first_seconds


"""
## The naive loop

A deliberately faithful copy of the *shape* of the training loop in the keras-io example
"Deep Q-Learning for Atari Breakout" (examples/rl/deep_q_network_breakout.py), kept
here only to measure what its choices cost. Do not learn from it or reuse it:
`breakout_dqn.py` is the loop to read. What it copies:

- the replay memory is five Python lists (states, next states, actions, rewards, done
  flags), appended every step and trimmed with `del history[:1]` beyond the buffer
  size (never reached in a run this short, as our memory never wraps either);
- each action is an eager call `model(state_tensor, training=False)`;
- every 4 steps the batch indices come from `np.random.choice(range(len(...)))`, the
  batch arrays from `np.array([history[i] for i in indices])`, the targets from
  `model_target.predict(next_states)` and the update from an eager `GradientTape`
  (no `tf.function`), with Adam (2.5e-4, clipnorm 1.0) and a Huber loss;
- the target network is synced with `set_weights(get_weights())`.

Differences, none of which changes the work done per step: the progress bar that
`model.predict` prints on every call goes to a buffer instead of the screen; the warm-up
is random play without updates and epsilon is 0 afterwards, as in our run; the
observations are our uint8 stacks and the network is `build_q_network`, the same as
ours, where the example stored float32 frames (4 times more bytes to copy per batch).
The example's terminal target of -1 (a known defect) is kept: it costs the same.
"""


def naive_loop(warmup_steps: int, timed_steps: int, seed: int) -> tuple[int, float]:
    """Runs the keras-io-shaped loop; returns (timed steps, seconds)."""
    np.random.seed(seed)
    env = make_env(ENV_ID)
    num_actions = int(env.action_space.n)
    model = build_q_network(env.observation_space.shape, num_actions)
    model_target = build_q_network(env.observation_space.shape, num_actions, name="target")
    model_target.set_weights(model.get_weights())
    optimizer = keras.optimizers.Adam(learning_rate=0.00025, clipnorm=1.0)
    loss_function = keras.losses.Huber()
    gamma = 0.99
    epsilon = 0.0

    action_history = []
    state_history = []
    state_next_history = []
    rewards_history = []
    done_history = []

    timed_from = warmup_steps + SETTLE_STEPS
    total_steps = timed_from + timed_steps
    state, _ = env.reset(seed=seed)
    state = np.array(state)
    frame_count = 0
    start = None
    progress_bars = io.StringIO()  # what model.predict prints, kept off the screen
    while frame_count < total_steps:
        if frame_count == timed_from:
            start = time.perf_counter()
        frame_count += 1

        if frame_count <= warmup_steps or epsilon > np.random.rand(1)[0]:
            action = np.random.choice(num_actions)
        else:
            state_tensor = tf.convert_to_tensor(state)
            state_tensor = tf.expand_dims(state_tensor, 0)
            action_probs = model(state_tensor, training=False)
            action = tf.argmax(action_probs[0]).numpy()

        state_next, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        state_next = np.array(state_next)

        action_history.append(action)
        state_history.append(state)
        state_next_history.append(state_next)
        done_history.append(done)
        rewards_history.append(reward)
        state = state_next

        if frame_count % TRAIN_EVERY == 0 and frame_count >= warmup_steps:
            indices = np.random.choice(range(len(done_history)), size=BATCH_SIZE)
            state_sample = np.array([state_history[i] for i in indices])
            state_next_sample = np.array([state_next_history[i] for i in indices])
            rewards_sample = [rewards_history[i] for i in indices]
            action_sample = [action_history[i] for i in indices]
            done_sample = tf.convert_to_tensor([float(done_history[i]) for i in indices])

            # The example's own call, progress bar and all; the bar goes to a buffer.
            with contextlib.redirect_stdout(progress_bars):
                future_rewards = model_target.predict(state_next_sample)
            updated_q_values = rewards_sample + gamma * tf.reduce_max(future_rewards, axis=1)
            updated_q_values = updated_q_values * (1 - done_sample) - done_sample  # keras-io's -1
            masks = tf.one_hot(action_sample, num_actions)
            with tf.GradientTape() as tape:
                q_values = model(state_sample)
                q_action = tf.reduce_sum(tf.multiply(q_values, masks), axis=1)
                loss = loss_function(updated_q_values, q_action)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

        if frame_count % TARGET_UPDATE_EVERY == 0:
            model_target.set_weights(model.get_weights())

        if len(rewards_history) > BUFFER_SIZE:
            del rewards_history[:1]
            del state_history[:1]
            del state_next_history[:1]
            del action_history[:1]
            del done_history[:1]

        if done:
            state, _ = env.reset()
            state = np.array(state)
    seconds = time.perf_counter() - start
    env.close()
    return timed_steps, seconds


def device_name() -> str:
    """Returns the first GPU's name, or "CPU" when TensorFlow sees none."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return "CPU"
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup-steps", type=int, default=500,
                        help="agent steps of random play without updates before either loop "
                             "acts with the network and learns")
    parser.add_argument("--timed-steps", type=int, default=3_000,
                        help=f"agent steps to time at least, in our loop (at least "
                             f"{MIN_TIMED_STEPS:,} unless --quick)")
    parser.add_argument("--naive-steps", type=int, default=None,
                        help=f"agent steps to time in the naive loop (default: --timed-steps; "
                             f"at least {MIN_TIMED_STEPS:,} unless --quick)")
    parser.add_argument("--skip-naive", action="store_true",
                        help="time only our loop; the JSON ratio is then null")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check with small step counts; the result does not "
                             "satisfy the benchmark's minimum and is marked so")
    parser.add_argument("--seed", type=int, default=1, help="seed of the games and the play")
    parser.add_argument("--script", default="breakout_dqn.py",
                        help="the game script whose loop and defaults (game, train_every, "
                             "target period, options) to time: breakout_dqn.py or pong_dqn.py")
    parser.add_argument("--double-dqn", action=argparse.BooleanOptionalAction, default=None,
                        help="our loop with (or without) Double DQN; default: the script's")
    parser.add_argument("--n-step", type=int, default=None,
                        help="our loop with n-step returns; default: the script's")
    parser.add_argument("--dueling", action=argparse.BooleanOptionalAction, default=None,
                        help="our loop with (or without) a dueling network; default: the script's")
    parser.add_argument("--deterministic", action="store_true",
                        help="our loop in --deterministic mode (exact ops, updates in turn); "
                             "op determinism is process-wide, so this needs --skip-naive")
    args = parser.parse_args()
    if args.script not in SCRIPTS:
        parser.error(f"--script must be one of {', '.join(SCRIPTS)}, got {args.script!r}")
    if args.deterministic and not args.skip_naive:
        parser.error("--deterministic turns on op determinism for the whole process; add "
                     "--skip-naive")
    script = importlib.import_module(SCRIPTS[args.script])
    given = dict(double_dqn=args.double_dqn, n_step=args.n_step, dueling=args.dueling,
                 deterministic=args.deterministic or None)
    options = {name: value for name, value in given.items() if value is not None}
    settings = dataclasses.replace(script.Config(), **options)

    if args.quick:
        args.warmup_steps, args.timed_steps = min(args.warmup_steps, 200), min(args.timed_steps, 300)
        args.naive_steps = min(args.naive_steps or 100, 100)
    naive_steps = args.timed_steps if args.naive_steps is None else args.naive_steps
    if args.warmup_steps < BATCH_SIZE:
        parser.error(f"--warmup-steps must be at least the batch size, {BATCH_SIZE}")
    if not args.quick and min(args.timed_steps, naive_steps) < MIN_TIMED_STEPS:
        parser.error(f"--timed-steps and --naive-steps must be at least {MIN_TIMED_STEPS:,} "
                     f"(or pass --quick for a smoke check)")

    loads = [os.getloadavg()[0]]
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs, device {device_name()}; "
          f"load average at start {os.getloadavg()}", flush=True)
    print(f"our loop ({args.script}: {settings.env_id}, batch {settings.batch_size}, one update "
          f"every {settings.train_every} steps, n-step {settings.n_step}, double "
          f"{settings.double_dqn}, dueling {settings.dueling}, deterministic "
          f"{settings.deterministic}): {args.warmup_steps:,} warm-up steps, then at least "
          f"{args.timed_steps:,} timed steps ...", flush=True)
    timed_steps, seconds = measure_ours(args.warmup_steps, args.timed_steps, args.seed, script,
                                        **options)
    if not args.quick and timed_steps < MIN_TIMED_STEPS:
        sys.exit(f"only {timed_steps:,} steps lay between game ends; pass a larger --timed-steps")
    rows = [(f"ours ({SCRIPTS[args.script]}.train)", timed_steps, seconds)]
    loads.append(os.getloadavg()[0])

    naive_timed_steps = naive_seconds = None
    if not args.skip_naive:
        print(f"naive loop: {args.warmup_steps:,} warm-up steps, then {naive_steps:,} timed "
              f"steps ...", flush=True)
        naive_timed_steps, naive_seconds = naive_loop(args.warmup_steps, naive_steps, args.seed)
        rows.append(("naive (keras-io shape)", naive_timed_steps, naive_seconds))
        loads.append(os.getloadavg()[0])

    print()
    print(f"{'loop':<26} {'timed steps':>11} {'seconds':>8} {'steps/s':>8} {'ms/step':>8}")
    for name, steps, elapsed in rows:
        print(f"{name:<26} {steps:>11,} {elapsed:>8.1f} {steps / elapsed:>8.1f} "
              f"{elapsed / steps * 1e3:>8.2f}")
    steps_per_second = timed_steps / seconds
    naive_steps_per_second = naive_timed_steps / naive_seconds if naive_seconds else None
    ratio = steps_per_second / naive_steps_per_second if naive_steps_per_second else None
    if ratio is not None:
        print(f"ours is {ratio:.1f} times as fast")
    print(f"1-minute load average at start, between the loops and at the end: "
          f"{', '.join(f'{load:.2f}' for load in loads)} on {os.cpu_count()} CPUs")
    if args.quick:
        print("--quick: too few steps to satisfy the benchmark; a smoke check only")
    print(json.dumps({
        "steps_per_second": round(steps_per_second, 2),
        "naive_steps_per_second": (round(naive_steps_per_second, 2)
                                   if naive_steps_per_second else None),
        "ratio": round(ratio, 2) if ratio else None,
        "timed_steps": timed_steps,
        "naive_timed_steps": naive_timed_steps,
        "seconds": round(seconds, 2),
        "naive_seconds": round(naive_seconds, 2) if naive_seconds else None,
        "warmup_steps": args.warmup_steps,
        "conforming": not args.quick,
        "tensorflow": tf.__version__,
        "cpus": os.cpu_count(),
        "device": device_name(),
        "load_average": [round(load, 2) for load in loads],
        "script": args.script,
        "options": {name: getattr(settings, name) for name in
                    ("train_every", "n_step", "double_dqn", "dueling", "deterministic")},
    }))


if __name__ == "__main__":
    main()
