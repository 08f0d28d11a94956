"""Tests of common/config.py: flags from a dataclass, one-line errors, value checks."""

import dataclasses
import math
import os
import sys

import pytest

from common.config import (ConfigError, check_config, check_memory, field_docstrings, given_fields,
                           parse_config, replace_settings)


@dataclasses.dataclass
class ExampleConfig:
    total_steps: int = 1000
    """agent steps to train for."""
    learning_rate: float = 1e-4
    """Adam learning
    rate."""
    run_dir: str = "runs/x"
    """where outputs go."""
    resume: bool = False
    """continue a run."""
    buffer_size: int = 100
    """replay size in transitions."""
    batch_size: int = 32
    """batch."""
    learning_starts: int = 50
    """random steps first."""
    gamma: float = 0.99
    """discount."""
    eps_start: float = 1.0
    """start epsilon."""


def test_docstrings_are_read_from_the_source():
    docs = field_docstrings(ExampleConfig)
    assert docs["total_steps"] == "agent steps to train for."
    assert docs["learning_rate"] == "Adam learning rate."  # folded onto one line
    assert set(docs) == {field.name for field in dataclasses.fields(ExampleConfig)}


def test_flags_override_defaults_with_the_field_type():
    config = parse_config(ExampleConfig, ["--total-steps", "2000", "--learning-rate", "0.5",
                                          "--run-dir", "R", "--resume"])
    assert config == ExampleConfig(total_steps=2000, learning_rate=0.5, run_dir="R", resume=True)
    assert parse_config(ExampleConfig, []) == ExampleConfig()
    assert parse_config(ExampleConfig, ["--no-resume"]).resume is False


def test_help_shows_docstrings_and_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(ExampleConfig, ["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--total-steps TOTAL_STEPS agent steps to train for. (default: 1000)" in text


@pytest.mark.parametrize("argv, expected", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--total-steps", "many"], "argument --total-steps: invalid int value: 'many'"),
])
def test_bad_flags_exit_2_with_one_line(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(ExampleConfig, argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error


@pytest.mark.parametrize("launcher", ["/usr/lib/python3/site-packages/ipykernel_launcher.py",
                                      "/usr/local/lib/python3.11/colab_kernel_launcher.py"])
def test_notebook_kernel_arguments_are_ignored(monkeypatch, launcher):
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(sys, "argv", [launcher, "-f", "/tmp/kernel-1.json"])
    assert parse_config(ExampleConfig) == ExampleConfig()


def test_percent_run_in_a_notebook_keeps_its_flags(monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", object())
    monkeypatch.setattr(sys, "argv", ["breakout_dqn.py", "--total-steps", "1500"])
    assert parse_config(ExampleConfig).total_steps == 1500


@pytest.mark.parametrize("changes, message", [
    ({"total_steps": 0}, "--total-steps must be a positive whole number"),
    ({"buffer_size": -5}, "--buffer-size must be a positive whole number"),
    ({"gamma": 1.5}, "--gamma must be between 0 and 1"),
    ({"eps_start": -0.1}, "--eps-start must be between 0 and 1"),
    ({"learning_rate": 0.0}, "--learning-rate must be a positive number"),
    ({"learning_starts": 10}, "--learning-starts (10) must be at least --batch-size (32)"),
    ({"buffer_size": 16, "learning_starts": 16, "batch_size": 16 * 2},
     "--buffer-size (16) must be at least --batch-size (32)"),
    ({"learning_starts": 500}, "--learning-starts (500) cannot exceed --buffer-size (100)"),
])
def test_check_config_names_the_flag(changes, message):
    with pytest.raises(ConfigError) as error:
        check_config(dataclasses.replace(ExampleConfig(), **changes))
    assert message in str(error.value)


def test_check_config_accepts_the_defaults():
    check_config(ExampleConfig())


def test_check_memory_refuses_what_cannot_fit():
    check_memory(1_000, 10)
    with pytest.raises(ConfigError, match=r"needs .* GB but only .* pass a smaller --buffer-size"):
        check_memory(10**15, 7_064)


@dataclasses.dataclass
class GameConfig:
    env_id: str = "BreakoutNoFrameskip-v4"
    """the game."""
    solved_at: float = 40.0
    """running reward that ends training."""
    max_gradient_norm: float = 10.0
    """gradient clipping."""
    seed: int = 1
    """the seed."""
    gamma: float = 0.99
    """discount."""
    eval_epsilon: float = 0.05
    """evaluation exploration."""


@pytest.mark.parametrize("changes, message", [
    ({"max_gradient_norm": 0.0}, "--max-gradient-norm must be a positive number, got 0.0"),
    ({"max_gradient_norm": -1.0}, "--max-gradient-norm must be a positive number, got -1.0"),
    ({"max_gradient_norm": math.nan}, "--max-gradient-norm must be a finite number, got nan"),
    ({"max_gradient_norm": math.inf}, "--max-gradient-norm must be a finite number, got inf"),
    ({"seed": -1}, "--seed must be a whole number from 0 to 4294967295, got -1"),
    ({"env_id": "PongNoFrameskip-v4"}, "--solved-at 40 cannot be reached in Pong, whose "
                                       "highest score is 21"),
    ({"solved_at": math.inf}, "--solved-at must be a finite number, got inf"),
    ({"gamma": math.nan}, "--gamma must be between 0 and 1, got nan"),
    ({"eval_epsilon": math.inf}, "--eval-epsilon must be between 0 and 1, got inf"),
])
def test_every_float_is_finite_and_the_rest_in_range(changes, message):
    with pytest.raises(ConfigError) as error:
        check_config(dataclasses.replace(GameConfig(), **changes))
    assert message in str(error.value)


def test_parse_config_records_the_flags_given():
    assert parse_config(ExampleConfig, ["--total-steps", "5", "--resume"])._given_fields == \
        {"total_steps", "resume"}
    assert given_fields(parse_config(ExampleConfig, [])) == frozenset()
    assert given_fields(ExampleConfig(gamma=0.5)) == {"gamma"}  # built in code


def test_a_replaced_configuration_keeps_the_flags_given():
    parsed = parse_config(ExampleConfig, ["--total-steps", "5"])
    replaced = replace_settings(parsed, gamma=0.5)
    assert (replaced.gamma, replaced.total_steps) == (0.5, 5)
    assert given_fields(replaced) == {"total_steps"}  # gamma was changed, not given
    assert given_fields(replace_settings(parsed, frozenset({"resume"}), gamma=0.5)) == {"resume"}
    in_code = replace_settings(ExampleConfig(gamma=0.5), total_steps=5)
    assert given_fields(in_code) == {"gamma", "total_steps"}  # still read from the values
    assert parsed.gamma == 0.99  # the original is left as it was


@dataclasses.dataclass
class ListConfig:
    plot: list[str] = dataclasses.field(default_factory=list)
    """run folders to draw."""
    seed: int = 1
    """seed."""


def test_a_list_field_takes_one_or_more_values():
    assert parse_config(ListConfig, []) == ListConfig(plot=[])
    assert parse_config(ListConfig, ["--plot", "runs/a", "runs/b", "--seed", "2"]) == ListConfig(
        plot=["runs/a", "runs/b"], seed=2)
    assert parse_config(ListConfig, []).plot is not parse_config(ListConfig, []).plot
    with pytest.raises(SystemExit) as exit_info:
        parse_config(ListConfig, ["--plot"])  # a list flag needs at least one value
    assert exit_info.value.code == 2
    from common.config import _field_type

    assert _field_type("list[str]") is list and _field_type(list[str]) is list
    with pytest.raises(TypeError, match="unsupported"):
        _field_type(list[int])


@dataclasses.dataclass
class NStepConfig:
    n_step: int = 1
    """rewards summed."""
    buffer_size: int = 100
    """replay size."""


@pytest.mark.parametrize("n_step, message", [
    (0, "--n-step must be a positive whole number, got 0"),
    (100, "--n-step must be smaller than --buffer-size (100), got 100"),
])
def test_n_step_is_at_least_one_and_below_the_memory_size(n_step, message):
    with pytest.raises(ConfigError) as error:
        check_config(NStepConfig(n_step=n_step))
    assert message in str(error.value) and "\n" not in str(error.value)
    check_config(NStepConfig(n_step=3))


@dataclasses.dataclass
class TrainingConfig(ExampleConfig):
    eps_end: float = 0.1
    """final epsilon."""
    overlap_updates: bool = True
    """updates beside play."""
    deterministic: bool = False
    """exact runs."""
    evaluate: str = ""
    """a model to play."""
    plot: list[str] = dataclasses.field(default_factory=list)
    """runs to draw."""


@pytest.mark.parametrize("argv, message", [
    (["--total-steps", "100000000000000000000"], "--total-steps must be at most 1,000,000,000,000"),
    (["--total-steps", "50"], "--total-steps (50) must be more than --learning-starts (50)"),
    (["--eps-start", "0.01", "--eps-end", "0.5"], "--eps-end (0.5) must not be above --eps-start"),
    (["--deterministic", "--overlap-updates"], "--deterministic runs every update in turn"),
    (["--evaluate", "m.keras", "--plot", "runs/a"], "--evaluate plays an agent and --plot draws"),
])
def test_settings_that_cannot_work_are_refused_before_any_work(argv, message):
    with pytest.raises(ConfigError) as error:
        check_config(parse_config(TrainingConfig, argv))
    assert message in str(error.value)


def test_deterministic_alone_is_accepted_and_the_cross_checks_wait_for_a_resume():
    check_config(parse_config(TrainingConfig, ["--deterministic"]))
    check_config(TrainingConfig(deterministic=True))  # a notebook's Config: overlap not given
    check_config(parse_config(TrainingConfig, ["--evaluate", "m.keras", "--total-steps", "10"]))
    # On --resume the run's own --learning-starts is not known yet: no cross check.
    check_config(parse_config(TrainingConfig, ["--resume", "--buffer-size", "20"]),
                 across_fields=False)
    with pytest.raises(ConfigError, match="--buffer-size must be a positive"):
        check_config(parse_config(TrainingConfig, ["--resume", "--buffer-size", "0"]),
                     across_fields=False)


def test_a_resume_may_stop_before_learning_starts():
    """A run stopped while its memory filled may be carried on a little at a time."""
    check_config(parse_config(TrainingConfig, ["--resume", "--total-steps", "40"]))
