"""Checkpoints that let a long run survive interruptions, crashes and damaged files.

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

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sys
import zipfile
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from common.fault_points import pause_point
from common.files import first_line, fsync, write_atomically
from common.networks import DuelingHead  # noqa: F401  registered with Keras, so models load


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
