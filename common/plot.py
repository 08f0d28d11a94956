"""Learning-curve pictures of one or more runs, drawn from their CSV files.

A run folder holds ``progress.csv`` (one row per finished game) and, in runs that
measure it, ``heldout_q.csv`` (a row every 10,000 or so agent steps). This module
reads them and draws up to four panels against agent steps:

1. ``score``: each game's raw score as faint dots, the running reward (the mean of
   the last 100 games, as logged) as a line, and a dashed "solved at" line.
2. ``heldout_q``: the mean over a fixed set of held-out states of max_a Q(s, a), the
   smooth learning curve of Mnih et al. (2015, Fig. 2).
3. ``loss``: the Huber loss of each game (the mean over its updates) as faint dots,
   and its mean over the last 20 games as a line.
4. ``epsilon``: the exploration rate.

Three callers share it: the training loop redraws ``progress.png`` in its run folder,
a ``--plot`` command (``plot_runs``) draws one run or overlays several, and a notebook
refreshes a live figure.
It draws on a ``matplotlib.figure.Figure`` and never imports ``pyplot`` or calls
``matplotlib.use``, so the global backend stays as it was and a notebook's inline
display keeps working; a figure made here is not registered with pyplot, so it is
freed like any other object once it is no longer referenced.
"""

from __future__ import annotations

import math
import os
import sys
from typing import NamedTuple, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from common.config import ConfigError
from common.files import HELDOUT_FIELDS, PROGRESS_FIELDS, read_table, write_atomically

PANELS = ("score", "heldout_q", "loss", "epsilon")

# Per panel: title, y-axis label, the sentence shown while no run has a point for it,
# and where its legend goes (the legend sits on the first panel drawn).
_PLOT_PANEL_TEXT = {
    "score": ("Score per game (dots) and mean of the last 100 games (line)", "score",
              "no finished game yet", "upper left"),
    "heldout_q": ("Mean max Q over 500 held-out states", "max_a Q(s, a)",
                  "no held-out Q yet", "upper left"),
    "loss": ("Huber loss per game (dots) and mean of the last 20 games (line)", "loss",
             "no loss yet: learning has not started", "upper right"),
    "epsilon": ("Exploration rate epsilon", "epsilon", "no finished game yet",
                "upper right"),
}
_PLOT_LOSS_WINDOW_GAMES = 20
_PLOT_PROGRESS_COLUMNS = ("step", "score", "running_reward", "epsilon", "loss", "mean_q")
_PLOT_HELDOUT_COLUMNS = ("step", "heldout_q")


class RunFolderError(ConfigError):
    """A folder given as a run folder is missing or holds no readable ``progress.csv``.

    Why: a command that is handed a wrong path should print one line saying so,
    not a traceback; its message names the folder and says what was expected. It is
    a ``ConfigError`` (a ``ValueError``), which the scripts' command line reports in
    one line with exit status 2.
    """


class RunCurves(NamedTuple):
    """The learning curves of one run, as float64 arrays.

    Attributes:
        label: the name shown in the legend (by default the run folder's name).
        step: agent steps when each game finished, shape ``(G,)`` for G games.
        score: each game's raw score (all lives, rewards not clipped).
        running_reward: mean score of the last 100 games at that game (fewer at first).
        epsilon: exploration rate when the game finished.
        loss: mean Huber loss of the updates during the game; NaN before learning starts.
        mean_q: mean predicted Q(s, a) over those updates; NaN before learning starts.
        q_step: agent steps of each held-out Q measurement, shape ``(M,)``; empty when
            the run has no ``heldout_q.csv``.
        heldout_q: mean over the held-out states of max_a Q(s, a), shape ``(M,)``.
    """

    label: str
    step: np.ndarray
    score: np.ndarray
    running_reward: np.ndarray
    epsilon: np.ndarray
    loss: np.ndarray
    mean_q: np.ndarray
    q_step: np.ndarray
    heldout_q: np.ndarray


def read_run(run_dir: str | os.PathLike, label: str | None = None) -> RunCurves:
    """Reads a run folder's ``progress.csv`` and, if there is one, ``heldout_q.csv``.

    Why: the files are read while the run may still be writing them, or after it was
    killed mid-write, so a last line cut short is skipped silently; the readable rows
    of a damaged file are drawn, with one warning.

    Args:
        run_dir: the run folder.
        label: name for the legend; ``None`` uses the folder's name.

    Returns:
        The run's curves; arrays are empty when the files hold only a header.

    Raises:
        RunFolderError: the folder does not exist or holds no ``progress.csv``, or
            that file lacks the expected columns.
    """
    run_dir = os.fspath(run_dir)
    if label is None:
        label = os.path.basename(os.path.normpath(os.path.abspath(run_dir)))
    if not os.path.isdir(run_dir):
        raise RunFolderError(f"{run_dir} is not a folder; give the path of a run folder")
    progress_path = os.path.join(run_dir, "progress.csv")
    if not os.path.isfile(progress_path):
        raise RunFolderError(f"{run_dir} holds no progress.csv; is it a run folder?")
    progress = _plot_read_columns(progress_path, PROGRESS_FIELDS, _PLOT_PROGRESS_COLUMNS)
    heldout_path = os.path.join(run_dir, "heldout_q.csv")
    if os.path.isfile(heldout_path):
        heldout = _plot_read_columns(heldout_path, HELDOUT_FIELDS, _PLOT_HELDOUT_COLUMNS)
    else:  # runs from before the held-out measurement
        heldout = {name: np.empty(0) for name in _PLOT_HELDOUT_COLUMNS}
    return RunCurves(label=label, step=progress["step"], score=progress["score"],
                     running_reward=progress["running_reward"],
                     epsilon=progress["epsilon"], loss=progress["loss"],
                     mean_q=progress["mean_q"], q_step=heldout["step"],
                     heldout_q=heldout["heldout_q"])


def draw_learning_curves(figure: Figure, runs: Sequence[RunCurves],
                         solved_at: float | None = None,
                         panels: Sequence[str] = PANELS) -> None:
    """Draws the learning curves of one or more runs on ``figure``, replacing its content.

    Why: the same picture serves a PNG written during training, several runs compared
    on the command line and a notebook's live figure; clearing the figure first lets
    a caller redraw the same figure in place. Each run keeps one colour in every panel
    and the legend, on the first panel, names the runs. Four panels are laid out 2x2,
    other counts side by side. The caller shows the figure (saves it, updates a
    notebook display, or calls ``figure.canvas.draw_idle()``).

    Args:
        figure: the figure to draw on; its size and layout engine are left as they are.
        runs: the runs to overlay, each from ``read_run``.
        solved_at: running reward at which the game counts as solved, drawn as a dashed
            line in the score panel; ``None`` draws none.
        panels: which panels to draw, in order, from ``PANELS``; a notebook may ask for
            ``("score",)`` alone.

    Raises:
        ValueError: ``panels`` is empty or names an unknown panel.
    """
    unknown = [name for name in panels if name not in _PLOT_PANEL_TEXT]
    if unknown or not panels:
        raise ValueError(f"panels must be a non-empty selection of {', '.join(PANELS)}; "
                         f"got {', '.join(map(str, panels)) or 'none'}")
    figure.clear()
    rows, columns = (2, 2) if len(panels) == 4 else (1, len(panels))
    # Every panel is drawn against agent steps, so they share the x axis: zooming one
    # zooms all, and only the bottom row carries tick labels.
    axes_grid = figure.subplots(rows, columns, sharex=True, squeeze=False)
    colours = _plot_colours(len(runs))
    step_formatter = FuncFormatter(_plot_format_steps)
    for axes, panel in zip(axes_grid.flat, panels):
        title, y_label, empty_text, _ = _PLOT_PANEL_TEXT[panel]
        has_points = False
        for run, colour in zip(runs, colours):
            has_points |= _plot_draw_panel(axes, panel, run, colour)
        if not has_points:
            axes.text(0.5, 0.5, empty_text, transform=axes.transAxes, ha="center",
                      va="center", color="grey")
        axes.set_title(title, fontsize="medium")
        axes.set_ylabel(y_label)
        axes.xaxis.set_major_formatter(step_formatter)
        axes.grid(True, alpha=0.3)
    for axes in axes_grid[-1]:
        axes.set_xlabel("agent steps")
    legend_handles = [Line2D([], [], color=colour, label=run.label)
                      for run, colour in zip(runs, colours)]
    if solved_at is not None and "score" in panels:
        score_axes = axes_grid.flat[panels.index("score")]
        legend_handles.append(score_axes.axhline(
            solved_at, color="black", linestyle="--", linewidth=1,
            label=f"solved at {solved_at:g}"))
    if legend_handles:
        axes_grid.flat[0].legend(handles=legend_handles, fontsize="small",
                                 loc=_PLOT_PANEL_TEXT[panels[0]][3])


def plot_runs(run_dirs: Sequence[str | os.PathLike], solved_at: float | None = None) -> str:
    """Draws the learning curves of one run, or of several overlaid; returns the PNG's path.

    Why: ``--plot`` looks at runs that finished or are still going, to compare seeds
    or settings. One run's picture goes where training puts it,
    ``<run dir>/progress.png``; several go to ``comparison.png`` in the current folder.
    The legend names each run by its folder (by the path as given when two folders
    share a name).

    Args:
        run_dirs: one or more run folders.
        solved_at: the running reward that solves the game, drawn dashed.

    Returns:
        The path of the PNG written.

    Raises:
        RunFolderError: a folder is not a run folder.
        ConfigError: the picture cannot be written (the message says where).
    """
    run_dirs = [os.fspath(run_dir) for run_dir in run_dirs]
    if not run_dirs:
        raise ConfigError("--plot needs at least one run folder")
    path = os.path.join(run_dirs[0], "progress.png") if len(run_dirs) == 1 else "comparison.png"
    names = [os.path.basename(os.path.normpath(os.path.abspath(run_dir))) for run_dir in run_dirs]
    labels = names if len(set(names)) == len(names) else run_dirs
    try:
        return write_progress_png(run_dirs, path, solved_at=solved_at, labels=labels)
    except OSError as error:
        raise ConfigError(f"cannot write {path} ({error.strerror or error}); run --plot "
                          f"from a folder you can write to") from None


def write_progress_png(run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                       path: str | os.PathLike, solved_at: float | None = None,
                       title: str | None = None, labels: Sequence[str] | None = None) -> str:
    """Draws the four panels of one or more runs and saves them as a PNG, atomically.

    Why: the training loop redraws ``progress.png`` every few minutes, and whoever has
    it open (a browser, an image viewer, a notebook) must never see half a file; the
    picture is written to a temporary file beside ``path`` and then renamed over it.
    The figure is a bare ``Figure``, so pyplot and the global backend are untouched.

    Args:
        run_dirs: a run folder or a list of them, overlaid in that order.
        path: where the PNG goes; its folder must exist.
        solved_at: running reward at which the game counts as solved, or ``None``.
        title: a title above the panels, or ``None`` for none.
        labels: the legend's name of each run; ``None`` uses the folders' names.

    Returns:
        ``path``, as a string.

    Raises:
        RunFolderError: a folder is not a run folder (see ``read_run``).
        OSError: the PNG cannot be written; no temporary file is left behind.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    labels = [None] * len(run_dirs) if labels is None else labels
    runs = [read_run(run_dir, label) for run_dir, label in zip(run_dirs, labels)]
    figure = Figure(figsize=(12, 8), dpi=100)
    draw_learning_curves(figure, runs, solved_at=solved_at)
    if title:
        figure.suptitle(title)
    # Fixed margins suit this fixed size; a layout engine would measure every label
    # on each save and take about as long again as drawing the picture.
    figure.subplots_adjust(left=0.06, right=0.985, bottom=0.07, top=0.92 if title else 0.95,
                           wspace=0.18, hspace=0.22)
    path = os.fspath(path)
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png"),
                     durable=False)  # a picture is redrawn from the CSV files at will
    return path


def _plot_read_columns(path: str, fields: Sequence[str],
                       names: Sequence[str]) -> dict[str, np.ndarray]:
    """Reads the columns ``names`` of a run's CSV file whose header is ``fields``.

    The readable rows of a damaged file are drawn, with one warning per file
    (``common.files.read_table`` says what is wrong); a file with none is refused.
    """
    rows, problem = read_table(path, fields)
    if problem and not rows and problem != "it is empty":
        raise RunFolderError(f"{path} is damaged ({problem}) and holds no readable row; "
                             f"is it a file of this project?")
    if problem and problem != "it is empty" and path not in _WARNED:
        _WARNED.add(path)
        print(f"warning: {path} is damaged ({problem}); drawing its {len(rows):,} readable "
              f"rows", file=sys.stderr, flush=True)
    table = np.array(rows, dtype=np.float64).reshape(-1, len(fields))
    return {name: table[:, list(fields).index(name)] for name in names}


_WARNED: set[str] = set()  # the damaged files already warned about


def _plot_draw_panel(axes, panel: str, run: RunCurves, colour) -> bool:
    """Draws one run on one panel; returns whether it had any finite point to draw."""
    if panel == "score":
        axes.scatter(run.step, run.score, s=4, color=colour, alpha=0.25, linewidths=0)
        axes.plot(run.step, run.running_reward, color=colour, linewidth=1.5)
        return bool(np.isfinite(run.score).any())
    if panel == "heldout_q":
        # Markers, because early in a run a single measurement is no line at all.
        axes.plot(run.q_step, run.heldout_q, color=colour, linewidth=1.5, marker=".",
                  markersize=3)
        return bool(np.isfinite(run.heldout_q).any())
    if panel == "loss":
        # Dots, not a faint line: a line through thousands of noisy values takes Agg
        # seconds to draw (2 s for 30,000 games), dots a tenth of a second.
        axes.scatter(run.step, run.loss, s=3, color=colour, alpha=0.2, linewidths=0)
        axes.plot(run.step, _plot_trailing_mean(run.loss, _PLOT_LOSS_WINDOW_GAMES),
                  color=colour, linewidth=1.5)
        return bool(np.isfinite(run.loss).any())
    axes.plot(run.step, run.epsilon, color=colour, linewidth=1.5)
    axes.set_ylim(0.0, 1.05)
    return bool(np.isfinite(run.epsilon).any())


def _plot_trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the finite values among each value and the ``window - 1`` before it.

    Positions whose window holds no finite value (before learning starts) are NaN.
    """
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    window_counts = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[ends] - sums[starts]) / window_counts
    return np.where(window_counts > 0, means, np.nan)


def _plot_colours(count: int) -> list:
    """One colour per run from matplotlib's colour cycle, repeating past its end."""
    cycle = matplotlib.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return [cycle[index % len(cycle)] for index in range(count)]


def _plot_format_steps(value: float, _position=None) -> str:
    """Writes an agent-step count for an axis: 500, 250k, 1.2M."""
    if not math.isfinite(value):
        return ""
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.3g}k"
    return f"{value:.0f}"
