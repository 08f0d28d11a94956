"""The command line of the game scripts: one entry point, one set of messages.

Both scripts end with ``command_line(Config, train, evaluate, ...)``. It parses the
flags, checks them, runs training or evaluation, and turns every failure a user can
cause or meet into one line on stderr and an exit status:

- 0: finished, or stopped by Ctrl-C or SIGTERM after saving a checkpoint;
- 1: training diverged (a NaN or infinite loss) or ran out of memory;
- 2: a setting, folder or file that cannot work (the line says what to change);
- 130: stopped at once by a second Ctrl-C, or an evaluation stopped by Ctrl-C
  (143 by SIGTERM) after printing the scores of the games it finished.

The advice on how to resume fits where the script runs: a shell command in a
terminal, a ``%run`` line after ``%run``, and the setting to change in a notebook.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from typing import Any, Callable

from common.checkpoint import CheckpointError, latest_checkpoint
from common.config import ConfigError, check_config, in_notebook, in_notebook_cell, parse_config


def command_line(config_class: type, train: Callable[[Any], dict],
                 evaluate: Callable[[Any], list[float]], description: str,
                 argv: list[str] | None = None) -> int:
    """Parses the command line into a configuration and runs it.

    Args:
        config_class: the script's configuration dataclass.
        train: the script's ``train(config)``.
        evaluate: the script's ``evaluate(config)``.
        description: shown by ``--help``.
        argv: the arguments; ``None`` reads ``sys.argv`` (a notebook kernel's own
            arguments are ignored).

    Returns:
        The exit status (see the module docstring). A bad flag exits with status 2.
    """
    config = parse_config(config_class, argv, description=description)
    return train_or_evaluate(config, train, evaluate, argv)


def train_or_evaluate(config: Any, train: Callable[[Any], dict], evaluate: Callable[[Any], list[float]],
        argv: list[str] | None = None) -> int:
    """Checks a configuration, then trains or evaluates, with one-line messages.

    Why: a notebook builds its ``Config`` in a cell instead of from flags, and
    must get the same checks and messages as the command line.

    Args:
        config: the configuration.
        train: called as ``train(config)`` unless ``config.evaluate`` names a model
            or ``config.plot`` names run folders to draw (``common.plot.plot_runs``).
        evaluate: called as ``evaluate(config)`` when it does.
        argv: the command line the configuration came from, for the resume advice.

    Returns:
        The exit status (see the module docstring).
    """
    program = program_name()
    checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
    try:
        # On --resume the run's saved settings fill in the rest; Run checks them whole.
        check_config(config, across_fields=not getattr(config, "resume", False))
        if getattr(config, "plot", None):  # learning curves of finished or running runs
            from common.plot import plot_runs  # matplotlib loads only when it is needed

            print(f"Wrote {plot_runs(config.plot, config.solved_at)}", flush=True)
            return 0
        if config.video_every > 0 or config.evaluate:
            check_writable(config.video_dir, "--video-dir")
        if config.evaluate:
            evaluate(config)
            return 0
        check_writable(config.run_dir, "--run-dir")
        summary = train(config)
    except (ConfigError, CheckpointError) as error:
        print(f"{program}: error: {in_its_words(str(error), config)}", file=sys.stderr)
        return 2
    except Interrupted as interrupted:
        print(f"Stopped by {interrupted.signal_name} {interrupted.detail}.", file=sys.stderr)
        return 128 + signal.Signals[interrupted.signal_name].value
    except FloatingPointError as error:
        print(f"{program}: training diverged: {error}; the last good checkpoint is "
              f"{latest_checkpoint(checkpoint_dir) or 'none'}; "
              f"{resume_advice(argv, '--learning-rate', 'a lower learning_rate')}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C pressed twice, or once while evaluating
        if config.evaluate:
            print("\nStopped.", file=sys.stderr)
            return 130
        last_good = latest_checkpoint(checkpoint_dir)
        print(f"\nStopped at once; the last complete checkpoint is {last_good or 'none'}.",
              file=sys.stderr)
        if last_good:
            print(_sentence(resume_advice(argv)), file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{program}: error: "
              f"{in_its_words('out of memory; pass a smaller --buffer-size', config)}",
              file=sys.stderr)
        return 1
    if summary["stopped"]:
        print(_sentence(resume_advice(argv)), flush=True)
    return 0


def in_its_words(message: str, config: Any) -> str:
    """A message as the place it is read in says it: flags in a terminal, settings in
    a notebook.

    Why: a notebook user sets ``resume = True`` in the settings cell; telling them to
    "add --resume" names a command line they do not have. In a notebook cell (not
    ``%run``), each flag of a setting of ``config`` becomes that setting:
    ``--run-dir`` is ``run_dir``, ``--resume`` is ``resume = True``,
    ``--no-overlap-updates`` is ``overlap_updates = False`` and ``--buffer-size 20000``
    is ``buffer_size = 20000``.
    """
    if not in_notebook_cell():
        return message
    names = {field.name for field in dataclasses.fields(config)}

    def setting(match: re.Match) -> str:
        negated, name, value = match.group(1), match.group(2).replace("-", "_"), match.group(3)
        if name not in names:
            return match.group(0)
        if negated or isinstance(getattr(config, name), bool):
            return f"{name} = {not negated}"
        return f"{name} = {value}" if value else name

    return re.sub(r"--(no-)?([a-z][a-z0-9-]*)(?: (-?\d[\w.+-]*))?", setting, message)


def exit_with(status: int) -> None:
    """Ends the process with ``status``; inside a notebook, does nothing.

    Why: in a notebook ``SystemExit`` only prints a traceback-like warning.
    """
    if not in_notebook():
        sys.exit(status)


def program_name() -> str:
    """The script's file name, for messages (``breakout_dqn.py``)."""
    return os.path.basename(sys.argv[0]) or "python"


def resume_advice(argv: list[str] | None = None, flag: str = "", change: str = "") -> str:
    """How to continue this run, in the words of the place it runs in.

    Args:
        argv: the command line of this run (``None``: ``sys.argv[1:]``).
        flag: a flag the user should change, such as ``--learning-rate``.
        change: the change, in words, for a notebook user (``a lower learning rate``).

    Returns:
        One sentence, starting lower case: ``resume with: python breakout_dqn.py ...
        --resume`` in a terminal, the same after ``%run``, and the settings to change
        in a notebook cell. The command never drops a flag of the run, so it never
        starts a new run over the old one.
    """
    if in_notebook_cell():  # a notebook cell, not %run
        setting = f"set {change} and " if change else ""
        return (f"to resume, {setting}set resume = True in the settings cell (or "
                f"Config(resume=True)) and run the training cell again")
    arguments = list(sys.argv[1:] if argv is None else argv)
    arguments = [argument for argument in arguments if argument != "--resume"]
    prefix = "%run" if in_notebook() else "python"
    command = " ".join([prefix, program_name(), *arguments, "--resume"])
    if flag:
        return f"resume with a lower {flag}: {command} {flag} ..."
    return f"resume with: {command}"


def check_writable(folder: str, flag: str) -> None:
    """Makes sure ``folder`` exists (creating it) and a file can be written in it.

    Args:
        folder: the output folder.
        flag: the command-line flag that names it, for the message.

    Raises:
        ConfigError: if the folder cannot be created or written to.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".write-test")
        with open(probe, "w") as file:
            file.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ConfigError(f"cannot write to {flag} {folder!r} ({error.strerror or error}); "
                          f"choose a folder you can write to") from None


class Interrupted(Exception):
    """Raised by an evaluation stopped by a signal, after it has printed what it finished.

    Args:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        detail: what was done, e.g. ``"after 3 of 10 games"``.
    """

    def __init__(self, signal_name: str, detail: str):
        super().__init__(f"stopped by {signal_name} {detail}")
        self.signal_name, self.detail = signal_name, detail


class GracefulStop:
    """Turns Ctrl-C and SIGTERM into a flag the training loop checks once a step.

    Why: a signal that arrives in the middle of a TensorFlow call or a file write
    must not tear it apart; the loop finishes its step, saves a checkpoint and
    exits cleanly. A second Ctrl-C stops at once. Interrupting a notebook kernel
    sends the same SIGINT.

    Use it as a context manager around the loop; ``requested`` becomes true when
    a stop is asked for. Outside the main thread (where Python cannot install
    signal handlers) it does nothing.

    Args:
        then: what the loop does when asked to stop, for the line printed then.
    """

    def __init__(self, then: str = "saving a checkpoint before stopping"):
        self.then = then
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "GracefulStop":
        try:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                self._previous[signal_number] = signal.signal(signal_number, self._handle)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc_info) -> None:
        for signal_number, handler in self._previous.items():
            signal.signal(signal_number, handler)
        self._previous.clear()

    def _handle(self, signal_number, frame) -> None:
        if self.requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now
        self.requested = True
        self.signal_name = signal.Signals(signal_number).name
        print(f"\n{self.signal_name} received: {self.then} (press Ctrl-C again to stop at "
              f"once)", flush=True)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]
