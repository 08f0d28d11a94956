"""A training run's bookkeeping, so that the scripts' loop shows only the algorithm.

A script's ``train()`` builds the environment, the networks and the memory, and
runs the loop: act, store, learn, sync, log, stop. Everything else a long run needs
lives here:

1. ``Run(config)`` opens the run folder before any work: a resume needs a
   checkpoint of the same game, a new run must not overwrite an old one, and the
   replay memory must fit in the free RAM.
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
import math
import os
from typing import Any, Callable

import keras
import numpy as np

from common.checkpoint import (CheckpointError, Checkpointer, read_loop_state,
                               save_model_atomically)
from common.config import ConfigError, check_memory
from common.dqn import BackgroundLearner
from common.logger import (PICTURE_EVERY_SECONDS, HeldOutQ, RunLogger, action_names,
                           start_banner)
from common.replay import ReplayMemory

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
        self.config = config
        self.checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
        self._saved = open_run(self.checkpoint_dir, config.resume, config.env_id)
        check_memory(ReplayMemory.bytes_needed(config.buffer_size), ReplayMemory.bytes_needed(1))
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
        config = self.config
        self._checkpointer = Checkpointer(self.checkpoint_dir, q_network, target_network,
                                          optimizer)
        if self._saved is None:
            learner.sync_target()
            state = LoopState(rng=np.random.default_rng(config.seed))
        else:
            loop_state, replay_state = self._checkpointer.restore()
            state = LoopState.from_dict(loop_state)
            if replay_state is not None:
                saved_size = len(replay_state["frames"])
                if saved_size != config.buffer_size:
                    raise ConfigError(f"--resume: the saved replay memory holds {saved_size} "
                                      f"transitions; pass --buffer-size {saved_size} as the "
                                      f"run did")
                memory.load_state_dict(replay_state)
                memory.end_episode()  # the game in progress was not saved: a new one starts
                self.memory_restored = True
            print(f"Resumed {config.run_dir} at step {state.step:,} after {state.games:,} games; "
                  f"replay memory {'restored' if self.memory_restored else 'refills'} "
                  f"({len(memory):,} transitions).", flush=True)
        resume_step = state.step if self._saved else None
        print(start_banner(config, action_names(env), memory.nbytes, resume_step, state.games),
              flush=True)
        # As train() computes it: learning waits for learning_starts steps of play,
        # unless the memory was restored.
        learn_from_step = state.step + (0 if self.memory_restored else config.learning_starts)
        self.logger = RunLogger(config.run_dir, config.log_every_games, resume_step=resume_step,
                                on_game=self._on_game, total_steps=config.total_steps,
                                learn_from_step=learn_from_step,
                                picture_every_seconds=PICTURE_EVERY_SECONDS,
                                solved_at=config.solved_at, title=config.env_id)
        self.heldout_q = HeldOutQ(config.run_dir, self.logger, seed=config.seed,
                                  resume_step=resume_step, draw_at_step=learn_from_step)
        return state

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
        self.heldout_q.after_step(state.step, memory, greedy_actions)  # the paper's Fig. 2
        self.logger.after_step(state.step, epsilon)

    def save(self, state: LoopState, memory: ReplayMemory, learner: BackgroundLearner) -> str:
        """Writes a checkpoint of the whole run; returns its path.

        Raises:
            CheckpointError: if it cannot be written (a full disk, say).
            FloatingPointError: if the network's weights are no longer finite.
        """
        learner.wait()  # a checkpoint holds whole updates only
        replay_state = memory.state_dict() if self.config.save_replay else None
        self.logger.flush_to_disk()  # the rows up to this step survive a power cut too
        return self._checkpointer.save(state.step, {"env_id": self.config.env_id,
                                                    **state.to_dict()}, replay_state)

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
        checkpoint_path = self.save(state, memory, learner)
        if stop.requested:
            print(f"Stopped by {stop.signal_name} at step {state.step:,}; checkpoint saved to "
                  f"{checkpoint_path}.", flush=True)
            return {"step": state.step, "games": state.games, "stopped": True}
        model_path = os.path.join(self.config.run_dir, "model.keras")
        save_model_atomically(q_network, model_path)
        if state.solved(self.config.solved_at):
            reason = f"solved: running reward {state.running_reward:.2f}"
        else:
            reason = "total steps reached"
        print(f"Finished ({reason}) after {state.step:,} steps and {state.games:,} games; "
              f"running reward {state.running_reward:.2f}. Model saved to {model_path}.",
              flush=True)
        return {"step": state.step, "games": state.games, "stopped": False,
                "running_reward": state.running_reward, "model_path": model_path}

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        stopped_at_once = exc_type is not None and not issubclass(exc_type, Exception)
        if self.heldout_q is not None and exc_type is None:
            self.heldout_q.close()  # a last held-out Q at the last step
        if self.logger is not None:
            self.logger.close(draw_picture=not stopped_at_once)  # and a last progress.png


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
    if resume and loop_state is None:
        raise CheckpointError(f"--resume: no checkpoint in {directory}; "
                              f"run without --resume to start a new run")
    if not resume and loop_state is not None:
        raise CheckpointError(f"{run_dir} already holds a run; add --resume to continue it, "
                              f"or choose another --run-dir")
    if resume and loop_state.get("env_id") != env_id:
        raise CheckpointError(f"--resume: {run_dir} holds a run of {loop_state.get('env_id')}, "
                              f"not {env_id}; choose another --run-dir")
    return loop_state if resume else None
