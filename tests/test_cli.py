"""Tests of common/cli.py: exit statuses, one-line messages, resume advice, signals."""

import dataclasses
import os
import signal
import sys

import pytest

from common.cli import (GracefulStop, Interrupted, check_writable, command_line, in_its_words,
                        resume_advice, train_or_evaluate)
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
    assert train_or_evaluate(config, finished, no_evaluation) == 0
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

    assert train_or_evaluate(TinyConfig(run_dir=str(tmp_path / "R")), failing, no_evaluation) == status
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
    assert train_or_evaluate(config, finished, stopped_evaluation) == status
    assert capsys.readouterr().err == f"Stopped by {signal_name} after 2 of 10 games.\n"


@dataclasses.dataclass
class NotebookConfig(TinyConfig):
    buffer_size: int = 10
    """replay size."""
    overlap_updates: bool = True
    """updates beside play."""


def test_messages_name_settings_in_a_notebook_and_flags_elsewhere(monkeypatch):
    message = ("runs/x already holds a run; add --resume to continue it, or choose another "
               "--run-dir; pass a smaller --buffer-size (for example --buffer-size 20000); "
               "--no-overlap-updates; --help")
    assert in_its_words(message, NotebookConfig()) == message
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(sys, "argv", ["/x/ipykernel_launcher.py", "-f", "kernel.json"])
    assert in_its_words(message, NotebookConfig()) == (
        "runs/x already holds a run; add resume = True to continue it, or choose another "
        "run_dir; pass a smaller buffer_size (for example buffer_size = 20000); "
        "overlap_updates = False; --help")


def test_a_refusal_in_a_notebook_names_the_setting(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(sys, "argv", ["/x/ipykernel_launcher.py", "-f", "kernel.json"])

    def refused(config):
        raise ConfigError(f"{config.run_dir} already holds a run; add --resume to continue it")

    assert train_or_evaluate(NotebookConfig(run_dir=str(tmp_path)), refused, no_evaluation) == 2
    assert "add resume = True to continue it" in capsys.readouterr().err


def test_what_a_stop_does_is_said_when_it_is_asked_for(capsys):
    with GracefulStop("stopping; the unfinished game is not scored") as stop:
        os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    assert ("SIGTERM received: stopping; the unfinished game is not scored"
            in capsys.readouterr().out)


def test_flags_given_with_resume_wait_for_the_runs_own_settings(tmp_path):
    """`--resume --buffer-size 20000` must not be refused for the default --learning-starts
    (50,000): the run's own settings are checked with it, by Run, once they are read."""
    import breakout_dqn
    from common.config import parse_config

    config = parse_config(breakout_dqn.Config, ["--resume", "--buffer-size", "20000",
                                                "--run-dir", str(tmp_path)])
    trained = []
    assert train_or_evaluate(config, lambda config: trained.append(config) or finished(config),
               no_evaluation) == 0
    assert trained
