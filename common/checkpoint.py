"""Checkpoints that let a long run survive interruptions, and clean stops.

A checkpoint holds the online and target networks, the optimizer's state and a
JSON record of the training loop (step and game counters, the running-reward
window, the exploration random-number state, the game's id). The emulator's
state is not saved: a resumed run starts a new game, and the steps of the game
that was in progress are played again. All of it goes into one
``tf.train.Checkpoint``, written by a ``tf.train.CheckpointManager``: the data
files are written first and the small index file that names the latest
checkpoint is replaced atomically last, so a process killed mid-write leaves the
previous checkpoint as the latest valid one. The replay memory, when asked for,
is saved beside it as a NumPy ``.npz`` file (no pickle) before the index moves.
Nothing here executes code from a file it reads.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
import zipfile
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or of another run; the message says what to do."""


# What TensorFlow raises for a damaged or foreign checkpoint, depending on where it breaks.
_READ_ERRORS = (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError,
                RuntimeError, StopIteration)


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
        self._loop_state = tf.Variable("{}", dtype=tf.string, trainable=False)
        self._checkpoint = tf.train.Checkpoint(q_network=q_network, target_network=target_network,
                                               optimizer=optimizer, loop_state=self._loop_state)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep)
        self._optimizer = optimizer
        self._q_network = q_network

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_checkpoint

    def save(self, step: int, loop_state: dict[str, Any],
             replay_state: dict[str, np.ndarray] | None = None) -> str:
        """Writes a checkpoint numbered ``step``.

        Args:
            step: agent steps taken so far; it numbers the checkpoint.
            loop_state: JSON-serialisable loop variables.
            replay_state: the replay memory's ``state_dict()``, or ``None`` to skip it.

        Returns:
            The checkpoint's path prefix.

        Raises:
            FloatingPointError: if a weight of the online network is NaN or
                infinite; such a checkpoint would replace a good one.
        """
        if self.latest is not None and _step_of(self.latest) == step:
            return self.latest  # already saved at this step; rewriting it would not be atomic
        if not all(np.isfinite(weights).all() for weights in self._q_network.get_weights()):
            raise FloatingPointError(f"the network's weights are no longer finite at step "
                                     f"{step:,}, so no checkpoint was saved")
        try:
            os.makedirs(self.directory, exist_ok=True)
            if replay_state is not None:
                replay_path = self._replay_path(step)
                temporary = replay_path + ".tmp.npz"  # np.savez keeps a name ending in .npz
                np.savez(temporary, **replay_state)
                os.replace(temporary, replay_path)
            self._loop_state.assign(json.dumps(loop_state))
            path = self._manager.save(checkpoint_number=step)
            self._remove_stale_replays()
        except (OSError, tf.errors.OpError) as error:
            raise CheckpointError(
                f"could not write the checkpoint of step {step:,} to {self.directory} "
                f"({_first_line(error)}); the last complete one is {self.latest or 'none'}; "
                f"free some disk space, then resume with --resume") from None
        return path

    def restore(self) -> tuple[dict[str, Any], dict[str, np.ndarray] | None]:
        """Loads the newest checkpoint into the networks and the optimizer.

        Returns:
            ``(loop_state, replay_state)``; ``replay_state`` is ``None`` when the
            checkpoint was saved without the replay memory.

        Raises:
            CheckpointError: if there is no checkpoint or it cannot be read.
        """
        latest = self.latest
        if latest is None:
            raise CheckpointError(f"no checkpoint in {self.directory}; start a new run "
                                  f"without --resume, or point --run-dir at the run to resume")
        # Adam's moment slots exist only once the optimizer is built; restoring needs them.
        self._optimizer.build(self._q_network.trainable_variables)
        try:
            self._checkpoint.restore(latest).assert_existing_objects_matched()
            loop_state = json.loads(self._loop_state.numpy().decode())
        except _READ_ERRORS as error:
            raise CheckpointError(f"checkpoint {latest} cannot be read ({_first_line(error)}); "
                                  f"it may be from another version or damaged") from None
        replay_path = self._replay_path(_step_of(latest))
        replay_state = None
        if os.path.exists(replay_path):
            try:
                with np.load(replay_path, allow_pickle=False) as archive:
                    replay_state = {key: archive[key] for key in archive.files}
            except (OSError, ValueError) as error:
                print(f"warning: saved replay memory {replay_path} cannot be read "
                      f"({_first_line(error)}); it will be refilled.", file=sys.stderr)
        return loop_state, replay_state

    def _replay_path(self, step: int) -> str:
        return os.path.join(self.directory, f"replay-{step}.npz")

    def _remove_stale_replays(self) -> None:
        kept = {_step_of(path) for path in self._manager.checkpoints}
        for path in glob.glob(os.path.join(self.directory, "replay-*.npz*")):
            match = re.fullmatch(r"replay-(\d+)\.npz", os.path.basename(path))
            if match is None or int(match.group(1)) not in kept:
                os.remove(path)


def latest_checkpoint(directory: str) -> str | None:
    """Path prefix of the newest complete checkpoint in ``directory``, or ``None``."""
    return tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None


def read_loop_state(directory: str) -> dict[str, Any] | None:
    """Reads the loop record of the newest checkpoint without building any model.

    Why: a resume must be refused (another game, a missing checkpoint) before the
    run allocates gigabytes of replay memory or builds networks.

    Args:
        directory: the checkpoint folder.

    Returns:
        The loop state, or ``None`` if there is no checkpoint.

    Raises:
        CheckpointError: if the newest checkpoint cannot be read.
    """
    latest = latest_checkpoint(directory)
    if latest is None:
        return None
    try:
        reader = tf.train.load_checkpoint(latest)
        key = next(name for name in reader.get_variable_to_shape_map()
                   if name.startswith("loop_state/"))
        return json.loads(reader.get_tensor(key).decode())
    except _READ_ERRORS as error:
        raise CheckpointError(f"checkpoint {latest} cannot be read ({_first_line(error)}); "
                              f"it may be damaged") from None


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
                              f"{_first_line(error)}); is it a .keras file saved by this "
                              f"project?") from None


def load_agent(path: str, env_id: str, observation_shape: tuple[int, ...], num_actions: int,
               build_q_network: Callable[..., keras.Model]) -> keras.Model:
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

    Returns:
        The online Q-network.

    Raises:
        CheckpointError: if nothing loadable is found or it does not fit the game.
    """
    checkpoint_dir = os.path.join(path, "checkpoints")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "model.keras")):
        loop_state = read_loop_state(checkpoint_dir)
        if loop_state is None:
            raise CheckpointError(f"{path} holds neither model.keras nor checkpoints; pass a "
                                  f".keras file or a run folder")
        if loop_state.get("env_id") != env_id:
            raise CheckpointError(f"{path} holds a run of {loop_state.get('env_id')}, "
                                  f"not {env_id}; pass --env-id {loop_state.get('env_id')}")
        q_network = build_q_network(observation_shape, num_actions)
        latest = tf.train.latest_checkpoint(checkpoint_dir)
        try:  # only the online network is needed; the rest of the checkpoint is skipped
            tf.train.Checkpoint(q_network=q_network).restore(latest).expect_partial()
        except _READ_ERRORS as error:
            raise CheckpointError(f"checkpoint {latest} cannot be read "
                                  f"({_first_line(error)})") from None
        print(f"Playing with the network of checkpoint {latest} "
              f"(step {loop_state.get('step', 0):,}).", flush=True)
        return q_network
    if os.path.isdir(path):
        path = os.path.join(path, "model.keras")
    q_network = load_q_network(path)
    if q_network.output_shape[-1] != num_actions:
        raise CheckpointError(f"{path} has {q_network.output_shape[-1]} outputs but {env_id} "
                              f"has {num_actions} actions; is it a model of another game?")
    return q_network


def save_model_atomically(model: keras.Model, path: str) -> None:
    """Saves ``model`` to ``path`` through a temporary file, so a crash leaves no half file.

    Raises:
        CheckpointError: if the file cannot be written (a full disk, say).
    """
    temporary = os.path.join(os.path.dirname(path) or ".", ".partial-" + os.path.basename(path))
    try:
        model.save(temporary)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise CheckpointError(f"could not save the model to {path} ({_first_line(error)}); "
                              f"the checkpoints beside it still hold the network") from None


def _step_of(checkpoint_path: str) -> int:
    """The step a checkpoint was saved at, from its path prefix (``.../ckpt-<step>``)."""
    return int(checkpoint_path.rsplit("-", 1)[1])


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
