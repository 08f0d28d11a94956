"""Small helpers every part of a run uses: atomic writes, error lines, flag names.

A long run writes many files (checkpoints, logs, pictures, recordings) and reads
some back; a crash or a power cut in the middle of a write must leave either the
old file or the whole new one, never half of each. ``write_atomically`` is the one
place that does so.
"""

from __future__ import annotations

import errno
import os
from typing import Callable


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
    # The extension stays last: Keras and matplotlib choose the format by it.
    temporary = os.path.join(folder, f".partial-{name}{extension}")
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
    left on device``), else the first line of its message, else its type's name."""
    text = (getattr(error, "strerror", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def flag_name(setting: str) -> str:
    """The command-line flag of a configuration field: ``total_steps`` is ``--total-steps``."""
    return "--" + setting.replace("_", "-")
