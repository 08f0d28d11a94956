"""Tests of common/logger.py: progress.csv rows, TensorBoard files, resume truncation,
the smoothed rate and the held-out Q."""

import csv
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from common.logger import PROGRESS_FIELDS, HeldOutQ, RunLogger


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


def test_a_tensorboard_error_that_is_not_an_oserror_warns_once_and_logging_goes_on(
        tmp_path, capsys, monkeypatch):
    # TensorBoard's own writer reports a full disk as a TensorFlow error (TensorFlow 2.21:
    # ResourceExhaustedError), which is no OSError.
    logger = RunLogger(str(tmp_path))

    def disk_full(*arguments):
        raise tf.errors.ResourceExhaustedError(None, None, "events file; No space left on device")

    monkeypatch.setattr(logger._events, "add_event", disk_full)
    logger.log_game(100, 1, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.log_scalar("charts/heldout_q", 100, 0.5)
    logger.log_game(200, 2, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.close()
    warnings = capsys.readouterr().err
    assert warnings.count("warning: could not write the log") == 1, warnings
    assert "No space left on device" in warnings and "Traceback" not in warnings
    assert [row[0] for row in read_rows(tmp_path)[1:]] == ["100", "200"]  # the CSV goes on


def test_steps_per_second_is_smoothed_over_about_a_minute(tmp_path, monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 70.0, 71.0, 140.0])
    monkeypatch.setattr("common.logger.time.perf_counter", lambda: next(clock))
    logger = RunLogger(str(tmp_path))  # its start time is 0.0
    for game, step in enumerate([1000, 3000, 4000, 4100, 11000], start=1):
        logger.log_game(step, game, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.close()
    rates = [row[7] for row in read_rows(tmp_path)[1:]]
    # The rate runs from the newest game end that is at least a minute old (or the
    # oldest one kept) to now. Game 1 has nothing to measure against; game 2 at 20 s:
    # (3000 - 1000) / 10 s; games 3 and 4 at 70 and 71 s: nothing is a minute older
    # than the next point yet, so from 10 s; game 5 at 140 s: from 71 s, the newest
    # point at least a minute old.
    assert rates[0] == "nan"
    assert [float(rate) for rate in rates[1:]] == pytest.approx(
        [200.0, 3000 / 60, 3100 / 61, 6900 / 69], abs=0.1)


class FakeMemory:
    def __init__(self, size):
        self.size, self.draws = size, 0

    def __len__(self):
        return self.size

    def sample(self, batch_size, rng=None):
        assert rng is not None  # never the memory's own generator
        self.draws += 1
        observations = rng.integers(0, 255, size=(batch_size, 2, 2, 1), dtype=np.uint8)
        return type("Batch", (), {"observations": observations})


def mean_pixel_q(observations):
    """A stand-in policy: Q(s, a) = mean pixel of s, plus a for action a."""
    values = np.mean(observations, axis=(1, 2, 3))[:, None] + np.arange(3)[None, :]
    return None, tf.constant(values)


def test_heldout_q_measures_a_fixed_set_and_resumes_with_it(tmp_path):
    logger = RunLogger(str(tmp_path))
    heldout = HeldOutQ(str(tmp_path), logger, size=5, every=100)
    memory = FakeMemory(size=3)
    heldout.after_step(100, memory, mean_pixel_q)  # fewer than 5 transitions: not yet
    memory.size = 50
    heldout.after_step(150, memory, mean_pixel_q)  # not a multiple of 100
    for step in (200, 300):
        heldout.after_step(step, memory, mean_pixel_q)
    assert memory.draws == 1  # the set is drawn once
    states = heldout.states.copy()
    expected = float(np.mean(np.mean(states, axis=(1, 2, 3)) + 2))
    logger.close()
    with open(tmp_path / "heldout_q.csv", newline="") as file:
        rows = list(csv.reader(file))
    assert rows == [["step", "heldout_q"], ["200", str(round(expected, 5))],
                    ["300", str(round(expected, 5))]]
    assert scalar_steps(tmp_path, "charts/heldout_q") == [
        (200, pytest.approx(expected)), (300, pytest.approx(expected))]

    # A run resumed from step 250 measures the same states and drops the row of step 300.
    resumed_logger = RunLogger(str(tmp_path), resume_step=250)
    resumed = HeldOutQ(str(tmp_path), resumed_logger, size=5, every=100, resume_step=250)
    np.testing.assert_array_equal(resumed.states, states)
    resumed.after_step(300, FakeMemory(size=50), mean_pixel_q)
    resumed_logger.close()
    with open(tmp_path / "heldout_q.csv", newline="") as file:
        assert [row[0] for row in csv.reader(file)] == ["step", "200", "300"]


def test_a_run_saved_before_heldout_states_draws_them_at_resume(tmp_path, capsys):
    logger = RunLogger(str(tmp_path), resume_step=1000)
    heldout = HeldOutQ(str(tmp_path), logger, size=4, every=10, resume_step=1000)
    assert "saved before it had held-out states" in capsys.readouterr().out
    memory = FakeMemory(size=10)
    heldout.after_step(1010, memory, mean_pixel_q)
    logger.close()
    assert memory.draws == 1 and (tmp_path / "heldout_states.npz").exists()
