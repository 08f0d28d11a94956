"""
Title: Deep Q-Learning for Atari Pong
Description: Play Pong from pixels with a Deep Q-Network, as in Mnih et al. (2015).
Accelerator: GPU recommended; a CPU run works, slowly.
"""

# GENERATED FILE: do not edit it by hand. `python tools/build_notebooks.py` wrote it
# from pong_dqn.py, common/files.py, common/config.py, common/video.py, common/atari.py,
# common/fault_points.py, common/networks.py, common/checkpoint.py, common/plot.py,
# common/cli.py, common/dqn.py, common/logger.py, common/replay.py and common/run.py;
# edit those and run that command again.

from __future__ import annotations

"""
## Introduction

This script trains a Deep Q-Network (DQN) to play Atari Pong from the screen
alone, following "Human-level control through deep reinforcement learning"
(Mnih et al., Nature 2015).

The agent sees the last four 84x84 grayscale frames and outputs one number per
joystick action: its estimate Q(s, a) of the discounted sum of future rewards if
it takes action `a` now and plays well afterwards. It picks the action with the
highest value, except for a fraction epsilon of random actions that keep it
exploring. Every transition it sees goes into a replay memory; every eight steps
it samples 32 old transitions and nudges Q(s, a) toward the Bellman target, here
over three steps: `r_t + gamma r_t+1 + gamma^2 r_t+2 + gamma^3 max_a' Q_target(s_t+3, a')`,
where `Q_target` is a copy of the network refreshed only now and then so that the
target does not chase itself.

Run it with `python pong_dqn.py`. It prints a line every few games, writes
`runs/pong/progress.csv` and TensorBoard logs, saves checkpoints it can
resume from, records a video of every 100th game into `videos/pong/` and
stops when the mean score of the last 100 games reaches 18 (a game is won
21 to at most 3), saving the network as `runs/pong/model.keras`. A Pong score
runs from -21 (every point lost) to +21. `python pong_dqn.py --help` lists
every setting. Where this script or `common/` departs from the paper, a comment
says `Deviation (...)`; `docs/implementation-details.md` lists exactly those.
"""

"""
## Setup
"""

import os
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import numpy as np

# Imported by the shared parts written in below.
import argparse
import ast
import collections
from concurrent.futures import Future, ThreadPoolExecutor
import csv
import dataclasses
import datetime
import errno
import glob
import inspect
import io
import itertools
import json
import math
import re
import shutil
import signal
import socket
import sys
import textwrap
import threading
import time
import typing
from typing import Any, Callable, NamedTuple, Sequence, TypeVar
import warnings
import zipfile

import gymnasium as gym
import imageio.v2 as imageio
import keras
import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter
import tensorflow as tf


"""
## Configuration

Every setting lives here, with its unit. The command line can override any of
them (`--total-steps 2000`, `--video-every 0`, ...). One *step* is one agent
decision, which the environment repeats for 4 emulator frames, so 1,000,000
steps are 4,000,000 frames, a little over 18 hours of play at 60 frames a second.

The defaults follow the Nature paper except where another choice learns or runs
faster, or needs less memory; those lines say `Deviation`. Most are Breakout's too
(Adam, a target copied more often, exploration over 250,000 steps). Pong's own come
from published Pong settings: a memory of 100,000 transitions (Lapan's and
Tianshou's) that starts learning after 10,000 steps (Lapan's) and 3-step targets
(Tianshou's), with one update every 8 steps for speed on a CPU, where the updates set
the pace. A screening on Pong chose the exploration and learning rate to go with
them (`docs/results.md`, "Pong"). The aim is a running reward of 18 within a million
steps, where CleanRL's one-step DQN needs 2.4 to 3.2 million.
"""


@dataclass
class Config:
    env_id: str = "PongNoFrameskip-v4"
    """Gymnasium id of the game: a NoFrameskip-v4 id (no sticky actions; the frame
    skipping is done by our wrappers)."""
    # Deviation (training-length): the paper trained for 50 million frames and then
    # evaluated; a run here stops once solved_at is reached, or after total_steps.
    total_steps: int = 10_000_000
    """agent steps to train for at most (one step is 4 emulator frames)."""
    solved_at: float = 18.0
    """stop once the mean raw score of the last 100 games reaches this."""
    seed: int = 1
    """seed of everything random: the initial weights, the games, the exploration and the
    replay sampling. A run starts alike each time; later the update thread's timing may
    make it drift (--deterministic repeats it exactly)."""
    # Deviation (replay-size): the paper keeps 1,000,000 transitions; Lapan's and
    # Tianshou's Pong settings keep 100,000, which fill sooner, hold fresher play and
    # take a tenth of the memory.
    buffer_size: int = 100_000
    """replay memory size in transitions (paper: 1,000,000; 100,000 take about 0.71 GB:
    one 84x84 frame each)."""
    # Deviation (replay-start): the paper plays 50,000 random steps first (a twentieth
    # of its memory); Lapan's Pong settings start after 10,000, a tenth of theirs.
    learning_starts: int = 10_000
    """agent steps of uniformly random play that fill the memory before learning starts
    (paper: 50,000)."""
    batch_size: int = 32
    """transitions per gradient update (paper: 32)."""
    # Deviation (update-period): one update every 8 steps, half the paper's rate: the
    # loop, which waits on the updates on a CPU, runs 1.8 times as fast (Tianshou updates
    # every 10 steps, with 3-step targets).
    train_every: int = 8
    """agent steps between two gradient updates (paper: 4)."""
    # Deviation (target-update): the paper copies every 10,000 steps; Breakout's 1,000
    # is every 250 updates, and at one update every 8 steps 2,000 keeps that.
    target_update_every: int = 2_000
    """agent steps between copies of the online network into the target network
    (paper: 10,000)."""
    # Deviation (adam): the paper used RMSProp (learning rate 0.00025, momentum 0.95);
    # CleanRL's Adam at 1e-4 learns faster and is less sensitive to its settings.
    learning_rate: float = 1e-4
    """Adam learning rate (paper: RMSProp at 0.00025)."""
    gamma: float = 0.99
    """discount factor per agent step (paper: 0.99)."""
    eps_start: float = 1.0
    """exploration rate epsilon when learning starts, where its decay begins; play is
    uniformly random before (paper: 1.0)."""
    # Deviation (exploration): the paper falls to 0.1 over 1,000,000 steps (its table says
    # "frames", but DeepMind's code counts agent steps and starts when learning starts);
    # ours falls to 0.01 four times faster, so that the agent's own play dominates early.
    eps_end: float = 0.01
    """exploration rate after the decay (paper: 0.1)."""
    # Deviation (exploration): a quarter of the paper's decay, as said above.
    eps_decay_steps: int = 250_000
    """agent steps, counted from learning_starts, over which epsilon falls linearly to
    eps_end (paper: 1,000,000)."""
    # Deviation (gradient-clipping): the paper clips no gradient; Stable-Baselines3 does.
    max_gradient_norm: float = 10.0
    """gradients are rescaled to at most this global norm (the paper has no such
    clipping)."""
    double_dqn: bool = False
    """Double DQN's target (van Hasselt et al., 2016): the online network picks the next
    action, the target network values it; off, as in the paper."""
    # Deviation (n-step): the paper's targets look one step ahead; Pong's rewards come
    # tens of steps after the hit that earned them, and 3-step targets carry them back
    # sooner (Rainbow and Tianshou use 3).
    n_step: int = 3
    """rewards each target sums before it bootstraps, gamma^N times the value N steps on
    (n-step returns; Rainbow, Hessel et al., 2018, uses 3; the paper: 1)."""
    dueling: bool = False
    """the dueling network of Wang et al. (2016): a state-value and an action-advantage
    stream; off, as in the paper."""
    # Deviation (acting-beside-learning): the paper acts with the newest weights.
    overlap_updates: bool = True
    """run each update on a worker thread while the agent plays on (faster; the agent may
    act with weights one update old)."""
    deterministic: bool = False
    """repeat a run exactly, given the same seed, machine and TensorFlow version: exact
    TensorFlow ops and every update in turn (implies --no-overlap-updates; slower)."""
    video_every: int = 100
    """record every N-th game as an MP4 (0: never)."""
    video_dir: str = "videos/pong"
    """folder for the MP4 recordings."""
    run_dir: str = "runs/pong"
    """folder for progress.csv, TensorBoard logs, checkpoints and model.keras."""
    log_every_games: int = 10
    """print a console line every N finished games."""
    checkpoint_every: int = 50_000
    """agent steps between checkpoints (each about 27 MB without the replay memory)."""
    resume: bool = False
    """continue the run saved in --run-dir from its latest checkpoint."""
    save_replay: bool = False
    """also save the replay memory with each checkpoint, so a resume need not refill it:
    0.71 GB each at 100,000 transitions, and up to 4 on disk at once (2.8 GB: the 3 kept
    and the one being written); free disk space is checked before each."""
    evaluate: str = ""
    """instead of training, play a saved agent: a .keras file or a run folder."""
    plot: list[str] = field(default_factory=list)
    """instead of training, draw the learning curves of these run folders (overlaid) as a PNG."""
    # Deviation (evaluation-games): the paper scores 30 games; 10 take a third of the time.
    episodes: int = 10
    """games to play with --evaluate (the paper played 30)."""
    eval_epsilon: float = 0.05
    """exploration rate while evaluating (paper: 0.05)."""


"""
## Environment

`make_env` applies the DeepMind preprocessing (see `common/atari.py` for each
step): 1 to 30 random no-ops at the start of a game, every action repeated for
4 frames with the pixel-wise maximum of the last two frames as the observation
(Atari sprites flicker), a lost life ending the learning episode while the game
goes on (Pong has no lives, so its episodes are whole games), FIRE pressed
after each reset in every game that has it (a departure from the paper),
rewards clipped to -1, 0 or +1 (Pong's are already), 84x84 grayscale frames and
a stack of the last 4 of them. The score we report is the raw score of a whole
game (21 points, the agent's minus the opponent's); gymnasium's
`RecordEpisodeStatistics` puts it in `info["episode"]["r"]` when a game ends.
"""

"""
## Q-network

The network of the paper: three convolutions and a 512-unit layer, with one
linear output per action. The number of actions is read from the environment
(Pong has 6: NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE). The target network is a second copy
of the same architecture. `--dueling`, an option beyond the paper and off by
default, builds the dueling network of Wang et al. (2016) instead: a state-value
stream and an action-advantage stream after the convolutions.
"""

"""
## Replay memory

Learning from consecutive frames would show the network a long run of almost
identical states; sampling uniformly from the last 100,000 transitions breaks
those correlations (the paper kept a million; Lapan's and Tianshou's Pong
settings keep 100,000). `ReplayMemory` stores each 84x84 frame once (7 KB) with
its action, clipped reward and terminated flag, and rebuilds the 4-frame stacks
when it samples, so 100,000 transitions take about 0.71 GB instead of the 5.6 GB
of storing two stacks per transition. With 3-step targets it also reads the two
transitions after each sampled one, to sum their rewards.
"""

"""
## Training step

`make_train_step` returns a `tf.function` that does one update on a batch: the
3-step target
`y = r_t + gamma r_t+1 + gamma^2 r_t+2 + gamma^3 max_a' Q_target(s_t+3, a') * (1 - terminated)`,
the Huber loss between `y` and `Q(s_t, a_t)` under a `GradientTape` (the paper's
error clipping), gradient clipping and the optimizer step: Keras' Adam, which
`FusedAdam` applies with one fused TensorFlow kernel (the same arithmetic, a
little faster on a CPU). The replay memory sums the three rewards; the update
only sees `gamma^m` for the bootstrap. Only a real end of the learning episode
(`terminated`) cuts the sum and the bootstrap; a game stopped by the time limit
(`truncated`) still looks ahead, from the state where it was cut.

The paper's target looks one step ahead,
`y = r + gamma * max_a' Q_target(s', a') * (1 - terminated)` (`--n-step 1`). Pong
uses three (a deviation): a point is scored tens of steps after the hit that won
it, and a 3-step target carries that reward back three steps per update of the
target instead of one.

Acting calls the network through a `tf.function` too: 1 to 2 ms a step on a 2-core
Intel Xeon, where `model.predict` cost about 110.

`BackgroundLearner` runs each update on a worker thread while the agent plays
the next eight steps, since on a CPU an update takes as long as those eight steps
or longer. The updates are the same, in the same order; the agent may then act with
weights one update old, where the paper acts with the newest (a deviation, marked
in `common/dqn.py`). The learner
lets the running update finish before the target network is synced or a
checkpoint is taken.
`--no-overlap-updates` runs every update in turn, as the paper does.

One more option beyond the paper changes the target, off by default:
`--double-dqn` lets the online network choose the next action and the target
network value it (van Hasselt et al., 2016).
"""


def epsilon_at(step: int, config: Config) -> float:
    """The exploration rate after `step` agent steps.

    It is 1 (uniformly random play) while the memory first fills, then falls linearly
    from `eps_start` to `eps_end` over `eps_decay_steps` steps and stays there. A
    resumed run that refills its memory plays at the epsilon of its step.
    """
    if step < config.learning_starts:
        return 1.0
    if config.eps_decay_steps == 0:
        return config.eps_end
    fraction = min((step - config.learning_starts) / config.eps_decay_steps, 1.0)
    return config.eps_start + fraction * (config.eps_end - config.eps_start)


"""
## Training loop

The loop below is the whole algorithm: choose an action epsilon-greedily, play
it, store the transition, learn every `train_every` steps once the memory holds
`learning_starts` transitions, copy the online network into the target every
`target_update_every` steps. Games are counted when the real game ends (one
side reaches 21 points), and the *running reward* is the mean raw score of the last 100 of
them. Training stops when it reaches `solved_at` over a full window of 100
games, or after `total_steps`.

The run's bookkeeping (opening or resuming the run folder, checkpoints, logs,
the final model) is `common/run.py`'s `Run`; every line below is the algorithm.
"""


def train(config: Config, on_game=None) -> dict:
    """Trains a DQN agent as configured; returns a summary of the run.

    `on_game(row)`, if given, gets each finished game's logged values (a dict).
    """
    run = Run(config, on_game)  # refuses a bad resume or an occupied folder before any work
    config = run.config  # on --resume: the run's saved settings, with the changes allowed
    seed_everything(config.seed, config.deterministic)  # the initial weights too
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=config.video_every,
                   first_game=run.games_played + 1)
    num_actions = int(env.action_space.n)  # Pong: 6
    observation_shape = env.observation_space.shape  # (84, 84, 4): the last 4 frames
    q_network = build_q_network(observation_shape, num_actions, dueling=config.dueling)
    target_network = build_q_network(observation_shape, num_actions, name="target_network",
                                     dueling=config.dueling)
    optimizer = FusedAdam(learning_rate=config.learning_rate)  # Keras' Adam, one fused kernel
    greedy_actions = make_greedy_policy(q_network)
    train_step = make_train_step(q_network, target_network, optimizer, config.gamma,
                                 config.max_gradient_norm, config.double_dqn)
    learner = BackgroundLearner(train_step, make_target_sync(q_network, target_network),
                                overlap=config.overlap_updates)
    memory = ReplayMemory(config.buffer_size, frame_shape=observation_shape[:-1],
                          history_length=observation_shape[-1], seed=config.seed,
                          n_step=config.n_step, discount=config.gamma)
    # A new run starts with the target network equal to the online one; a resume restores
    # the networks, optimizer, counts, exploration state and, if saved, the memory. Learning
    # waits for learning_starts transitions (after a resume, unless the memory was restored).
    state = run.start_or_restore(q_network, target_network, optimizer, memory, learner, env)
    learn_from_step = first_learning_step(state.step, config.learning_starts, run.memory_restored)

    observation, _ = env.reset(seed=config.seed + state.games)
    with GracefulStop() as stop, run, learner, env:
        while state.step < config.total_steps and not stop.requested:  # Ctrl-C: save, stop
            # Act epsilon-greedily, play the action, remember the transition.
            epsilon = epsilon_at(state.step, config)
            action = choose_action(greedy_actions, observation, epsilon, state.rng, num_actions)
            next_observation, reward, terminated, truncated, info = env.step(action)
            memory.add(observation, action, reward, next_observation, terminated, truncated)
            observation = next_observation
            if terminated or truncated:  # a life lost, or the game over: next episode
                observation, reset_info = env.reset()
                info = {**reset_info, **info}  # a game may end in reset's no-op or FIRE
            state.step += 1

            # Learn from a random batch of past transitions; now and then refresh the target.
            if state.step % config.train_every == 0 and state.step >= learn_from_step:
                learner.update(memory.sample(config.batch_size))
            if state.step % config.target_update_every == 0:
                learner.sync_target()

            # A whole game (all lives) ended: log its raw score, and stop once solved.
            if "episode" in info:
                state.record_game(float(info["episode"]["r"]))
                run.log_game(state, epsilon, learner)
                if state.solved(config.solved_at):
                    break
            run.after_step(state, epsilon, memory, greedy_actions)  # held-out Q, progress line
            if state.step % config.checkpoint_every == 0:
                run.save(state, memory, learner)
    return run.finish(state, stop, q_network, memory, learner)


"""
## Evaluation and video

The paper scores an agent over 30 games with epsilon 0.05, random no-op starts
and at most 5 minutes of play (18,000 frames) per game. `evaluate` plays
`--episodes` such games with a saved network, records each as an MP4 and prints
the mean and standard deviation of the raw scores.
"""


def evaluate(config: Config) -> list[float]:
    """Plays `config.episodes` games with a saved agent; returns their raw scores."""
    config = settings_for_evaluation(config)  # a run folder's own --dueling, --n-step, ...
    seed_everything(config.seed, config.deterministic)
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=1,
                   video_label="evaluation",  # keeps these apart from the training videos
                   max_frames_per_game=5 * 60 * 60)  # 5 minutes at 60 frames a second
    num_actions = int(env.action_space.n)
    q_network = load_agent(config.evaluate, config.env_id, env.observation_space.shape,
                           num_actions, build_q_network, dueling=config.dueling)
    greedy_actions = make_greedy_policy(q_network)
    rng = np.random.default_rng(config.seed)
    scores = []
    observation, _ = env.reset(seed=config.seed)
    with GracefulStop("stopping; the unfinished game is not scored") as stop, env:
        while len(scores) < config.episodes and not stop.requested:
            action = choose_action(greedy_actions, observation, config.eval_epsilon, rng,
                                   num_actions)
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                observation, reset_info = env.reset()
                info = {**reset_info, **info}  # a game may end in reset's no-op or FIRE
            if "episode" in info:
                scores.append(float(info["episode"]["r"]))
                print(f"game {len(scores)}: score {scores[-1]:g}", flush=True)
    if scores:
        print(f"Mean score {np.mean(scores):.2f}, standard deviation {np.std(scores):.2f}, "
              f"over {plural(len(scores), 'game')}. Videos in {config.video_dir}.", flush=True)
    if stop.requested:
        raise Interrupted(stop.signal_name, f"after {len(scores)} of {config.episodes} games")
    return scores


def main(argv=None) -> int:
    """Runs training or evaluation as the command line says; returns the exit status."""
    return command_line(Config, train, evaluate, "Deep Q-Learning for Atari Pong.", argv)


"""
## Appendix: the shared parts, from common/

The sections above are the algorithm; here is the rest of the tested code they call,
from the package `common/`: the run's bookkeeping (settings, command line, checkpoints,
logs, pictures, videos) and what the sections above do not show, each module once,
after the modules it uses. Python looks a name up when a function runs, not when it is
defined, so the code above may call what is defined here. Generated: change `common/`.
"""

"""
### common/files.py

A run folder's files: how they are written and read back, and two small helpers.

A long run writes many files (checkpoints, logs, pictures, recordings) and reads
some back. A crash or a power cut in the middle of a write must leave either the
old file or the whole new one, never half of each: ``write_atomically`` is the one
place that does so. A file read back may have been damaged meanwhile: ``read_table``
says what is wrong with a CSV log, and ``set_aside`` keeps a damaged file intact
under another name, so that nothing a run saved is ever cut down.
"""

PROGRESS_FIELDS = ("step", "game", "score", "running_reward", "epsilon", "loss", "mean_q",
                   "steps_per_second", "elapsed_seconds")
"""The header of ``progress.csv``: one row per finished game."""
HELDOUT_FIELDS = ("step", "heldout_q")
"""The header of ``heldout_q.csv``: one row per held-out Q measurement."""


def write_atomically(path: str, content: str | bytes | Callable[[str], None],
                     durable: bool = True) -> None:
    """Writes a file whole or not at all: to a temporary name beside it, then renamed.

    Why: ``os.replace`` swaps the name in one step, so a reader (or a resume after a
    crash) sees the old file or the new one. With ``durable`` the new file is also
    flushed to the disk (``fsync``) before it takes the name, and the folder after,
    so that a power cut cannot leave the name pointing at data never written.

    Args:
        path: the file to write.
        content: the text (UTF-8) or bytes to write, or a function that writes the
            file itself, given the temporary path (``model.save``, ``figure.savefig``).
        durable: flush the file and its folder to the disk (slower, for files a
            run reads back); without it the file is only renamed into place.

    Raises:
        OSError: if the file cannot be written; the temporary file is removed and
            ``path`` is left as it was.
    """
    folder = os.path.dirname(path) or "."
    name, extension = os.path.splitext(os.path.basename(path))
    # The extension stays last (Keras chooses the format by it); the process id keeps
    # two processes writing one file off each other's temporary file.
    temporary = os.path.join(folder, f".partial-{os.getpid()}-{name}{extension}")
    try:
        if callable(content):
            content(temporary)
        else:
            with open(temporary, "wb") as file:
                file.write(content.encode() if isinstance(content, str) else content)
        if durable:
            fsync(temporary)
        os.replace(temporary, path)
        if durable:
            fsync(folder)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def fsync(path: str) -> None:
    """Flushes a file, or a folder's list of names, to the disk."""
    folder = os.path.isdir(path)
    if os.name == "nt" and folder:
        return  # Windows cannot open a folder; its renames are durable without this
    # Windows flushes only a file opened for writing.
    descriptor = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if not (folder and error.errno == errno.EINVAL):  # network shares refuse folders
            raise
    finally:
        os.close(descriptor)


def first_line(error: BaseException) -> str:
    """An error in a few words, for a one-line message: its ``strerror`` (``No space
    left on device``), else the first line of its message, else its type's name.

    A TensorFlow error's message starts with the internal names of the op and the
    temporary file it failed on; only its last part, the reason, is kept.
    """
    text = (getattr(error, "strerror", None) or str(error)).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    if type(error).__module__.startswith("tensorflow") and "; " in line:
        line = re.sub(r"\s*\[Op:\w+\]$", "", line.rsplit("; ", 1)[1])
    return line


def flag_name(setting: str) -> str:
    """The command-line flag of a configuration field: ``total_steps`` is ``--total-steps``."""
    return "--" + setting.replace("_", "-")


def read_table(path: str, fields: Sequence[str]) -> tuple[list[list[str]], str | None]:
    """Reads a CSV log of a run, checking that it is what this project writes.

    Why: a run reads its logs back when it resumes and rewrites them; a file that was
    damaged (bytes that are not text, another delimiter, a header from another version,
    a garbled line) must not be misread or cut down. This says what is wrong, so that
    the caller can set the file aside intact (``set_aside``) before writing anything.

    Args:
        path: the CSV file.
        fields: the header it must have; every row must have as many numbers.

    Returns:
        The rows that are whole (as strings, without the header), and ``None`` if the
        file is sound, else what is wrong with it in a few words. A last line without
        its newline (cut short by a kill while it was written, or still being
        written) is left out and is not a fault.
    """
    with open(path, "rb") as file:
        lines = file.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last whole line
    elif lines:
        lines.pop()  # a last line cut short
    problems, rows = [], []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            problems.append(f"line {number} holds bytes that are not text")
            continue
        cells = next(csv.reader([line]), [])
        if number == 1:
            if cells != list(fields):
                problems.append(f"its first line is not the header {','.join(fields)}")
                if _is_row(cells, fields):
                    rows.append(cells)  # a row where the header should be: keep it
            continue
        if _is_row(cells, fields):
            rows.append(cells)
        else:
            problems.append(f"line {number} is not a row of {len(fields)} numbers")
    if not lines:
        problems.append("it is empty")
    problem = None
    if problems:
        more = f" (and {len(problems) - 1} more lines)" if len(problems) > 1 else ""
        problem = problems[0] + more
    return rows, problem


def _is_row(cells: list[str], fields: Sequence[str]) -> bool:
    if len(cells) != len(fields) or not cells[0].isdigit():
        return False
    try:
        for cell in cells:
            float(cell)
    except ValueError:
        return False
    return True


def set_aside(path: str) -> str:
    """Renames a damaged file so that nothing overwrites it; returns its new path.

    ``progress.csv`` becomes ``progress.damaged-20261206T081500.csv`` (a number is
    added if that name is taken). The file itself is not changed.
    """
    folder = os.path.dirname(path) or "."
    name, extension = os.path.splitext(os.path.basename(path))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for attempt in itertools.count():
        suffix = f"-{attempt}" if attempt else ""
        aside = os.path.join(folder, f"{name}.damaged-{stamp}{suffix}{extension}")
        if not os.path.lexists(aside):
            os.rename(path, aside)  # a rename, never over another file: the name is free
            return aside
    raise AssertionError("unreachable")


"""
### common/config.py

Command-line overrides for a configuration dataclass, and checks of its values.

A script defines its settings once, as a dataclass whose fields each carry a
one-line docstring. ``parse_config`` turns every field into a flag
(``total_steps`` becomes ``--total-steps``, its docstring the help text), so the
command line can only override what the dataclass already says. Inside a
Jupyter kernel the kernel's own arguments are ignored, so the same file runs in
a notebook unchanged.
"""

ConfigT = TypeVar("ConfigT")


HIGHEST_SCORES = {"Pong": 21.0, "Breakout": 864.0}
"""The highest raw score of a game, where it is known (Breakout: two walls of 432)."""


class ConfigError(ValueError):
    """A setting that cannot work; the message says what to change."""


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_docstrings(config_class: type) -> dict[str, str]:
    """Reads the docstring written under each field of a dataclass.

    Why: Python keeps no such docstrings at run time, yet they are the most
    readable place for a setting's unit and reason, so they are read from source.

    Args:
        config_class: a dataclass.

    Returns:
        Field name to its docstring, collapsed to one line. Empty if the source
        cannot be found (for example in some interactive shells).
    """
    try:
        source = textwrap.dedent(inspect.getsource(config_class))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def in_notebook() -> bool:
    """Whether this code runs inside a Jupyter (or Colab) kernel."""
    return "ipykernel" in sys.modules


def in_notebook_cell() -> bool:
    """Whether this runs in a notebook cell, whose ``sys.argv`` is the kernel's, not the user's.

    A kernel starts as ``ipykernel_launcher.py -f kernel.json`` (Colab:
    ``colab_kernel_launcher.py``); ``%run script.py --flag`` replaces that with
    the script's own command line, which must then be honoured.
    """
    return in_notebook() and os.path.basename(sys.argv[0]).endswith("_launcher.py")


def parse_config(config_class: type[ConfigT], argv: Sequence[str] | None = None,
                 description: str = "") -> ConfigT:
    """Builds a configuration from the dataclass defaults and command-line overrides.

    Args:
        config_class: the dataclass; each field becomes ``--field-name``. A
            ``bool`` field becomes a ``--flag / --no-flag`` pair, and a
            ``list[str]`` field a flag that takes one or more values.
        argv: the arguments; ``None`` reads ``sys.argv``, except for a notebook
            kernel's own arguments, which are ignored (``%run script.py --flag``
            still works).
        description: shown by ``--help``.

    Returns:
        An instance of ``config_class``. A wrong flag or value exits with a
        one-line message and status 2.
    """
    if argv is None:
        argv = [] if in_notebook_cell() else sys.argv[1:]
    docs = field_docstrings(config_class)
    parser = _OneLineParser(description=description)
    hints = {field.name: field.type for field in dataclasses.fields(config_class)}
    for field in dataclasses.fields(config_class):
        flag = flag_name(field.name)
        kind = _field_type(hints[field.name])
        default = (field.default_factory() if field.default is dataclasses.MISSING
                   else field.default)  # a list field's default comes from its factory
        help_text = f"{docs.get(field.name, '')} (default: {default!r})"
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        elif kind is list:
            parser.add_argument(flag, dest=field.name, type=str, nargs="+", default=default,
                                metavar=field.name.upper(), help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=default,
                                metavar=field.name.upper(), help=help_text)
    arguments = parser.parse_args(list(argv))
    config = config_class(**vars(arguments))
    # Parsed again with every default suppressed, only the flags given remain.
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    config._given_fields = frozenset(vars(parser.parse_args(list(argv))))
    return config


def given_fields(config: Any) -> frozenset[str]:
    """The fields set on purpose: the flags given, or for a configuration built in code
    (a notebook's ``Config(total_steps=...)``), the fields that differ from the defaults.

    Why: on ``--resume`` a setting the user did not give takes the run's saved value,
    and one the user gave must not be silently ignored.
    """
    given = getattr(config, "_given_fields", None)
    if given is not None:
        return given
    defaults = type(config)()
    return frozenset(field.name for field in dataclasses.fields(config)
                     if getattr(config, field.name) != getattr(defaults, field.name))


def replace_settings(config: Any, given: frozenset[str] | None = None, **changes: Any) -> Any:
    """A copy of ``config`` with ``changes``, that still knows which fields were given.

    Why: ``dataclasses.replace`` builds a new object without ``_given_fields``, after
    which every setting equal to its default would count as not given.

    Args:
        config: the configuration to copy.
        given: the fields to count as given in the copy; by default ``config``'s own
            (``None`` for a configuration built in code).
        **changes: settings to change.

    Returns:
        The new configuration.
    """
    if given is None:
        given = getattr(config, "_given_fields", None)
    replaced = dataclasses.replace(config, **changes)
    replaced._given_fields = given
    return replaced


def _field_type(annotation: Any) -> type:
    """Maps a field annotation (possibly a string, with ``from __future__ import
    annotations``) to the type argparse should convert to; ``list`` for ``list[str]``,
    whose values stay strings."""
    names = {"int": int, "float": float, "str": str, "bool": bool, "list[str]": list}
    if isinstance(annotation, str):
        if annotation not in names:
            raise TypeError(f"unsupported configuration field type {annotation!r}")
        return names[annotation]
    if typing.get_origin(annotation) is list:
        if typing.get_args(annotation) != (str,):
            raise TypeError(f"unsupported configuration field type {annotation!r}")
        return list
    return annotation


MAX_STEPS = 10**12
"""The most agent steps a run may take: more than any run needs (a million steps take
hours), and few enough for every count, file name and duration a run writes."""


def check_config(config: Any, across_fields: bool = True) -> None:
    """Checks the values a DQN run depends on, before any work starts.

    It looks only at the fields the configuration has, so a script with fewer
    settings can use it too.

    Args:
        config: a configuration dataclass instance.
        across_fields: also check the settings against each other. On ``--resume``
            the run's saved settings fill in the ones not given, so these checks
            wait for them (``common.run.Run`` checks the resumed settings whole).

    Raises:
        ConfigError: with a one-line message that says what to change.
    """
    def has(name):
        return hasattr(config, name)

    flag = flag_name

    positive = ("total_steps", "buffer_size", "batch_size", "train_every",
                "target_update_every", "checkpoint_every", "episodes", "log_every_games",
                "n_step")
    for name in positive:
        if has(name) and getattr(config, name) <= 0:
            raise ConfigError(f"{flag(name)} must be a positive whole number, "
                              f"got {getattr(config, name)}")
    non_negative = ("learning_starts", "eps_decay_steps", "video_every")
    for name in non_negative:
        if has(name) and getattr(config, name) < 0:
            raise ConfigError(f"{flag(name)} must be zero or more, got {getattr(config, name)}")
    for name in ("gamma", "eps_start", "eps_end", "eval_epsilon"):
        value = getattr(config, name, 0.0)
        if has(name) and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{flag(name)} must be between 0 and 1, got {value}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag(field.name)} must be a finite number, got {value}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_STEPS:
            raise ConfigError(f"{flag(field.name)} must be at most {MAX_STEPS:,}, got {value:,}")
    for name in ("learning_rate", "max_gradient_norm"):
        if has(name) and not getattr(config, name) > 0:
            raise ConfigError(f"{flag(name)} must be a positive number, got {getattr(config, name)}")
    if not across_fields:
        return
    _check_across_fields(config)


def _check_across_fields(config: Any) -> None:
    """The checks of ``check_config`` that compare one setting with another."""
    def has(name):
        return hasattr(config, name)

    # A new run, that is: a resume may stop short of learning and be carried on later.
    new_run = not any(getattr(config, name, False) for name in ("evaluate", "plot", "resume"))
    if getattr(config, "evaluate", "") and getattr(config, "plot", []):
        raise ConfigError("--evaluate plays an agent and --plot draws runs: give one of them")
    if (has("total_steps") and has("learning_starts") and new_run
            and config.total_steps <= config.learning_starts):
        raise ConfigError(f"--total-steps ({config.total_steps:,}) must be more than "
                          f"--learning-starts ({config.learning_starts:,}), or the run never "
                          f"learns; raise --total-steps or lower --learning-starts")
    if has("eps_start") and has("eps_end") and config.eps_end > config.eps_start:
        raise ConfigError(f"--eps-end ({config.eps_end:g}) must not be above --eps-start "
                          f"({config.eps_start:g}): exploration falls as the agent learns")
    if (getattr(config, "deterministic", False) and getattr(config, "overlap_updates", False)
            and "overlap_updates" in given_fields(config)):
        raise ConfigError("--deterministic runs every update in turn; leave --overlap-updates "
                          "out")
    if has("n_step") and has("buffer_size") and config.n_step >= config.buffer_size:
        raise ConfigError(f"--n-step must be smaller than --buffer-size ({config.buffer_size:,}), "
                          f"got {config.n_step}; n-step returns use 3 or so")
    if has("seed") and not 0 <= config.seed < 2**32:
        raise ConfigError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {config.seed}")
    if has("solved_at") and has("env_id"):
        game = config.env_id.split("NoFrameskip")[0]
        if game in HIGHEST_SCORES and config.solved_at > HIGHEST_SCORES[game]:
            raise ConfigError(f"--solved-at {config.solved_at:g} cannot be reached in {game}, "
                              f"whose highest score is {HIGHEST_SCORES[game]:g}; pass a lower "
                              f"--solved-at")
    if has("buffer_size") and has("batch_size") and config.buffer_size < config.batch_size:
        raise ConfigError(f"--buffer-size ({config.buffer_size}) must be at least "
                          f"--batch-size ({config.batch_size})")
    if has("learning_starts") and has("batch_size") and config.learning_starts < config.batch_size:
        raise ConfigError(f"--learning-starts ({config.learning_starts}) must be at least "
                          f"--batch-size ({config.batch_size}): the first update needs a full batch")
    if has("learning_starts") and has("buffer_size") and config.learning_starts > config.buffer_size:
        raise ConfigError(f"--learning-starts ({config.learning_starts}) cannot exceed "
                          f"--buffer-size ({config.buffer_size})")


def check_memory(bytes_needed: int, bytes_per_item: int, flag: str = "--buffer-size",
                 what: str = "the replay memory") -> None:
    """Refuses a buffer that cannot fit in the memory this machine has free now.

    Why: NumPy reserves large arrays lazily, so an oversized replay memory would
    not fail when allocated but hours later, when the operating system kills the
    filled-up process. Checking first turns that into a clear message.

    Args:
        bytes_needed: size of the buffer to allocate.
        bytes_per_item: size of one stored item, to suggest a size that fits.
        flag: the command-line flag that sets the size.
        what: what the buffer is, for the message.

    Raises:
        ConfigError: if ``bytes_needed`` exceeds 90% of the available memory.
    """
    import psutil  # imported here: only a training run needs it

    available = psutil.virtual_memory().available
    if bytes_needed > 0.9 * available:
        fits = int(0.8 * available / bytes_per_item) // 10_000 * 10_000
        raise ConfigError(f"{what} needs {bytes_needed / 1e9:.1f} GB but only "
                          f"{available / 1e9:.1f} GB of memory is available; pass a smaller "
                          f"{flag} (for example {flag} {max(fits, 10_000)})")


"""
### common/video.py

MP4 recordings of whole Atari games.

The recorder sits directly on the emulator, below every preprocessing wrapper, so
it sees each of the 60 emulator frames per second in full colour (210x160) and
each game from its real start to its real end, across all lives. Frames are
streamed to ffmpeg as they come, so a long game never sits in memory, and they
are read from the emulator only for the games being recorded.
"""

FRAMES_PER_SECOND = 60  # the Atari 2600 runs at 60 frames per second
# What a failing ffmpeg writer raises: OSError for a full disk or a broken pipe,
# RuntimeError or ValueError from imageio when ffmpeg itself gave up.
WRITE_ERRORS = (OSError, RuntimeError, ValueError)


class GameRecorder(gym.Wrapper):
    """Writes every N-th game as an MP4 named with its game number and score.

    Why: watching the agent is the quickest way to see whether it learns, and a
    file name such as ``breakout_game000500_score31.mp4`` makes progress
    visible in a folder listing.

    This wrapper must wrap the raw emulator (frame skip 1). A "game" is
    everything between two real resets of the emulator, so a lost life does not
    end a recording. A full disk or any other error while writing a video prints
    one warning, drops that recording and lets training go on; so does a recording
that ffmpeg could not finish (a file without its index, which no player opens),
which is removed. ffmpeg itself is kept quiet: its own lines never reach the
console.

    Args:
        env: the raw Atari environment, for example ``gym.make("BreakoutNoFrameskip-v4")``.
        video_dir: folder for the MP4 files; created if missing.
        every: record games ``every``, ``2 * every``, ...; 1 records every game.
        name_prefix: start of each file name, usually the game's name.
        first_game: number of the first game this wrapper will see; a resumed run
            passes the number of games it has already played plus one. Recordings
            of that game and later ones, left by the interrupted run, are removed:
            the resumed run plays those games again.
    """

    def __init__(self, env: gym.Env, video_dir: str, every: int, name_prefix: str,
                 first_game: int = 1):
        super().__init__(env)
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.video_dir = video_dir
        self.every = every
        self.name_prefix = name_prefix
        self.game_number = first_game - 1  # incremented by every real reset
        self._writer = None
        self._partial_path = ""
        self._score = 0.0
        if first_game > 1:
            self._remove_recordings_from(first_game)

    @property
    def recording(self) -> bool:
        """Whether the current game is being written."""
        return self._writer is not None

    def reset(self, **kwargs):
        """Resets the emulator; starts a recording if this game's number is due."""
        observation, info = self.env.reset(**kwargs)
        self._abandon()  # a game that was cut short by a reset is not kept
        self.game_number += 1
        self._score = 0.0
        if self.game_number % self.every == 0:
            self._start()
            if self.recording:  # not when the folder cannot be written
                self._append_frame()
        return observation, info

    def step(self, action):
        """Steps the emulator one frame, appending the frame to a running recording."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._score += float(reward)
        if self.recording:
            self._append_frame()
        if self.recording and (terminated or truncated):  # a failed frame stops the recording
            self._finish()
        return observation, reward, terminated, truncated, info

    def close(self):
        """Drops an unfinished recording and closes the emulator."""
        self._abandon()
        super().close()

    def _start(self) -> None:
        self._partial_path = os.path.join(
            self.video_dir, f"{self.name_prefix}_game{self.game_number:06d}.recording.mp4")
        try:
            os.makedirs(self.video_dir, exist_ok=True)
            # macro_block_size=1 keeps the native 160x210 size (both even, as H.264 needs).
            self._writer = imageio.get_writer(
                self._partial_path, format="FFMPEG", mode="I", fps=FRAMES_PER_SECOND,
                codec="libx264", macro_block_size=1, ffmpeg_log_level="quiet")
        except WRITE_ERRORS as error:
            self._warn(error)

    def _append_frame(self) -> None:
        try:
            self._writer.append_data(self.env.unwrapped.ale.getScreenRGB())
        except WRITE_ERRORS as error:
            self._warn(error)

    def _finish(self) -> None:
        score = int(self._score) if self._score.is_integer() else self._score
        final_path = os.path.join(
            self.video_dir,
            f"{self.name_prefix}_game{self.game_number:06d}_score{score}.mp4")
        try:
            self._writer.close()
            self._writer = None
            if not is_whole_mp4(self._partial_path):  # ffmpeg failed quietly (a full disk)
                raise OSError("ffmpeg could not finish the file")
            # A finished recording takes its name whole, flushed to the disk like the logs.
            write_atomically(final_path, lambda temporary: os.rename(self._partial_path,
                                                                    temporary))
        except WRITE_ERRORS as error:
            self._warn(error)

    def _abandon(self) -> None:
        """Closes the writer, if any, and removes its unfinished file."""
        if self._writer is not None:
            try:
                self._writer.close()
            except WRITE_ERRORS:
                pass
            self._writer = None
        if self._partial_path and os.path.exists(self._partial_path):
            try:
                os.remove(self._partial_path)
            except OSError:
                pass
        self._partial_path = ""

    def _remove_recordings_from(self, first_game: int) -> None:
        """Removes this prefix's recordings, finished or not, of games ``first_game`` on."""
        pattern = re.compile(re.escape(self.name_prefix) + r"_game(\d+)(_score.*|\.recording)\.mp4")
        if not os.path.isdir(self.video_dir):
            return
        for name in os.listdir(self.video_dir):
            match = pattern.fullmatch(name)
            if match is not None and int(match.group(1)) >= first_game:
                try:
                    os.remove(os.path.join(self.video_dir, name))
                except OSError:
                    pass  # not ours to fight over; at worst a file is overwritten later

    def _warn(self, error: Exception) -> None:
        reason = first_line(error)  # not ffmpeg's dump
        print(f"warning: could not write video of game {self.game_number} to "
              f"{self.video_dir} ({reason}); training goes on without it.",
              file=sys.stderr, flush=True)
        self._abandon()


def is_whole_mp4(path: str) -> bool:
    """Whether an MP4 file is whole: its top-level boxes fill it and one is the index.

    Why: ffmpeg that runs out of disk space exits without raising anything in
    Python, leaving a file with frames but no ``moov`` box (the index every player
    needs). An MP4 file is a chain of boxes, each starting with its size (4 bytes,
    big-endian; 1 means an 8-byte size follows) and its type (4 letters).
    """
    try:
        size = os.path.getsize(path)
        boxes = set()
        with open(path, "rb") as file:
            position = 0
            while position < size:
                file.seek(position)
                header = file.read(16)
                if len(header) < 8:
                    return False
                length = int.from_bytes(header[:4], "big")
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                elif length == 0:
                    length = size - position  # the last box runs to the end of the file
                if length < 8:
                    return False
                boxes.add(header[4:8])
                position += length
        return position == size and b"moov" in boxes
    except OSError:
        return False


"""
### common/atari.py

DeepMind-style Atari preprocessing for the `*NoFrameskip-v4` games.

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
    # ALE's own start-up lines ("A.L.E: Arcade Learning Environment ...") would bury ours.
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Warning)
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
        # GameRecorder: written in, from common/video.py.

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


"""
### common/fault_points.py

Named points in the save code where a test can pause the process, to kill it there.

Why: the promise that a kill, a crash or a power cut never loses a saved checkpoint
is tested by killing training at the worst moments: between a checkpoint's files
and the index that makes it count, in the middle of the replay memory's file, while
a CSV row is written. A test sets ``DQN_PAUSE_AT`` to a point's name; the process
then prints ``paused at <name>`` on stderr when it gets there and sleeps, so the
test can kill it at that exact place. Unset, as in every real run, a point costs
one dictionary lookup.
"""

PAUSE_SECONDS = 600.0
"""How long a paused process waits for the test to kill it."""


def pause_point(name: str) -> None:
    """Pauses here if the environment variable ``DQN_PAUSE_AT`` names this point.

    Args:
        name: the point's name, e.g. ``"checkpoint-written"``.
    """
    if os.environ.get("DQN_PAUSE_AT") == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(PAUSE_SECONDS)


"""
### common/networks.py

The Q-network of Mnih et al. (2015), as a Keras functional model, and its dueling variant."""

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


"""
### common/checkpoint.py

Checkpoints that let a long run survive interruptions, crashes and damaged files.

A checkpoint holds the online and target networks, the optimizer's state and a
JSON record of the training loop (step and game counters, the running-reward
window, the exploration random-number state, the game's id, the run's settings).
The emulator's state is not saved: a resumed run starts a new game, and the steps
of the game that was in progress are played again.

A save goes in this order, each file flushed to the disk (fsync) before the next:

1. the replay memory, when asked for, as ``replay-<step>.npz`` (NumPy, no pickle),
   written to a temporary name and renamed;
2. the checkpoint's own files, ``ckpt-<step>.index`` and ``ckpt-<step>.data-*``,
   written by ``tf.train.Checkpoint.write``;
3. the small text file ``checkpoint`` that names the latest checkpoint and the
   kept ones, replaced atomically. Only now does the new checkpoint count.

So a process killed, or a machine losing power, at any moment leaves the previous
checkpoint as the latest complete one. A checkpoint damaged on disk anyway (a
truncated file, an index file full of zeros) is skipped on resume, with one line
saying so, in favour of the newest readable one that is kept. The last three
checkpoints are kept. Nothing here executes code from a file it reads.
"""


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of another run; the message says what to do."""


# What TensorFlow raises for a damaged or foreign checkpoint, depending on where it breaks.
_READ_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError,
                RuntimeError, StopIteration, UnicodeDecodeError, OSError)
# What reading a damaged .npz raises (zipfile.BadZipFile for a cut-off archive).
_REPLAY_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)
_INDEX_FILE = "checkpoint"


class Checkpointer:
    """Saves and restores everything a DQN run needs to go on.

    Args:
        directory: where the checkpoints go, usually ``<run-dir>/checkpoints``.
        q_network: the online network.
        target_network: the target network.
        optimizer: the optimizer; its slots (Adam's moments) are saved too.
        max_to_keep: how many recent checkpoints to keep on disk.
    """

    def __init__(self, directory: str, q_network: keras.Model, target_network: keras.Model,
                 optimizer: keras.optimizers.Optimizer, max_to_keep: int = 3):
        self.directory = directory
        self.max_to_keep = max_to_keep
        self._loop_state = tf.Variable("{}", dtype=tf.string, trainable=False)
        self._checkpoint = tf.train.Checkpoint(q_network=q_network, target_network=target_network,
                                               optimizer=optimizer, loop_state=self._loop_state)
        self._checkpoint.save_counter  # created now, so that every write saves it too
        self._optimizer = optimizer
        self._q_network = q_network
        self._saved_step: int | None = None  # the step this object last saved

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest complete checkpoint, or ``None``."""
        return latest_checkpoint(self.directory)

    def save(self, step: int, loop_state: dict[str, Any],
             replay_state: dict[str, np.ndarray] | None = None) -> str:
        """Writes a checkpoint numbered ``step`` (see the module docstring for the order).

        Args:
            step: agent steps taken so far; it numbers the checkpoint.
            loop_state: JSON-serialisable loop variables.
            replay_state: the replay memory's ``state_dict()``, or ``None`` to skip it.

        Returns:
            The checkpoint's path prefix.

        Raises:
            FloatingPointError: if a weight of the online network is NaN or
                infinite; such a checkpoint would replace a good one.
            CheckpointError: if the disk refuses the write; the previous
                checkpoint stays the latest.
        """
        prefix = os.path.join(self.directory, f"ckpt-{step}")
        if self._saved_step == step:
            return prefix  # this object saved this very step already
        if not all(np.isfinite(weights).all() for weights in self._q_network.get_weights()):
            raise FloatingPointError(f"the network's weights are no longer finite at step "
                                     f"{step:,}, so no checkpoint was saved")
        # Adam's moment slots only exist after the first update; a checkpoint saved
        # while the memory fills must hold them too, or it could not be restored.
        self._optimizer.build(self._q_network.trainable_variables)
        try:
            os.makedirs(self.directory, exist_ok=True)
            if replay_state is not None:
                self._save_replay(step, replay_state)
            self._loop_state.assign(json.dumps(loop_state))
            self._checkpoint.write(prefix)
            for path in glob.glob(glob.escape(prefix) + ".*"):
                fsync(path)
            pause_point("checkpoint-written")  # a test may kill the process here
            kept = sorted({*self._kept_steps(), step})[-self.max_to_keep:]
            _write_index(self.directory, step, kept)
            self._saved_step = step
        except (OSError, tf.errors.OpError) as error:
            self._remove_partial(step)  # what the failed save left: ckpt-N_temp/, its replay
            # With no complete checkpoint there is nothing to resume, and the folder's
            # progress.csv keeps a new run out of it: the advice must say so.
            advice = (f"the last complete one is {self.latest}; free some disk space, then "
                      f"add --resume to the same command" if self.latest else
                      "the run has no complete checkpoint to resume; free some disk space, "
                      "then start it again with another --run-dir")
            raise CheckpointError(
                f"could not write the checkpoint of step {step:,} to {self.directory} "
                f"({first_line(error)}); {advice}") from None
        self._remove_unkept(kept)
        return prefix

    def restore(self) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """Loads the newest readable checkpoint into the networks and the optimizer.

        A damaged newer checkpoint is skipped, with a line on stderr.

        Returns:
            ``(loop_state, replay_archive)``: the replay memory's saved state as an
            open ``np.load`` archive (read it with ``ReplayMemory.load_state_dict``,
            then close it), or ``None`` when it was not saved or cannot be read.

        Raises:
            CheckpointError: if there is no checkpoint or none can be read.
        """
        candidates = checkpoint_candidates(self.directory)
        if not candidates:
            raise CheckpointError(f"no checkpoint in {self.directory}; point --run-dir at "
                                  f"the run to resume, or start a new run in another --run-dir")
        self._optimizer.build(self._q_network.trainable_variables)
        failures = []
        for prefix in candidates:
            try:
                self._checkpoint.restore(prefix).assert_existing_objects_matched()
                loop_state = json.loads(self._loop_state.numpy().decode())
                # Saving this step again would rewrite the files it came from in place.
                self._saved_step = _step_of(prefix)
                break
            except _READ_ERRORS as error:
                failures.append(f"{os.path.basename(prefix)} ({first_line(error)})")
        else:
            raise CheckpointError(f"no checkpoint in {self.directory} can be read: "
                                  f"{'; '.join(failures)}; they may be damaged or of another "
                                  f"version") from None
        if failures:
            print(f"warning: skipped damaged checkpoint {'; '.join(failures)}; resuming from "
                  f"the newest readable one, {os.path.basename(prefix)}", file=sys.stderr,
                  flush=True)
        return loop_state, self._open_replay(_step_of(prefix), loop_state)

    def _save_replay(self, step: int, replay_state: dict[str, np.ndarray]) -> None:
        needed = sum(np.asarray(array).nbytes for array in replay_state.values())
        free = shutil.disk_usage(self.directory).free
        if needed > free:
            raise OSError(28, f"the replay memory needs {needed / 1e9:.1f} GB but only "
                              f"{free / 1e9:.1f} GB of disk is free")

        def write(temporary: str) -> None:
            np.savez(temporary, **replay_state)
            pause_point("replay-written")  # a test may kill the process here

        write_atomically(self._replay_path(step), write)

    def _open_replay(self, step: int, loop_state: dict[str, Any]):
        path = self._replay_path(step)
        if not loop_state.get("replay_saved", True):
            return None  # a file of that name would be of another save of this step
        if not os.path.exists(path):
            if loop_state.get("replay_saved"):
                print(f"warning: the replay memory saved with checkpoint {step} is missing "
                      f"({path}); it refills.", file=sys.stderr, flush=True)
            return None
        try:
            archive = np.load(path, allow_pickle=False)
            archive.files  # reads the archive's table of contents
            return archive
        except _REPLAY_READ_ERRORS as error:
            print(f"warning: the saved replay memory {path} cannot be read "
                  f"({first_line(error)}); it refills.", file=sys.stderr, flush=True)
            return None

    def _replay_path(self, step: int) -> str:
        return os.path.join(self.directory, f"replay-{step}.npz")

    def _kept_steps(self) -> list[int]:
        return [_step_of(prefix) for prefix in _indexed_checkpoints(self.directory)]

    def _remove_unkept(self, kept: list[int]) -> None:
        """Removes checkpoints and replays of steps not kept, and leftovers of failed saves."""
        for path in glob.glob(os.path.join(glob.escape(self.directory), "*")):
            match = re.fullmatch(r"(?:ckpt|replay)-(\d+)(\..*)?", os.path.basename(path))
            if match and int(match.group(1)) not in kept:
                _remove(path)
        self._remove_partial()

    def _remove_partial(self, failed_step: int | None = None) -> None:
        """Removes what a save that did not finish left: TensorFlow's ``ckpt-N_temp``
        folder, a temporary file and, after a failed save of ``failed_step``, the
        files of that step that no index names (its replay memory: gigabytes)."""
        kept = self._kept_steps() if failed_step is not None else []
        for path in glob.glob(os.path.join(glob.escape(self.directory), "*")):
            name = os.path.basename(path)
            match = re.fullmatch(r"(?:ckpt|replay)-(\d+)(\..*)?", name)
            failed = (match is not None and int(match.group(1)) == failed_step
                      and failed_step not in kept)
            if failed or name.startswith(".partial-") or re.fullmatch(r"ckpt-\d+_temp.*", name):
                _remove(path)


def checkpoint_candidates(directory: str) -> list[str]:
    """Path prefixes of the checkpoints to try on resume, newest first.

    The index file names the complete ones. Where it is missing or damaged, every
    ``ckpt-<step>.index`` in the folder is a candidate, to be tried in turn.
    """
    indexed = _indexed_checkpoints(directory)
    if indexed:
        return indexed[::-1]
    found = glob.glob(os.path.join(glob.escape(directory), "ckpt-*.index"))
    return sorted((path[:-len(".index")] for path in found), key=_step_of, reverse=True)


def latest_checkpoint(directory: str) -> str | None:
    """Path prefix of the newest checkpoint that can be read in ``directory``, or ``None``."""
    for prefix in checkpoint_candidates(directory):
        if _read_loop_state_of(prefix) is not None:
            return prefix
    return None


def read_loop_state(directory: str) -> dict[str, Any] | None:
    """Reads the loop record of the newest readable checkpoint without building any model.

    Why: a resume must be refused (another game, a missing checkpoint) before the
    run allocates gigabytes of replay memory or builds networks.

    Args:
        directory: the checkpoint folder.

    Returns:
        The loop state, or ``None`` if there is no checkpoint at all.

    Raises:
        CheckpointError: if checkpoints exist but none can be read.
    """
    candidates = checkpoint_candidates(directory)
    for prefix in candidates:
        loop_state = _read_loop_state_of(prefix)
        if loop_state is not None:
            return loop_state
    if candidates:
        raise CheckpointError(f"no checkpoint in {directory} can be read (tried "
                              f"{', '.join(os.path.basename(p) for p in candidates)}); they "
                              f"may be damaged; the run's other files are untouched")
    return None


def _read_loop_state_of(prefix: str) -> dict[str, Any] | None:
    """The loop record of a checkpoint whose every tensor can be read, else ``None``.

    Why: a half-truncated data file can still yield its small loop record; reading
    everything (about 27 MB for the Nature network) makes a damaged checkpoint count
    as damaged everywhere, so a resume never mixes the record of one checkpoint with
    the weights of another.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        names = list(reader.get_variable_to_shape_map())
        for name in names:
            reader.get_tensor(name)
        key = next(name for name in names if name.startswith("loop_state/"))
        return json.loads(reader.get_tensor(key).decode())
    except _READ_ERRORS:
        return None


def _indexed_checkpoints(directory: str) -> list[str]:
    """The kept checkpoints the index file names, oldest first ([] if it is unreadable)."""
    try:
        with open(os.path.join(directory, _INDEX_FILE), encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError):
        return []
    names = re.findall(r'^all_model_checkpoint_paths: "(ckpt-\d+)"$', text, re.MULTILINE)
    latest = re.findall(r'^model_checkpoint_path: "(ckpt-\d+)"$', text, re.MULTILINE)
    if not latest or latest[0] not in names:
        return []
    prefixes = [os.path.join(directory, name) for name in names]
    return [prefix for prefix in prefixes if os.path.exists(prefix + ".index")]


def _write_index(directory: str, latest_step: int, kept_steps: list[int]) -> None:
    """Replaces the index file atomically, in TensorFlow's own format."""
    lines = [f'model_checkpoint_path: "ckpt-{latest_step}"']
    lines += [f'all_model_checkpoint_paths: "ckpt-{step}"' for step in sorted(kept_steps)]
    write_atomically(os.path.join(directory, _INDEX_FILE), "\n".join(lines) + "\n")


def _remove(path: str) -> None:
    try:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    except OSError:
        pass  # a leftover that cannot go is harmless


def load_q_network(path: str) -> keras.Model:
    """Loads a saved ``.keras`` model with Keras' safe mode on.

    Args:
        path: a ``.keras`` file.

    Returns:
        The model, uncompiled.

    Raises:
        CheckpointError: if the file is missing, not a Keras model, or damaged.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"no model file at {path}; pass a .keras file or a run folder "
                              f"that holds model.keras or checkpoints")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a .keras file (a .keras file is a zip archive); "
                              f"it may be damaged or of another format")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many kinds (zip, JSON, h5, value) for a bad file
        raise CheckpointError(f"cannot load model {path} ({type(error).__name__}: "
                              f"{first_line(error)}); is it a .keras file saved by this "
                              f"project?") from None


def load_agent(path: str, env_id: str, observation_shape: tuple[int, ...], num_actions: int,
               build_q_network: Callable[..., keras.Model], dueling: bool = False) -> keras.Model:
    """Loads the Q-network to play with, from a file or from a run folder.

    Why: people want to watch their agent while its run still goes on, before
    any ``model.keras`` exists, so a run folder falls back on its checkpoints.

    Args:
        path: a ``.keras`` file, or a run folder; from a folder, its
            ``model.keras`` if there is one, else its newest checkpoint.
        env_id: the game to be played, to refuse a network of another game.
        observation_shape: shape of one observation of that game.
        num_actions: number of actions of that game.
        build_q_network: the factory used for training, to rebuild the network
            a checkpoint's weights go into.
        dueling: whether that network is the dueling one (the run's ``--dueling``,
            see ``common.run.settings_for_evaluation``); a ``.keras`` file holds its
            network whole and needs no such setting.

    Returns:
        The online Q-network.

    Raises:
        CheckpointError: if nothing loadable is found or it does not fit the game.
    """
    checkpoint_dir = os.path.join(path, "checkpoints")
    loop_state = None
    if os.path.isdir(path):  # whichever file plays, the run's checkpoints say its game
        try:
            loop_state = read_loop_state(checkpoint_dir)
        except CheckpointError:
            pass  # damaged checkpoints: model.keras may still play, or say why not
        if loop_state is not None and loop_state.get("env_id") != env_id:
            raise CheckpointError(f"{path} holds a run of {loop_state.get('env_id')}, "
                                  f"not {env_id}; pass --env-id {loop_state.get('env_id')}")
    if os.path.isdir(path) and _checkpoint_is_newer_than_model(path):
        if loop_state is None:
            loop_state = read_loop_state(checkpoint_dir)  # says why none can be read
        if loop_state is None:
            raise CheckpointError(f"{path} holds neither model.keras nor checkpoints; pass a "
                                  f".keras file or a run folder")
        q_network = build_q_network(observation_shape, num_actions, dueling=dueling)
        latest = latest_checkpoint(checkpoint_dir)
        try:  # only the online network is needed; the rest of the checkpoint is skipped
            tf.train.Checkpoint(q_network=q_network).restore(latest).expect_partial()
        except _READ_ERRORS as error:
            raise CheckpointError(f"checkpoint {latest} cannot be read "
                                  f"({first_line(error)})") from None
        print(f"Playing with the network of checkpoint {latest} "
              f"(step {loop_state.get('step', 0):,}).", flush=True)
        return q_network
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    q_network = load_q_network(path)
    game = recorded_game(path)
    if game is not None and game != env_id:
        raise CheckpointError(f"{path} was trained on {game}, not {env_id}; pass --env-id "
                              f"{game}")
    if game is None and loop_state is None:
        print(f"warning: {path} does not record the game it was trained on; playing it on "
              f"{env_id}", file=sys.stderr, flush=True)
    if q_network.output_shape[-1] != num_actions:
        raise CheckpointError(f"{path} has {q_network.output_shape[-1]} outputs but {env_id} "
                              f"has {num_actions} actions; is it a model of another game?")
    return q_network


def _checkpoint_is_newer_than_model(run_dir: str) -> bool:
    """Whether a run folder's newest checkpoint is newer than its ``model.keras``, if any.

    Why: a finished run that was resumed and then stopped keeps the older
    ``model.keras``; the agent to watch is the newest checkpoint's.
    """
    model_path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(model_path):
        return True
    candidates = checkpoint_candidates(os.path.join(run_dir, "checkpoints"))
    return bool(candidates) and os.path.getmtime(candidates[0] + ".index") > \
        os.path.getmtime(model_path)


MODEL_RECORD = "dqn_atari.json"
"""The file a saved ``.keras`` archive carries beside Keras' own: the game it learnt."""


def save_model_atomically(model: keras.Model, path: str, env_id: str | None = None) -> None:
    """Saves ``model`` to ``path`` through a temporary file, flushed to the disk first.

    So a crash or a power cut leaves either the old file or the whole new one. With
    ``env_id`` the archive also records the game (``MODEL_RECORD``), so that
    ``--evaluate`` can refuse to play it on another game; Keras ignores the extra file.

    Raises:
        CheckpointError: if the file cannot be written (a full disk, say).
    """
    def write(temporary: str) -> None:
        model.save(temporary)
        if env_id is not None:
            with zipfile.ZipFile(temporary, "a") as archive:
                archive.writestr(MODEL_RECORD, json.dumps({"env_id": env_id}))

    try:
        write_atomically(path, write)
    except OSError as error:
        raise CheckpointError(f"could not save the model to {path} ({first_line(error)}); "
                              f"the checkpoints beside it still hold the network") from None


def recorded_game(path: str) -> str | None:
    """The game a ``.keras`` file was trained on, if it records it (``MODEL_RECORD``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return str(json.loads(archive.read(MODEL_RECORD))["env_id"])
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None


def _step_of(checkpoint_path: str) -> int:
    """The step a checkpoint was saved at, from its path prefix (``.../ckpt-<step>``)."""
    return int(checkpoint_path.rsplit("-", 1)[1])


"""
### common/plot.py

Learning-curve pictures of one or more runs, drawn from their CSV files.

A run folder holds ``progress.csv`` (one row per finished game) and, in runs that
measure it, ``heldout_q.csv`` (a row every 10,000 or so agent steps). This module
reads them and draws up to four panels against agent steps:

1. ``score``: each game's raw score as faint dots, the running reward (the mean of
   the last 100 games, as logged) as a line, and a dashed "solved at" line.
2. ``heldout_q``: the mean over a fixed set of held-out states of max_a Q(s, a), the
   smooth learning curve of Mnih et al. (2015, Fig. 2).
3. ``loss``: the Huber loss of each game (the mean over its updates) as faint dots,
   and its mean over the last 20 games as a line.
4. ``epsilon``: the exploration rate.

Three callers share it: the training loop redraws ``progress.png`` in its run folder,
a ``--plot`` command (``plot_runs``) draws one run or overlays several, and a notebook
refreshes a live figure.
It draws on a ``matplotlib.figure.Figure`` and never imports ``pyplot`` or calls
``matplotlib.use``, so the global backend stays as it was and a notebook's inline
display keeps working; a figure made here is not registered with pyplot, so it is
freed like any other object once it is no longer referenced.
"""

PANELS = ("score", "heldout_q", "loss", "epsilon")

# Per panel: title, y-axis label, the sentence shown while no run has a point for it,
# and where its legend goes (the legend sits on the first panel drawn).
_PLOT_PANEL_TEXT = {
    "score": ("Score per game (dots) and mean of the last 100 games (line)", "score",
              "no finished game yet", "upper left"),
    "heldout_q": ("Mean max Q over 500 held-out states", "max_a Q(s, a)",
                  "no held-out Q yet", "upper left"),
    "loss": ("Huber loss per game (dots) and mean of the last 20 games (line)", "loss",
             "no loss yet: learning has not started", "upper right"),
    "epsilon": ("Exploration rate epsilon", "epsilon", "no finished game yet",
                "upper right"),
}
_PLOT_LOSS_WINDOW_GAMES = 20
_PLOT_PROGRESS_COLUMNS = ("step", "score", "running_reward", "epsilon", "loss", "mean_q")
_PLOT_HELDOUT_COLUMNS = ("step", "heldout_q")


class RunFolderError(ConfigError):
    """A folder given as a run folder is missing or holds no readable ``progress.csv``.

    Why: a command that is handed a wrong path should print one line saying so,
    not a traceback; its message names the folder and says what was expected. It is
    a ``ConfigError`` (a ``ValueError``), which the scripts' command line reports in
    one line with exit status 2.
    """


class RunCurves(NamedTuple):
    """The learning curves of one run, as float64 arrays.

    Attributes:
        label: the name shown in the legend (by default the run folder's name).
        step: agent steps when each game finished, shape ``(G,)`` for G games.
        score: each game's raw score (all lives, rewards not clipped).
        running_reward: mean score of the last 100 games at that game (fewer at first).
        epsilon: exploration rate when the game finished.
        loss: mean Huber loss of the updates during the game; NaN before learning starts.
        mean_q: mean predicted Q(s, a) over those updates; NaN before learning starts.
        q_step: agent steps of each held-out Q measurement, shape ``(M,)``; empty when
            the run has no ``heldout_q.csv``.
        heldout_q: mean over the held-out states of max_a Q(s, a), shape ``(M,)``.
    """

    label: str
    step: np.ndarray
    score: np.ndarray
    running_reward: np.ndarray
    epsilon: np.ndarray
    loss: np.ndarray
    mean_q: np.ndarray
    q_step: np.ndarray
    heldout_q: np.ndarray


def read_run(run_dir: str | os.PathLike, label: str | None = None) -> RunCurves:
    """Reads a run folder's ``progress.csv`` and, if there is one, ``heldout_q.csv``.

    Why: the files are read while the run may still be writing them, or after it was
    killed mid-write, so a last line cut short is skipped silently; the readable rows
    of a damaged file are drawn, with one warning.

    Args:
        run_dir: the run folder.
        label: name for the legend; ``None`` uses the folder's name.

    Returns:
        The run's curves; arrays are empty when the files hold only a header.

    Raises:
        RunFolderError: the folder does not exist or holds no ``progress.csv``, or
            that file lacks the expected columns.
    """
    run_dir = os.fspath(run_dir)
    if label is None:
        label = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    if not os.path.isdir(run_dir):
        raise RunFolderError(f"{run_dir} is not a folder; give the path of a run folder")
    progress_path = os.path.join(run_dir, "progress.csv")
    if not os.path.isfile(progress_path):
        raise RunFolderError(f"{run_dir} holds no progress.csv; is it a run folder?")
    progress = _plot_read_columns(progress_path, PROGRESS_FIELDS, _PLOT_PROGRESS_COLUMNS)
    heldout_path = os.path.join(run_dir, "heldout_q.csv")
    if os.path.isfile(heldout_path):
        heldout = _plot_read_columns(heldout_path, HELDOUT_FIELDS, _PLOT_HELDOUT_COLUMNS)
    else:  # runs from before the held-out measurement
        heldout = {name: np.empty(0) for name in _PLOT_HELDOUT_COLUMNS}
    return RunCurves(label=label, step=progress["step"], score=progress["score"],
                     running_reward=progress["running_reward"],
                     epsilon=progress["epsilon"], loss=progress["loss"],
                     mean_q=progress["mean_q"], q_step=heldout["step"],
                     heldout_q=heldout["heldout_q"])


def draw_learning_curves(figure: Figure, runs: Sequence[RunCurves],
                         solved_at: float | None = None,
                         panels: Sequence[str] = PANELS) -> None:
    """Draws the learning curves of one or more runs on ``figure``, replacing its content.

    Why: the same picture serves a PNG written during training, several runs compared
    on the command line and a notebook's live figure; clearing the figure first lets
    a caller redraw the same figure in place. Each run keeps one colour in every panel
    and the legend, on the first panel, names the runs. Four panels are laid out 2x2,
    other counts side by side. The caller shows the figure (saves it, updates a
    notebook display, or calls ``figure.canvas.draw_idle()``).

    Args:
        figure: the figure to draw on; its size and layout engine are left as they are.
        runs: the runs to overlay, each from ``read_run``.
        solved_at: running reward at which the game counts as solved, drawn as a dashed
            line in the score panel; ``None`` draws none.
        panels: which panels to draw, in order, from ``PANELS``; a notebook may ask for
            ``("score",)`` alone.

    Raises:
        ValueError: ``panels`` is empty or names an unknown panel.
    """
    unknown = [name for name in panels if name not in _PLOT_PANEL_TEXT]
    if unknown or not panels:
        raise ValueError(f"panels must be a non-empty selection of {', '.join(PANELS)}; "
                         f"got {', '.join(map(str, panels)) or 'none'}")
    figure.clear()
    rows, columns = (2, 2) if len(panels) == 4 else (1, len(panels))
    # Every panel is drawn against agent steps, so they share the x axis: zooming one
    # zooms all, and only the bottom row carries tick labels.
    axes_grid = figure.subplots(rows, columns, sharex=True, squeeze=False)
    colours = _plot_colours(len(runs))
    step_formatter = FuncFormatter(_plot_format_steps)
    for axes, panel in zip(axes_grid.flat, panels):
        title, y_label, empty_text, _ = _PLOT_PANEL_TEXT[panel]
        has_points = False
        for run, colour in zip(runs, colours):
            has_points |= _plot_draw_panel(axes, panel, run, colour)
        if not has_points:
            axes.text(0.5, 0.5, empty_text, transform=axes.transAxes, ha="center",
                      va="center", color="grey")
        axes.set_title(title, fontsize="medium")
        axes.set_ylabel(y_label)
        axes.xaxis.set_major_formatter(step_formatter)
        axes.grid(True, alpha=0.3)
    for axes in axes_grid[-1]:
        axes.set_xlabel("agent steps")
    legend_handles = [Line2D([], [], color=colour, label=run.label)
                      for run, colour in zip(runs, colours)]
    if solved_at is not None and "score" in panels:
        score_axes = axes_grid.flat[panels.index("score")]
        legend_handles.append(score_axes.axhline(
            solved_at, color="black", linestyle="--", linewidth=1,
            label=f"solved at {solved_at:g}"))
    if legend_handles:
        axes_grid.flat[0].legend(handles=legend_handles, fontsize="small",
                                 loc=_PLOT_PANEL_TEXT[panels[0]][3])


def plot_runs(run_dirs: Sequence[str | os.PathLike], solved_at: float | None = None) -> str:
    """Draws the learning curves of one run, or of several overlaid; returns the PNG's path.

    Why: ``--plot`` looks at runs that finished or are still going, to compare seeds
    or settings. One run's picture goes where training puts it,
    ``<run dir>/progress.png``; several go to ``comparison.png`` in the current folder.
    The legend names each run by its folder (by the path as given when two folders
    share a name).

    Args:
        run_dirs: one or more run folders.
        solved_at: the running reward that solves the game, drawn dashed.

    Returns:
        The path of the PNG written.

    Raises:
        RunFolderError: a folder is not a run folder.
        ConfigError: the picture cannot be written (the message says where).
    """
    run_dirs = [os.fspath(run_dir) for run_dir in run_dirs]
    if not run_dirs:
        raise ConfigError("--plot needs at least one run folder")
    path = os.path.join(run_dirs[0], "progress.png") if len(run_dirs) == 1 else "comparison.png"
    names = [os.path.basename(os.path.normpath(os.path.abspath(run_dir))) for run_dir in run_dirs]
    labels = names if len(set(names)) == len(names) else run_dirs
    try:
        return write_progress_png(run_dirs, path, solved_at=solved_at, labels=labels)
    except OSError as error:
        raise ConfigError(f"cannot write {path} ({error.strerror or error}); run --plot "
                          f"from a folder you can write to") from None


def write_progress_png(run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                       path: str | os.PathLike, solved_at: float | None = None,
                       title: str | None = None, labels: Sequence[str] | None = None) -> str:
    """Draws the four panels of one or more runs and saves them as a PNG, atomically.

    Why: the training loop redraws ``progress.png`` every few minutes, and whoever has
    it open (a browser, an image viewer, a notebook) must never see half a file; the
    picture is written to a temporary file beside ``path`` and then renamed over it.
    The figure is a bare ``Figure``, so pyplot and the global backend are untouched.

    Args:
        run_dirs: a run folder or a list of them, overlaid in that order.
        path: where the PNG goes; its folder must exist.
        solved_at: running reward at which the game counts as solved, or ``None``.
        title: a title above the panels, or ``None`` for none.
        labels: the legend's name of each run; ``None`` uses the folders' names.

    Returns:
        ``path``, as a string.

    Raises:
        RunFolderError: a folder is not a run folder (see ``read_run``).
        OSError: the PNG cannot be written; no temporary file is left behind.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    labels = [None] * len(run_dirs) if labels is None else labels
    runs = [read_run(run_dir, label) for run_dir, label in zip(run_dirs, labels)]
    figure = Figure(figsize=(12, 8), dpi=100)
    draw_learning_curves(figure, runs, solved_at=solved_at)
    if title:
        figure.suptitle(title)
    # Fixed margins suit this fixed size; a layout engine would measure every label
    # on each save and take about as long again as drawing the picture.
    figure.subplots_adjust(left=0.06, right=0.985, bottom=0.07, top=0.92 if title else 0.95,
                           wspace=0.18, hspace=0.22)
    path = os.fspath(path)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"),
                     durable=False)  # a picture is redrawn from the CSV files at will
    return path


def _plot_read_columns(path: str, fields: Sequence[str],
                       names: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads the columns ``names`` of a run's CSV file whose header is ``fields``.

    The readable rows of a damaged file are drawn, with one warning per file
    (``common.files.read_table`` says what is wrong); a file with none is refused.
    """
    rows, problem = read_table(path, fields)
    if problem and not rows and problem != "it is empty":
        raise RunFolderError(f"{path} is damaged ({problem}) and holds no readable row; "
                             f"is it a file of this project?")
    if problem and problem != "it is empty" and path not in _WARNED:
        _WARNED.add(path)
        print(f"warning: {path} is damaged ({problem}); drawing its {len(rows):,} readable "
              f"rows", file=sys.stderr, flush=True)
    table = np.array(rows, dtype=np.float64).reshape(-1, len(fields))
    return {name: table[:, list(fields).index(name)] for name in names}


_WARNED: set[str] = set()  # the damaged files already warned about


def _plot_draw_panel(axes, panel: str, run: RunCurves, colour) -> bool:
    """Draws one run on one panel; returns whether it had any finite point to draw."""
    if panel == "score":
        axes.scatter(run.step, run.score, s=4, color=colour, alpha=0.25, linewidths=0)
        axes.plot(run.step, run.running_reward, color=colour, linewidth=1.5)
        return bool(np.isfinite(run.score).any())
    if panel == "heldout_q":
        # Markers, because early in a run a single measurement is no line at all.
        axes.plot(run.q_step, run.heldout_q, color=colour, linewidth=1.5, marker=".",
                  markersize=3)
        return bool(np.isfinite(run.heldout_q).any())
    if panel == "loss":
        # Dots, not a faint line: a line through thousands of noisy values takes Agg
        # seconds to draw (2 s for 30,000 games), dots a tenth of a second.
        axes.scatter(run.step, run.loss, s=3, color=colour, alpha=0.2, linewidths=0)
        axes.plot(run.step, _plot_trailing_mean(run.loss, _PLOT_LOSS_WINDOW_GAMES),
                  color=colour, linewidth=1.5)
        return bool(np.isfinite(run.loss).any())
    axes.plot(run.step, run.epsilon, color=colour, linewidth=1.5)
    axes.set_ylim(0.0, 1.05)
    return bool(np.isfinite(run.epsilon).any())


def _plot_trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among each value and the ``window - 1`` before it.

    Positions whose window holds no finite value (before learning starts) are NaN.
    """
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    window_counts = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[ends] - sums[starts]) / window_counts
    return np.where(window_counts > 0, means, np.nan)


def _plot_colours(count: int) -> list:
    """One colour per run from matplotlib's colour cycle, repeating past its end."""
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return [cycle[index % len(cycle)] for index in range(count)]


def _plot_format_steps(value: float, _position=None) -> str:
    """Writes an agent-step count for an axis: 500, 250k, 1.2M."""
    if not math.isfinite(value):
        return ""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"


"""
### common/cli.py

The command line of the game scripts: one entry point, one set of messages.

Both scripts end with ``command_line(Config, train, evaluate, ...)``. It parses the
flags, checks them, runs training or evaluation, and turns every failure a user can
cause or meet into one line on stderr and an exit status:

- 0: finished, or stopped by Ctrl-C or SIGTERM after saving a checkpoint;
- 1: training diverged (a NaN or infinite loss) or ran out of memory;
- 2: a setting, folder or file that cannot work (the line says what to change);
- 130: stopped at once by a second Ctrl-C, or an evaluation stopped by Ctrl-C
  (143 by SIGTERM) after printing the scores of the games it finished.

The advice on how to resume fits where the script runs: a shell command in a
terminal, a ``%run`` line after ``%run``, and the setting to change in a notebook.
"""


def command_line(config_class: type, train: Callable[[Any], dict],
                 evaluate: Callable[[Any], list[float]], description: str,
                 argv: list[str] | None = None) -> int:
    """Parses the command line into a configuration and runs it.

    Args:
        config_class: the script's configuration dataclass.
        train: the script's ``train(config)``.
        evaluate: the script's ``evaluate(config)``.
        description: shown by ``--help``.
        argv: the arguments; ``None`` reads ``sys.argv`` (a notebook kernel's own
            arguments are ignored).

    Returns:
        The exit status (see the module docstring). A bad flag exits with status 2.
    """
    config = parse_config(config_class, argv, description=description)
    return train_or_evaluate(config, train, evaluate, argv)


def train_or_evaluate(config: Any, train: Callable[[Any], dict], evaluate: Callable[[Any], list[float]],
        argv: list[str] | None = None) -> int:
    """Checks a configuration, then trains or evaluates, with one-line messages.

    Why: a notebook builds its ``Config`` in a cell instead of from flags, and
    must get the same checks and messages as the command line.

    Args:
        config: the configuration.
        train: called as ``train(config)`` unless ``config.evaluate`` names a model
            or ``config.plot`` names run folders to draw (``common.plot.plot_runs``).
        evaluate: called as ``evaluate(config)`` when it does.
        argv: the command line the configuration came from, for the resume advice.

    Returns:
        The exit status (see the module docstring).
    """
    program = program_name()
    checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
    try:
        # On --resume the run's saved settings fill in the rest; Run checks them whole.
        check_config(config, across_fields=not getattr(config, "resume", False))
        if getattr(config, "plot", None):  # learning curves of finished or running runs
            # plot_runs: written in, from common/plot.py.

            print(f"Wrote {plot_runs(config.plot, config.solved_at)}", flush=True)
            return 0
        if config.video_every > 0 or config.evaluate:
            check_writable(config.video_dir, "--video-dir")
        if config.evaluate:
            evaluate(config)
            return 0
        check_writable(config.run_dir, "--run-dir")
        summary = train(config)
    except (ConfigError, CheckpointError) as error:
        print(f"{program}: error: {in_its_words(str(error), config)}", file=sys.stderr)
        return 2
    except Interrupted as interrupted:
        print(f"Stopped by {interrupted.signal_name} {interrupted.detail}.", file=sys.stderr)
        return 128 + signal.Signals[interrupted.signal_name].value
    except FloatingPointError as error:
        print(f"{program}: training diverged: {error}; the last good checkpoint is "
              f"{latest_checkpoint(checkpoint_dir) or 'none'}; "
              f"{resume_advice(argv, '--learning-rate', 'a lower learning_rate')}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C pressed twice, or once while evaluating
        if config.evaluate:
            print("\nStopped.", file=sys.stderr)
            return 130
        last_good = latest_checkpoint(checkpoint_dir)
        print(f"\nStopped at once; the last complete checkpoint is {last_good or 'none'}.",
              file=sys.stderr)
        if last_good:
            print(_sentence(resume_advice(argv)), file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{program}: error: "
              f"{in_its_words('out of memory; pass a smaller --buffer-size', config)}",
              file=sys.stderr)
        return 1
    if summary["stopped"]:
        print(_sentence(resume_advice(argv)), flush=True)
    return 0


def in_its_words(message: str, config: Any) -> str:
    """A message as the place it is read in says it: flags in a terminal, settings in
    a notebook.

    Why: a notebook user sets ``resume = True`` in the settings cell; telling them to
    "add --resume" names a command line they do not have. In a notebook cell (not
    ``%run``), each flag of a setting of ``config`` becomes that setting:
    ``--run-dir`` is ``run_dir``, ``--resume`` is ``resume = True``,
    ``--no-overlap-updates`` is ``overlap_updates = False`` and ``--buffer-size 20000``
    is ``buffer_size = 20000``.
    """
    if not in_notebook_cell():
        return message
    names = {field.name for field in dataclasses.fields(config)}

    def setting(match: re.Match) -> str:
        negated, name, value = match.group(1), match.group(2).replace("-", "_"), match.group(3)
        if name not in names:
            return match.group(0)
        if negated or isinstance(getattr(config, name), bool):
            return f"{name} = {not negated}"
        return f"{name} = {value}" if value else name

    return re.sub(r"--(no-)?([a-z][a-z0-9-]*)(?: (-?\d[\w.+-]*))?", setting, message)


def exit_with(status: int) -> None:
    """Ends the process with ``status``; inside a notebook, does nothing.

    Why: in a notebook ``SystemExit`` only prints a traceback-like warning.
    """
    if not in_notebook():
        sys.exit(status)


def program_name() -> str:
    """The script's file name, for messages (``breakout_dqn.py``)."""
    return os.path.basename(sys.argv[0]) or "python"


def resume_advice(argv: list[str] | None = None, flag: str = "", change: str = "") -> str:
    """How to continue this run, in the words of the place it runs in.

    Args:
        argv: the command line of this run (``None``: ``sys.argv[1:]``).
        flag: a flag the user should change, such as ``--learning-rate``.
        change: the change, in words, for a notebook user (``a lower learning rate``).

    Returns:
        One sentence, starting lower case: ``resume with: python breakout_dqn.py ...
        --resume`` in a terminal, the same after ``%run``, and the settings to change
        in a notebook cell. The command never drops a flag of the run, so it never
        starts a new run over the old one.
    """
    if in_notebook_cell():  # a notebook cell, not %run
        setting = f"set {change} and " if change else ""
        return (f"to resume, {setting}set resume = True in the settings cell (or "
                f"Config(resume=True)) and run the training cell again")
    arguments = list(sys.argv[1:] if argv is None else argv)
    arguments = [argument for argument in arguments if argument != "--resume"]
    prefix = "%run" if in_notebook() else "python"
    command = " ".join([prefix, program_name(), *arguments, "--resume"])
    if flag:
        return f"resume with a lower {flag}: {command} {flag} ..."
    return f"resume with: {command}"


def check_writable(folder: str, flag: str) -> None:
    """Makes sure ``folder`` exists (creating it) and a file can be written in it.

    Args:
        folder: the output folder.
        flag: the command-line flag that names it, for the message.

    Raises:
        ConfigError: if the folder cannot be created or written to.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w") as file:
            file.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ConfigError(f"cannot write to {flag} {folder!r} ({error.strerror or error}); "
                          f"choose a folder you can write to") from None


class Interrupted(Exception):
    """Raised by an evaluation stopped by a signal, after it has printed what it finished.

    Args:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        detail: what was done, e.g. ``"after 3 of 10 games"``.
    """

    def __init__(self, signal_name: str, detail: str):
        super().__init__(f"stopped by {signal_name} {detail}")
        self.signal_name, self.detail = signal_name, detail


class GracefulStop:
    """Turns Ctrl-C and SIGTERM into a flag the training loop checks once a step.

    Why: a signal that arrives in the middle of a TensorFlow call or a file write
    must not tear it apart; the loop finishes its step, saves a checkpoint and
    exits cleanly. A second Ctrl-C stops at once. Interrupting a notebook kernel
    sends the same SIGINT.

    Use it as a context manager around the loop; ``requested`` becomes true when
    a stop is asked for. Outside the main thread (where Python cannot install
    signal handlers) it does nothing.

    Args:
        then: what the loop does when asked to stop, for the line printed then.
    """

    def __init__(self, then: str = "saving a checkpoint before stopping"):
        self.then = then
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulStop":
        try:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                self._previous[signal_number] = signal.signal(signal_number, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signal_number, handler in self._previous.items():
            signal.signal(signal_number, handler)
        self._previous.clear()

    def _handle(self, signal_number, frame) -> None:
        if self.requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.requested = True
        self.signal_name = signal.Signals(signal_number).name
        print(f"\n{self.signal_name} received: {self.then} (press Ctrl-C again to stop at "
              f"once)", flush=True)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


"""
### common/dqn.py

The parts of DQN that run inside TensorFlow: acting, learning, target sync.

Each function returns a ``tf.function``, traced once and then run as a graph:
choosing one action cost 1 to 2 ms on a 2-core Intel Xeon, where ``model.predict``
cost about 110 (it builds a dataset and a progress bar on every call); see
``docs/performance.md``.
"""


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


"""
### common/logger.py

What a run reports, and how: a start banner, a progress line, two CSV files,
TensorBoard scalars, the held-out Q and a picture of the learning curves.

1. ``start_banner``: a few lines when training starts: the game and its actions,
   the device, the budget, the replay memory, the folders, new run or resume.
2. ``RunLogger``: one row of ``<run-dir>/progress.csv`` and one point of each
   TensorBoard scalar per finished game (all lives); a progress line every few
   games and at least once a minute (``progress_line``); the rows of
   ``heldout_q.csv``; and ``progress.png``, redrawn every few minutes by a
   background thread (``ProgressPicture``) and once more when the run closes.
3. ``HeldOutQ``: the paper's smooth learning curve, the mean of max_a Q(s, a)
   over a fixed set of 500 states drawn from the random play that fills the memory.

The CSV files are flushed after each row, so even a killed run keeps every game it
finished, and ``flush_to_disk`` makes them durable before a checkpoint counts as
saved. A write that fails (a full disk) prints one warning and the run goes on: the
log is not worth losing the training for. None of this may slow training down: the
per-step calls cost a clock read, the rest happens once a game, once a second,
every 10,000 steps or on another thread.
"""

RATE_WINDOW_SECONDS = 60.0
"""Steps per second are measured over about this much of the latest wall time."""
RATE_SAMPLE_SECONDS = 1.0
"""Between game ends, the step count is sampled for the rate at most this often."""
PRINT_AT_LEAST_EVERY_SECONDS = 60.0
"""A progress line is printed at least this often, even in the middle of a long game."""
PICTURE_EVERY_SECONDS = 300.0
"""``progress.png`` is redrawn this often while a run trains, and once when it closes."""


def start_banner(config: Any, action_names: Sequence[str] | None, replay_bytes: int,
                 resumed_step: int | None = None, games: int = 0,
                 memory_restored: bool = False, device: str | None = None) -> str:
    """The lines printed when training starts: what runs, where, for how long.

    Why: a long run's log should say at its top what produced it, and a wrong
    device or folder is cheaper to notice now than hours later.

    Args:
        config: the script's configuration; this reads ``env_id``, ``total_steps``,
            ``solved_at``, ``buffer_size``, ``learning_starts``, ``run_dir``,
            ``video_dir``, ``video_every`` and, if it has them, ``seed`` and
            ``deterministic``.
        action_names: the game's actions (``action_names(env)``), or ``None``.
        replay_bytes: the replay memory's size in bytes.
        resumed_step: the checkpoint's step for a resumed run, ``None`` for a new one.
        games: the games the resumed run had finished.
        memory_restored: whether the resumed run got its replay memory back, so that
            learning goes on at once instead of after a refill.
        device: the device's description; ``None`` asks TensorFlow (``describe_device``).

    Returns:
        The lines, joined by newlines, without a final one.
    """
    actions = (f": {len(action_names)} actions ({', '.join(action_names)})"
               if action_names else "")
    if resumed_step is None:
        run = "a new run"
    else:
        run = f"resumed from the checkpoint of step {resumed_step:,} ({plural(games, 'game')})"
    if memory_restored and (resumed_step or 0) >= config.learning_starts:
        filling = "restored from the checkpoint, so learning goes on at once"
    elif memory_restored:
        filling = (f"restored from the checkpoint; learning starts at step "
                   f"{config.learning_starts:,}")
    else:
        filling = (f"learning {'restarts' if resumed_step is not None else 'starts'} after "
                   f"{config.learning_starts:,} steps of play that fill it")
    videos = (f"{config.video_dir} ({_every_nth(config.video_every)} game)"
              if config.video_every > 0 else "none (--video-every 0)")
    seed = []
    if hasattr(config, "seed"):
        promise = ("deterministic: the same seed repeats this run exactly on this machine"
                   if getattr(config, "deterministic", False) else
                   "the same seed gives the same first network and games, after which a "
                   "run may drift (--deterministic repeats one exactly)")
        seed = [f"  seed           {config.seed}, {promise}"]
    return "\n".join([
        f"Training {config.env_id}{actions}",
        f"  device         {device or describe_device()}",
        f"  steps          at most {config.total_steps:,} agent steps; stops earlier once "
        f"the mean score of 100 games reaches {config.solved_at:g}",
        f"  replay memory  {config.buffer_size:,} transitions, {replay_bytes / 1e9:.2f} GB; "
        f"{filling}",
        f"  run folder     {config.run_dir}: {run}",
        f"  videos         {videos}",
        *seed,
    ])


def action_names(env: Any) -> list[str] | None:
    """The names of a game's actions (Breakout: NOOP, FIRE, RIGHT, LEFT), if it has them."""
    meanings = getattr(getattr(env, "unwrapped", env), "get_action_meanings", None)
    return list(meanings()) if callable(meanings) else None


def describe_device() -> str:
    """The device TensorFlow computes on, in words: its first GPU, or the CPU.

    TensorFlow places its work on the first GPU it finds, if any.
    """
    import tensorflow as tf  # already imported by any caller that trains

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU: {cpu_description()}; no GPU found (TensorFlow {tf.__version__})"
    details = tf.config.experimental.get_device_details(gpus[0])
    name = details.get("device_name", gpus[0].name)
    others = f", the first of {len(gpus)} GPUs" if len(gpus) > 1 else ""
    return f"GPU: {name}{others} (TensorFlow {tf.__version__})"


def cpu_description() -> str:
    """The CPU's model and the cores this process may use, e.g. ``Intel Xeon ..., 2 cores``."""
    model = ""
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    model = " ".join(line.split(":", 1)[1].split())
                    break
    except OSError:  # not Linux
        pass
    if not model:
        import platform

        model = platform.processor() or platform.machine() or "unknown CPU"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} cores"


def progress_line(step: int, total_steps: int | None, games: int, score: float,
                  running_reward: float, epsilon: float, loss: float, mean_q: float,
                  steps_per_second: float, elapsed_seconds: float,
                  learn_from_step: int = 0) -> str:
    """One line of progress: where the run is, how it learns, how fast, how long.

    Args:
        step: agent steps so far.
        total_steps: the run's ``--total-steps``, or ``None`` to leave out the
            percentage and the time left.
        games: games finished so far.
        score: the raw score of the last finished game (NaN before any).
        running_reward: mean raw score of the last 100 games (NaN before any).
        epsilon: the exploration rate now.
        loss: mean Huber loss of the last game's updates (NaN before learning starts).
        mean_q: mean predicted Q(s, a) of those updates.
        steps_per_second: steps per second over about the last minute (NaN if unknown).
        elapsed_seconds: wall time since this process started training.
        learn_from_step: the step at which learning starts; before it the memory fills.

    Returns:
        The line, without a newline, e.g. ``step 41,200 of 10,000,000 (0.4%) | ...
        | 41.2 steps/s | 1:02:03 elapsed | at most 2 days, 19:08:38 left``.
    """
    where = f"step {step:>10,}"
    if total_steps:
        where += f" of {total_steps:,} ({100 * step / total_steps:.1f}%)"
    parts = [where, f"games {games:>6,}", f"score {_show(score, 'g', 6)}",
             f"running reward {_show(running_reward, '.2f', 7)}", f"epsilon {epsilon:.3f}",
             f"loss {_show(loss, '.4f', 6)}", f"mean Q {_show(mean_q, '.3f', 7)}",
             f"{_show(steps_per_second, '.1f', 6)} steps/s",
             f"{format_duration(elapsed_seconds)} elapsed"]
    if total_steps:
        parts.append(time_left(step, total_steps, steps_per_second, learn_from_step))
    return " | ".join(parts)


def time_left(step: int, total_steps: int, steps_per_second: float,
              learn_from_step: int = 0) -> str:
    """The time left to ``total_steps`` at the current rate, as the progress line says it.

    Why it waits for learning: while the memory fills, play is random and nothing is
    learned, so steps go ten times faster or more (on a 2-core AMD EPYC, about 1,400
    against 85 steps a second for a Pong run sharing the machine, 2026-12-06); an
    estimate from that rate would promise a fraction of the real time. Before ``learn_from_step`` it says when learning starts instead, and
    the logger measures the rate afresh from then, so the estimate rests on learning
    steps only. It is labelled "at most": the run stops earlier when it is solved.

    Args:
        step: agent steps so far.
        total_steps: the run's ``--total-steps``.
        steps_per_second: the current rate; NaN while unknown.
        learn_from_step: the step at which learning starts.

    Returns:
        ``at most 5:10:00 left``, ``filling the memory, learning in 0:00:23``, or
        ``time left: measuring`` while the rate is unknown.
    """
    known = math.isfinite(steps_per_second) and steps_per_second > 0
    if step < learn_from_step:
        if not known:
            return "filling the memory"
        return (f"filling the memory, learning in "
                f"{format_duration((learn_from_step - step) / steps_per_second)}")
    if not known:
        return "time left: measuring"
    return f"at most {format_duration(max(total_steps - step, 0) / steps_per_second)} left"


def format_duration(seconds: float) -> str:
    """Seconds as ``0:00:05``, ``1:02:03`` or ``2 days, 7:33:20``."""
    if not math.isfinite(seconds):
        return "-"
    if seconds >= 100 * 365 * 86400:
        return "over 100 years"
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


class StepRate:
    """Agent steps per second over about the last minute of wall time.

    Why a window: the rate of one game jumps by a factor of two from game to game,
    and the rate since the start still carries the fast random fill hours later.

    Args:
        window_seconds: how much of the latest wall time the rate covers.
    """

    def __init__(self, window_seconds: float = RATE_WINDOW_SECONDS):
        self.window_seconds = window_seconds
        self._points: collections.deque[tuple[float, int]] = collections.deque()

    def add(self, now: float, step: int) -> float:
        """Records that ``step`` steps were done at time ``now``; returns the rate.

        The rate runs from the newest recorded point at least a window older than
        the next one (or the oldest point kept) to ``now``; NaN until two points
        with different steps are recorded.
        """
        points = self._points
        points.append((now, step))
        while len(points) > 2 and now - points[1][0] >= self.window_seconds:
            points.popleft()
        then, step_then = points[0]
        if step == step_then or now <= then:
            return math.nan
        return (step - step_then) / (now - then)

    def restart(self) -> None:
        """Forgets every point: the next rate is measured from the next point on."""
        self._points.clear()


class RunLogger:
    """Writes one row per finished game to CSV and TensorBoard, and prints progress.

    When a run resumes from a checkpoint taken at step ``resume_step``, the
    rows written after that step belong to games the resumed run will play again,
    so they are dropped from ``progress.csv`` and ``heldout_q.csv``; the files then
    carry on without gaps or duplicates. For TensorBoard the new event file starts
    with a ``SessionLog.START`` event at ``resume_step + 1``, on which TensorBoard
    discards the earlier events from that step on (its "purge orphaned data"
    rule), so its curves do not double back either. TensorBoard's default fast
    loader (``--load_fast``) ignores that event; it drops an old point only once a
    new point at an earlier or equal step arrives, so a few old points may remain
    between the checkpoint and the first new game; ``tensorboard
    --load_fast=false`` applies the rule exactly.

    A progress line is printed every ``print_every_games`` games and, from
    ``on_step``, whenever a minute has gone by without one; between games its
    score, loss and mean Q are those of the last finished game.

    Args:
        run_dir: folder for the CSV files, the TensorBoard event files and the picture.
        print_every_games: print a progress line every this many games.
        resume_step: keep the existing CSV rows up to this step (``None``: start afresh).
        on_game: called with each game's row as a dict (keys ``PROGRESS_FIELDS``),
            after it is written; a notebook's live display uses it.
        total_steps: the run's ``--total-steps``, for the percentage and the time left.
        learn_from_step: the step at which learning starts (after the memory fills);
            the rate is measured afresh from then, for an honest time left.
        picture_every_seconds: redraw ``progress.png`` this often on a background
            thread and once at ``close``; ``None`` draws no picture.
        solved_at: the running reward that solves the game, drawn in the picture.
        title: the picture's title.
    """

    def __init__(self, run_dir: str, print_every_games: int = 10,
                 resume_step: int | None = None,
                 on_game: Callable[[dict[str, float]], None] | None = None, *,
                 total_steps: int | None = None, learn_from_step: int = 0,
                 picture_every_seconds: float | None = None, solved_at: float | None = None,
                 title: str | None = None):
        os.makedirs(run_dir, exist_ok=True)
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, "progress.csv")
        self.heldout_path = os.path.join(run_dir, "heldout_q.csv")
        self.print_every_games = print_every_games
        self.total_steps, self.learn_from_step = total_steps, learn_from_step
        self._warned = False
        self._progress = _CsvFile(self.path, PROGRESS_FIELDS, resume_step,
                                  pause_name="csv-row")  # a test may kill the process there
        try:
            self._heldout: _CsvFile | None = _CsvFile(self.heldout_path, HELDOUT_FIELDS,
                                                      resume_step)
        except OSError as error:
            self._heldout = None
            self._warn(error)
        self._events: _EventFile | None = _EventFile(run_dir)
        if resume_step is not None:
            self._events.add_event(event_pb2.Event(
                wall_time=time.time(), step=resume_step + 1,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        self._on_game = on_game
        self._start_time = time.perf_counter()
        self._rate = StepRate()
        self._steps_per_second = math.nan
        self._learning = False  # whether the rate has been restarted at learn_from_step
        self._next_sample = self._last_print = self._start_time
        # The last finished game, for the lines printed between games.
        self._games, self._last_game = 0, (math.nan, math.nan, math.nan, math.nan)
        self._closed = False
        self.picture = (ProgressPicture(run_dir, picture_every_seconds, solved_at, title)
                        if picture_every_seconds else None)

    def log_game(self, step: int, game: int, score: float, running_reward: float,
                 epsilon: float, loss: float, mean_q: float) -> None:
        """Records one finished game.

        Args:
            step: agent steps taken so far.
            game: number of games finished so far, this one included.
            score: the game's raw score (all lives, rewards not clipped).
            running_reward: mean raw score of the last 100 games (fewer at first).
            epsilon: exploration rate at this step.
            loss: mean Huber loss of the updates since the previous game (NaN if none).
            mean_q: mean predicted Q(s, a) over those updates (NaN if none).
        """
        now = time.perf_counter()
        steps_per_second = self._sample(now, step)
        elapsed = now - self._start_time
        self._games, self._last_game = game, (score, running_reward, loss, mean_q)
        scalars = {"charts/score": score, "charts/running_reward": running_reward,
                   "charts/epsilon": epsilon, "losses/huber": loss, "losses/mean_q": mean_q,
                   "charts/steps_per_second": steps_per_second}
        row = [step, game, _round(score), _round(running_reward), _round(epsilon),
               _round(loss), _round(mean_q), _round(steps_per_second, 1), _round(elapsed, 2)]
        self._write_row(self._progress, row)
        self._write_scalars(step, scalars)
        if self._on_game is not None:
            self._on_game(dict(zip(PROGRESS_FIELDS, row)))
        if game % self.print_every_games == 0:
            self._print(now, step, epsilon)

    def on_step(self, step: int, epsilon: float) -> None:
        """Called once per agent step: samples the rate, prints a line once a minute.

        Why: a long game (a Pong game lasts thousands of steps; an agent that learned
        to keep the ball alive plays for minutes) must not leave the console silent.
        Each call costs a clock read; the work happens at most once a second.

        Args:
            step: agent steps so far.
            epsilon: the exploration rate now.
        """
        now = time.perf_counter()
        if now < self._next_sample:
            return
        self._next_sample = now + RATE_SAMPLE_SECONDS
        self._sample(now, step)
        if now - self._last_print >= PRINT_AT_LEAST_EVERY_SECONDS:
            self._print(now, step, epsilon)

    def log_heldout_q(self, step: int, value: float) -> None:
        """Records one held-out Q: a row of ``heldout_q.csv`` and a TensorBoard point."""
        if self._heldout is not None:
            self._write_row(self._heldout, [step, _round(value)])
        self._write_scalars(step, {"charts/heldout_q": value})

    def flush_to_disk(self) -> bool:
        """Makes every CSV row written so far durable: flushed and ``fsync``-ed.

        Why: a checkpoint says the run got to its step; the rows of the games up to
        that step must then survive a power cut too, or the resumed run's CSV would
        have a gap. Call it before a checkpoint counts as saved.

        Returns:
            Whether the rows are on disk; after a failure (one warning) ``False``.
        """
        if self._closed:
            return True  # close made them durable
        try:
            for log in (self._progress, self._heldout):
                if log is not None:
                    log.sync()
            return True
        except OSError as error:
            self._warn(error)
            return False

    def close(self, draw_picture: bool = True) -> None:
        """Makes the CSV rows durable, closes the files and draws the picture once more.

        Args:
            draw_picture: whether to redraw ``progress.png`` a last time (a run
                stopped at once by a second Ctrl-C does not wait for it).
        """
        if self._closed:
            return
        if self.picture is not None:
            self.picture.stop()
        self.flush_to_disk()
        self._closed = True
        closers = [log.close for log in (self._progress, self._heldout) if log is not None]
        closers += [self._events.close] if self._events is not None else []
        for closer in closers:
            try:
                closer()
            except OSError:
                pass  # already warned about, or nothing left to lose
        if self.picture is not None and draw_picture:
            self.picture.redraw()

    def _sample(self, now: float, step: int) -> float:
        """Adds a point to the rate, restarting it when learning starts; returns the rate."""
        if not self._learning and step >= self.learn_from_step:
            self._learning = True
            self._rate.restart()  # the fast random fill must not count in the rate
        self._steps_per_second = self._rate.add(now, step)
        return self._steps_per_second

    def _print(self, now: float, step: int, epsilon: float) -> None:
        self._last_print = now
        score, running_reward, loss, mean_q = self._last_game
        print(progress_line(step, self.total_steps, self._games, score, running_reward,
                            epsilon, loss, mean_q, self._steps_per_second,
                            now - self._start_time, self.learn_from_step), flush=True)

    def _write_row(self, log: "_CsvFile", row: list) -> None:
        try:
            log.write(row)
        except OSError as error:
            self._warn(error)

    def _write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        """Writes one TensorBoard event; after a failed write, writes no more.

        Any exception counts, not only ``OSError``: an event writer may report a full
        disk as a TensorFlow error. A failed write may leave half a record, past
        which TensorBoard reads nothing, so the event file is given up.
        """
        if self._events is None:
            return
        try:
            self._events.add_event(event_pb2.Event(
                wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                    for tag, value in scalars.items() if math.isfinite(value)])))
            self._events.flush()
        except Exception as error:  # noqa: BLE001 - logging must never stop training
            self._warn(error)
            events, self._events = self._events, None
            try:
                events.close()
            except Exception:  # noqa: BLE001 - already warned about
                pass

    def _warn(self, error: BaseException) -> None:
        if not self._warned:
            print(f"warning: could not write the log in {self.run_dir} "
                  f"({first_line(error)}); training goes on", file=sys.stderr, flush=True)
            self._warned = True


class ProgressPicture:
    """Redraws ``<run-dir>/progress.png`` from the run's CSV files, on a timer, off the loop.

    Why a thread: drawing the curves of a long run takes a good fraction of a second,
    which the training loop must not wait for. A daemon thread wakes every
    ``every_seconds``, reads the CSV files (flushed after every row) and writes the
    picture atomically (``common.plot.write_progress_png``). A failure (an unwritable
    file, a broken CSV) prints one warning and training goes on.

    Args:
        run_dir: the run folder.
        every_seconds: seconds between two redraws.
        solved_at: the running reward that solves the game, as a dashed line.
        title: the picture's title.
    """

    def __init__(self, run_dir: str, every_seconds: float, solved_at: float | None = None,
                 title: str | None = None):
        self.run_dir, self.every_seconds = run_dir, every_seconds
        self.path = os.path.join(run_dir, "progress.png")
        self.solved_at, self.title = solved_at, title
        self._warned = False
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._redraw_until_stopped,
                                        name="progress-picture", daemon=True)
        self._thread.start()

    def redraw(self) -> bool:
        """Draws the picture now; returns whether it was written (a failure warns once)."""
        try:
            # write_progress_png: written in, from common/plot.py.

            write_progress_png(self.run_dir, self.path, solved_at=self.solved_at,
                               title=self.title)
            return True
        except Exception as error:  # noqa: BLE001 - a picture must never stop training
            if not self._warned:
                print(f"warning: could not draw {self.path} ({first_line(error)}); "
                      f"training goes on", file=sys.stderr, flush=True)
                self._warned = True
            return False

    def stop(self) -> None:
        """Stops the timer, waiting for a redraw in progress to finish."""
        self._stopping.set()
        self._thread.join()

    def _redraw_until_stopped(self) -> None:
        while not self._stopping.wait(self.every_seconds):
            self.redraw()


class HeldOutQ:
    """The paper's second learning curve: mean max_a Q(s, a) over a fixed set of states.

    Why: the score of single games is noisy; Mnih et al. (2015, Fig. 2) also follow
    the average of the highest predicted action value over a fixed set of 500
    states, gathered by random play before training, which rises smoothly while the
    agent learns. Here the set is drawn once, when learning starts, from the
    uniformly random play that filled the replay memory, and saved in the run folder
    as ``heldout_states.npz``, so a resumed run goes on measuring the same states.
    It is measured right away (the untrained network's values), then every
    ``every`` agent steps, and once more at the last step when the run closes; each
    measurement becomes a row of ``heldout_q.csv`` and the TensorBoard scalar
    ``charts/heldout_q``. A run resumed from a checkpoint older than this
    measurement has no set: it draws one when its learning restarts (from its own
    play, not random play) and says so.

    Args:
        run_dir: the run folder.
        logger: the run's ``RunLogger``, which writes the measurements.
        size: how many states the set holds (the paper: 500).
        every: agent steps between two measurements.
        seed: seed of the draw; it has its own generator, so drawing the set does
            not change the replay memory's minibatches.
        resume_step: the checkpoint's step when the run resumes (``None``: a new run).
        draw_at_step: the set is drawn at the first step from this one on at which the
            memory holds ``size`` transitions: the step at which learning starts.
    """

    def __init__(self, run_dir: str, logger: RunLogger, size: int = 500, every: int = 10_000,
                 seed: int = 0, resume_step: int | None = None, draw_at_step: int = 0):
        self.states_path = os.path.join(run_dir, "heldout_states.npz")
        self.size, self.every, self.draw_at_step = size, every, draw_at_step
        self._logger = logger
        self._rng = np.random.default_rng(seed)
        self.states: np.ndarray | None = None
        self._step, self._policy = 0, None
        self._measured_step: int | None = None
        if os.path.exists(self.states_path):
            try:
                with np.load(self.states_path, allow_pickle=False) as archive:
                    self.states = archive["states"]
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
                aside = set_aside(self.states_path)
                print(f"warning: the held-out states {self.states_path} cannot be read "
                      f"({first_line(error)}); they are kept as they were in {aside}, and a "
                      f"new set is drawn", file=sys.stderr, flush=True)
        elif resume_step is not None:
            when = ("now, from the restored replay memory" if draw_at_step <= resume_step
                    else f"at step {draw_at_step:,}, when the memory has refilled")
            print(f"This run was saved before it measured a held-out Q: its {size} "
                  f"held-out states are drawn {when} (from the agent's own play, not "
                  f"random play as in a new run).", flush=True)

    def measure_when_due(self, step: int, memory, greedy_actions) -> None:
        """Called once per agent step: draws the set when learning starts, measures every ``every``.

        Args:
            step: agent steps so far.
            memory: the replay memory; the set is drawn from it.
            greedy_actions: the policy of ``common.dqn.make_greedy_policy``, which also
                returns the action values.
        """
        self._step, self._policy = step, greedy_actions
        if self.states is None:
            if step >= self.draw_at_step and len(memory) >= self.size:
                self.states = memory.sample(self.size, rng=self._rng).observations
                self._save_states()
                self._measure(step)  # the untrained (or resumed) network's values
        elif step % self.every == 0:
            self._measure(step)

    def close(self) -> None:
        """Measures once more at the last step, so that even a short run ends with a point."""
        if self.states is not None and self._policy is not None \
                and self._measured_step != self._step:
            self._measure(self._step)

    def _measure(self, step: int) -> None:
        _, q_values = self._policy(self.states)
        self._logger.log_heldout_q(step, float(np.mean(np.max(q_values.numpy(), axis=1))))
        self._measured_step = step

    def _save_states(self) -> None:
        try:
            write_atomically(self.states_path,
                             lambda temporary: np.savez_compressed(temporary, states=self.states))
        except OSError as error:
            self._logger._warn(error)


class _CsvFile:
    """A CSV log kept open for appending, one flushed row at a time.

    On a resume the file is read back first (``common.files.read_table``): its rows up
    to the checkpoint's step are kept, the later ones (games to be played again) are
    dropped. A file that is damaged is not cut down: it is set aside intact under
    another name, with one warning, and its readable rows go on in a new file.

    Args:
        path: the file.
        fields: its header.
        resume_step: keep the existing rows up to this step (``None``: start afresh
            with the header alone).
        pause_name: a ``common.fault_points`` name to pause at while a row is written.
    """

    def __init__(self, path: str, fields: Sequence[str], resume_step: int | None,
                 pause_name: str | None = None):
        self._pause_name = pause_name
        kept: list[list[str]] = []
        if resume_step is not None and os.path.exists(path):
            rows, problem = read_table(path, fields)
            kept = [row for row in rows if int(row[0]) <= resume_step]
            if problem:
                aside = set_aside(path)
                print(f"warning: {path} is damaged ({problem}); it is kept as it was in "
                      f"{aside}, and its {len(kept):,} readable rows up to step "
                      f"{resume_step:,} go on in a new {os.path.basename(path)}",
                      file=sys.stderr, flush=True)
        table = io.StringIO()
        csv.writer(table).writerows([list(fields), *kept])
        write_atomically(path, table.getvalue())
        self._file = open(path, "a", newline="")
        self._csv = csv.writer(self._file)

    def write(self, row: list) -> None:
        """Appends a row and hands it to the operating system."""
        self._csv.writerow(row)
        if self._pause_name:
            pause_point(self._pause_name)
        self._file.flush()

    def sync(self) -> None:
        """Makes the rows written so far durable."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


class _EventFile:
    """A TensorBoard event file, written with plain Python file calls on this thread.

    Why not TensorBoard's ``EventFileWriter``: it writes through TensorFlow's file
    system, partly on a worker thread, so a full disk raises a TensorFlow error
    (``tf.errors.ResourceExhaustedError`` with TensorFlow 2.21), not an ``OSError``,
    and a write that failed on the worker surfaces only at a later call. Here a
    failed write raises ``OSError`` at once, in the caller.
    The file has the format and the name TensorBoard looks for
    (``events.out.tfevents.<time>.<host>.<pid>.<n>``); each record's checksum is
    computed in Python, once per game.

    Args:
        run_dir: the folder the file is created in.
    """

    _numbers = itertools.count()  # tells apart two files of one process in one second

    def __init__(self, run_dir: str):
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.{next(self._numbers)}")
        self.path = os.path.join(run_dir, name)
        self._file = open(self.path, "ab")
        self._records = RecordWriter(self._file)
        self.add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        self.flush()

    def add_event(self, event: event_pb2.Event) -> None:
        """Appends one event (written to the operating system by ``flush``)."""
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        """Hands the buffered events to the operating system."""
        self._file.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        self._file.close()


def _round(value: float, digits: int = 5) -> float:
    return round(float(value), digits) if math.isfinite(value) else value


def _show(value: float, spec: str, width: int) -> str:
    """A number for the progress line, or ``-`` where there is none yet (NaN)."""
    return format(value, f">{width}{spec}") if math.isfinite(value) else "-".rjust(width)


def plural(number: int, noun: str) -> str:
    """``1 game``, ``2 games``, ``1,000 games``."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _every_nth(number: int) -> str:
    """``every``, ``every 2nd``, ``every 100th``..."""
    if number == 1:
        return "every"
    suffix = "th" if number % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(
        number % 10, "th")
    return f"every {number:,}{suffix}"


"""
### common/replay.py

Replay memory that stores each Atari frame once.

DQN learns from minibatches drawn uniformly from the agent's recent experience
(Mnih et al., 2015: the last 1,000,000 transitions, minibatches of 32). A transition is
(observation, action, reward, next_observation, terminated), and each observation is a
stack of the last 4 preprocessed 84x84 frames. Storing both stacks of every transition
would take 56,448 bytes per transition, 56 GB for a million. But consecutive
observations share 3 of their 4 frames, so this memory stores every frame once, in a
ring of slots, and rebuilds the stacks when it samples: 7,064 bytes per transition,
about 7.06 GB for a million.

How the ring works:

1. Slot ``i`` holds the newest frame of some observation ``s_i``, together with the
   action taken in ``s_i``, the reward that followed, whether the episode terminated,
   a "valid" flag (the next observation's newest frame is in slot ``i + 1``, so slot
   ``i`` holds a complete transition) and an "episode start" flag.
2. The first ``add`` of an episode first writes the newest frame of its observation into
   a fresh slot marked as an episode start. Every ``add`` then writes the newest frame of
   ``next_observation`` into the following slot. An episode of T steps uses T + 1 slots.
3. When an episode ends, terminated or truncated, its final frame stays in the ring, so
   a truncated transition still bootstraps from the last observation the environment
   gave (see ``common/atari.py`` for how stale that can be). The next ``add`` starts the
   new episode in a fresh slot.
4. ``sample`` rebuilds the stack of slot ``i`` from slots ``i - 3 .. i``. Positions that
   fall before the episode's start slot repeat the start frame, which is exactly what
   gymnasium's ``FrameStackObservation`` gave the agent after a reset, so frames of two
   episodes are never mixed.
5. Once the ring has wrapped, the oldest transitions whose history would reach into
   slots already overwritten by newer frames are not sampled.
6. With ``n_step`` N > 1 (an option beyond the paper), ``sample`` reads each
   transition's window forward from its slot: the rewards of up to N transitions,
   stopping after a terminated one or at the end of the episode, and the stack of the
   slot after the window's last transition as the state to bootstrap from. Nothing
   more is stored per transition. While an episode goes on, its newest N - 1
   transitions are not sampled: their windows are not complete yet.

The memory assumes one sequential stream of experience: the ``observation`` passed to
``add`` is the ``next_observation`` of the previous call, unless that call ended the
episode. Its newest frame is only read at the start of an episode.
"""

# Actions are stored as uint8: Atari games have at most 18 actions.
_ACTION_DTYPE = np.uint8
_MAX_ACTIONS = np.iinfo(_ACTION_DTYPE).max + 1
# Bytes per slot besides the frame: action (1), reward (4), terminated, valid and
# episode-start flags (1 each).
_SLOT_OVERHEAD_BYTES = 1 + 4 + 1 + 1 + 1
# Rejection sampling gives up after this many rounds of redrawing and looks at every
# slot instead; that only happens in a tiny memory that is mostly unsampleable.
_MAX_DRAW_ROUNDS = 16
_UINT64_MASK = (1 << 64) - 1


class Batch(NamedTuple):
    """A minibatch of transitions, as arrays whose first axis is the batch.

    Attributes:
        observations: uint8, shape ``(B, *frame_shape, history_length)``, channels-last
            with the newest frame last.
        actions: int32, shape ``(B,)``.
        rewards: float32, shape ``(B,)``, the rewards exactly as they were added; with
            ``n_step`` N > 1, the discounted sum ``r_t + discount * r_{t+1} + ...`` of the
            ``m <= N`` rewards of each transition's window.
        next_observations: uint8, same shape as ``observations``: the observation
            after the action, or with ``n_step`` N > 1 the one ``m`` steps later.
        terminated: float32, shape ``(B,)``, 1.0 where the episode terminated after the
            action (after the window's last action with ``n_step`` > 1), so no
            bootstrapping; 0.0 otherwise, including truncated episodes.
        bootstrap_steps: float32, shape ``(B,)``, ``m``: how many steps separate
            ``next_observations`` from ``observations`` (always 1 unless ``n_step``
            > 1), so the target discounts its value by ``gamma ** m``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminated: np.ndarray
    bootstrap_steps: np.ndarray


class ReplayMemory:
    """A ring buffer of transitions that stores every frame once.

    Why: keeping whole stacked observations costs four (or eight) times the memory;
    a million transitions of single frames fit in about 7.06 GB of RAM.

    Args:
        capacity: Number of slots, which is about the number of transitions kept; an
            episode of T steps uses T + 1 slots.
        frame_shape: Shape of one preprocessed frame, ``(84, 84)`` for DQN.
        history_length: Number of frames stacked in an observation (4 in DQN).
        seed: Seed of the generator that draws minibatches; ``None`` seeds it from
            the operating system.
        n_step: Number of rewards a sampled transition sums before its target
            bootstraps (1 in DQN; 3 in Rainbow, Hessel et al., 2018).
        discount: Discount of each further reward in an ``n_step`` sum; needed when
            ``n_step`` > 1, and it must be the ``gamma`` of the train step.

    Raises:
        ValueError: If an argument is out of range.
    """

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...] = (84, 84),
        history_length: int = 4,
        seed: int | None = None,
        n_step: int = 1,
        discount: float | None = None,
    ) -> None:
        if not _is_int(history_length) or history_length < 1:
            raise ValueError(f"history_length must be a positive integer, got {history_length!r}.")
        if not _is_int(capacity) or capacity <= history_length:
            raise ValueError(
                f"capacity must be an integer larger than history_length={history_length}, "
                f"got {capacity!r}; DQN uses 1_000_000."
            )
        if not _is_int(n_step) or not 1 <= n_step < capacity:
            raise ValueError(f"n_step must be a whole number from 1 to capacity - 1, "
                             f"got {n_step!r}.")
        if n_step > 1 and (discount is None or not 0.0 <= discount <= 1.0):
            raise ValueError(f"an n_step of {n_step} needs a discount in [0, 1], "
                             f"got {discount!r}.")
        frame_shape = tuple(frame_shape)
        if not frame_shape or not all(_is_int(size) and size > 0 for size in frame_shape):
            raise ValueError(
                f"frame_shape must be a tuple of positive integers, got {frame_shape!r}."
            )

        self._capacity = int(capacity)
        self._frame_shape = tuple(int(size) for size in frame_shape)
        self._history_length = int(history_length)
        self._observation_shape = (*self._frame_shape, self._history_length)
        # Offsets of the slots of an observation's frames, relative to the slot i of its
        # newest frame: i - (history_length - 1) .. i.
        self._offsets = np.arange(-(self._history_length - 1), 1)
        self._n_step = int(n_step)
        # discount ** k, the weight of the k-th reward of an n-step window.
        self._reward_weights = np.float32(discount or 0.0) ** np.arange(self._n_step,
                                                                        dtype=np.float32)

        self._frames = np.zeros((self._capacity, *self._frame_shape), dtype=np.uint8)
        self._actions = np.zeros(self._capacity, dtype=_ACTION_DTYPE)
        self._rewards = np.zeros(self._capacity, dtype=np.float32)
        self._terminated = np.zeros(self._capacity, dtype=bool)
        self._valid = np.zeros(self._capacity, dtype=bool)
        self._episode_start = np.zeros(self._capacity, dtype=bool)

        self._cursor = 0  # the slot the next frame is written to
        self._size = 0  # number of slots written so far, at most capacity
        self._num_valid = 0  # number of slots holding a complete transition
        self._episode_open = False  # whether the next add continues an episode
        self._rng = np.random.Generator(np.random.PCG64(seed))

    @staticmethod
    def bytes_needed(capacity: int, frame_shape: tuple[int, ...] = (84, 84)) -> int:
        """Returns how many bytes a memory of this size allocates.

        Why: a million-transition memory needs about 7 GB; checking that before
        allocating gives a clear message instead of a crash hours into a run.

        Args:
            capacity: Number of slots.
            frame_shape: Shape of one frame.

        Returns:
            The bytes of all the arrays, equal to ``nbytes`` after construction.
        """
        return int(capacity) * (math.prod(frame_shape) + _SLOT_OVERHEAD_BYTES)

    @property
    def nbytes(self) -> int:
        """Bytes allocated by the memory's arrays."""
        return sum(array.nbytes for array in self._arrays().values())

    @property
    def capacity(self) -> int:
        """Number of slots in the ring."""
        return self._capacity

    def __len__(self) -> int:
        """Returns the number of complete transitions stored.

        Why: the training loop waits until the memory holds enough transitions before
        it starts learning (replay start size 50,000 in DQN).

        Returns:
            The number of stored transitions. Once the ring has wrapped, up to
            ``history_length - 1`` of them, the oldest, cannot be sampled because
            their history has been overwritten; with ``n_step`` N > 1, neither can
            the newest N - 1 of an episode that goes on.
        """
        return self._num_valid

    def add(
        self,
        observation: np.ndarray,
        action: int,
        reward: float,
        next_observation: np.ndarray,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Stores one transition.

        Why: only the newest frame of ``next_observation`` is new, so that is what
        is written; at the start of an episode the newest frame of ``observation``
        is written first.

        Args:
            observation: uint8 stack of shape ``(*frame_shape, history_length)``,
                newest frame last.
            action: Index of the action taken, in ``[0, 256)``.
            reward: Reward that followed, stored as float32 exactly as given (the
                caller clips it).
            next_observation: uint8 stack of the same shape as ``observation``.
            terminated: Whether the episode ended in a terminal state (no bootstrap).
            truncated: Whether the episode was cut short, for example by a time limit.
                The next transition then starts a new episode, but this one still
                bootstraps from ``next_observation``.

        Raises:
            ValueError: If an observation has the wrong shape or the action is out of
                range.
        """
        observation = np.asarray(observation)
        next_observation = np.asarray(next_observation)
        expected = self._observation_shape
        if observation.shape != expected or next_observation.shape != expected:
            raise ValueError(
                f"observations must have shape {expected} (frames stacked on the "
                f"last axis), got {observation.shape} and {next_observation.shape}; "
                "move the stack axis last, e.g. np.moveaxis(observation, 0, -1)."
            )
        if not 0 <= action < _MAX_ACTIONS:
            raise ValueError(f"action must be in [0, {_MAX_ACTIONS}), got {action}.")

        if not self._episode_open:
            self._write_frame(observation[..., -1], episode_start=True)
        slot = self._cursor - 1 if self._cursor > 0 else self._capacity - 1
        self._actions[slot] = action
        self._rewards[slot] = reward
        self._terminated[slot] = terminated
        self._write_frame(next_observation[..., -1], episode_start=False)
        self._valid[slot] = True
        self._num_valid += 1
        self._episode_open = not (terminated or truncated)

    def end_episode(self) -> None:
        """Makes the next ``add`` start a new episode, as if the last one had been cut off.

        Why: a resumed run restores the memory but not the emulator, so its first
        game is not the continuation of the last stored transition. Without this
        call, the new game's first transition would be stacked on the old game's
        frames. The last stored transition keeps its next frame and bootstraps from
        it, like a truncated one.
        """
        self._episode_open = False

    def _write_frame(self, frame: np.ndarray, episode_start: bool) -> None:
        """Writes a frame into the slot at the cursor and advances the cursor."""
        slot = self._cursor
        # The slot's old transition, if any, loses its frame.
        if self._valid[slot]:
            self._valid[slot] = False
            self._num_valid -= 1
        self._frames[slot] = frame
        self._episode_start[slot] = episode_start
        self._cursor = slot + 1 if slot + 1 < self._capacity else 0
        if self._size < self._capacity:
            self._size += 1

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> Batch:
        """Draws a minibatch of transitions uniformly, with replacement.

        Why: uniform sampling from a large memory breaks the correlation between
        consecutive transitions (Mnih et al., 2015).

        Args:
            batch_size: Number of transitions, 32 in DQN.
            rng: Generator to draw with; ``None`` uses the memory's own, whose state
                is saved with it. A draw that must not change the minibatches to come
                (the held-out states of ``common.logger.HeldOutQ``) passes its own.

        Returns:
            A ``Batch`` of contiguous arrays; the observation stacks are rebuilt from
            the stored frames exactly as the environment gave them.

        Raises:
            ValueError: If ``batch_size`` is not positive or no transition can be
                sampled yet.
        """
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        if self._num_valid == 0:
            raise ValueError("cannot sample from an empty replay memory; add transitions first.")
        transitions = self._draw_transitions(batch_size, self._rng if rng is None else rng)
        history = self._history_slots(transitions)
        if self._n_step == 1:
            observations, next_observations = self._gather_stacks(history, (transitions + 1)
                                                                  % self._capacity)
            return Batch(
                observations=observations,
                actions=self._actions[transitions].astype(np.int32),
                rewards=self._rewards[transitions],
                next_observations=next_observations,
                terminated=self._terminated[transitions].astype(np.float32),
                bootstrap_steps=np.ones(len(transitions), dtype=np.float32),
            )
        steps, returns, terminated, bootstrap_slots = self._n_step_windows(transitions)
        return Batch(
            observations=self._gather_stack(history),
            actions=self._actions[transitions].astype(np.int32),
            rewards=returns,
            next_observations=self._gather_stack(self._history_slots(bootstrap_slots)),
            terminated=terminated.astype(np.float32),
            bootstrap_steps=steps.astype(np.float32),
        )

    def _draw_transitions(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Draws the slots of ``batch_size`` sampleable transitions, uniformly.

        Candidates are drawn uniformly from the written slots and rejected when they
        are not sampleable, which keeps the draw uniform over sampleable transitions.
        """
        accepted = []
        needed = batch_size
        for _ in range(_MAX_DRAW_ROUNDS):
            # A few extra candidates make a second round rare.
            candidates = rng.integers(0, self._size, size=needed + 8)
            candidates = candidates[self._valid[candidates]]
            transitions = candidates[self._sampleable(candidates)][:needed]
            accepted.append(transitions)
            needed -= len(transitions)
            if needed == 0:
                return np.concatenate(accepted) if len(accepted) > 1 else transitions
        # Almost every slot is unsampleable: choose among all sampleable ones instead.
        candidates = np.flatnonzero(self._valid[: self._size])
        transitions = candidates[self._sampleable(candidates)]
        if len(transitions) == 0:
            raise ValueError(
                "no transition can be sampled yet: each needs its next frame, an unbroken "
                "history and, with n_step > 1, a complete window; add more transitions first."
            )
        return np.concatenate(accepted + [transitions[rng.integers(0, len(transitions),
                                                                   size=needed)]])

    def _sampleable(self, transitions: np.ndarray) -> np.ndarray:
        """Which of these slots of valid transitions can be sampled, as a bool array."""
        sampleable = np.ones(len(transitions), dtype=bool)
        if self._size == self._capacity:
            # The ring has wrapped: slots age from the cursor (oldest) round to the slot
            # before it (newest). A stack whose oldest frame is newer than its transition
            # has had its history overwritten.
            oldest = self._cursor
            oldest_frame_age = (self._history_slots(transitions)[:, 0] - oldest) % self._capacity
            sampleable &= oldest_frame_age <= (transitions - oldest) % self._capacity
        if self._n_step > 1 and self._episode_open:
            # A window that stops short at the newest frame of an episode that goes on
            # is not complete yet: its next transitions are still to come.
            steps, _, _, bootstrap_slots = self._n_step_windows(transitions)
            newest_frame = (self._cursor - 1) % self._capacity
            sampleable &= (bootstrap_slots != newest_frame) | (steps == self._n_step)
        return sampleable

    def _n_step_windows(self, transitions: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Reads the n-step window that starts at each of these transition slots.

        A window holds the transition and those after it in its episode, up to
        ``n_step`` in all; it stops after a terminated transition, and at the end of
        an episode, terminated or truncated (the next slot then holds the episode's
        final frame, not a transition).

        Returns:
            ``(steps, returns, terminated, bootstrap_slots)``, each of shape ``(n,)``:
            the number ``m`` of transitions in the window, the discounted sum of their
            rewards, whether the last one terminated, and the slot of the newest frame
            of the state the target bootstraps from (the one after the window).
        """
        window = (transitions[:, None] + np.arange(self._n_step)) % self._capacity
        terminated = self._terminated[window]
        # From its k-th transition the window goes on to the next while the episode
        # does: no termination, and a transition (not a final frame) in the next slot.
        goes_on = ~terminated[:, :-1] & self._valid[window[:, 1:]]
        in_window = np.ones(window.shape, dtype=bool)
        in_window[:, 1:] = np.logical_and.accumulate(goes_on, axis=1)
        steps = in_window.sum(axis=1)
        returns = np.where(in_window, self._rewards[window], 0.0) @ self._reward_weights
        last = window[np.arange(len(window)), steps - 1]
        return steps, returns.astype(np.float32), self._terminated[last], \
            (last + 1) % self._capacity

    def _history_slots(self, newest: np.ndarray) -> np.ndarray:
        """Returns the slots of the frames of the stacks whose newest frames are these.

        Args:
            newest: Slots of the stacks' newest frames, shape ``(n,)``.

        Returns:
            int array of shape ``(n, history_length)``, oldest frame first.
        """
        slots = (newest[:, None] + self._offsets) % self._capacity
        starts = self._episode_start[slots]
        # Walk from the newest frame back to the oldest: a frame slot before an
        # episode's start slot repeats the slot after it, so the stack pads with the
        # first frame of the episode, as FrameStackObservation does.
        for column in range(self._history_length - 2, -1, -1):
            before_start = starts[:, column + 1]
            slots[:, column] = np.where(before_start, slots[:, column + 1], slots[:, column])
            # Every slot further back is before the start too.
            starts[:, column] |= before_start
        return slots

    def _gather_stack(self, slots: np.ndarray) -> np.ndarray:
        """Builds a contiguous channels-last uint8 stack from ``_history_slots``."""
        stack = np.empty((len(slots), *self._observation_shape), dtype=np.uint8)
        for column in range(self._history_length):
            stack[..., column] = self._frames[slots[:, column]]
        return stack

    def _gather_stacks(self, slots: np.ndarray, next_frames: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """Rebuilds the observation stacks and the stacks one frame later.

        Args:
            slots: Output of ``_history_slots``, shape ``(B, history_length)``.
            next_frames: Slots of the next observations' newest frames, shape ``(B,)``.

        Returns:
            Two contiguous uint8 arrays of shape ``(B, *frame_shape, history_length)``.
        """
        history = self._history_length
        # One allocation for both stacks; each half is contiguous.
        stacks = np.empty((2, len(slots), *self._observation_shape), dtype=np.uint8)
        observations, next_observations = stacks[0], stacks[1]
        for column in range(history):
            observations[..., column] = self._frames[slots[:, column]]
        if history in (2, 4, 8):
            # The next stack is the observation's stack moved one frame along. Viewing
            # each pixel's frames as one little-endian integer, shifting it right by
            # one byte drops the oldest frame; much faster than a strided copy.
            word = np.dtype(f"<u{history}")
            np.right_shift(observations.view(word), 8, out=next_observations.view(word))
        else:
            next_observations[..., :-1] = observations[..., 1:]
        next_observations[..., -1] = self._frames[next_frames]
        return observations, next_observations

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "frames": self._frames,
            "actions": self._actions,
            "rewards": self._rewards,
            "terminated": self._terminated,
            "valid": self._valid,
            "episode_start": self._episode_start,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """Returns the memory's full state as plain NumPy arrays.

        Why: a run that resumes from a checkpoint should see the same experience and
        draw the same minibatches. Every value is an array (scalars as 0-d arrays),
        so ``np.savez(path, **memory.state_dict())`` needs no pickle.

        Returns:
            A dict of arrays. The large arrays are the memory's own buffers, not
            copies (a copy of 7 GB would double the memory); save them before the
            next ``add``.
        """
        rng_state = self._rng.bit_generator.state
        pcg_state = rng_state["state"]
        state = dict(self._arrays())
        state.update(
            history_length=np.array(self._history_length, dtype=np.int64),
            cursor=np.array(self._cursor, dtype=np.int64),
            size=np.array(self._size, dtype=np.int64),
            num_valid=np.array(self._num_valid, dtype=np.int64),
            episode_open=np.array(self._episode_open),
            # PCG64's 128-bit state and increment, as high and low 64-bit words.
            rng_pcg64=np.array(
                [
                    pcg_state["state"] >> 64,
                    pcg_state["state"] & _UINT64_MASK,
                    pcg_state["inc"] >> 64,
                    pcg_state["inc"] & _UINT64_MASK,
                ],
                dtype=np.uint64,
            ),
            rng_has_uint32=np.array(rng_state["has_uint32"], dtype=np.int64),
            rng_uinteger=np.array(rng_state["uinteger"], dtype=np.uint64),
        )
        return state

    def load_state_dict(self, state) -> None:
        """Restores a state returned by ``state_dict``, for example from ``np.load``.

        Why: resuming a run with a refilled or empty memory would change what the
        agent learns from.

        Args:
            state: The arrays of ``state_dict``, as a dict or as the open archive of
                ``np.load(path)`` of an ``.npz`` file written with ``np.savez``. From
                an archive, each array is read in pieces straight into this memory's
                own buffers, so restoring needs no second copy of the frames in RAM.
                The memory must have been constructed with the same capacity, frame
                shape and history length.

        Raises:
            ValueError: If a key is missing, the shapes do not match this memory, or
                the archive is damaged. The memory is then left empty (it refills).
        """
        arrays = self._arrays()
        scalars = ["history_length", "cursor", "size", "num_valid", "episode_open",
                   "rng_pcg64", "rng_has_uint32", "rng_uinteger"]
        keys = state.files if isinstance(state, np.lib.npyio.NpzFile) else list(state)
        missing = [key for key in [*arrays, *scalars] if key not in keys]
        if missing:
            raise ValueError(f"state is missing {missing}; pass the dict returned by state_dict().")
        try:
            frames_shape = _saved_shape(state, "frames")
            saved_history = int(state["history_length"])
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(f"the saved replay memory is damaged ({error})") from None
        if frames_shape != self._frames.shape or saved_history != self._history_length:
            raise ValueError(
                f"state holds frames of shape {frames_shape} with history_length "
                f"{saved_history}, but this memory has {self._frames.shape} and "
                f"{self._history_length}; construct it with the saved capacity and shapes."
            )
        try:
            for key, array in arrays.items():
                _copy_saved_array(state, key, array)
            cursor, size, num_valid = (int(state[key]) for key in ("cursor", "size", "num_valid"))
            episode_open = bool(state["episode_open"])
            words = [int(word) for word in state["rng_pcg64"]]
            has_uint32, uinteger = int(state["rng_has_uint32"]), int(state["rng_uinteger"])
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            self._empty()
            raise ValueError(f"the saved replay memory is damaged ({error})") from None
        self._cursor, self._size, self._num_valid = cursor, size, num_valid
        self._episode_open = episode_open
        state_high, state_low, inc_high, inc_low = words
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": (state_high << 64) | state_low, "inc": (inc_high << 64) | inc_low},
            "has_uint32": has_uint32,
            "uinteger": uinteger,
        }

    def _empty(self) -> None:
        """Forgets every stored transition (the buffers stay allocated)."""
        self._valid[:] = False
        self._episode_start[:] = False
        self._cursor = self._size = self._num_valid = 0
        self._episode_open = False


_READ_CHUNK_BYTES = 64 * 2**20
"""``load_state_dict`` reads saved frames in pieces of this size."""


def saved_capacity(state) -> int:
    """The capacity of a saved memory (a ``state_dict`` or its open ``.npz`` archive)."""
    return _saved_shape(state, "frames")[0]


def _saved_shape(state, key: str) -> tuple[int, ...]:
    """The shape of a saved array, read from its header only when it is in an archive."""
    if not isinstance(state, np.lib.npyio.NpzFile):
        return np.shape(state[key])
    with state.zip.open(key + ".npy") as member:
        shape, _, _ = _read_npy_header(member)
    return shape


def _read_npy_header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    return np.lib.format.read_array_header_2_0(member)


def _copy_saved_array(state, key: str, out: np.ndarray) -> None:
    """Copies a saved array into ``out``; from an archive, in pieces, without a full copy."""
    if not isinstance(state, np.lib.npyio.NpzFile):
        np.copyto(out, np.asarray(state[key]).reshape(out.shape), casting="same_kind")
        return
    with state.zip.open(key + ".npy") as member:
        shape, fortran_order, dtype = _read_npy_header(member)
        if int(np.prod(shape)) != out.size or dtype != out.dtype or fortran_order:
            raise ValueError(f"{key} is saved as {dtype} {shape}, expected {out.dtype} {out.shape}")
        buffer = memoryview(out.reshape(-1).view(np.uint8))
        position = 0
        while position < len(buffer):
            read = member.readinto(buffer[position:position + _READ_CHUNK_BYTES])
            if not read:
                raise ValueError(f"{key} is cut short at byte {position:,} of {len(buffer):,}")
            position += read


def _is_int(value: object) -> bool:
    """Returns whether ``value`` is an integer (and not a bool)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


"""
### common/run.py

A training run's bookkeeping, so that the scripts' loop shows only the algorithm.

A script's ``train()`` builds the environment, the networks and the memory, and
runs the loop: act, store, learn, sync, log, stop. Everything else a long run needs
lives here:

1. ``Run(config)`` opens the run folder before any work: it takes the folder's lock
   (a second process on the same folder is refused), a resume needs a checkpoint of
   the same game, a new run must not overwrite an old one, and the replay memory
   must fit in the free RAM. A resume takes the settings the run was saved with:
   see ``settings_for_resume`` for which flags may change on ``--resume``.
2. ``Run.start_or_restore`` either starts afresh (the target network equal to the
   online one) or brings back a saved run: networks, optimizer state, the
   ``LoopState`` (counters, recent scores, exploration random state) and, if it was
   saved, the replay memory. It also opens the logs.
3. ``Run.save`` writes a checkpoint; ``Run.finish`` writes the last one, saves
   ``model.keras`` and says how the run ended.
"""

OVERRIDABLE_ON_RESUME = ("total_steps", "solved_at", "learning_rate", "max_gradient_norm",
                         "video_every", "video_dir", "log_every_games", "checkpoint_every",
                         "overlap_updates", "save_replay")
"""Settings a resumed run may change: they change how long it runs, what it records,
or how large its steps are, not what it learns from or the network it learns."""

NOT_RUN_SETTINGS = ("run_dir", "resume", "evaluate", "episodes", "eval_epsilon", "plot")
"""Fields that say what to do now, not how the run learns; they are never saved."""

RUNNING_REWARD_GAMES = 100
"""Games in the running reward's window (the keras-io example's "solved" rule)."""


@dataclasses.dataclass
class LoopState:
    """Where the training loop stands: all of it that a checkpoint must carry.

    Attributes:
        step: agent steps taken so far.
        games: whole games (all lives) finished so far.
        recent_scores: raw scores of the last 100 games.
        rng: the exploration random-number generator.
    """

    step: int = 0
    games: int = 0
    recent_scores: collections.deque = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=RUNNING_REWARD_GAMES))
    rng: np.random.Generator = dataclasses.field(default_factory=np.random.default_rng)

    @property
    def running_reward(self) -> float:
        """Mean raw score of the last 100 games (of all so far while fewer); NaN before any."""
        return float(np.mean(self.recent_scores)) if self.recent_scores else math.nan

    def record_game(self, score: float) -> None:
        """Counts a finished game and its raw score."""
        self.games += 1
        self.recent_scores.append(score)

    def solved(self, threshold: float) -> bool:
        """Whether a full window of 100 games has a running reward of ``threshold`` or more."""
        return (len(self.recent_scores) == RUNNING_REWARD_GAMES
                and self.running_reward >= threshold)

    def to_dict(self) -> dict[str, Any]:
        """The state as JSON-serialisable values, for a checkpoint."""
        return {"step": self.step, "games": self.games,
                "recent_scores": list(self.recent_scores),
                "exploration_rng": self.rng.bit_generator.state}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> "LoopState":
        """Rebuilds a state from ``to_dict``'s values."""
        state = cls(step=int(saved["step"]), games=int(saved["games"]))
        state.recent_scores.extend(float(score) for score in saved["recent_scores"])
        state.rng.bit_generator.state = saved["exploration_rng"]
        return state


class Run:
    """One training run's folder: opened, started or restored, saved and finished.

    Args:
        config: the script's configuration; this reads ``run_dir``, ``resume``,
            ``env_id``, ``buffer_size``, ``seed``, ``save_replay`` and
            ``log_every_games``.
        on_game: called with each finished game's logged values (a dict), as the
            notebooks' live display needs.

    Raises:
        CheckpointError: for a resume without a checkpoint or of another game, or a
            new run in a folder that holds one.
        ConfigError: if the replay memory would not fit in the free memory.
    """

    def __init__(self, config: Any, on_game: Callable[[dict], None] | None = None):
        self.checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
        self.lock = RunLock(config.run_dir, config.resume)
        try:
            self._saved = open_run(self.checkpoint_dir, config.resume, config.env_id)
            if self._saved is not None:
                config = settings_for_resume(config, self._saved.get("settings"))
                check_config(config)  # the settings as resumed, not only as given
            if getattr(config, "deterministic", False) and config.overlap_updates:
                config = replace_settings(config, overlap_updates=False)  # updates in turn
            # Restoring a saved memory reads it in pieces, so one piece is all it adds.
            try:
                check_memory(ReplayMemory.bytes_needed(config.buffer_size) + 64 * 2**20,
                             ReplayMemory.bytes_needed(1))
            except ConfigError as error:
                if self._saved is None:
                    raise
                raise ConfigError(f"--resume: {str(error).split('; pass')[0]}; the run's "
                                  f"--buffer-size cannot change, so free some memory or "
                                  f"resume on a machine with more") from None
        except BaseException:
            self.lock.release()
            raise
        self.config = config
        self._on_game = on_game
        self.memory_restored = False
        self.logger: RunLogger | None = None
        self.heldout_q: HeldOutQ | None = None
        self._checkpointer: Checkpointer | None = None

    @property
    def games_played(self) -> int:
        """Games the run had finished when it was saved (0 for a new run)."""
        return int(self._saved["games"]) if self._saved else 0

    def start_or_restore(self, q_network: keras.Model, target_network: keras.Model,
                         optimizer: keras.optimizers.Optimizer, memory: ReplayMemory,
                         learner: BackgroundLearner, env: Any = None) -> LoopState:
        """Starts a new run, or restores the saved one into these objects.

        It prints the start banner (the game's actions are read from ``env``) and
        opens the logs.

        Returns:
            The loop state to go on from. ``memory_restored`` says whether the
            replay memory came back too; if not, it refills before learning restarts.

        Raises:
            CheckpointError: if the checkpoint cannot be read.
            ConfigError: if the saved memory has another size than ``--buffer-size``.
        """
        try:
            return self._start_or_restore(q_network, target_network, optimizer, memory,
                                          learner, env)
        except BaseException:  # a run that never started its loop leaves nothing open
            self.__exit__(*sys.exc_info())
            raise

    def _start_or_restore(self, q_network, target_network, optimizer, memory, learner,
                          env) -> LoopState:
        config = self.config
        self._checkpointer = Checkpointer(self.checkpoint_dir, q_network, target_network,
                                          optimizer)
        if self._saved is None:
            learner.sync_target()
            state = LoopState(rng=np.random.default_rng(config.seed))
        else:
            loop_state, replay_archive = self._checkpointer.restore()
            state = LoopState.from_dict(loop_state)
            # The optimizer's learning rate is saved with it; a --learning-rate given
            # with --resume replaces it (see settings_for_resume).
            optimizer.learning_rate.assign(config.learning_rate)
            if replay_archive is not None:
                with replay_archive:
                    self._restore_memory(memory, replay_archive)
            print(f"Resumed {config.run_dir} at step {state.step:,} after "
                  f"{plural(state.games, 'game')}; "
                  f"replay memory {'restored' if self.memory_restored else 'refills'} "
                  f"({len(memory):,} transitions).", flush=True)
        resume_step = state.step if self._saved else None
        self._write_settings()
        print(start_banner(config, action_names(env), memory.nbytes, resume_step, state.games,
                           self.memory_restored), flush=True)
        learn_from_step = first_learning_step(state.step, config.learning_starts,
                                              self.memory_restored)
        self.logger = RunLogger(config.run_dir, config.log_every_games, resume_step=resume_step,
                                on_game=self._on_game, total_steps=config.total_steps,
                                learn_from_step=learn_from_step,
                                picture_every_seconds=PICTURE_EVERY_SECONDS,
                                solved_at=config.solved_at, title=config.env_id)
        self.heldout_q = HeldOutQ(config.run_dir, self.logger, seed=config.seed,
                                  resume_step=resume_step, draw_at_step=learn_from_step)
        return state

    def _write_settings(self) -> None:
        """Writes ``settings.json``: the settings the run goes on with, for people to read.

        The run itself never reads it back (its checkpoints carry the settings);
        ``benchmarks/learning.py`` copies it beside a reference run's CSV files.
        """
        path = os.path.join(self.config.run_dir, "settings.json")
        try:
            write_atomically(path, json.dumps(run_settings(self.config), indent=1) + "\n",
                             durable=False)
        except OSError as error:
            print(f"warning: could not write {path} ({first_line(error)})", file=sys.stderr,
                  flush=True)

    def _restore_memory(self, memory: ReplayMemory, archive) -> None:
        try:
            saved_size = saved_capacity(archive)
            if saved_size != self.config.buffer_size:  # only a checkpoint of an old version
                raise ValueError(f"it holds {saved_size:,} transitions, not the run's "
                                 f"{self.config.buffer_size:,}")
            memory.load_state_dict(archive)
        except ValueError as error:
            print(f"warning: {error}; the replay memory refills.", file=sys.stderr, flush=True)
            return
        memory.end_episode()  # the game in progress was not saved: a new one starts
        self.memory_restored = True

    def log_game(self, state: LoopState, epsilon: float, learner: BackgroundLearner) -> None:
        """Logs the game that just ended, with the mean loss and Q of its updates."""
        loss, mean_q = learner.pop_statistics()
        self.logger.log_game(state.step, state.games, state.recent_scores[-1],
                             state.running_reward, epsilon, loss, mean_q)

    def after_step(self, state: LoopState, epsilon: float, memory: ReplayMemory,
                   greedy_actions: Callable) -> None:
        """Called once per agent step: the held-out Q and the progress line.

        Why: the loop shows one line for both. The held-out Q is measured every
        10,000 steps, a progress line printed at least once a minute; the rest of
        the calls return at once.

        Args:
            state: the loop state after this step.
            epsilon: the exploration rate of this step.
            memory: the replay memory, from which the held-out states are drawn.
            greedy_actions: the policy, which also gives the action values.
        """
        self.heldout_q.measure_when_due(state.step, memory, greedy_actions)  # the paper's Fig. 2
        self.logger.on_step(state.step, epsilon)

    def save(self, state: LoopState, memory: ReplayMemory, learner: BackgroundLearner) -> str:
        """Writes a checkpoint of the whole run; returns its path.

        Raises:
            CheckpointError: if it cannot be written (a full disk, say).
            FloatingPointError: if the network's weights are no longer finite.
        """
        learner.wait()  # a checkpoint holds whole updates only
        config = self.config
        record = {"env_id": config.env_id, **state.to_dict(), "settings": run_settings(config),
                  "replay_saved": config.save_replay}
        replay_state = memory.state_dict() if config.save_replay else None
        self.logger.flush_to_disk()  # the rows up to this step survive a power cut too
        try:
            return self._checkpointer.save(state.step, record, replay_state)
        except CheckpointError as error:
            if replay_state is None or "the replay memory needs" not in str(error):
                raise
        # Not enough disk for the memory: save the rest, so that no progress is lost.
        print(f"warning: no disk space for the replay memory at step {state.step:,}; the "
              f"checkpoint is saved without it (a resume from it refills the memory)",
              file=sys.stderr, flush=True)
        return self._checkpointer.save(state.step, {**record, "replay_saved": False})

    def finish(self, state: LoopState, stop: Any, q_network: keras.Model,
               memory: ReplayMemory, learner: BackgroundLearner) -> dict[str, Any]:
        """Saves the last checkpoint and, unless stopped early, ``model.keras``.

        Args:
            state: the loop state at the end.
            stop: the loop's ``GracefulStop``; ``requested`` if a signal stopped it.
            q_network: the online network.
            memory: the replay memory.
            learner: the learner, whose last update is waited for.

        Returns:
            A summary: ``step``, ``games``, ``stopped``, and for a finished run
            ``running_reward`` and ``model_path``.
        """
        try:
            checkpoint_path = self.save(state, memory, learner)
        finally:
            self.lock.release()
        if stop.requested:
            print(f"Stopped by {stop.signal_name} at step {state.step:,}; checkpoint saved to "
                  f"{checkpoint_path}.", flush=True)
            return {"step": state.step, "games": state.games, "stopped": True}
        model_path = os.path.join(self.config.run_dir, "model.keras")
        save_model_atomically(q_network, model_path, self.config.env_id)
        if state.solved(self.config.solved_at):
            reason = f"solved: running reward {state.running_reward:.2f}"
        else:
            reason = "total steps reached"
        print(f"Finished ({reason}) after {plural(state.step, 'step')} and "
              f"{plural(state.games, 'game')}; "
              f"running reward {state.running_reward:.2f}. Model saved to {model_path}.",
              flush=True)
        return {"step": state.step, "games": state.games, "stopped": False,
                "running_reward": state.running_reward, "model_path": model_path}

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        stopped_at_once = exc_type is not None and not issubclass(exc_type, Exception)
        if self.heldout_q is not None and exc_type is None:
            self.heldout_q.close()  # a last held-out Q at the last step
        if self.logger is not None:
            self.logger.close(draw_picture=not stopped_at_once)  # and a last progress.png
        if exc_type is not None:  # finish() releases the lock of a run that ends well
            self.lock.release()


def run_settings(config: Any) -> dict[str, Any]:
    """The settings that say how a run learns, as saved with it (``NOT_RUN_SETTINGS`` left out)."""
    return {name: value for name, value in dataclasses.asdict(config).items()
            if name not in NOT_RUN_SETTINGS}


def settings_for_resume(config: Any, saved: dict[str, Any] | None) -> Any:
    """The configuration a resumed run goes on with: its saved settings, changed only
    where the user asked and it is safe.

    A setting the user did not give takes the run's saved value. One the user gave
    that differs from it is taken, and announced, if it is in
    ``OVERRIDABLE_ON_RESUME`` (how long to run, what to record, the step size);
    any other (the game, the memory's size, the network, gamma, the batch size, the
    schedules, the seed) is refused, since the run so far learnt with it.

    Args:
        config: the configuration as given (``given_fields`` says what was given).
        saved: the settings the run's checkpoint holds; ``None`` for a checkpoint
            made before settings were saved, whose run then goes on as given.

    Returns:
        The configuration to resume with.

    Raises:
        ConfigError: if a setting given cannot change on a resume.
    """
    if saved is None:
        print("This run's checkpoint predates saved settings; it goes on with the settings "
              "given now.", flush=True)
        return config
    saved = with_options_of_older_runs(saved)
    given = given_fields(config)
    if getattr(config, "_given_fields", None) is None:
        # Built in code (a notebook's settings cell): what it says of a setting that may
        # change is meant, even where it equals the default.
        given = given | set(OVERRIDABLE_ON_RESUME)
    taken, changed = {}, []
    for name, saved_value in saved.items():
        if name in NOT_RUN_SETTINGS or not hasattr(config, name):
            continue
        value = getattr(config, name)
        if value == saved_value:
            continue
        flag = flag_name(name)
        if name not in given:
            taken[name] = saved_value
        elif name in OVERRIDABLE_ON_RESUME:
            given_flag = flag_as_given(name, value)  # --save-replay, --no-overlap-updates
            changed.append(given_flag if isinstance(value, bool)
                           else f"{given_flag} (was {saved_value})")
        else:
            raise ConfigError(f"--resume: {flag} cannot change during a run (this one uses "
                              f"{saved_value}); leave it out, or start a new run in another "
                              f"--run-dir")
    if changed:
        print(f"Resuming with changed settings: {', '.join(changed)}.", flush=True)
    return replace_settings(config, given, **taken)


TRAINED_WITH = {"double_dqn": False, "n_step": 1, "dueling": False}
"""The options beyond the paper an agent was trained with, each with its value that
means "off"; ``--evaluate`` takes them from the run folder it plays."""


def with_options_of_older_runs(saved: dict[str, Any]) -> dict[str, Any]:
    """Saved settings with the options of ``TRAINED_WITH`` a run saved before they existed.

    Why: such a run was trained without them (each is off by default), so on
    ``--resume`` or ``--evaluate`` a flag turning one on must be refused like any
    other change, not taken as new. The same holds for ``deterministic``.
    """
    return {**TRAINED_WITH, "deterministic": False, **saved}


def settings_for_evaluation(config: Any) -> Any:
    """The configuration to play ``config.evaluate`` with: the run's own options.

    Why: an agent trained with ``--dueling`` has a network of another shape, so
    playing its checkpoint must build that network, without the user repeating
    the flag. A run folder's newest readable checkpoint holds the settings it was
    trained with; an option of ``TRAINED_WITH`` the user did not give takes its
    saved value, and one given that differs is refused. A ``.keras`` file holds its
    network whole and needs no settings.

    Raises:
        ConfigError: if a flag given contradicts what the run was trained with.
    """
    if not os.path.isdir(config.evaluate):
        return config
    try:
        loop_state = read_loop_state(os.path.join(config.evaluate, "checkpoints"))
    except CheckpointError:
        return config  # damaged checkpoints: load_agent plays model.keras or says why not
    if loop_state is None or loop_state.get("settings") is None:
        return config  # no checkpoint, or one made before settings were saved
    saved = with_options_of_older_runs(loop_state["settings"])
    given = given_fields(config)
    taken = {}
    for name in TRAINED_WITH:
        if name not in saved or not hasattr(config, name) or getattr(config, name) == saved[name]:
            continue
        if name not in given:
            taken[name] = saved[name]
            continue
        flag = flag_name(name)
        trained = (("with " if saved[name] else "without ") + flag
                   if isinstance(saved[name], bool) else f"with {flag} {saved[name]}")
        raise ConfigError(f"--evaluate: {config.evaluate} was trained {trained}; leave "
                          f"{flag_as_given(name, getattr(config, name))} out")
    if not taken:
        return config
    return replace_settings(config, given, **taken)


def flag_as_given(name: str, value: Any) -> str:
    """The command-line words that give ``value`` to setting ``name``:
    ``--dueling``, ``--no-dueling``, ``--n-step 3``."""
    flag = flag_name(name)
    if isinstance(value, bool):
        return flag if value else flag.replace("--", "--no-", 1)
    return f"{flag} {value}"


class RunLock:
    """A lock file that keeps two processes from writing into one run folder.

    Why: two trainings in one folder would interleave ``progress.csv`` rows and
    overwrite each other's checkpoints. The file ``<run-dir>/.lock`` names the
    process (its id and start time) and the machine that hold it. A lock is taken
    over when it is stale: its process is gone from this machine (or the id now
    belongs to another process, after a reboot), it is this very process (a
    notebook kernel running training again), or it comes from another machine (a
    new Colab session) and the user resumes.

    Args:
        run_dir: the run folder.
        resume: whether the user resumes, which lets a lock from another machine go.

    Raises:
        CheckpointError: if a live process holds the folder.
    """

    def __init__(self, run_dir: str, resume: bool):
        import psutil  # imported here: only a training run needs it

        self.path = os.path.join(run_dir, ".lock")
        self._held = False
        os.makedirs(run_dir, exist_ok=True)
        self._mine = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started": psutil.Process().create_time()}
        for _ in range(3):  # another process may take or drop the lock meanwhile
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                holder = _read_lock(self.path)
                if holder is not None and not _stale(holder, self._mine, resume):
                    raise CheckpointError(
                        f"{run_dir} is in use by process {holder.get('pid')} on "
                        f"{holder.get('host')}; wait for it to end or stop it (if no training "
                        f"runs there, the lock file {self.path} is stale: delete it), or "
                        f"choose another --run-dir") from None
                try:
                    os.remove(self.path)  # stale: take it over
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(descriptor, "w") as file:
                json.dump(self._mine, file)
            self._held = True
            return
        raise CheckpointError(f"could not take the lock {self.path}; try again")

    def release(self) -> None:
        """Removes the lock file, if this process still holds it."""
        if self._held:
            self._held = False
            if _read_lock(self.path) == self._mine:  # not one another machine took over
                try:
                    os.remove(self.path)
                except OSError:
                    pass


def _stale(holder: dict, mine: dict, resume: bool) -> bool:
    """Whether a lock held by ``holder`` may be taken over by ``mine``."""
    import psutil

    if not holder:
        return True  # a damaged lock file holds nobody
    if holder.get("host") != mine["host"]:
        return resume  # a run moved to a new machine; a new run here would be refused
    if holder.get("pid") == mine["pid"]:
        return True
    try:
        process = psutil.Process(int(holder.get("pid", -1)))
        if "started" not in holder:
            return False  # alive, as far as can be told
        return abs(process.create_time() - float(holder["started"])) > 1.0  # a reused id
    except (psutil.NoSuchProcess, ValueError, TypeError, OverflowError):
        return True  # that process has ended
    except psutil.Error:
        return False


def _read_lock(path: str) -> dict | None:
    try:
        with open(path) as file:
            holder = json.load(file)
        return holder if isinstance(holder, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # a damaged lock file holds nobody


def first_learning_step(step: int, learning_starts: int, memory_restored: bool) -> int:
    """The step from which a run (new or resumed at ``step``) learns.

    The memory must first hold ``learning_starts`` transitions: a new run learns from
    ``learning_starts``; a resumed one whose memory refills, ``learning_starts`` steps
    later than it resumed; one whose memory was restored, at once, but never before
    ``learning_starts``.
    """
    return max(learning_starts, step + (0 if memory_restored else learning_starts))


def open_run(directory: str, resume: bool, env_id: str) -> dict[str, Any] | None:
    """Decides whether a run starts afresh or resumes, before any work is done.

    Args:
        directory: the run's checkpoint folder.
        resume: whether ``--resume`` was given.
        env_id: the game this run plays.

    Returns:
        The newest checkpoint's loop state when resuming, ``None`` for a new run.

    Raises:
        CheckpointError: when resuming a folder with no checkpoint or a run of
            another game, or when a new run would overwrite an existing one.
    """
    loop_state = read_loop_state(directory)
    run_dir = os.path.dirname(directory.rstrip(os.sep)) or "."
    earlier_logs = _has_rows(os.path.join(run_dir, "progress.csv"))
    # A run that ended before its first checkpoint leaves logs but nothing to go on from.
    no_checkpoint = (f"it saved no checkpoint, so it cannot be resumed; choose another "
                     f"--run-dir, or delete {run_dir} to start again there (it holds only "
                     f"the logs of the games played before it stopped)")
    if resume and loop_state is None:
        if earlier_logs:
            raise CheckpointError(f"--resume: {run_dir} holds a run that stopped before "
                                  f"its first checkpoint: {no_checkpoint}")
        raise CheckpointError(f"--resume: no checkpoint in {directory} (a run saves its first "
                              f"one after --checkpoint-every steps); to start a new run, "
                              f"choose another --run-dir")
    if not resume and loop_state is not None:
        raise CheckpointError(f"{run_dir} already holds a run; add --resume to continue it, "
                              f"or choose another --run-dir")
    if not resume and earlier_logs:
        raise CheckpointError(f"{run_dir} holds the progress.csv of an earlier run, which a "
                              f"new run would overwrite; {no_checkpoint}")
    if resume and loop_state.get("env_id") != env_id:
        raise CheckpointError(f"--resume: {run_dir} holds a run of {loop_state.get('env_id')}, "
                              f"not {env_id}; choose another --run-dir")
    return loop_state if resume else None


def _has_rows(path: str) -> bool:
    """Whether a CSV file exists and holds more than its header."""
    try:
        with open(path, "rb") as file:  # bytes: a damaged file must not raise here
            return sum(1 for _ in zip(range(2), file)) > 1
    except OSError:
        return False


if __name__ == "__main__":
    exit_with(main())
