"""Tests of common/logger.py: progress.csv rows, TensorBoard files, resume truncation,
the smoothed rate, the start banner, the progress line and its time left, durable rows,
the picture thread and the held-out Q."""

import csv
import math
import os
import threading
import types

import numpy as np
import pytest
import tensorflow as tf

from common.logger import (PROGRESS_FIELDS, HeldOutQ, ProgressPicture, RunLogger, StepRate,
                           action_names, describe_device, format_duration, plural, progress_line,
                           start_banner, time_left)


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

    monkeypatch.setattr(logger._progress._file, "flush", disk_full)
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
    logger.log_heldout_q(100, 0.5)  # a TensorBoard point besides the game rows
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


def read_heldout(run_dir):
    with open(os.path.join(run_dir, "heldout_q.csv"), newline="") as file:
        return list(csv.reader(file))


def test_heldout_q_draws_its_set_when_learning_starts_and_resumes_with_it(tmp_path):
    logger = RunLogger(str(tmp_path))
    heldout = HeldOutQ(str(tmp_path), logger, size=5, every=100, draw_at_step=120)
    memory = FakeMemory(size=50)
    heldout.measure_when_due(100, memory, mean_pixel_q)  # learning has not started: not yet
    memory.size = 3
    heldout.measure_when_due(120, memory, mean_pixel_q)  # fewer than 5 transitions: not yet
    memory.size = 50
    heldout.measure_when_due(150, memory, mean_pixel_q)  # drawn, and measured at once
    for step in range(151, 320):
        heldout.measure_when_due(step, memory, mean_pixel_q)  # measured at 200 and 300 only
    assert memory.draws == 1  # the set is drawn once
    states = heldout.states.copy()
    expected = str(round(float(np.mean(np.mean(states, axis=(1, 2, 3)) + 2)), 5))
    heldout.close()  # a last point at the last step, 319
    heldout.close()  # and only one
    logger.close()
    assert read_heldout(tmp_path) == [["step", "heldout_q"], ["150", expected],
                                      ["200", expected], ["300", expected],
                                      ["319", expected]]
    assert [step for step, _ in scalar_steps(tmp_path, "charts/heldout_q")] == [
        150, 200, 300, 319]

    # A run resumed from step 250 measures the same states and drops the rows after it.
    resumed_logger = RunLogger(str(tmp_path), resume_step=250)
    resumed = HeldOutQ(str(tmp_path), resumed_logger, size=5, every=100, resume_step=250,
                       draw_at_step=250)
    np.testing.assert_array_equal(resumed.states, states)
    memory = FakeMemory(size=50)
    for step in range(251, 402):
        resumed.measure_when_due(step, memory, mean_pixel_q)
    resumed.close()
    resumed_logger.close()
    assert memory.draws == 0
    assert [row[0] for row in read_heldout(tmp_path)] == ["step", "150", "200", "300", "400",
                                                          "401"]


def test_a_run_without_a_set_measures_nothing_at_close(tmp_path):
    logger = RunLogger(str(tmp_path))
    heldout = HeldOutQ(str(tmp_path), logger, size=5, every=100, draw_at_step=500)
    heldout.measure_when_due(300, FakeMemory(size=50), mean_pixel_q)
    heldout.close()
    logger.close()
    assert read_heldout(tmp_path) == [["step", "heldout_q"]]


@pytest.mark.parametrize("draw_at_step, when", [(1000, "drawn now, from the restored"),
                                                (1500, "drawn at step 1,500, when the memory")])
def test_a_run_saved_before_heldout_states_draws_them_at_resume(tmp_path, capsys,
                                                                draw_at_step, when):
    logger = RunLogger(str(tmp_path), resume_step=1000)
    heldout = HeldOutQ(str(tmp_path), logger, size=4, every=10, resume_step=1000,
                       draw_at_step=draw_at_step)
    printed = capsys.readouterr().out
    assert "saved before it measured a held-out Q" in printed and when in printed
    memory = FakeMemory(size=10)
    heldout.measure_when_due(1001, memory, mean_pixel_q)
    assert memory.draws == (1 if draw_at_step == 1000 else 0)
    heldout.measure_when_due(1500, memory, mean_pixel_q)
    logger.close()
    assert memory.draws == 1 and (tmp_path / "heldout_states.npz").exists()


BANNER_CONFIG = types.SimpleNamespace(
    env_id="BreakoutNoFrameskip-v4", total_steps=10_000_000, solved_at=40.0,
    buffer_size=1_000_000, learning_starts=50_000, run_dir="runs/breakout",
    video_dir="videos/breakout", video_every=100)


def test_the_start_banner_says_what_runs_where():
    banner = start_banner(BANNER_CONFIG, ["NOOP", "FIRE", "RIGHT", "LEFT"], 7_064_000_000,
                          device="CPU: Test CPU, 2 cores; no GPU found")
    lines = banner.splitlines()
    assert lines[0] == "Training BreakoutNoFrameskip-v4: 4 actions (NOOP, FIRE, RIGHT, LEFT)"
    assert lines[1] == "  device         CPU: Test CPU, 2 cores; no GPU found"
    assert "at most 10,000,000 agent steps" in lines[2] and "reaches 40" in lines[2]
    assert "1,000,000 transitions, 7.06 GB" in lines[3] and "after 50,000 steps" in lines[3]
    assert lines[4] == "  run folder     runs/breakout: a new run"
    assert lines[5] == "  videos         videos/breakout (every 100th game)"
    resumed = start_banner(types.SimpleNamespace(**{**vars(BANNER_CONFIG), "video_every": 0}),
                           None, 10**6, resumed_step=150_000, games=812, device="GPU: X")
    assert resumed.splitlines()[0] == "Training BreakoutNoFrameskip-v4"
    assert "resumed from the checkpoint of step 150,000 (812 games)" in resumed
    assert "none (--video-every 0)" in resumed
    assert "learning restarts after 50,000 steps of play that fill it" in resumed
    restored = start_banner(BANNER_CONFIG, None, 10**6, resumed_step=150_000,
                            memory_restored=True, device="GPU: X")
    assert "restored from the checkpoint, so learning goes on at once" in restored


def test_action_names_and_the_device_in_words():
    game = types.SimpleNamespace(unwrapped=types.SimpleNamespace(
        get_action_meanings=lambda: ["NOOP", "FIRE"]))
    assert action_names(game) == ["NOOP", "FIRE"]
    assert action_names(types.SimpleNamespace()) is None  # a test game without names
    device = describe_device()
    expected = "GPU: " if tf.config.list_physical_devices("GPU") else "CPU: "
    assert device.startswith(expected) and f"TensorFlow {tf.__version__}" in device


def test_the_progress_line_has_every_field():
    line = progress_line(41_200, 10_000_000, 210, 3.0, 1.52, 0.842, 0.0123, 0.251, 41.2,
                         3723.0, learn_from_step=25_000)
    assert line.split(" | ") == [
        "step     41,200 of 10,000,000 (0.4%)", "games    210", "score      3",
        "running reward    1.52", "epsilon 0.842", "loss 0.0123", "mean Q   0.251",
        "  41.2 steps/s", "1:02:03 elapsed", "at most 2 days, 19:08:38 left"]
    early = progress_line(0, None, 0, math.nan, math.nan, 1.0, math.nan, math.nan, math.nan, 0.4)
    assert early.split(" | ") == [
        "step          0", "games      0", "score      -", "running reward       -",
        "epsilon 1.000", "loss      -", "mean Q       -", "     - steps/s", "0:00:00 elapsed"]
    assert "\r" not in line and "\n" not in line


def test_the_time_left_is_honest_while_the_memory_fills():
    # While the memory fills, random play runs fast; the line says when learning starts.
    assert time_left(10_000, 1_000_000, 2_000.0, learn_from_step=50_000) == (
        "filling the memory, learning in 0:00:20")
    assert time_left(10_000, 1_000_000, math.nan, learn_from_step=50_000) == "filling the memory"
    assert time_left(60_000, 1_000_000, math.nan, learn_from_step=50_000) == (
        "time left: measuring")
    assert time_left(60_000, 1_000_000, 50.0, learn_from_step=50_000) == (
        "at most 5:13:20 left")
    assert format_duration(5.4) == "0:00:05" and format_duration(90_061) == "1 day, 1:01:01"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_at_least_once_a_minute_and_a_rate_measured_from_learning_on(
        tmp_path, capsys, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("common.logger.time.perf_counter", clock)
    logger = RunLogger(str(tmp_path), print_every_games=10, total_steps=100_000,
                       learn_from_step=5_000)
    # Random play at 1,000 steps a second fills the memory for 5 seconds...
    for step in range(1, 5_001):
        clock.now = step / 1_000
        logger.on_step(step, 1.0)
    # ...then learning runs at 50 steps a second, without a game end, for 3 minutes.
    for step in range(5_001, 5_001 + 50 * 180):
        clock.now = 5.0 + (step - 5_000) / 50
        logger.on_step(step, 0.9)
    logger.close()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3  # at 60, 120 and 180 seconds
    assert all(" | games      0 | " in line for line in lines)
    last = lines[-1].split(" | ")
    step = int(last[0].split()[1].replace(",", ""))  # about 5,000 + 175 s * 50 steps/s
    assert abs(step - 13_750) <= 60 and last[0].endswith("of 100,000 (13.8%)")
    seconds_left = (100_000 - step) / 50
    assert last[-3:] == ["  50.0 steps/s", "0:03:00 elapsed",
                         f"at most {format_duration(seconds_left)} left"]


def test_the_rate_of_progress_csv_is_measured_afresh_when_learning_starts(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr("common.logger.time.perf_counter", clock)
    logger = RunLogger(str(tmp_path), learn_from_step=1_000)
    for step, now in [(500, 0.5), (1_000, 1.0), (1_050, 2.0), (1_150, 4.0)]:
        clock.now = now
        logger.log_game(step, step // 50, 1.0, 1.0, 1.0, 0.1, 0.1)
    logger.close()
    rates = [row[7] for row in read_rows(tmp_path)[1:]]
    assert rates[0] == "nan" and rates[1] == "nan"  # the rate restarts at step 1,000
    assert [float(rate) for rate in rates[2:]] == [50.0, 50.0]


def test_step_rate_drops_points_older_than_its_window():
    rate = StepRate(window_seconds=10)
    assert math.isnan(rate.add(0.0, 0))
    assert rate.add(5.0, 500) == 100.0
    assert rate.add(14.0, 700) == 50.0  # from 0 s: 5 s is not yet a window older than 14 s
    assert rate.add(16.0, 1600) == 100.0  # from 5 s, the newest point a window older than 14 s
    rate.restart()
    assert math.isnan(rate.add(17.0, 1700))


def test_flush_to_disk_fsyncs_both_csv_files(tmp_path, capsys, monkeypatch):
    synced = []
    monkeypatch.setattr("common.logger.os.fsync", lambda fd: synced.append(os.readlink(
        f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else fd))
    logger = RunLogger(str(tmp_path))
    synced.clear()  # creating the files (atomically, durably) synced them and their folder
    logger.log_game(100, 1, 1.0, 1.0, 0.5, 0.1, 0.1)
    logger.log_heldout_q(100, 0.5)
    assert logger.flush_to_disk() is True
    assert len(synced) == 2
    if os.path.exists("/proc/self/fd"):
        assert sorted(os.path.basename(path) for path in synced) == ["heldout_q.csv",
                                                                    "progress.csv"]

    def failing_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("common.logger.os.fsync", failing_fsync)
    assert logger.flush_to_disk() is False
    assert logger.flush_to_disk() is False
    assert capsys.readouterr().err.count("Input/output error") == 1
    monkeypatch.setattr("common.logger.os.fsync", lambda fd: None)
    logger.close()
    assert logger.flush_to_disk() is True  # closed: close made the rows durable


def test_the_picture_is_redrawn_on_a_timer_and_when_the_logger_closes(tmp_path):
    logger = RunLogger(str(tmp_path), picture_every_seconds=0.05, solved_at=3, title="Test")
    logger.log_game(100, 1, 1.0, 1.0, 1.0, math.nan, math.nan)
    picture = tmp_path / "progress.png"
    for _ in range(200):  # the thread draws within 0.05 s, plus matplotlib's import
        if picture.exists():
            break
        threading.Event().wait(0.05)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture.unlink()
    logger.log_game(200, 2, 2.0, 1.5, 1.0, 0.1, 0.1)
    logger.close()
    assert not logger.picture._thread.is_alive()
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the last redraw, at close


def test_a_picture_that_cannot_be_written_warns_once_and_logging_goes_on(tmp_path, capsys):
    (tmp_path / "progress.png").mkdir()  # a file cannot replace a folder
    logger = RunLogger(str(tmp_path), picture_every_seconds=0.02)
    logger.log_game(100, 1, 1.0, 1.0, 1.0, math.nan, math.nan)
    threading.Event().wait(0.5)
    logger.log_game(200, 2, 1.0, 1.0, 1.0, math.nan, math.nan)
    logger.close()  # and the last redraw fails too
    warnings = capsys.readouterr().err
    assert warnings.count("warning: could not draw") == 1 and "training goes on" in warnings
    assert "Traceback" not in warnings
    assert [row[0] for row in read_rows(tmp_path)[1:]] == ["100", "200"]
    assert ProgressPicture(str(tmp_path / "missing"), 60).redraw() is False


def test_the_banner_says_the_seed_and_what_it_promises():
    default = start_banner(types.SimpleNamespace(**vars(BANNER_CONFIG), seed=7), None, 10**6,
                           device="CPU")
    assert default.splitlines()[-1].startswith("  seed           7, the same seed gives the "
                                               "same first network and games")
    exact = start_banner(types.SimpleNamespace(**vars(BANNER_CONFIG), seed=7, deterministic=True),
                         None, 10**6, device="CPU")
    assert "7, deterministic: the same seed repeats this run exactly" in exact


def test_counts_and_durations_read_well_at_any_size():
    assert [plural(1, "game"), plural(2, "game"), plural(1000, "step")] == [
        "1 game", "2 games", "1,000 steps"]
    assert format_duration(3723) == "1:02:03"
    assert format_duration(1e20) == "over 100 years"  # no OverflowError


def test_damaged_heldout_states_are_set_aside_and_a_new_set_is_drawn(tmp_path, capsys):
    (tmp_path / "heldout_states.npz").write_bytes(b"not an archive")
    logger = RunLogger(str(tmp_path), resume_step=1000)
    heldout = HeldOutQ(str(tmp_path), logger, size=4, every=10, resume_step=1000,
                       draw_at_step=1000)
    warning = capsys.readouterr().err
    assert "held-out states" in warning and "kept as they were in" in warning
    aside = list(tmp_path.glob("heldout_states.damaged-*.npz"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"not an archive"
    heldout.measure_when_due(1001, FakeMemory(size=10), mean_pixel_q)
    logger.close()
    assert heldout.states is not None and (tmp_path / "heldout_states.npz").exists()
