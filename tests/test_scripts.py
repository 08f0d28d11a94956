"""Smoke tests: the real scripts, run as a user runs them, on tiny budgets.

Each run is a separate process, so these tests see what a user sees: the exit
status, what is printed, and the files left behind. Pong's script runs in the slow
notebook tests (`tests/test_notebooks.py`), from the same generated source, and
`test_the_two_scripts_share_their_algorithm_line_for_line` holds the twins together. The tests that train are
marked `slow` (`pytest -m "not slow"` skips them; CI runs them all).
"""

import csv
import dataclasses
import importlib
import math
import os
import re
import signal
import subprocess
import sys
import time

import imageio.v2 as imageio
import pytest

import breakout_dqn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--learning-starts", "200", "--buffer-size", "5000", "--log-every-games", "1"]


def run_script(script, *arguments, timeout=240):
    return subprocess.run([sys.executable, script, *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def start_script(script, *arguments):
    """Starts a script in the background, as a user would in a terminal."""
    return subprocess.Popen([sys.executable, script, *arguments], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_progress(run_dir):
    with open(os.path.join(run_dir, "progress.csv"), newline="") as file:
        return list(csv.DictReader(file))


def assert_decodable_mp4(path):
    reader = imageio.get_reader(path)
    frame = reader.get_data(0)
    reader.close()
    assert frame.shape == (210, 160, 3)


@pytest.fixture(scope="module")
def breakout_run(tmp_path_factory):
    """One short Breakout run shared by the tests below: 1,200 steps, a video every game."""
    base = tmp_path_factory.mktemp("breakout")
    run_dir, video_dir = str(base / "R"), str(base / "V")
    result = run_script("breakout_dqn.py", "--total-steps", "1200", "--learning-starts", "500",
                        "--buffer-size", "10000", "--video-every", "1", "--run-dir", run_dir,
                        "--video-dir", video_dir, "--log-every-games", "1")
    return result, run_dir, video_dir


@pytest.mark.slow
def test_breakout_smoke_run(breakout_run):
    result, run_dir, video_dir = breakout_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished (total steps reached) after 1,200 steps" in result.stdout
    rows = read_progress(run_dir)
    assert len(rows) >= 3  # random Breakout games last about 150-250 steps
    steps = [int(row["step"]) for row in rows]
    assert steps == sorted(steps) and steps[-1] <= 1200
    assert [int(row["game"]) for row in rows] == list(range(1, len(rows) + 1))
    losses = [float(row["loss"]) for row in rows if int(row["step"]) > 700]
    assert losses and all(math.isfinite(loss) and loss >= 0 for loss in losses)
    videos = sorted(os.listdir(video_dir))
    assert len(videos) >= len(rows)  # every finished game was recorded
    assert all(re.fullmatch(r"breakout_game\d{6}_score\d+\.mp4", name) for name in videos), videos
    assert_decodable_mp4(os.path.join(video_dir, videos[0]))
    assert os.path.isfile(os.path.join(run_dir, "model.keras"))
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    check_banner_and_progress_lines(result.stdout, run_dir)
    # The held-out set is drawn when learning starts, and measured at the last step.
    assert [step for step, _ in read_heldout(run_dir)] == [500, 1200]
    assert os.path.isfile(os.path.join(run_dir, "heldout_states.npz"))
    with open(os.path.join(run_dir, "progress.png"), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


def check_banner_and_progress_lines(stdout, run_dir):
    lines = stdout.splitlines()
    banner = lines.index("Training BreakoutNoFrameskip-v4: 4 actions (NOOP, FIRE, RIGHT, LEFT)")
    assert re.match(r"  device         (CPU|GPU): ", lines[banner + 1])
    assert "at most 1,200 agent steps" in lines[banner + 2]
    assert "10,000 transitions, 0.07 GB" in lines[banner + 3]
    assert lines[banner + 4] == f"  run folder     {run_dir}: a new run"
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and lines.index(progress[0]) > banner
    for line in progress:
        fields = line.split(" | ")
        assert re.fullmatch(r"step +[\d,]+ of 1,200 \(\d+\.\d%\)", fields[0]), line
        assert re.fullmatch(r"\d+:\d\d:\d\d elapsed", fields[-2]), line
        if int(fields[0].split()[1].replace(",", "")) < 500:
            assert fields[-1].startswith("filling the memory"), line
        else:
            assert re.fullmatch(r"(at most \d+:\d\d:\d\d left|time left: measuring)",
                                fields[-1]), line
    assert any(line.endswith(" left") and "at most" in line for line in progress)


def read_heldout(run_dir):
    with open(os.path.join(run_dir, "heldout_q.csv"), newline="") as file:
        return [(int(row["step"]), float(row["heldout_q"])) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_evaluate_a_saved_model(breakout_run, tmp_path):
    _, run_dir, _ = breakout_run
    video_dir = str(tmp_path / "E")
    result = run_script("breakout_dqn.py", "--evaluate", os.path.join(run_dir, "model.keras"),
                        "--episodes", "2", "--video-dir", video_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "game 1: score" in result.stdout and "game 2: score" in result.stdout
    assert "over 2 games." in result.stdout
    videos = os.listdir(video_dir)
    assert len(videos) == 2
    for name in videos:
        assert_decodable_mp4(os.path.join(video_dir, name))
    # A run folder (its model.keras) is evaluated by the SIGTERM test below.


def wait_for(condition, timeout, process):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended early: {process.stderr.read()[-3000:]}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError("timed out waiting for the run")


def last_step(run_dir):
    try:
        rows = read_progress(run_dir)
    except (FileNotFoundError, csv.Error):
        return 0
    return max((int(row["step"]) for row in rows if row["step"].isdigit()), default=0)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_0(tmp_path):
    run_dir = str(tmp_path / "R")
    arguments = ["--total-steps", "100000", "--video-every", "0", "--save-replay",
                 "--run-dir", run_dir, *TINY]
    process = start_script("breakout_dqn.py", *arguments)
    wait_for(lambda: last_step(run_dir) > 300, 180, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    assert "Stopped by SIGTERM at step" in stdout
    assert f"Resume with: python breakout_dqn.py {' '.join(arguments)} --resume" in stdout
    assert os.path.isfile(os.path.join(run_dir, "checkpoints", "checkpoint"))
    # The stopped run has no model.keras yet; --evaluate plays its newest checkpoint.
    result = run_script("breakout_dqn.py", "--evaluate", run_dir, "--episodes", "1",
                        "--video-dir", str(tmp_path / "E"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Playing with the network of checkpoint" in result.stdout
    assert len(os.listdir(tmp_path / "E")) == 1
    # Resuming restores the replay memory, so learning goes on from the first step.
    stopped_at = int(re.search(r"Stopped by SIGTERM at step ([\d,]+)", stdout)[1].replace(",", ""))
    result = run_script("breakout_dqn.py", *arguments, "--resume",
                        "--total-steps", str(stopped_at + 300))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed {run_dir} at step {stopped_at:,}" in result.stdout
    assert "replay memory restored" in result.stdout
    assert f"  run folder     {run_dir}: resumed from the checkpoint of step {stopped_at:,}" in \
        result.stdout
    # The held-out set is drawn once the memory holds 500 transitions (after the stop,
    # here) and measured again at the end: rows only go forward.
    heldout = read_heldout(run_dir)
    assert [step for step, _ in heldout] == sorted(step for step, _ in heldout)
    assert heldout[-1][0] == stopped_at + 300 and len(heldout) >= 2
    rows = [row for row in read_progress(run_dir) if int(row["step"]) > stopped_at]
    assert rows and all(math.isfinite(float(row["loss"])) for row in rows)
    assert [int(row["game"]) for row in read_progress(run_dir)] == \
        list(range(1, len(read_progress(run_dir)) + 1))


def run_main(capsys, *arguments):
    """Runs the script's main() in this process; returns (exit status, stderr)."""
    try:
        status = breakout_dqn.main(list(arguments))
    except SystemExit as exit_:  # argparse exits for a bad flag
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--total-steps", "0"], "--total-steps must be a positive whole number, got 0"),
    (["--buffer-size", "-1"], "--buffer-size must be a positive whole number, got -1"),
    (["--batch-size", "0"], "--batch-size must be a positive whole number"),
    (["--eps-start", "1.5"], "--eps-start must be between 0 and 1, got 1.5"),
    (["--eps-end", "-0.1"], "--eps-end must be between 0 and 1, got -0.1"),
    (["--gamma", "2"], "--gamma must be between 0 and 1, got 2.0"),
    (["--learning-starts", "10"], "--learning-starts (10) must be at least --batch-size (32)"),
    (["--buffer-size", "16", "--learning-starts", "16", "--batch-size", "32"],
     "--buffer-size (16) must be at least --batch-size (32)"),
    (["--learning-rate", "0"], "--learning-rate must be a positive number"),
    (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["--total-steps", "ten"], "invalid int value: 'ten'"),
    (["--buffer-size", "100000000000"], "pass a smaller --buffer-size"),
])
def test_bad_values_end_with_one_line(capsys, tmp_path, arguments, message):
    status, error = run_main(capsys, *arguments, "--run-dir", str(tmp_path / "R"),
                             "--video-dir", str(tmp_path / "V"))
    assert status == 2
    assert message in error
    assert error.count("\n") == 1 and "Traceback" not in error


def test_resume_without_a_checkpoint(capsys, tmp_path):
    status, error = run_main(capsys, "--resume", "--run-dir", str(tmp_path / "empty"))
    assert status == 2 and "--resume: no checkpoint in" in error and error.count("\n") == 1


@pytest.mark.slow
def test_resume_of_another_game_and_reuse_of_a_run_folder(capsys, tmp_path):
    run_dir = str(tmp_path / "R")
    status, _ = run_main(capsys, "--total-steps", "300", "--video-every", "0",
                         "--run-dir", run_dir, *TINY)
    assert status == 0
    status, error = run_main(capsys, "--env-id", "PongNoFrameskip-v4", "--solved-at", "18",
                             "--resume", "--run-dir", run_dir)
    assert status == 2 and "holds a run of BreakoutNoFrameskip-v4, not PongNoFrameskip-v4" in error
    status, error = run_main(capsys, "--run-dir", run_dir)
    assert status == 2 and "already holds a run; add --resume" in error


def test_missing_or_corrupt_model_for_evaluate(capsys, tmp_path):
    status, error = run_main(capsys, "--evaluate", str(tmp_path / "nothing.keras"),
                             "--video-dir", str(tmp_path / "V"))
    assert status == 2 and "no model file at" in error and error.count("\n") == 1
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"\x00not a model")
    status, error = run_main(capsys, "--evaluate", str(corrupt), "--video-dir", str(tmp_path / "V"))
    assert status == 2 and "is not a .keras file" in error and error.count("\n") == 1


def test_unwritable_output_folder(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, error = run_main(capsys, "--run-dir", str(blocker / "R"),
                             "--video-dir", str(tmp_path / "V"))
    assert status == 2 and "cannot write to --run-dir" in error and error.count("\n") == 1


def test_unknown_game(capsys, tmp_path):
    status, error = run_main(capsys, "--env-id", "NoSuchGameNoFrameskip-v4",
                             "--run-dir", str(tmp_path / "R"), "--video-every", "0", *TINY)
    assert status == 2 and "NoSuchGame" in error and error.count("\n") == 1


@pytest.mark.slow
def test_a_diverging_loss_stops_with_a_clear_message(capsys, tmp_path):
    run_dir = tmp_path / "R"
    status, error = run_main(capsys, "--learning-rate", "1e30", "--total-steps", "1000",
                             "--checkpoint-every", "100", "--video-every", "0",
                             "--run-dir", str(run_dir), *TINY)
    assert status == 1
    assert "training diverged: the loss became" in error and error.count("\n") == 1
    last_good = error.split("the last good checkpoint is ")[1].split(";")[0]
    assert os.path.exists(last_good + ".index")
    assert not (run_dir / "model.keras").exists()  # a diverged network is not saved as the result


def test_the_two_scripts_share_their_algorithm_line_for_line():
    import inspect

    import pong_dqn

    def code(function):
        lines = inspect.getsource(function).splitlines()
        return [line.split("  #")[0].rstrip() for line in lines]  # comments may name the game

    for name in ("epsilon_at", "train", "evaluate"):
        assert code(getattr(breakout_dqn, name)) == code(getattr(pong_dqn, name)), name
    assert [field.name for field in dataclasses.fields(breakout_dqn.Config)] == [
        field.name for field in dataclasses.fields(pong_dqn.Config)]


GAME_SETTINGS = {"env_id", "solved_at", "video_dir", "run_dir"}
"""What every game script sets for its own game; any other default a game changes must
say why in a comment above it."""

PAPER = {
    "total_steps": 12_500_000,  # 50 million frames
    "buffer_size": 1_000_000,
    "learning_starts": 50_000,
    "batch_size": 32,
    "train_every": 4,
    "target_update_every": 10_000,
    "learning_rate": 0.00025,  # RMSProp's; the optimizer is not a setting, Adam is marked here
    "gamma": 0.99,
    "eps_start": 1.0,
    "eps_end": 0.1,
    "eps_decay_steps": 1_000_000,
    "max_gradient_norm": float("inf"),  # no clipping
    "double_dqn": False,
    "n_step": 1,
    "dueling": False,
    "overlap_updates": False,  # it acts with the newest weights
    "episodes": 30,
    "eval_epsilon": 0.05,
}
"""The settings of Mnih et al. (2015), Extended Data Table 1, in the units of ``Config``
(agent steps): a default that departs from one is marked ``# Deviation (name):`` above its
line, and ``tests/test_deviations.py`` checks that the name is listed for that script."""


def comment_above(script, name):
    """The comment lines right above ``name``'s line in a script's ``Config``."""
    import inspect

    lines = inspect.getsource(script.Config).splitlines()
    index = next(number for number, line in enumerate(lines)
                 if line.strip().startswith(f"{name}:"))
    comments = []
    while lines[index - 1].strip().startswith("#"):
        index -= 1
        comments.insert(0, lines[index].strip())
    return comments


def test_comment_above_reads_the_comment_block_of_a_setting():
    class script:
        @dataclasses.dataclass
        class Config:
            seed: int = 1
            # Deviation (replay-size): one line,
            # and a second.
            buffer_size: int = 10
            """a docstring."""
            gamma: float = 0.9

    assert comment_above(script, "buffer_size") == [
        "# Deviation (replay-size): one line,", "# and a second."]
    assert comment_above(script, "gamma") == []


@pytest.mark.parametrize("script_name", ["breakout_dqn", "pong_dqn"])
def test_exactly_the_defaults_that_depart_from_the_paper_are_marked(script_name):
    script = importlib.import_module(script_name)
    assert set(PAPER) <= {field.name for field in dataclasses.fields(script.Config)}
    for name, paper_value in PAPER.items():
        comments = comment_above(script, name)
        marked = bool(comments) and comments[0].startswith("# Deviation (")
        departs = getattr(script.Config(), name) != paper_value
        assert marked == departs, (
            f"{script_name}.Config.{name} departs from the paper's {paper_value} without a "
            f"'# Deviation (name):' comment above it" if departs else
            f"{script_name}.Config.{name} is the paper's {paper_value} but is marked as a "
            f"deviation")


def test_pong_changes_breakouts_defaults_only_with_a_comment_saying_why():
    """Breakout's defaults are the shared ones; Pong's own are said where they are set."""
    import pong_dqn

    differing = {field.name for field in dataclasses.fields(pong_dqn.Config)
                 if getattr(pong_dqn.Config(), field.name) != getattr(breakout_dqn.Config(),
                                                                      field.name)}
    assert GAME_SETTINGS <= differing
    for name in differing - GAME_SETTINGS:
        assert comment_above(pong_dqn, name), (
            f"pong_dqn.Config.{name} differs from breakout_dqn's without a comment above "
            f"it saying why")


def test_epsilon_holds_while_the_memory_fills_then_falls_linearly():
    config = breakout_dqn.Config(learning_starts=100, eps_decay_steps=1000, eps_start=1.0,
                                 eps_end=0.01)
    values = [breakout_dqn.epsilon_at(step, config) for step in (0, 100, 600, 1100, 5000)]
    assert values == pytest.approx([1.0, 1.0, 0.505, 0.01, 0.01])
    no_decay = dataclasses.replace(config, eps_decay_steps=0)
    assert [breakout_dqn.epsilon_at(step, no_decay) for step in (99, 100)] == [1.0, 0.01]


@pytest.mark.slow
def test_ctrl_c_twice_stops_at_once_with_one_message(tmp_path):
    """Run on Catch (tests/catch_dqn.py: the same train() and command line), for speed.

    The second Ctrl-C must come while the first one's checkpoint is being saved: the
    run pauses there (``DQN_PAUSE_AT``, see common/fault_points.py) and says so, so
    the test sends it then, never by luck of timing.
    """
    run_dir = str(tmp_path / "R")
    first = subprocess.run([sys.executable, "-m", "tests.catch_dqn", "--total-steps", "600",
                            "--checkpoint-every", "300", "--run-dir", run_dir], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-3000:]  # checkpoints at 300 and 600
    # No checkpoint falls due in the resumed run, so the only pause is the stop's own save:
    # it comes after the first Ctrl-C was handled, never together with the second.
    arguments = ["--total-steps", "100000", "--checkpoint-every", "100000", "--run-dir", run_dir]
    # As in a terminal, whatever started the tests: a process started with SIGINT ignored
    # (in the background of a script) would ignore it again once the loop's handler is gone.
    process = subprocess.Popen([sys.executable, "-m", "tests.catch_dqn", *arguments, "--resume"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "DQN_PAUSE_AT": "checkpoint-written",
                                    "PYTHONUNBUFFERED": "1"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: last_step(run_dir) > 700, 180, process)
    process.send_signal(signal.SIGINT)  # the first: save a checkpoint, then stop
    while "paused at checkpoint-written" not in process.stderr.readline():
        assert process.poll() is None
    process.send_signal(signal.SIGINT)  # the second, in the middle of that save
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    # The save was cut short before its index: the last complete checkpoint is step 600's.
    assert re.search(r"Stopped at once; the last complete checkpoint is \S+ckpt-600\.", stderr)
    assert "Resume with: python catch_dqn.py " in stderr  # the driver's Catch flags, then ours
    assert f"{' '.join(arguments)} --resume" in stderr
    resumed = subprocess.run([sys.executable, "-m", "tests.catch_dqn", *arguments, "--resume",
                              "--total-steps", "800"], cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed {run_dir} at step 600" in resumed.stdout


@pytest.mark.slow
def test_sigterm_while_evaluating_prints_the_scores_so_far(breakout_run, tmp_path):
    _, run_dir, _ = breakout_run
    video_dir = tmp_path / "E"
    process = start_script("breakout_dqn.py", "--evaluate", run_dir, "--episodes", "50",
                           "--video-dir", str(video_dir))
    deadline = time.monotonic() + 120
    while not (video_dir.exists() and any("_score" in name for name in os.listdir(video_dir))):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)  # the first game is finished and saved
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    assert "SIGTERM received: stopping; the unfinished game is not scored" in stdout
    assert "saving a checkpoint" not in stdout  # an evaluation has none to save
    finished = re.findall(r"game (\d+): score", stdout)
    assert finished and "Mean score " in stdout
    assert f"Stopped by SIGTERM after {len(finished)} of 50 games." in stderr
    videos = os.listdir(video_dir)
    assert len(videos) == len(finished)  # the unfinished game's video was dropped
    assert not any("recording" in name for name in videos)
