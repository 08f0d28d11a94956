"""What a run reports, and how: a start banner, a progress line, two CSV files,
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

from __future__ import annotations

import collections
import csv
import datetime
import io
import itertools
import math
import os
import socket
import sys
import threading
import time
import zipfile
from typing import Any, Callable, Sequence

import numpy as np

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

from common.fault_points import pause_point
from common.files import (HELDOUT_FIELDS, PROGRESS_FIELDS, first_line, read_table, set_aside,
                          write_atomically)

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
            from common.plot import write_progress_png  # matplotlib loads on first use

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
