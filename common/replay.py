"""Replay memory that stores each Atari frame once.

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

from __future__ import annotations

import math
import zipfile
from typing import NamedTuple

import numpy as np

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
