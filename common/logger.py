"""What a run reports: a console line, ``progress.csv`` and TensorBoard scalars.

Every finished game (all lives) becomes one row of ``<run-dir>/progress.csv`` and
one point of each TensorBoard scalar in ``<run-dir>``; every few games a line is
printed. Both files are flushed after each game, so even a killed run keeps
every game it finished. A write that fails (a full disk) prints one warning and
the run goes on: the log is not worth losing the training for.
"""

from __future__ import annotations

import collections
import csv
import math
import os
import sys
import time
from typing import Callable

import numpy as np

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from common.fault_points import pause_point

PROGRESS_FIELDS = ("step", "game", "score", "running_reward", "epsilon", "loss", "mean_q",
                   "steps_per_second", "elapsed_seconds")
HELDOUT_FIELDS = ("step", "heldout_q")
RATE_WINDOW_SECONDS = 60.0
"""Steps per second are measured over about this much of the latest wall time."""


class RunLogger:
    """Writes one row per finished game to CSV and TensorBoard, and prints a summary.

    When a run resumes from a checkpoint taken at step ``resume_step``, the
    rows written after that step belong to games the resumed run will play again,
    so they are dropped; the CSV then carries on without gaps or duplicates. For
    TensorBoard the new event file starts with a ``SessionLog.START`` event at
    ``resume_step + 1``, on which TensorBoard discards the earlier events from
    that step on (its "purge orphaned data" rule), so its curves do not double
    back either. TensorBoard's default fast loader (``--load_fast``) ignores that
    event; it drops an old point only once a new point at an earlier or equal
    step arrives, so a few old points may remain between the checkpoint and the
    first new game; ``tensorboard --load_fast=false`` applies the rule exactly.

    Args:
        run_dir: folder for ``progress.csv`` and the TensorBoard event files.
        print_every_games: print a console line every this many games.
        resume_step: keep the existing CSV up to this step (``None``: start afresh).
        on_game: called with each game's row as a dict (keys ``PROGRESS_FIELDS``),
            after it is written; a notebook's live display uses it.
    """

    def __init__(self, run_dir: str, print_every_games: int = 10,
                 resume_step: int | None = None,
                 on_game: Callable[[dict[str, float]], None] | None = None):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, "progress.csv")
        self.print_every_games = print_every_games
        if resume_step is not None and os.path.exists(self.path):
            _truncate_after(self.path, resume_step)
        else:
            with open(self.path, "w", newline="") as file:
                csv.writer(file).writerow(PROGRESS_FIELDS)
        self._file = open(self.path, "a", newline="")
        self._csv = csv.writer(self._file)
        self._events = EventFileWriter(run_dir)
        if resume_step is not None:
            self._events.add_event(event_pb2.Event(
                wall_time=time.time(), step=resume_step + 1,
                session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))
        self._on_game = on_game
        self._warned = False
        self._start_time = time.perf_counter()
        # (time, step) at recent game ends, for a rate smoothed over about a minute.
        self._recent_steps: collections.deque[tuple[float, int]] = collections.deque()

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
        steps_per_second = self._steps_per_second(now, step)
        elapsed = now - self._start_time
        scalars = {"charts/score": score, "charts/running_reward": running_reward,
                   "charts/epsilon": epsilon, "losses/huber": loss, "losses/mean_q": mean_q,
                   "charts/steps_per_second": steps_per_second}
        row = [step, game, _round(score), _round(running_reward), _round(epsilon),
               _round(loss), _round(mean_q), _round(steps_per_second, 1), _round(elapsed, 2)]
        try:
            self._csv.writerow(row)
            pause_point("csv-row")  # a test may kill the process here
            self._file.flush()
            self._write_scalars(step, scalars)
        except OSError as error:
            self._warn(error)
        if self._on_game is not None:
            self._on_game(dict(zip(PROGRESS_FIELDS, row)))
        if game % self.print_every_games == 0:
            print(f"step {step:>10,} | games {game:>6,} | score {score:6g} | "
                  f"running reward {running_reward:7.2f} | epsilon {epsilon:.3f} | "
                  f"loss {loss:.4f} | mean Q {mean_q:7.3f} | "
                  f"{steps_per_second:6.1f} steps/s", flush=True)

    def log_scalar(self, tag: str, step: int, value: float) -> None:
        """Adds one TensorBoard point (a failed write warns once, like the CSV)."""
        try:
            self._write_scalars(step, {tag: value})
        except OSError as error:
            self._warn(error)

    def _write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        self._events.add_event(event_pb2.Event(
            wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[
                summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                for tag, value in scalars.items() if math.isfinite(value)])))
        self._events.flush()

    def _steps_per_second(self, now: float, step: int) -> float:
        """Steps per second since the oldest game end of about the last minute."""
        recent = self._recent_steps
        recent.append((now, step))
        while len(recent) > 2 and now - recent[1][0] >= RATE_WINDOW_SECONDS:
            recent.popleft()
        (then, step_then) = recent[0]
        if step == step_then:
            return math.nan
        return (step - step_then) / max(now - then, 1e-9)

    def _warn(self, error: OSError) -> None:
        if not self._warned:
            print(f"warning: could not write the log in {os.path.dirname(self.path)} "
                  f"({error.strerror or error}); training goes on", file=sys.stderr,
                  flush=True)
            self._warned = True

    def close(self) -> None:
        """Flushes and closes the CSV file and the TensorBoard writer."""
        for closer in (self._file.close, self._events.close):
            try:
                closer()
            except OSError:
                pass  # already warned about, or nothing left to lose


def _round(value: float, digits: int = 5) -> float:
    return round(float(value), digits) if math.isfinite(value) else value


def _truncate_after(path: str, step: int, fields: tuple[str, ...] = PROGRESS_FIELDS) -> None:
    """Rewrites the CSV at ``path`` without rows past ``step``, atomically."""
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    header, body = (rows[0], rows[1:]) if rows else (list(fields), [])
    kept = []
    for row in body:
        if len(row) != len(header) or not row[0].isdigit():
            continue  # a line cut short by a kill while it was being written
        if int(row[0]) <= step:
            kept.append(row)
    temporary = path + ".tmp"
    with open(temporary, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(kept)
    os.replace(temporary, path)


class HeldOutQ:
    """The paper's second learning curve: mean max_a Q(s, a) over a fixed set of states.

    Why: the score of single games is noisy; Mnih et al. (2015, Fig. 2) also follow
    the average of the highest predicted action value over a fixed set of states,
    which rises smoothly while the agent learns. The set is drawn once, from the
    uniformly random play that fills the replay memory, and saved in the run folder
    as ``heldout_states.npz``, so a resumed run goes on measuring the same states.
    Every ``every`` agent steps the mean over them of max_a Q(s, a) becomes a row of
    ``heldout_q.csv`` and the TensorBoard scalar ``charts/heldout_q``.

    Args:
        run_dir: the run folder.
        logger: the run's ``RunLogger``, for the TensorBoard point.
        size: how many states the set holds (the paper: 500).
        every: agent steps between two measurements.
        seed: seed of the draw; it has its own generator, so drawing the set does
            not change the replay memory's minibatches.
        resume_step: keep ``heldout_q.csv`` up to this step (``None``: start afresh).
    """

    def __init__(self, run_dir: str, logger: RunLogger, size: int = 500, every: int = 10_000,
                 seed: int = 0, resume_step: int | None = None):
        self.path = os.path.join(run_dir, "heldout_q.csv")
        self.states_path = os.path.join(run_dir, "heldout_states.npz")
        self.size, self.every = size, every
        self._logger = logger
        self._rng = np.random.default_rng(seed)
        self.states: np.ndarray | None = None
        if os.path.exists(self.states_path):
            try:
                with np.load(self.states_path, allow_pickle=False) as archive:
                    self.states = archive["states"]
            except (OSError, ValueError, KeyError) as error:
                print(f"warning: the held-out states {self.states_path} cannot be read "
                      f"({error}); a new set is drawn", file=sys.stderr, flush=True)
        elif resume_step is not None:
            print("This run was saved before it had held-out states; they are drawn from "
                  "the replay memory once it holds enough transitions.", flush=True)
        try:
            if resume_step is not None and os.path.exists(self.path):
                _truncate_after(self.path, resume_step, HELDOUT_FIELDS)
            else:
                with open(self.path, "w", newline="") as file:
                    csv.writer(file).writerow(HELDOUT_FIELDS)
        except OSError as error:
            logger._warn(error)

    def after_step(self, step: int, memory, greedy_actions) -> None:
        """Measures the held-out Q every ``every`` steps, once the memory can give the set.

        Args:
            step: agent steps so far.
            memory: the replay memory; the set is drawn from it the first time.
            greedy_actions: the policy of ``common.dqn.make_greedy_policy``, which also
                returns the action values.
        """
        if step % self.every != 0 or len(memory) < self.size:
            return
        if self.states is None:
            self.states = memory.sample(self.size, rng=self._rng).observations
            self._save_states()
        _, q_values = greedy_actions(self.states)
        value = float(np.mean(np.max(q_values.numpy(), axis=1)))
        try:
            with open(self.path, "a", newline="") as file:
                csv.writer(file).writerow([step, _round(value)])
        except OSError as error:
            self._logger._warn(error)
        self._logger.log_scalar("charts/heldout_q", step, value)

    def _save_states(self) -> None:
        temporary = self.states_path + ".tmp.npz"
        try:
            np.savez_compressed(temporary, states=self.states)
            os.replace(temporary, self.states_path)
        except OSError as error:
            if os.path.exists(temporary):
                os.remove(temporary)
            self._logger._warn(error)
