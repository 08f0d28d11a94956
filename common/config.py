"""Command-line overrides for a configuration dataclass, and checks of its values.

A script defines its settings once, as a dataclass whose fields each carry a
one-line docstring. ``parse_config`` turns every field into a flag
(``total_steps`` becomes ``--total-steps``, its docstring the help text), so the
command line can only override what the dataclass already says. Inside a
Jupyter kernel the kernel's own arguments are ignored, so the same file runs in
a notebook unchanged.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
import os
import sys
import textwrap
import typing
from typing import Any, Sequence, TypeVar

from common.files import flag_name

ConfigT = TypeVar("ConfigT")


HIGHEST_SCORES = {"Pong": 21.0, "Breakout": 864.0}
"""The highest raw score of a game, where it is known (Breakout: two walls of 432)."""


class ConfigError(ValueError):
    """A setting that cannot work; the message says what to change."""


class _OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit with status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_docstrings(config_class: type) -> dict[str, str]:
    """Reads the docstring written under each field of a dataclass.

    Why: Python keeps no such docstrings at run time, yet they are the most
    readable place for a setting's unit and reason, so they are read from source.

    Args:
        config_class: a dataclass.

    Returns:
        Field name to its docstring, collapsed to one line. Empty if the source
        cannot be found (for example in some interactive shells).
    """
    try:
        source = textwrap.dedent(inspect.getsource(config_class))
    except (OSError, TypeError):
        return {}
    body = ast.parse(source).body[0].body
    docs = {}
    for statement, following in zip(body, body[1:]):
        if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def in_notebook() -> bool:
    """Whether this code runs inside a Jupyter (or Colab) kernel."""
    return "ipykernel" in sys.modules


def in_notebook_cell() -> bool:
    """Whether this runs in a notebook cell, whose ``sys.argv`` is the kernel's, not the user's.

    A kernel starts as ``ipykernel_launcher.py -f kernel.json`` (Colab:
    ``colab_kernel_launcher.py``); ``%run script.py --flag`` replaces that with
    the script's own command line, which must then be honoured.
    """
    return in_notebook() and os.path.basename(sys.argv[0]).endswith("_launcher.py")


def parse_config(config_class: type[ConfigT], argv: Sequence[str] | None = None,
                 description: str = "") -> ConfigT:
    """Builds a configuration from the dataclass defaults and command-line overrides.

    Args:
        config_class: the dataclass; each field becomes ``--field-name``. A
            ``bool`` field becomes a ``--flag / --no-flag`` pair, and a
            ``list[str]`` field a flag that takes one or more values.
        argv: the arguments; ``None`` reads ``sys.argv``, except for a notebook
            kernel's own arguments, which are ignored (``%run script.py --flag``
            still works).
        description: shown by ``--help``.

    Returns:
        An instance of ``config_class``. A wrong flag or value exits with a
        one-line message and status 2.
    """
    if argv is None:
        argv = [] if in_notebook_cell() else sys.argv[1:]
    docs = field_docstrings(config_class)
    parser = _OneLineParser(description=description)
    hints = {field.name: field.type for field in dataclasses.fields(config_class)}
    for field in dataclasses.fields(config_class):
        flag = flag_name(field.name)
        kind = _field_type(hints[field.name])
        default = (field.default_factory() if field.default is dataclasses.MISSING
                   else field.default)  # a list field's default comes from its factory
        help_text = f"{docs.get(field.name, '')} (default: {default!r})"
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=default, help=help_text)
        elif kind is list:
            parser.add_argument(flag, dest=field.name, type=str, nargs="+", default=default,
                                metavar=field.name.upper(), help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=default,
                                metavar=field.name.upper(), help=help_text)
    arguments = parser.parse_args(list(argv))
    config = config_class(**vars(arguments))
    # Parsed again with every default suppressed, only the flags given remain.
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    config._given_fields = frozenset(vars(parser.parse_args(list(argv))))
    return config


def given_fields(config: Any) -> frozenset[str]:
    """The fields set on purpose: the flags given, or for a configuration built in code
    (a notebook's ``Config(total_steps=...)``), the fields that differ from the defaults.

    Why: on ``--resume`` a setting the user did not give takes the run's saved value,
    and one the user gave must not be silently ignored.
    """
    given = getattr(config, "_given_fields", None)
    if given is not None:
        return given
    defaults = type(config)()
    return frozenset(field.name for field in dataclasses.fields(config)
                     if getattr(config, field.name) != getattr(defaults, field.name))


def replace_settings(config: Any, given: frozenset[str] | None = None, **changes: Any) -> Any:
    """A copy of ``config`` with ``changes``, that still knows which fields were given.

    Why: ``dataclasses.replace`` builds a new object without ``_given_fields``, after
    which every setting equal to its default would count as not given.

    Args:
        config: the configuration to copy.
        given: the fields to count as given in the copy; by default ``config``'s own
            (``None`` for a configuration built in code).
        **changes: settings to change.

    Returns:
        The new configuration.
    """
    if given is None:
        given = getattr(config, "_given_fields", None)
    replaced = dataclasses.replace(config, **changes)
    replaced._given_fields = given
    return replaced


def _field_type(annotation: Any) -> type:
    """Maps a field annotation (possibly a string, with ``from __future__ import
    annotations``) to the type argparse should convert to; ``list`` for ``list[str]``,
    whose values stay strings."""
    names = {"int": int, "float": float, "str": str, "bool": bool, "list[str]": list}
    if isinstance(annotation, str):
        if annotation not in names:
            raise TypeError(f"unsupported configuration field type {annotation!r}")
        return names[annotation]
    if typing.get_origin(annotation) is list:
        if typing.get_args(annotation) != (str,):
            raise TypeError(f"unsupported configuration field type {annotation!r}")
        return list
    return annotation


MAX_STEPS = 10**12
"""The most agent steps a run may take: more than any run needs (a million steps take
hours), and few enough for every count, file name and duration a run writes."""


def check_config(config: Any, across_fields: bool = True) -> None:
    """Checks the values a DQN run depends on, before any work starts.

    It looks only at the fields the configuration has, so a script with fewer
    settings can use it too.

    Args:
        config: a configuration dataclass instance.
        across_fields: also check the settings against each other. On ``--resume``
            the run's saved settings fill in the ones not given, so these checks
            wait for them (``common.run.Run`` checks the resumed settings whole).

    Raises:
        ConfigError: with a one-line message that says what to change.
    """
    def has(name):
        return hasattr(config, name)

    flag = flag_name

    positive = ("total_steps", "buffer_size", "batch_size", "train_every",
                "target_update_every", "checkpoint_every", "episodes", "log_every_games",
                "n_step")
    for name in positive:
        if has(name) and getattr(config, name) <= 0:
            raise ConfigError(f"{flag(name)} must be a positive whole number, "
                              f"got {getattr(config, name)}")
    non_negative = ("learning_starts", "eps_decay_steps", "video_every")
    for name in non_negative:
        if has(name) and getattr(config, name) < 0:
            raise ConfigError(f"{flag(name)} must be zero or more, got {getattr(config, name)}")
    for name in ("gamma", "eps_start", "eps_end", "eval_epsilon"):
        value = getattr(config, name, 0.0)
        if has(name) and not 0.0 <= value <= 1.0:
            raise ConfigError(f"{flag(name)} must be between 0 and 1, got {value}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{flag(field.name)} must be a finite number, got {value}")
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_STEPS:
            raise ConfigError(f"{flag(field.name)} must be at most {MAX_STEPS:,}, got {value:,}")
    for name in ("learning_rate", "max_gradient_norm"):
        if has(name) and not getattr(config, name) > 0:
            raise ConfigError(f"{flag(name)} must be a positive number, got {getattr(config, name)}")
    if not across_fields:
        return
    _check_across_fields(config)


def _check_across_fields(config: Any) -> None:
    """The checks of ``check_config`` that compare one setting with another."""
    def has(name):
        return hasattr(config, name)

    # A new run, that is: a resume may stop short of learning and be carried on later.
    new_run = not any(getattr(config, name, False) for name in ("evaluate", "plot", "resume"))
    if getattr(config, "evaluate", "") and getattr(config, "plot", []):
        raise ConfigError("--evaluate plays an agent and --plot draws runs: give one of them")
    if (has("total_steps") and has("learning_starts") and new_run
            and config.total_steps <= config.learning_starts):
        raise ConfigError(f"--total-steps ({config.total_steps:,}) must be more than "
                          f"--learning-starts ({config.learning_starts:,}), or the run never "
                          f"learns; raise --total-steps or lower --learning-starts")
    if has("eps_start") and has("eps_end") and config.eps_end > config.eps_start:
        raise ConfigError(f"--eps-end ({config.eps_end:g}) must not be above --eps-start "
                          f"({config.eps_start:g}): exploration falls as the agent learns")
    if (getattr(config, "deterministic", False) and getattr(config, "overlap_updates", False)
            and "overlap_updates" in given_fields(config)):
        raise ConfigError("--deterministic runs every update in turn; leave --overlap-updates "
                          "out")
    if has("n_step") and has("buffer_size") and config.n_step >= config.buffer_size:
        raise ConfigError(f"--n-step must be smaller than --buffer-size ({config.buffer_size:,}), "
                          f"got {config.n_step}; n-step returns use 3 or so")
    if has("seed") and not 0 <= config.seed < 2**32:
        raise ConfigError(f"--seed must be a whole number from 0 to {2**32 - 1}, got {config.seed}")
    if has("solved_at") and has("env_id"):
        game = config.env_id.split("NoFrameskip")[0]
        if game in HIGHEST_SCORES and config.solved_at > HIGHEST_SCORES[game]:
            raise ConfigError(f"--solved-at {config.solved_at:g} cannot be reached in {game}, "
                              f"whose highest score is {HIGHEST_SCORES[game]:g}; pass a lower "
                              f"--solved-at")
    if has("buffer_size") and has("batch_size") and config.buffer_size < config.batch_size:
        raise ConfigError(f"--buffer-size ({config.buffer_size}) must be at least "
                          f"--batch-size ({config.batch_size})")
    if has("learning_starts") and has("batch_size") and config.learning_starts < config.batch_size:
        raise ConfigError(f"--learning-starts ({config.learning_starts}) must be at least "
                          f"--batch-size ({config.batch_size}): the first update needs a full batch")
    if has("learning_starts") and has("buffer_size") and config.learning_starts > config.buffer_size:
        raise ConfigError(f"--learning-starts ({config.learning_starts}) cannot exceed "
                          f"--buffer-size ({config.buffer_size})")


def check_memory(bytes_needed: int, bytes_per_item: int, flag: str = "--buffer-size",
                 what: str = "the replay memory") -> None:
    """Refuses a buffer that cannot fit in the memory this machine has free now.

    Why: NumPy reserves large arrays lazily, so an oversized replay memory would
    not fail when allocated but hours later, when the operating system kills the
    filled-up process. Checking first turns that into a clear message.

    Args:
        bytes_needed: size of the buffer to allocate.
        bytes_per_item: size of one stored item, to suggest a size that fits.
        flag: the command-line flag that sets the size.
        what: what the buffer is, for the message.

    Raises:
        ConfigError: if ``bytes_needed`` exceeds 90% of the available memory.
    """
    import psutil  # imported here: only a training run needs it

    available = psutil.virtual_memory().available
    if bytes_needed > 0.9 * available:
        fits = int(0.8 * available / bytes_per_item) // 10_000 * 10_000
        raise ConfigError(f"{what} needs {bytes_needed / 1e9:.1f} GB but only "
                          f"{available / 1e9:.1f} GB of memory is available; pass a smaller "
                          f"{flag} (for example {flag} {max(fits, 10_000)})")
