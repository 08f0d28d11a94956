"""MP4 recordings of whole Atari games.

The recorder sits directly on the emulator, below every preprocessing wrapper, so
it sees each of the 60 emulator frames per second in full colour (210x160) and
each game from its real start to its real end, across all lives. Frames are
streamed to ffmpeg as they come, so a long game never sits in memory, and they
are read from the emulator only for the games being recorded.
"""

from __future__ import annotations

import os
import re
import sys

import gymnasium as gym
import imageio.v2 as imageio

from common.files import first_line, write_atomically

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
