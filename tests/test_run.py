"""Tests of common/run.py: the loop state, the run-folder rules, resume settings, the lock."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import numpy as np
import psutil
import pytest

from common.checkpoint import CheckpointError, read_loop_state
from common.config import ConfigError, parse_config
from common.run import (LoopState, RunLock, open_run, settings_for_evaluation,
                        settings_for_resume)


def test_loop_state_round_trips_through_json():
    state = LoopState(step=1234, games=7, rng=np.random.default_rng(5))
    for score in (3.0, 11.0, 0.0):
        state.record_game(score)
    state.rng.random(10)  # move the generator on
    saved = json.loads(json.dumps(state.to_dict()))
    restored = LoopState.from_dict(saved)
    assert (restored.step, restored.games) == (1234, 10)
    assert list(restored.recent_scores) == [3.0, 11.0, 0.0]
    assert restored.recent_scores.maxlen == 100
    np.testing.assert_array_equal(restored.rng.random(5), state.rng.random(5))


def test_running_reward_and_the_solved_rule():
    state = LoopState()
    assert np.isnan(state.running_reward) and not state.solved(40)
    for _ in range(99):
        state.record_game(50.0)
    assert state.running_reward == 50.0 and not state.solved(40)  # the window is not full
    state.record_game(50.0)
    assert state.solved(40) and not state.solved(50.5)
    for _ in range(100):
        state.record_game(10.0)  # the window keeps the last 100 games only
    assert state.running_reward == 10.0 and state.games == 200


def test_open_run_refuses_what_would_lose_or_mix_runs(tmp_path, monkeypatch):
    checkpoint_dir = str(tmp_path / "run" / "checkpoints")
    assert open_run(checkpoint_dir, resume=False, env_id="BreakoutNoFrameskip-v4") is None
    with pytest.raises(CheckpointError, match="--resume: no checkpoint in"):
        open_run(checkpoint_dir, resume=True, env_id="BreakoutNoFrameskip-v4")
    saved = {"env_id": "BreakoutNoFrameskip-v4", "step": 10, "games": 1}
    monkeypatch.setattr("common.run.read_loop_state", lambda directory: saved)
    assert open_run(checkpoint_dir, resume=True, env_id="BreakoutNoFrameskip-v4") == saved
    with pytest.raises(CheckpointError, match="already holds a run; add --resume"):
        open_run(checkpoint_dir, resume=False, env_id="BreakoutNoFrameskip-v4")
    with pytest.raises(CheckpointError, match="holds a run of BreakoutNoFrameskip-v4, not Pong"):
        open_run(checkpoint_dir, resume=True, env_id="PongNoFrameskip-v4")


@dataclasses.dataclass
class Settings:
    env_id: str = "BreakoutNoFrameskip-v4"
    """the game."""
    total_steps: int = 1000
    """agent steps."""
    learning_rate: float = 1e-4
    """step size."""
    buffer_size: int = 100
    """memory size."""
    gamma: float = 0.99
    """discount."""
    run_dir: str = "runs/x"
    """run folder."""
    resume: bool = False
    """continue."""
    n_step: int = 1
    """rewards summed."""


SAVED = {"env_id": "BreakoutNoFrameskip-v4", "total_steps": 5000, "learning_rate": 3e-4,
         "buffer_size": 200, "gamma": 0.9}


def test_a_resume_takes_the_saved_settings_of_flags_not_given(capsys):
    config = parse_config(Settings, ["--resume"])
    resumed = settings_for_resume(config, SAVED)
    assert (resumed.total_steps, resumed.learning_rate, resumed.buffer_size, resumed.gamma) == \
        (5000, 3e-4, 200, 0.9)
    assert resumed.resume and capsys.readouterr().out == ""


def test_a_safe_flag_given_on_resume_overrides_and_is_announced(capsys):
    config = parse_config(Settings, ["--resume", "--learning-rate", "5e-05",
                                     "--total-steps", "9000", "--buffer-size", "200"])
    resumed = settings_for_resume(config, SAVED)
    assert (resumed.learning_rate, resumed.total_steps, resumed.gamma) == (5e-05, 9000, 0.9)
    printed = capsys.readouterr().out
    assert printed == ("Resuming with changed settings: --total-steps 9000 (was 5000), "
                       "--learning-rate 5e-05 (was 0.0003).\n")


@pytest.mark.parametrize("flag, value", [("--buffer-size", "300"), ("--gamma", "0.5"),
                                         ("--env-id", "PongNoFrameskip-v4")])
def test_an_unsafe_flag_given_on_resume_is_refused_in_one_line(flag, value):
    config = parse_config(Settings, ["--resume", flag, value])
    with pytest.raises(ConfigError) as raised:
        settings_for_resume(config, SAVED)
    message = str(raised.value)
    assert f"{flag} cannot change during a run" in message and "\n" not in message


def test_a_notebook_config_means_what_it_says_of_the_settings_that_may_change():
    config = Settings(resume=True, learning_rate=1e-5)  # built in a cell, not parsed
    resumed = settings_for_resume(config, SAVED)
    # total_steps is back at its default in the cell: meant, so it is taken, announced.
    assert (resumed.learning_rate, resumed.total_steps, resumed.gamma) == (1e-5, 1000, 0.9)
    with pytest.raises(ConfigError, match="--buffer-size cannot change"):
        settings_for_resume(Settings(resume=True, buffer_size=7), SAVED)


def test_a_checkpoint_without_settings_goes_on_as_given(capsys):
    config = parse_config(Settings, ["--resume", "--gamma", "0.5"])
    assert settings_for_resume(config, None).gamma == 0.5
    assert "predates saved settings" in capsys.readouterr().out


def test_the_lock_refuses_a_live_process_and_takes_over_stale_ones(tmp_path):
    lock = RunLock(str(tmp_path), resume=False)
    RunLock(str(tmp_path), resume=False).release()  # this process again: a notebook rerun
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(sleeper.pid).create_time()
        (tmp_path / ".lock").write_text(json.dumps({"pid": sleeper.pid, "started": started,
                                                    "host": socket.gethostname()}))
        with pytest.raises(CheckpointError) as raised:
            RunLock(str(tmp_path), resume=True)
        assert f"in use by process {sleeper.pid} on {socket.gethostname()}" in str(raised.value)
        # The same id, but a process started at another time (after a reboot): stale.
        (tmp_path / ".lock").write_text(json.dumps({"pid": sleeper.pid, "started": started - 99,
                                                    "host": socket.gethostname()}))
        RunLock(str(tmp_path), resume=True).release()
    finally:
        sleeper.kill()
        sleeper.wait()
    RunLock(str(tmp_path), resume=True).release()  # that process is gone: stale
    (tmp_path / ".lock").write_text(json.dumps({"pid": 1, "host": "another-colab-machine"}))
    with pytest.raises(CheckpointError, match="another-colab-machine"):
        RunLock(str(tmp_path), resume=False)  # a new run does not take it over
    taken = RunLock(str(tmp_path), resume=True)  # a resume on a new machine does
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    taken.release()
    assert not (tmp_path / ".lock").exists()
    lock.release()  # releasing twice, or a lock already gone, is harmless


def test_a_folder_whose_run_stopped_before_its_first_checkpoint_says_what_to_do(tmp_path):
    (tmp_path / "progress.csv").write_text("step,game\n100,1\n")
    for resume in (False, True):  # neither a new run nor a resume may go on there
        with pytest.raises(CheckpointError, match=r"it saved no checkpoint, so it cannot be "
                           r"resumed; choose another --run-dir, or delete .* to start again"):
            open_run(str(tmp_path / "checkpoints"), resume=resume,
                     env_id="BreakoutNoFrameskip-v4")
    assert (tmp_path / "progress.csv").read_text() == "step,game\n100,1\n"  # untouched


def test_a_resume_that_does_not_fit_in_memory_advises_no_refused_flag(tmp_path, monkeypatch):
    saved = {"env_id": "BreakoutNoFrameskip-v4", "step": 10, "games": 1, "settings": {}}
    monkeypatch.setattr("common.run.read_loop_state", lambda directory: saved)
    monkeypatch.setattr("common.run.check_config", lambda config: None)

    def too_big(*arguments):
        raise ConfigError("the replay memory needs 7.1 GB but only 3.0 GB of memory is "
                          "available; pass a smaller --buffer-size (for example ...)")

    monkeypatch.setattr("common.run.check_memory", too_big)
    from common.run import Run
    with pytest.raises(ConfigError) as raised:
        Run(Settings(run_dir=str(tmp_path), resume=True))
    message = str(raised.value)
    assert "needs 7.1 GB but only 3.0 GB" in message and "pass a smaller" not in message
    assert "cannot change, so free some memory" in message
    assert not (tmp_path / ".lock").exists()  # the refused run leaves no lock behind


@pytest.mark.slow
def test_a_run_trained_with_options_resumes_and_evaluates_with_them(tmp_path, capsys):
    """--double-dqn --n-step 3 --dueling are the run's: kept on --resume and --evaluate."""
    import breakout_dqn
    from common.checkpoint import read_loop_state
    from tests.catch_dqn import CATCH_DEFAULTS
    from tests.catch_env import playing_catch

    run_dir = str(tmp_path / "R")

    def config(*flags):
        return parse_config(breakout_dqn.Config, [*CATCH_DEFAULTS, "--run-dir", run_dir,
                                                  "--video-dir", str(tmp_path / "v"), *flags])

    def train(*flags):
        with playing_catch(breakout_dqn):
            return breakout_dqn.train(config(*flags))

    def evaluate(*flags):
        with playing_catch(breakout_dqn):
            return breakout_dqn.evaluate(config("--evaluate", run_dir, "--episodes", "2", *flags))

    options = {"double_dqn": True, "n_step": 3, "dueling": True}
    train("--total-steps", "300", "--checkpoint-every", "300", "--double-dqn", "--n-step", "3",
          "--dueling", "--no-overlap-updates")
    # The flags left out on resume are the run's: the dueling checkpoint loads into a
    # dueling network, and the next checkpoint still says so.
    assert train("--resume", "--total-steps", "400")["step"] == 400
    saved = read_loop_state(os.path.join(run_dir, "checkpoints"))["settings"]
    assert {name: saved[name] for name in options} == options
    for flag, message in [("--no-dueling", "--dueling cannot change during a run"),
                          ("--n-step", "--n-step cannot change during a run")]:
        with pytest.raises(ConfigError, match=message):
            train("--resume", *([flag, "1"] if flag == "--n-step" else [flag]))

    # Evaluating the run folder's checkpoint builds the dueling network without the flag.
    os.remove(os.path.join(run_dir, "model.keras"))
    capsys.readouterr()
    assert len(evaluate()) == 2
    assert "Playing with the network of checkpoint" in capsys.readouterr().out
    for flags, message in [
            (["--no-dueling"], "was trained with --dueling; leave --no-dueling out"),
            (["--n-step", "2"], "was trained with --n-step 3; leave --n-step 2 out")]:
        with pytest.raises(ConfigError, match=message) as refused:
            evaluate(*flags)
        assert "\n" not in str(refused.value)


def test_a_run_saved_before_the_options_existed_refuses_turning_one_on():
    # Its saved settings have no n_step or dueling: it was trained without them.
    config = parse_config(Settings, ["--resume", "--n-step", "3"])
    with pytest.raises(ConfigError, match="--n-step cannot change during a run"):
        settings_for_resume(config, SAVED)
    assert settings_for_resume(parse_config(Settings, ["--resume"]), SAVED).n_step == 1


def test_evaluating_a_folder_whose_checkpoints_are_damaged_leaves_it_to_load_agent(tmp_path):
    # load_agent may still play its model.keras; the settings are not needed for that.
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-100"\n')
    (checkpoints / "ckpt-100.index").write_bytes(b"garbage")
    (checkpoints / "ckpt-100.data-00000-of-00001").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        read_loop_state(str(checkpoints))
    config = EvaluationSettings(evaluate=str(tmp_path))
    assert settings_for_evaluation(config) is config


@dataclasses.dataclass
class EvaluationSettings:
    evaluate: str = ""
    """what to play."""
    dueling: bool = False
    """dueling network."""


def catch_config(script, run_dir, **changes):
    """A short run of a game script's own Config on Catch (tests/catch_env.py)."""
    settings = dict(env_id="Catch", total_steps=600, solved_at=2.0, buffer_size=2_000,
                    learning_starts=100, batch_size=16, target_update_every=100,
                    video_every=0, run_dir=str(run_dir), log_every_games=100_000,
                    checkpoint_every=300)
    return script.Config(**{**settings, **changes})


def train_catch(script, config):
    from tests.catch_env import playing_catch

    with playing_catch(script):
        return script.train(config)


def read_rows(path):
    import csv

    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
def test_a_solved_run_stops_says_so_and_saves_its_model(tmp_path, capsys):
    import breakout_dqn

    # Random play scores about -0.6 a game: a threshold of -0.9 is met at the 100th game.
    config = catch_config(breakout_dqn, tmp_path, total_steps=100_000, solved_at=-0.9)
    summary = train_catch(breakout_dqn, config)
    assert not summary["stopped"] and summary["step"] < 100_000
    assert summary["games"] == 100 and summary["running_reward"] >= -0.9
    assert "Finished (solved: running reward" in capsys.readouterr().out
    assert (tmp_path / "model.keras").is_file()
    assert read_loop_state(str(tmp_path / "checkpoints"))["step"] == summary["step"]


@pytest.mark.slow
def test_pong_dqn_trains_resumes_and_evaluates(tmp_path, capsys):
    """pong_dqn.py's own train and evaluate, on Catch; a resume without its memory
    plays learning_starts steps before it learns again."""
    import pong_dqn

    train_catch(pong_dqn, catch_config(pong_dqn, tmp_path, learning_starts=200))
    resumed = catch_config(pong_dqn, tmp_path, learning_starts=200, total_steps=1_200,
                           resume=True)
    summary = train_catch(pong_dqn, resumed)
    assert summary["step"] == 1_200 and "replay memory refills" in capsys.readouterr().out
    rows = [row for row in read_rows(tmp_path / "progress.csv") if int(row["step"]) > 600]
    refilling = [row["loss"] for row in rows if int(row["step"]) <= 800]
    learned = [row["loss"] != "nan" for row in rows if int(row["step"]) > 820]
    assert refilling and all(loss == "nan" for loss in refilling)  # no update while it refills
    # Pong updates every 8 steps and a Catch game lasts 9: two games in a row hold a loss.
    pairs = zip(learned, learned[1:])
    assert len(learned) > 10 and all(one or following for one, following in pairs)
    from tests.catch_env import playing_catch

    with playing_catch(pong_dqn):
        scores = pong_dqn.evaluate(dataclasses.replace(
            resumed, evaluate=str(tmp_path), episodes=3, video_dir=str(tmp_path / "V")))
    assert len(scores) == 3 and "over 3 games." in capsys.readouterr().out


@pytest.mark.slow
def test_no_disk_room_for_the_memory_saves_the_rest_with_a_warning(tmp_path, capsys,
                                                                  monkeypatch):
    import breakout_dqn

    import shutil

    monkeypatch.setattr("common.checkpoint.shutil.disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**6, 10**6 - 10, 10))
    train_catch(breakout_dqn, catch_config(breakout_dqn, tmp_path, save_replay=True))
    warnings = capsys.readouterr().err
    assert warnings.count("warning: no disk space for the replay memory") == 2  # at 300, 600
    assert "saved without it" in warnings
    checkpoints = tmp_path / "checkpoints"
    assert read_loop_state(str(checkpoints))["replay_saved"] is False
    assert not list(checkpoints.glob("replay-*")) and not list(checkpoints.glob(".partial-*"))
