"""What a run reports: a console line, ``progress.csv`` and TensorBoard scalars.

Every finished game (all lives) becomes one row of ``<run-dir>/progress.csv`` and
one point of each TensorBoard scalar in ``<run-dir>``; every few games a line is
printed. Both files are flushed after each game, so even a killed run keeps
every game it finished. A write that fails (a full disk) prints one warning and
the run goes on: the log is not worth losing the training for.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

PROGRESS_FIELDS = ("step", "game", "score", "running_reward", "epsilon", "loss", "mean_q",
                   "steps_per_second", "elapsed_seconds")


class RunLogger:
    """Writes one row per finished game to CSV and TensorBoard, and prints a summary.

    Note: when a run resumes from a checkpoint taken at step ``resume_step``, the
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
    """

    def __init__(self, run_dir: str, print_every_games: int = 10,
                 resume_step: int | None = None):
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
        self._warned = False
        self._start_time = time.perf_counter()
        self._last_time = self._start_time
        self._last_step: int | None = None

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
        if self._last_step is None or step == self._last_step:
            steps_per_second = math.nan
        else:
            steps_per_second = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        elapsed = now - self._start_time
        scalars = {"charts/score": score, "charts/running_reward": running_reward,
                   "charts/epsilon": epsilon, "losses/huber": loss, "losses/mean_q": mean_q,
                   "charts/steps_per_second": steps_per_second}
        try:
            self._csv.writerow([step, game, _round(score), _round(running_reward),
                                _round(epsilon), _round(loss), _round(mean_q),
                                _round(steps_per_second, 1), _round(elapsed, 2)])
            self._file.flush()
            self._events.add_event(event_pb2.Event(
                wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[
                    summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
                    for tag, value in scalars.items() if math.isfinite(value)])))
            self._events.flush()
        except OSError as error:
            if not self._warned:
                print(f"warning: could not write the log in {os.path.dirname(self.path)} "
                      f"({error.strerror or error}); training goes on", file=sys.stderr,
                      flush=True)
                self._warned = True
        if game % self.print_every_games == 0:
            print(f"step {step:>10,} | games {game:>6,} | score {score:6g} | "
                  f"running reward {running_reward:7.2f} | epsilon {epsilon:.3f} | "
                  f"loss {loss:.4f} | mean Q {mean_q:7.3f} | "
                  f"{steps_per_second:6.1f} steps/s", flush=True)

    def close(self) -> None:
        """Flushes and closes the CSV file and the TensorBoard writer."""
        for closer in (self._file.close, self._events.close):
            try:
                closer()
            except OSError:
                pass  # already warned about, or nothing left to lose


def _round(value: float, digits: int = 5) -> float:
    return round(float(value), digits) if math.isfinite(value) else value


def _truncate_after(path: str, step: int) -> None:
    """Rewrites the CSV at ``path`` without rows past ``step``, atomically."""
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    header, body = (rows[0], rows[1:]) if rows else (list(PROGRESS_FIELDS), [])
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
