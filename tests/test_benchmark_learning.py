"""Tests of benchmarks/learning.py's summary, on made-up results folders."""

import csv
import importlib.util
import json
import re
import subprocess
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = "step,game,score,running_reward,epsilon,loss,mean_q,steps_per_second,elapsed_seconds\n"


@pytest.fixture(scope="module")
def learning():
    spec = importlib.util.spec_from_file_location(
        "benchmark_learning", os.path.join(ROOT, "benchmarks", "learning.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_results(folder, rows, heldout=None, machine=None, tail=""):
    folder.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [f"{step},{game},1,{reward},0.5,0.1,0.2,100.0,{elapsed}\n"
                        for step, game, reward, elapsed in rows]
    (folder / "progress.csv").write_text("".join(lines) + tail)
    if heldout is not None:
        (folder / "heldout_q.csv").write_text(
            "step,heldout_q\n" + "".join(f"{step},{value}\n" for step, value in heldout))
    if machine is not None:
        (folder / "machine.json").write_text(json.dumps(machine))


def solved_run_rows():
    """150 games, game g ending at step 1,000 g. The running reward passes 40 before
    game 100 (not a full window: it does not count), then again at game 120. The run
    was resumed after game 80: its elapsed seconds restart from 0 there."""
    rows = []
    for game in range(1, 151):
        reward = 45.0 if 50 <= game < 100 else (game / 3 if game >= 100 else 1.0)
        elapsed = 10.0 * game if game <= 80 else 5.0 + 10.0 * (game - 80)
        rows.append((1000 * game, game, round(reward, 3), elapsed))
    return rows


def test_the_summary_counts_a_full_window_and_sums_the_sessions(tmp_path, learning, capsys):
    results = tmp_path / "results"
    write_results(results / "breakout-seed1", solved_run_rows(),
                  heldout=[(10_000, 0.1), (150_000, 2.5)],
                  machine={"cpu": "Test CPU, 2 cores", "gpu": "none", "tensorflow": "2.21.0"},
                  tail="151000,151,1,50")  # a last line cut short by a kill
    write_results(results / "breakout-seed2",
                  [(500 * game, game, 5.0, 2.0 * game) for game in range(1, 61)])
    assert learning.main(["--summarize-only", "--results-dir", str(results)]) == 0

    with open(results / "summary.csv", newline="") as file:
        solved, unsolved = list(csv.DictReader(file))
    assert solved["run"] == "breakout-seed1" and float(solved["threshold"]) == 40.0
    assert (solved["steps_to_threshold"], solved["games_to_threshold"]) == ("120000", "120")
    # 800 s in the first session, then 405 s into the second at game 120; 1,505 s in all.
    assert float(solved["hours_to_threshold"]) == pytest.approx(1205 / 3600, abs=1e-4)
    assert float(solved["hours"]) == pytest.approx(1505 / 3600, abs=1e-4)
    assert float(solved["steps_per_second"]) == pytest.approx(150_000 / 1505, abs=1e-3)
    assert (solved["steps"], solved["games"], solved["heldout_q"]) == ("150000", "150", "2.5")
    assert solved["machine"] == "Test CPU, 2 cores; GPU: none; TensorFlow 2.21.0"
    assert unsolved["steps_to_threshold"] == unsolved["hours_to_threshold"] == ""
    assert (unsolved["steps"], unsolved["games"], unsolved["heldout_q"]) == ("30000", "60", "")
    assert float(unsolved["hours"]) == pytest.approx(120 / 3600, abs=1e-4)
    assert unsolved["machine"] == "unknown"

    markdown = (results / "summary.md").read_text()
    assert markdown == capsys.readouterr().out.split("\nWrote ")[0] + "\n"
    table, milestones = markdown.split("\n\n")
    header, rule, first, second = table.splitlines()
    assert header.startswith("| run | steps to 40 | games to 40 | hours to 40 |")
    assert rule.count("---") == header.count("|") - 1
    assert first.startswith("| breakout-seed1 | 120,000 | 120 | 0.3 | 150,000 | 150 |")
    assert second.startswith("| breakout-seed2 | not reached | not reached | not reached |")
    assert (results / "learning-breakout.png").read_bytes()[:4] == b"\x89PNG"
    # At 100,000 steps seed 1 is at game 100 (running reward 100 / 3) with a held-out Q
    # of 0.1 (measured at 10,000); seed 2 stopped at 30,000 steps.
    assert milestones.splitlines() == [
        "| run | at 100,000 steps | at 250,000 steps | at 400,000 steps |",
        "| --- | --- | --- | --- |",
        "| breakout-seed1 | running reward 33.3, held-out Q 0.10 | - | - |",
        "| breakout-seed2 | - | - | - |"]


def test_session_sums_and_the_threshold_read_from_a_script(learning):
    assert learning._session_summed_seconds([1.0, 5.0, 2.0, 4.0, 0.5]) == [
        1.0, 5.0, 7.0, 9.0, 9.5]
    assert learning.solved_at_of(learning.ROOT / "breakout_dqn.py") == 40.0
    assert learning.solved_at_of(learning.ROOT / "pong_dqn.py") == 18.0


def test_no_results_is_one_line_and_status_2(tmp_path, learning, capsys):
    assert learning.main(["--summarize-only", "--results-dir", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_finished_run_is_copied_without_its_checkpoints(tmp_path, learning, monkeypatch):
    run_dir = tmp_path / "runs" / "breakout-seed1"
    write_results(run_dir, [(1000, 1, 1.0, 3.0)], heldout=[(1000, 0.2)])
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "checkpoint").write_text("x")
    (run_dir / "model.keras").write_text("x")
    commands = []
    monkeypatch.setattr(learning, "_run_in_foreground", lambda command: commands.append(command))
    results = tmp_path / "results"
    assert learning.train_reference_runs(learning.ROOT / "breakout_dqn.py", [1],
                                         tmp_path / "runs", results, []) == 0
    assert commands == []  # finished: not run again
    assert sorted(os.listdir(results / "breakout-seed1")) == ["heldout_q.csv", "machine.json",
                                                            "progress.csv"]
    machine = json.loads((results / "breakout-seed1" / "machine.json").read_text())
    assert set(machine) == {"cpu", "gpu", "tensorflow", "commit"}
    assert re.fullmatch(r"[0-9a-f]{40}(\+changes)?|unknown", machine["commit"])


def test_an_unfinished_run_is_resumed_with_the_flags_given(tmp_path, learning, monkeypatch,
                                                           capsys):
    run_dir = tmp_path / "runs" / "breakout-seed2"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint").write_text("x")
    commands = []

    def stopped_run(command):
        commands.append(command)
        return 0  # stopped by Ctrl-C: a checkpoint, no model.keras

    monkeypatch.setattr(learning, "_run_in_foreground", stopped_run)
    status = learning.train_reference_runs(learning.ROOT / "breakout_dqn.py", [2, 3],
                                           tmp_path / "runs", tmp_path / "results",
                                           ["--total-steps", "5000"])
    assert status == 1 and len(commands) == 1  # seed 3 waits for seed 2
    assert commands[0][1:] == [str(learning.ROOT / "breakout_dqn.py"), "--seed", "2",
                               "--run-dir", str(run_dir), "--video-every", "0",
                               "--total-steps", "5000", "--resume"]
    assert "breakout-seed2 did not finish" in capsys.readouterr().err


def test_labelled_runs_and_two_games_each_with_its_own_threshold(tmp_path, learning,
                                                                 monkeypatch, capsys):
    commands = []
    monkeypatch.setattr(learning, "_run_in_foreground", lambda command: commands.append(command))
    learning.train_reference_runs(learning.ROOT / "pong_dqn.py", [1], tmp_path / "runs",
                                  tmp_path / "results", ["--n-step", "3"], label="n3")
    assert commands[0][4:6] == ["--run-dir", str(tmp_path / "runs" / "pong-n3-seed1")]
    assert commands[0][-2:] == ["--n-step", "3"]

    results = tmp_path / "results"
    write_results(results / "breakout-seed1", solved_run_rows())
    # Pong's running reward reaches 18 at game 110 (a full window): Breakout's 40 it never does.
    write_results(results / "pong-n3-seed1",
                  [(2000 * game, game, 20.0 if game >= 110 else -5.0, 3.0 * game)
                   for game in range(1, 121)])
    pictures = []
    monkeypatch.setattr(learning, "write_progress_png",
                        lambda folders, path, solved_at, title: pictures.append(
                            ([os.path.basename(folder) for folder in folders],
                             os.path.basename(path), solved_at)))
    assert learning.main(["--summarize-only", "--results-dir", str(results)]) == 0
    # One picture per game, each with its own game's threshold line.
    assert pictures == [(["breakout-seed1"], "learning-breakout.png", 40.0),
                        (["pong-n3-seed1"], "learning-pong.png", 18.0)]
    header, _, breakout, pong = (results / "summary.md").read_text().split("\n\n")[0].splitlines()
    assert header.startswith("| run | steps to threshold | games to threshold |")
    assert breakout.startswith("| breakout-seed1 (40) | 120,000 | 120 |")
    assert pong.startswith("| pong-n3-seed1 (18) | 220,000 | 110 |")
    assert learning.threshold_of("catch-seed1", 2.0) == 2.0  # no catch_dqn.py: the default
    with pytest.raises(SystemExit):
        learning.main(["--summarize-only", "--results-dir", str(results), "--label", "../x"])


def test_a_staged_run_plays_its_agent_after_each_stage_and_carries_on(tmp_path, learning,
                                                                       monkeypatch):
    run_dir = tmp_path / "runs" / "pong-s-seed1"
    trained, evaluated = [], []

    def train(command):
        total = int(command[command.index("--total-steps") + 1])
        trained.append((total, "--resume" in command))
        write_results(run_dir, [(total, total // 10, -20.0, 1.0)])
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        (run_dir / "checkpoints" / "checkpoint").write_text("x")
        (run_dir / "model.keras").write_text("x")
        os.utime(run_dir / "model.keras", (total, total))  # a new model at each stage's end
        return 0

    real_run = subprocess.run

    def evaluate(command, **kwargs):
        if "--evaluate" not in command:
            return real_run(command, **kwargs)
        evaluated.append(command)
        return subprocess.CompletedProcess(command, 0, "game 1: score -20\ngame 2: score -18\n",
                                           "")

    monkeypatch.setattr(learning, "_run_in_foreground", train)
    monkeypatch.setattr(learning.subprocess, "run", evaluate)
    arguments = ["--script", "pong_dqn.py", "--label", "s", "--seeds", "1", "--runs-dir",
                 str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"),
                 "--evaluate-every", "100", "--eval-episodes", "2", "--", "--total-steps", "250"]
    assert learning.main(arguments) == 0
    assert trained == [(100, False), (200, True), (250, True)]
    assert [command[command.index("--evaluate") + 1] for command in evaluated] == [
        str(run_dir)] * 3
    rows = list(csv.DictReader(open(tmp_path / "results" / "pong-s-seed1" / "evaluations.csv")))
    assert [(row["step"], row["mean_score"], row["scores"]) for row in rows] == [
        ("100", "-19.0", "-20 -18"), ("200", "-19.0", "-20 -18"), ("250", "-19.0", "-20 -18")]
    assert learning.main(arguments) == 0 and len(trained) == 3  # all done: nothing runs again
    summary = (tmp_path / "results" / "summary.md").read_text()
    assert "| run | at 100 | at 200 | at 250 | steps/s |" in summary
    assert "| pong-s-seed1 | -19.0 (1.0) | -19.0 (1.0) | -19.0 (1.0) |" in summary

    # A stage stopped before its end (no new model) is neither evaluated nor counted.
    monkeypatch.setattr(learning, "_run_in_foreground", lambda command: 0)
    arguments[arguments.index("250")] = "300"
    assert learning.main(arguments) == 1 and len(evaluated) == 3
