"""A run folder's files: how they are written and read back, and two small helpers.

A long run writes many files (checkpoints, logs, pictures, recordings) and reads
some back. A crash or a power cut in the middle of a write must leave either the
old file or the whole new one, never half of each: ``write_atomically`` is the one
place that does so. A file read back may have been damaged meanwhile: ``read_table``
says what is wrong with a CSV log, and ``set_aside`` keeps a damaged file intact
under another name, so that nothing a run saved is ever cut down.
"""

from __future__ import annotations

import csv
import errno
import itertools
import os
import re
import time
from typing import Callable, Sequence

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
