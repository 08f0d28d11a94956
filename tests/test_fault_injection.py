"""Kill training with `kill -9` at the worst moments, resume it each time, check nothing is lost.

The moments: paused inside the save code by `common/fault_points.py` (after a
checkpoint's files are written but before the index names them; after the replay
memory's file is written but before it is renamed; while a CSV row is written),
and at random times. Each run is a real process of `tests/catch_dqn.py`, the
training of `breakout_dqn.py` on Catch, so a kill lands where it would in a real
run. After every kill the run is resumed; at the end:

- every resume succeeded and said where it resumed;
- the step never went back more than one checkpoint interval;
- `progress.csv` numbers its games 1, 2, 3, ... with steps that only grow: no
  game logged twice, none lost.

`FAULT_INJECTION_KILLS` (default 4: each pause point once and a random moment;
about a minute here) sets how many kills.
"""

import csv
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT_EVERY = 300
PAUSE_POINTS = ["checkpoint-written", "replay-written", "csv-row", None]  # None: a random time


def progress_rows(run_dir):
    try:
        with open(os.path.join(run_dir, "progress.csv"), newline="") as file:
            return [row for row in csv.DictReader(file) if row.get("elapsed_seconds")]
    except FileNotFoundError:
        return []


def last_logged_step(run_dir):
    rows = progress_rows(run_dir)
    return int(rows[-1]["step"]) if rows else 0


def start(run_dir, total_steps, resume, pause_at, log_path):
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    environment.pop("DQN_PAUSE_AT", None)
    if pause_at:
        environment["DQN_PAUSE_AT"] = pause_at
    arguments = [sys.executable, "-m", "tests.catch_dqn", "--run-dir", run_dir,
                 "--total-steps", str(total_steps), "--checkpoint-every", str(CHECKPOINT_EVERY),
                 "--save-replay", *(["--resume"] if resume else [])]
    log = open(log_path, "w")
    return subprocess.Popen(arguments, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env=environment), log


def wait_until(condition, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("timed out")


def resumed_step(text):
    resumed = re.search(r"Resumed \S+ at step ([\d,]+)", text)
    assert resumed, f"the resume failed:\n{text[-3000:]}"
    return int(resumed[1].replace(",", ""))


@pytest.mark.slow
def test_kill_9_anywhere_in_the_save_code_never_loses_a_saved_step(tmp_path):
    kills = int(os.environ.get("FAULT_INJECTION_KILLS", "4"))
    rng = random.Random(0)
    run_dir = str(tmp_path / "R")
    total_steps = CHECKPOINT_EVERY * (kills + 3)
    killed_at, resumes = None, 0
    for kill in range(kills):
        pause_at = PAUSE_POINTS[kill % len(PAUSE_POINTS)]
        log_path = tmp_path / f"run{kill}.log"
        process, log = start(run_dir, total_steps, resume=kill > 0, pause_at=pause_at,
                             log_path=log_path)
        begin = last_logged_step(run_dir)
        if pause_at:
            paused = wait_until(lambda: f"paused at {pause_at}" in log_path.read_text(), process)
        else:  # a random moment once the run has gone on a little
            paused = wait_until(lambda: last_logged_step(run_dir) > begin + 50, process)
            time.sleep(rng.uniform(0, 1.0))
        assert paused, f"run {kill} ended before its kill:\n{log_path.read_text()[-3000:]}"
        process.send_signal(signal.SIGKILL)
        process.wait()
        log.close()
        if killed_at is not None:  # this run resumed the one killed before it
            assert killed_at - resumed_step(log_path.read_text()) <= CHECKPOINT_EVERY
            resumes += 1
        killed_at = last_logged_step(run_dir)

    result = subprocess.run([sys.executable, "-m", "tests.catch_dqn", "--run-dir", run_dir,
                             "--total-steps", str(total_steps), "--checkpoint-every",
                             str(CHECKPOINT_EVERY), "--save-replay", "--resume"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert killed_at - resumed_step(result.stdout) <= CHECKPOINT_EVERY
    resumes += 1
    assert f"Finished (total steps reached) after {total_steps:,} steps" in result.stdout
    rows = progress_rows(run_dir)
    games = [int(row["game"]) for row in rows]
    steps = [int(row["step"]) for row in rows]
    assert games == list(range(1, len(games) + 1)), "a game was logged twice or lost"
    assert steps == sorted(steps) and steps[-1] <= total_steps
    assert resumes == kills
    print(f"fault injection: {kills} runs killed, {resumes} resumes, 0 failures")
