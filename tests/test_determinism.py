"""What a seed promises: the same first network always; the same whole run with --deterministic.

`--deterministic` turns on TensorFlow's op determinism, which is process-wide and
cannot be turned off, so those runs are processes of `tests/catch_dqn.py` (the
training of `breakout_dqn.py` on Catch), never this test process.
"""

import csv
import dataclasses
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import breakout_dqn
from common.cli import command_line
from tests.catch_env import build_small_q_network, playing_catch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME_COLUMNS = ("steps_per_second", "elapsed_seconds")


def catch(run_dir, *arguments):
    result = subprocess.run([sys.executable, "-m", "tests.catch_dqn", "--run-dir", str(run_dir),
                             "--total-steps", "1200", "--checkpoint-every", "600",
                             *arguments], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def rows_without_time(path):
    with open(path, newline="") as file:
        return [{name: value for name, value in row.items() if name not in TIME_COLUMNS}
                for row in csv.DictReader(file)]


def weights(run_dir):
    return keras.models.load_model(os.path.join(run_dir, "model.keras"), compile=False,
                                   safe_mode=True).get_weights()


@pytest.mark.slow
def test_deterministic_runs_of_one_seed_are_identical_and_another_seed_differs(tmp_path):
    runs = {name: tmp_path / name for name in ("a", "b", "other")}
    for name, seed in (("a", "7"), ("b", "7"), ("other", "8")):
        result = catch(runs[name], "--seed", seed, "--deterministic")
        assert f"seed           {seed}, deterministic" in result.stdout
    for log in ("progress.csv", "heldout_q.csv"):
        first, second = rows_without_time(runs["a"] / log), rows_without_time(runs["b"] / log)
        assert len(first) >= 2 and first == second, log
    assert rows_without_time(runs["a"] / "progress.csv") != rows_without_time(
        runs["other"] / "progress.csv")
    for first, second in zip(weights(runs["a"]), weights(runs["b"]), strict=True):
        np.testing.assert_array_equal(first, second)
    assert any(not np.array_equal(first, other)
               for first, other in zip(weights(runs["a"]), weights(runs["other"])))
    # The mode is saved with the run: a resume keeps it without being told.
    resumed = catch(runs["other"], "--resume", "--total-steps", "1400")
    assert "deterministic: the same seed repeats this run exactly" in resumed.stdout


def test_a_deterministic_run_refuses_overlapped_updates(tmp_path, capsys):
    status = command_line(breakout_dqn.Config, lambda config: None, breakout_dqn.evaluate, "",
                          ["--run-dir", str(tmp_path / "x"), "--deterministic",
                           "--overlap-updates"])
    assert status == 2
    assert "--deterministic runs every update in turn" in capsys.readouterr().err


@pytest.mark.slow
def test_the_default_mode_starts_every_run_of_a_seed_from_the_same_network(tmp_path):
    """The first held-out Q is the untrained network's: equal for one seed, not for two."""
    def first_heldout_q(name, seed):
        config = breakout_dqn.Config(
            env_id="Catch", total_steps=610, solved_at=2.0, seed=seed, buffer_size=1_000,
            learning_starts=600, video_every=0, run_dir=str(tmp_path / name),
            log_every_games=1_000, checkpoint_every=100_000)
        with playing_catch(breakout_dqn):
            breakout_dqn.train(config)
        with open(tmp_path / name / "heldout_q.csv", newline="") as file:
            return next(csv.DictReader(file))["heldout_q"]

    assert first_heldout_q("a", 7) == first_heldout_q("b", 7) != first_heldout_q("c", 8)


def test_evaluation_games_follow_the_seed(tmp_path):
    q_network = build_small_q_network((10, 5, 4), 3)
    model = str(tmp_path / "untrained.keras")
    q_network.save(model)

    def scores(seed):
        config = dataclasses.replace(breakout_dqn.Config(env_id="Catch"), evaluate=model,
                                     episodes=30, seed=seed, video_dir=str(tmp_path / "V"))
        with playing_catch(breakout_dqn):
            return breakout_dqn.evaluate(config)

    assert scores(1) == scores(1) != scores(2)
