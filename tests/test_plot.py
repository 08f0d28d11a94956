"""Tests of common/plot.py: reading run folders, the panels, and the atomic PNG writer."""

import math
import os
import sys

import matplotlib
import matplotlib.image
import numpy as np
import pytest
from matplotlib.figure import Figure

from common.config import ConfigError
from common.plot import (PANELS, RunFolderError, _plot_trailing_mean, draw_learning_curves,
                         plot_runs, read_run, write_progress_png)

PROGRESS_HEADER = ("step,game,score,running_reward,epsilon,loss,mean_q,steps_per_second,"
                   "elapsed_seconds\n")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def make_run(folder, games, heldout=None, tail=""):
    """Writes a run folder whose game ``i`` (from 1) ends at step 1000 * i.

    Games before the third have no loss yet (NaN), as before learning starts.
    ``tail`` is appended as is, to imitate a last line cut short.
    """
    folder.mkdir(parents=True)
    lines = [PROGRESS_HEADER]
    for game in range(1, games + 1):
        loss = "nan" if game < 3 else f"{0.1 * game:g}"
        mean_q = "nan" if game < 3 else f"{0.5 * game:g}"
        lines.append(f"{1000 * game},{game},{game % 4},{game / 2:g},{1 - 0.01 * game:g},"
                     f"{loss},{mean_q},250.0,{game:.2f}\n")
    (folder / "progress.csv").write_text("".join(lines) + tail)
    if heldout is not None:
        (folder / "heldout_q.csv").write_text(
            "step,heldout_q\n" + "".join(f"{step},{value}\n" for step, value in heldout))
    return folder


def test_read_run_skips_a_cut_short_last_line_and_keeps_nan_losses(tmp_path):
    run = read_run(make_run(tmp_path / "breakout", games=4, tail="5000,5,3.0,2.5"))
    assert run.label == "breakout"
    np.testing.assert_array_equal(run.step, [1000, 2000, 3000, 4000])
    np.testing.assert_array_equal(run.score, [1, 2, 3, 0])
    np.testing.assert_array_equal(run.running_reward, [0.5, 1.0, 1.5, 2.0])
    np.testing.assert_allclose(run.epsilon, [0.99, 0.98, 0.97, 0.96])
    assert np.isnan(run.loss[:2]).all() and np.isnan(run.mean_q[:2]).all()
    np.testing.assert_allclose(run.loss[2:], [0.3, 0.4])
    np.testing.assert_allclose(run.mean_q[2:], [1.5, 2.0])
    assert run.q_step.shape == (0,) and run.heldout_q.shape == (0,)  # no heldout_q.csv


def test_read_run_reads_heldout_q_and_skips_its_malformed_rows(tmp_path):
    folder = make_run(tmp_path / "pong", games=2,
                      heldout=[(10000, 0.25), (20000, 0.5), (30000, "")])
    run = read_run(folder, label="Pong, seed 1")
    assert run.label == "Pong, seed 1"
    np.testing.assert_array_equal(run.q_step, [10000, 20000])
    np.testing.assert_array_equal(run.heldout_q, [0.25, 0.5])


def test_a_folder_without_progress_csv_gives_a_one_line_error(tmp_path):
    (tmp_path / "videos").mkdir()
    with pytest.raises(RunFolderError) as raised:
        read_run(tmp_path / "videos")
    message = str(raised.value)
    assert "\n" not in message and "videos" in message and "progress.csv" in message
    assert isinstance(raised.value, ValueError)
    with pytest.raises(RunFolderError, match="not a folder"):
        read_run(tmp_path / "no-such-run")


def test_a_header_only_run_draws_empty_panels_that_say_so(tmp_path):
    run = read_run(make_run(tmp_path / "new", games=0))
    assert run.step.shape == (0,)
    figure = Figure()
    draw_learning_curves(figure, [run])
    notes = [text.get_text() for axes in figure.axes for text in axes.texts]
    assert "no finished game yet" in notes and "no held-out Q yet" in notes


def test_two_runs_get_one_colour_each_in_every_panel_and_the_legend(tmp_path):
    runs = [read_run(make_run(tmp_path / name, games=5)) for name in ("first", "second")]
    figure = Figure()
    draw_learning_curves(figure, runs, solved_at=18)
    assert len(figure.axes) == 4
    score_axes, _, _, epsilon_axes = figure.axes
    score_lines = score_axes.get_lines()
    # The two running-reward lines, then the dashed solved-at line.
    assert len(score_lines) == 3
    np.testing.assert_array_equal(score_lines[1].get_ydata(), runs[1].running_reward)
    solved_line = score_lines[2]
    assert solved_line.get_linestyle() == "--" and list(solved_line.get_ydata()) == [18, 18]
    colours = [line.get_color() for line in score_lines[:2]]
    assert colours[0] != colours[1]
    assert [line.get_color() for line in epsilon_axes.get_lines()] == colours
    legend_texts = [text.get_text() for text in score_axes.get_legend().get_texts()]
    assert legend_texts == ["first", "second", "solved at 18"]


def test_no_solved_at_means_no_dashed_line(tmp_path):
    figure = Figure()
    draw_learning_curves(figure, [read_run(make_run(tmp_path / "run", games=3))])
    assert [line.get_linestyle() for line in figure.axes[0].get_lines()] == ["-"]


def test_redrawing_the_same_figure_replaces_its_content(tmp_path):
    run = read_run(make_run(tmp_path / "run", games=5, heldout=[(10000, 0.1)]))
    figure = Figure()
    draw_learning_curves(figure, [run], solved_at=3)
    lines_per_panel = [len(axes.get_lines()) for axes in figure.axes]
    draw_learning_curves(figure, [run], solved_at=3)
    assert len(figure.axes) == 4
    assert [len(axes.get_lines()) for axes in figure.axes] == lines_per_panel
    draw_learning_curves(figure, [run], panels=("score",))
    assert len(figure.axes) == 1


def test_panels_are_laid_out_two_by_two_for_four_and_in_a_row_otherwise(tmp_path):
    run = read_run(make_run(tmp_path / "run", games=3))
    figure = Figure()
    draw_learning_curves(figure, [run], panels=PANELS)
    assert figure.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    draw_learning_curves(figure, [run], panels=("score", "heldout_q", "epsilon"))
    assert figure.axes[0].get_subplotspec().get_gridspec().get_geometry() == (1, 3)
    assert figure.axes[2].get_title().startswith("Exploration rate")
    with pytest.raises(ValueError, match="panels must be"):
        draw_learning_curves(figure, [run], panels=("score", "reward"))


def test_the_step_axis_reads_in_thousands_and_millions(tmp_path):
    figure = Figure()
    draw_learning_curves(figure, [read_run(make_run(tmp_path / "run", games=3))])
    formatter = figure.axes[0].xaxis.get_major_formatter()
    assert [formatter(value) for value in (0, 500, 250_000, 1_200_000, 10_000_000)] == [
        "0", "500", "250k", "1.2M", "10M"]


def test_the_loss_line_is_the_mean_of_the_finite_losses_of_the_last_games():
    losses = np.array([math.nan, 1.0, 3.0, math.nan, 5.0, 7.0])
    np.testing.assert_array_equal(_plot_trailing_mean(losses, 2), [math.nan, 1, 2, 3, 5, 6])
    assert np.isnan(_plot_trailing_mean(np.array([math.nan, math.nan]), 20)).all()


def test_write_progress_png_writes_a_png_and_leaves_the_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    pyplot_was_imported = "matplotlib.pyplot" in sys.modules
    runs = [make_run(tmp_path / "a", games=6, heldout=[(1000, 0.1), (4000, 0.3)]),
            make_run(tmp_path / "b", games=4)]
    target = tmp_path / "progress.png"
    written = write_progress_png(runs, target, solved_at=2, title="Two runs")
    assert written == str(target)
    assert target.read_bytes()[:8] == PNG_SIGNATURE
    assert matplotlib.image.imread(target).shape[:2] == (800, 1200)
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    assert matplotlib.get_backend() == backend
    assert ("matplotlib.pyplot" in sys.modules) == pyplot_was_imported


def test_an_unwritable_target_raises_oserror_and_leaves_no_temporary_file(tmp_path):
    run = make_run(tmp_path / "run", games=3)
    (tmp_path / "progress.png").mkdir()  # renaming a file onto a folder fails
    with pytest.raises(OSError):
        write_progress_png(run, tmp_path / "progress.png")
    assert sorted(os.listdir(tmp_path)) == ["progress.png", "run"]
    assert os.listdir(tmp_path / "progress.png") == []
    with pytest.raises(OSError):
        write_progress_png(run, tmp_path / "missing-folder" / "progress.png")
    assert sorted(os.listdir(tmp_path)) == ["progress.png", "run"]


def test_plot_runs_writes_one_runs_picture_in_its_folder_and_several_here(tmp_path,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    one = make_run(tmp_path / "seed1", games=4, heldout=[(1000, 0.1)])
    assert plot_runs([str(one)], solved_at=2) == str(one / "progress.png")
    assert (one / "progress.png").read_bytes()[:8] == PNG_SIGNATURE
    # Two folders of the same name are told apart by their paths in the legend.
    other = make_run(tmp_path / "b" / "seed1", games=3)
    assert plot_runs([str(one), str(other)]) == "comparison.png"
    assert (tmp_path / "comparison.png").read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(RunFolderError, match="holds no progress.csv"):
        plot_runs([str(one), str(tmp_path / "b")])
    assert issubclass(RunFolderError, ConfigError)
    (tmp_path / "comparison.png").unlink()
    (tmp_path / "comparison.png").mkdir()  # now it cannot be written
    with pytest.raises(ConfigError, match="cannot write comparison.png"):
        plot_runs([str(one), str(other)])
