"""Tests of common/logger.py: progress.csv rows, TensorBoard files, resume truncation."""

import csv
import math
import os

import pytest

from common.logger import PROGRESS_FIELDS, RunLogger


def read_rows(run_dir):
    with open(os.path.join(run_dir, "progress.csv"), newline="") as file:
        return list(csv.reader(file))


def test_one_row_per_game_with_step_first(tmp_path, capsys):
    logger = RunLogger(str(tmp_path), print_every_games=2)
    logger.log_game(100, 1, 3.0, 3.0, 0.9, math.nan, math.nan)
    logger.log_game(250, 2, 5.0, 4.0, 0.8, 0.25, 1.5)
    rows = read_rows(tmp_path)  # readable while the logger is still open: flushed per row
    logger.close()
    assert rows[0] == list(PROGRESS_FIELDS) and rows[0][0] == "step"
    assert [row[:5] for row in rows[1:]] == [["100", "1", "3.0", "3.0", "0.9"],
                                            ["250", "2", "5.0", "4.0", "0.8"]]
    assert rows[1][5] == "nan" and float(rows[2][5]) == 0.25
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "games      2" in printed and "running reward    4.00" in printed
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


def test_resume_drops_rows_after_the_checkpoint_and_appends(tmp_path):
    logger = RunLogger(str(tmp_path))
    for game, step in enumerate([100, 200, 300, 400], start=1):
        logger.log_game(step, game, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.close()
    with open(tmp_path / "progress.csv", "a") as file:
        file.write("45")  # a row cut short by kill -9
    resumed = RunLogger(str(tmp_path), resume_step=250)
    resumed.log_game(320, 3, 2.0, 1.3, 0.5, 0.1, 0.1)
    resumed.close()
    rows = read_rows(tmp_path)
    assert [row[0] for row in rows[1:]] == ["100", "200", "320"]
    assert [row[1] for row in rows[1:]] == ["1", "2", "3"]


def scalar_steps(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_tensorboard_scalars_and_their_purge_on_resume(tmp_path):
    logger = RunLogger(str(tmp_path))
    for game, step in enumerate([100, 200, 300, 400], start=1):
        logger.log_game(step, game, float(game), 1.0, 0.5, math.nan, math.nan)
    logger.close()
    assert [step for step, _ in scalar_steps(tmp_path, "charts/score")] == [100, 200, 300, 400]
    resumed = RunLogger(str(tmp_path), resume_step=250)
    resumed.log_game(330, 3, 30.0, 1.0, 0.5, 0.1, 0.2)
    resumed.close()
    assert scalar_steps(tmp_path, "charts/score") == [(100, 1.0), (200, 2.0), (330, 30.0)]
    assert scalar_steps(tmp_path, "losses/huber") == [(330, pytest.approx(0.1))]


def test_a_full_disk_warns_once_and_logging_goes_on(tmp_path, capsys, monkeypatch):
    logger = RunLogger(str(tmp_path))

    def disk_full(*arguments):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logger._file, "flush", disk_full)
    logger.log_game(100, 1, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.log_game(200, 2, 1.0, 1.0, 0.5, 0.1, 0.1)
    assert capsys.readouterr().err.count("warning: could not write the log") == 1
    logger.close()
