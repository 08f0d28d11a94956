"""What a user sees of a run's learning: the start banner, the progress lines, the
held-out Q curve, progress.png, and `--plot` on finished runs (issue 11).

The `--plot` tests call the script's `main()` in this process on made-up run folders;
the slow test runs the real script twice (a run and its resume), as a user would.
"""

import csv
import os
import re
import subprocess
import sys

import pytest

import breakout_dqn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROGRESS_HEADER = ("step,game,score,running_reward,epsilon,loss,mean_q,steps_per_second,"
                   "elapsed_seconds\n")


def make_run(folder, games):
    folder.mkdir(parents=True)
    rows = "".join(f"{200 * game},{game},{game % 3},1.0,1.0,0.1,0.2,100.0,{game}.0\n"
                   for game in range(1, games + 1))
    (folder / "progress.csv").write_text(PROGRESS_HEADER + rows)
    (folder / "heldout_q.csv").write_text("step,heldout_q\n500,0.1\n1000,0.2\n")
    return folder


def test_plot_draws_one_run_into_its_folder(tmp_path, capsys):
    run = make_run(tmp_path / "seed1", games=5)
    assert breakout_dqn.main(["--plot", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"Wrote {run / 'progress.png'}"
    assert (run / "progress.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_overlays_several_runs_in_comparison_png(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = make_run(tmp_path / "seed1", 5), make_run(tmp_path / "seed2", 3)
    assert breakout_dqn.main(["--plot", str(first), str(second)]) == 0
    assert capsys.readouterr().out.strip() == "Wrote comparison.png"
    assert (tmp_path / "comparison.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_of_a_folder_that_is_no_run_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    assert breakout_dqn.main(["--plot", str(tmp_path / "videos")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds no progress.csv" in error


def run_script(*arguments):
    return subprocess.run([sys.executable, "breakout_dqn.py", *arguments], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def read_heldout(run_dir):
    with open(os.path.join(run_dir, "heldout_q.csv"), newline="") as file:
        return [(int(row["step"]), float(row["heldout_q"])) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_a_tiny_run_shows_its_learning_and_its_resume_carries_on(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "progress.png").mkdir(parents=True)  # the picture cannot be written...
    arguments = ["--learning-starts", "500", "--buffer-size", "5000", "--log-every-games",
                 "1", "--video-every", "0", "--run-dir", str(run_dir)]
    result = run_script("--total-steps", "1200", *arguments)
    assert result.returncode == 0, result.stderr[-3000:]  # ...and training goes on
    assert result.stderr.count("warning: could not draw") == 1
    lines = result.stdout.splitlines()
    banner = lines.index("Training BreakoutNoFrameskip-v4: 4 actions (NOOP, FIRE, RIGHT, LEFT)")
    assert lines[banner + 1].startswith("  device         CPU: ") or \
        lines[banner + 1].startswith("  device         GPU: ")
    assert "at most 1,200 agent steps" in lines[banner + 2]
    assert "5,000 transitions, 0.04 GB" in lines[banner + 3]
    assert lines[banner + 4] == f"  run folder     {run_dir}: a new run"
    progress = [line for line in lines if line.startswith("step ")]
    assert progress and lines.index(progress[0]) > banner
    for line in progress:
        fields = line.split(" | ")
        assert re.fullmatch(r"step +[\d,]+ of 1,200 \(\d+\.\d%\)", fields[0]), line
        assert re.fullmatch(r"\d+:\d\d:\d\d elapsed", fields[-2]), line
        step = int(fields[0].split()[1].replace(",", ""))
        if step < 500:
            assert fields[-1].startswith("filling the memory"), line
        else:
            assert re.fullmatch(r"(at most \d+:\d\d:\d\d left|time left: measuring)",
                                fields[-1]), line
    assert any(line.endswith(" left") and "at most" in line for line in progress)
    # The held-out set is drawn when learning starts, and measured at the last step.
    heldout = read_heldout(run_dir)
    assert [step for step, _ in heldout] == [500, 1200]
    assert os.path.isfile(run_dir / "heldout_states.npz")

    os.rmdir(run_dir / "progress.png")
    result = run_script("--total-steps", "1800", "--resume", *arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning" not in result.stderr
    assert f"  run folder     {run_dir}: resumed from the checkpoint of step 1,200" in (
        result.stdout)
    resumed = read_heldout(run_dir)
    assert resumed[:2] == heldout and [step for step, _ in resumed[2:]] == [1800]
    assert (run_dir / "progress.png").read_bytes()[:8] == PNG_SIGNATURE

    picture = run_dir / "progress.png"
    picture.unlink()
    assert breakout_dqn.main(["--plot", str(run_dir)]) == 0
    assert picture.read_bytes()[:8] == PNG_SIGNATURE
