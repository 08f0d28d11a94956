"""End-to-end tests of long-run reliability: stops, resumes, settings, the run lock.

Each test runs `tests/catch_dqn.py` (the training of `breakout_dqn.py` on Catch) as
real processes, as a user runs a script, so exit statuses and messages are what a
user sees.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow


def catch(*arguments, timeout=240):
    return subprocess.run([sys.executable, "-m", "tests.catch_dqn", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def start_catch(*arguments):
    return subprocess.Popen([sys.executable, "-m", "tests.catch_dqn", *arguments], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def own_lines(stderr):
    """The program's own stderr lines, without TensorFlow's C++ start-up logging."""
    return [line for line in stderr.splitlines()
            if not re.match(r"(WARNING: All log messages before absl|[IWE]\d{4} |To enable the "
                            r"following instructions)", line)]


def wait_for_progress(run_dir, process, rows=3, timeout=120):
    path = os.path.join(run_dir, "progress.csv")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and sum(1 for _ in open(path)) > rows:
            return
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.1)
    raise AssertionError("no progress")


def test_a_stop_while_the_memory_fills_resumes(tmp_path):
    """Before the first update the optimizer has no slots; its checkpoint must resume."""
    run_dir = str(tmp_path / "R")
    arguments = ["--run-dir", run_dir, "--total-steps", "100000", "--learning-starts", "2000"]
    process = start_catch(*arguments)
    wait_for_progress(run_dir, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    stopped_at = int(re.search(r"Stopped by SIGTERM at step ([\d,]+)", stdout)[1].replace(",", ""))
    assert stopped_at < 2000  # still filling the memory
    result = catch(*arguments, "--resume", "--total-steps", str(stopped_at + 100))
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resumed {run_dir} at step {stopped_at:,}" in result.stdout


def learning_rate_of(checkpoint_prefix):
    reader = tf.train.load_checkpoint(checkpoint_prefix)
    key = next(name for name in reader.get_variable_to_shape_map()
               if name.startswith("optimizer/") and "learning_rate" in name)
    return float(reader.get_tensor(key))


def test_resume_settings_a_damaged_checkpoint_and_a_refused_flag(tmp_path):
    run_dir = str(tmp_path / "R")
    checkpoints = os.path.join(run_dir, "checkpoints")
    first = catch("--run-dir", run_dir, "--total-steps", "600", "--checkpoint-every", "300",
                  "--learning-rate", "0.001")
    assert first.returncode == 0, first.stderr[-3000:]
    # The latest checkpoint damaged on disk: the resume falls back to the one before.
    data = next(name for name in os.listdir(checkpoints) if name.startswith("ckpt-600.data"))
    with open(os.path.join(checkpoints, data), "r+b") as file:
        file.truncate(10)
    refused = catch("--run-dir", run_dir, "--resume", "--buffer-size", "3000")
    assert refused.returncode == 2
    assert len(own_lines(refused.stderr)) == 1
    assert "--buffer-size cannot change during a run" in refused.stderr
    result = catch("--run-dir", run_dir, "--resume", "--total-steps", "900",
                   "--learning-rate", "1e-05")
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("Resuming with changed settings: --total-steps 900 (was 600), "
            "--learning-rate 1e-05 (was 0.001).") in result.stdout
    assert f"Resumed {run_dir} at step 300" in result.stdout
    assert "skipped damaged checkpoint ckpt-600" in result.stderr
    assert learning_rate_of(os.path.join(checkpoints, "ckpt-900")) == pytest.approx(1e-5)


def test_a_second_process_on_the_same_run_folder_is_refused(tmp_path):
    run_dir = str(tmp_path / "R")
    process = start_catch("--run-dir", run_dir, "--total-steps", "100000",
                          "--checkpoint-every", "200")
    try:
        wait_for_progress(run_dir, process, rows=40)  # a checkpoint exists by now
        second = catch("--run-dir", run_dir, "--resume")
        assert second.returncode == 2
        assert (f"is in use by process {process.pid} on {socket.gethostname()}"
                in second.stderr) and len(own_lines(second.stderr)) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0
    assert not os.path.exists(os.path.join(run_dir, ".lock"))  # released on the way out


def test_a_run_saved_by_an_earlier_version_resumes_and_plays(tmp_path):
    """tests/data/catch-run-52169de: a Catch run (--dueling --n-step 3) saved by commit
    52169de, before the renames and moves of later versions: its checkpoint resumes, its
    model.keras (with the registered name dqn>DuelingHead) loads and plays."""
    import shutil

    run_dir = tmp_path / "R"
    shutil.copytree(os.path.join(ROOT, "tests", "data", "catch-run-52169de"), run_dir)
    resumed = catch("--run-dir", str(run_dir), "--resume", "--total-steps", "400")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed {run_dir} at step 300" in resumed.stdout
    assert "Finished (total steps reached) after 400 steps" in resumed.stdout
    model = os.path.join(ROOT, "tests", "data", "catch-run-52169de", "model.keras")
    from common.checkpoint import load_q_network

    q_network = load_q_network(model)
    assert any(layer.__class__.__name__ == "DuelingHead" for layer in q_network.layers)
