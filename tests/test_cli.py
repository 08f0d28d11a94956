"""Tests of common/cli.py: exit statuses, one-line messages, resume advice, signals."""

import dataclasses
import os
import signal
import sys

import pytest

from common.cli import (GracefulStop, Interrupted, check_writable, command_line, resume_advice,
                        run)
from common.config import ConfigError


@dataclasses.dataclass
class TinyConfig:
    total_steps: int = 100
    """agent steps."""
    run_dir: str = "runs/tiny"
    """run folder."""
    video_dir: str = "videos/tiny"
    """video folder."""
    video_every: int = 0
    """record every N-th game."""
    evaluate: str = ""
    """a model to evaluate."""
    resume: bool = False
    """continue the run."""


def finished(config):
    return {"step": config.total_steps, "games": 1, "stopped": False}


def no_evaluation(config):
    raise AssertionError("evaluate must not be called")


def test_a_finished_run_exits_0(tmp_path):
    config = TinyConfig(run_dir=str(tmp_path / "R"))
    assert run(config, finished, no_evaluation) == 0
    assert (tmp_path / "R").is_dir()


@pytest.mark.parametrize("error, status, message", [
    (ConfigError("--total-steps must be positive"), 2, "error: --total-steps must be positive"),
    (FloatingPointError("the loss became nan in update 3"), 1,
     "training diverged: the loss became nan in update 3; the last good checkpoint is none"),
    (MemoryError(), 1, "out of memory; pass a smaller --buffer-size"),
])
def test_failures_end_with_one_line_and_a_status(tmp_path, capsys, error, status, message):
    def failing(config):
        raise error

    assert run(TinyConfig(run_dir=str(tmp_path / "R")), failing, no_evaluation) == status
    printed = capsys.readouterr().err
    assert message in printed and printed.count("\n") == 1 and "Traceback" not in printed


def test_a_stopped_run_prints_the_command_that_resumes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["breakout_dqn.py", "--run-dir", str(tmp_path / "R")])
    status = command_line(TinyConfig, lambda config: {"stopped": True}, no_evaluation, "tiny")
    assert status == 0
    assert (f"Resume with: python breakout_dqn.py --run-dir {tmp_path / 'R'} --resume"
            in capsys.readouterr().out)


def test_resume_advice_fits_a_terminal_percent_run_and_a_notebook(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["pong_dqn.py", "--total-steps", "5", "--resume"])
    assert resume_advice() == "resume with: python pong_dqn.py --total-steps 5 --resume"
    assert resume_advice(flag="--learning-rate").startswith(
        "resume with a lower --learning-rate: python pong_dqn.py --total-steps 5 --resume")
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    assert resume_advice() == "resume with: %run pong_dqn.py --total-steps 5 --resume"
    monkeypatch.setattr(sys, "argv", ["/x/ipykernel_launcher.py", "-f", "kernel.json"])
    advice = resume_advice(flag="--learning-rate", change="a lower learning_rate")
    assert "set a lower learning_rate and set resume = True in the settings cell" in advice
    assert "python" not in advice and "--" not in advice


def test_check_writable(tmp_path):
    check_writable(str(tmp_path / "new" / "folder"), "--run-dir")
    assert (tmp_path / "new" / "folder").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write to --run-dir"):
        check_writable(str(blocker / "sub"), "--run-dir")


def test_sigterm_sets_the_flag_instead_of_killing():
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_second_ctrl_c_raises_keyboard_interrupt():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("signal_name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupted_evaluation_exits_with_the_signal_status(tmp_path, capsys, signal_name,
                                                               status):
    def stopped_evaluation(config):
        raise Interrupted(signal_name, "after 2 of 10 games")

    config = TinyConfig(run_dir=str(tmp_path / "R"), evaluate="model.keras",
                        video_dir=str(tmp_path / "V"))
    assert run(config, finished, stopped_evaluation) == status
    assert capsys.readouterr().err == f"Stopped by {signal_name} after 2 of 10 games.\n"
