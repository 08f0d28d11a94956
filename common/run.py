"""A training run's bookkeeping, so that the scripts' loop shows only the algorithm.

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

from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import socket
import sys
from typing import Any, Callable

import keras
import numpy as np

from common.checkpoint import (CheckpointError, Checkpointer, read_loop_state,
                               save_model_atomically)
from common.config import (ConfigError, check_config, check_memory, given_fields,
                           replace_settings)
from common.dqn import BackgroundLearner
from common.files import first_line, flag_name, write_atomically
from common.logger import (PICTURE_EVERY_SECONDS, HeldOutQ, RunLogger, action_names, plural,
                           start_banner)
from common.replay import ReplayMemory, saved_capacity

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
