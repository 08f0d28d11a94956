"""Reference learning runs: how many steps, games and hours a game takes to be solved.

Throughput says how fast the loop runs; this says whether, and how soon, it learns.
It trains the reference runs, one after the other, with the script's default
settings (Breakout: seeds 1, 2 and 3, each in `runs/reference/breakout-seedN`, no
videos), and summarizes them:

    python benchmarks/learning.py                   # trains; days on a CPU, hours on a GPU
    python benchmarks/learning.py --seeds 1         # one seed
    python benchmarks/learning.py -- --total-steps 2000000   # flags after -- go to the script
    python benchmarks/learning.py --summarize-only  # only the summary of benchmarks/results/
    python benchmarks/learning.py --label ddqn-n3 --seeds 1 2 -- --double-dqn --n-step 3
    python benchmarks/learning.py --script pong_dqn.py --label ddqn-n3 --seeds 1 \
        -- --double-dqn --n-step 3 --total-steps 1000000 --save-replay

Each run is `python breakout_dqn.py --seed N --run-dir runs/reference/breakout-seedN
--video-every 0` (with `--label L`, for a run of other settings, `breakout-L-seedN`),
with `--resume` when its folder already holds a checkpoint, so the command can be
stopped (Ctrl-C: the run saves a checkpoint) and run again in a later session to carry
on; a run that has finished (it saved `model.keras`) is not run again.
When a run finishes, its small CSV files, `progress.csv` and `heldout_q.csv`, are
copied to `benchmarks/results/<run name>/` with `machine.json`, a description of the
machine that finished it; checkpoints and videos are never copied.

The summary reads every folder of `benchmarks/results/` (or those named with
`--runs`) and writes there:

- `summary.md` and `summary.csv`: per run, the steps, games and wall time until the
  running reward (the mean score of the last 100 games) first reached the threshold
  over a full window of 100 games (the `solved_at` of the game's script, named by the
  first word of the run's name: Breakout 40, Pong 18),
  or "not reached"; the games and steps played, the last running reward and held-out
  Q, the wall time, the mean steps per second and the machine (CPU model, cores, GPU,
  TensorFlow version).
  Below it, what each run looked like on the way (`MILESTONES`): its running
  reward and held-out Q at 100,000, 250,000 and 400,000 steps.
- `learning-GAME.png` (`learning-breakout.png`, `learning-pong.png`): the learning
  curves of each game's runs overlaid (`common/plot.py`), defaults and options together.

Wall time: `elapsed_seconds` in `progress.csv` counts from the start of each session
and restarts at 0 after a resume, so the wall time of a run is the sum, over its
sessions, of each session's `elapsed_seconds` at its last kept game. The minutes of a
session after its last kept game (the steps played again after a resume) are not in it.
"""

from __future__ import annotations

import argparse
import ast
import csv
import importlib.metadata
import json
import math
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
from typing import Any, NamedTuple, Sequence

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `common` importable when run from a clean clone

from common.logger import cpu_description  # noqa: E402  (no TensorFlow import)
from common.plot import write_progress_png  # noqa: E402

RESULTS_DIR = ROOT / "benchmarks" / "results"
SOLVED_WINDOW_GAMES = 100  # the running reward's window (common.run.RUNNING_REWARD_GAMES)
MILESTONES = (100_000, 250_000, 400_000)  # agent steps at which the summary shows each run
SUMMARY_FIELDS = ("run", "threshold", "steps_to_threshold", "games_to_threshold",
                  "hours_to_threshold", "steps", "games", "running_reward", "heldout_q",
                  "hours", "steps_per_second", "machine")


class RunSummary(NamedTuple):
    """What the summary says of one run; ``None`` where a value does not exist."""

    run: str
    threshold: float
    steps_to_threshold: int | None
    games_to_threshold: int | None
    hours_to_threshold: float | None
    steps: int
    games: int
    running_reward: float | None
    heldout_q: float | None
    hours: float
    steps_per_second: float | None
    machine: str


def summarize_run(folder: str | os.PathLike, threshold: float) -> RunSummary:
    """Summarizes one results folder (``progress.csv``, maybe ``heldout_q.csv``).

    Args:
        folder: the folder; its name names the run.
        threshold: the running reward that counts as solved.

    Returns:
        The run's summary. The threshold counts as reached at the first game from the
        100th on whose running reward (over the last 100 games) is at least it.
    """
    folder = pathlib.Path(folder)
    rows = _read_rows(folder / "progress.csv", ("step", "game", "running_reward",
                                                "elapsed_seconds"))
    seconds = _session_summed_seconds([row["elapsed_seconds"] for row in rows])
    hours = [value / 3600 for value in seconds]
    reached = next((index for index, row in enumerate(rows)
                    if row["game"] >= SOLVED_WINDOW_GAMES and row["running_reward"] >= threshold),
                   None)
    heldout = _read_rows(folder / "heldout_q.csv", ("step", "heldout_q")) if (
        folder / "heldout_q.csv").exists() else []
    last = rows[-1] if rows else None
    total_hours = hours[-1] if hours else 0.0
    return RunSummary(
        run=folder.name, threshold=threshold,
        steps_to_threshold=int(rows[reached]["step"]) if reached is not None else None,
        games_to_threshold=int(rows[reached]["game"]) if reached is not None else None,
        hours_to_threshold=hours[reached] if reached is not None else None,
        steps=int(last["step"]) if last else 0, games=int(last["game"]) if last else 0,
        running_reward=last["running_reward"] if last else None,
        heldout_q=heldout[-1]["heldout_q"] if heldout else None,
        hours=total_hours,
        steps_per_second=last["step"] / (total_hours * 3600) if last and total_hours else None,
        machine=_read_machine(folder))


def _session_summed_seconds(elapsed: Sequence[float]) -> list[float]:
    """Wall time since the run's start at each row, summed over its sessions.

    ``elapsed_seconds`` restarts at 0 in each session (after a resume): where it
    falls, a new session begins, and the previous session's last value is added to
    every later row.
    """
    total, offset, previous = [], 0.0, 0.0
    for seconds in elapsed:
        if seconds < previous:  # a resumed session started counting from 0
            offset += previous
        total.append(offset + seconds)
        previous = seconds
    return total


def _read_rows(path: pathlib.Path, columns: Sequence[str]) -> list[dict[str, float]]:
    """The rows of a CSV file as floats, skipping any that do not parse (a cut-short line)."""
    rows = []
    with open(path, newline="", encoding="utf-8", errors="replace") as file:  # bad bytes: a
        for row in csv.DictReader(file):  # row that does not parse, never a traceback
            try:
                values = {name: float(row[name]) for name in columns}
            except (TypeError, ValueError, KeyError):
                continue
            if all(math.isfinite(values[name]) for name in columns):
                rows.append(values)
    return rows


def _read_machine(folder: pathlib.Path) -> str:
    try:
        machine = json.loads((folder / "machine.json").read_text())
    except (OSError, ValueError):
        return "unknown"
    return (f"{machine.get('cpu', '?')}; GPU: {machine.get('gpu', '?')}; "
            f"TensorFlow {machine.get('tensorflow', '?')}")


def machine_description() -> dict[str, str]:
    """This machine: CPU model and cores, GPUs (from ``nvidia-smi``), TensorFlow's version."""
    try:
        gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=True)
        gpu = ", ".join(line.strip() for line in gpus.stdout.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError):
        gpu = ""
    try:
        tensorflow = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return {"cpu": cpu_description(), "gpu": gpu or "none", "tensorflow": tensorflow,
            "commit": _git_commit()}


def _git_commit() -> str:
    """The commit this code is at, with ``+changes`` if the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=30,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if changed else "")


def write_summary(summaries: Sequence[RunSummary], folders: Sequence[pathlib.Path],
                  out_dir: pathlib.Path) -> str:
    """Writes ``summary.md``, ``summary.csv`` and ``learning-GAME.png`` for each game;
    returns the markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "summary.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(SUMMARY_FIELDS)
        for summary in summaries:
            writer.writerow(["" if value is None else
                             round(value, 4) if isinstance(value, float) else value
                             for value in summary])
    markdown = markdown_table(summaries) + "\n\n" + milestones_table(folders)
    if any((folder / "evaluations.csv").exists() for folder in folders):
        markdown += "\n\n" + evaluations_table(folders)
    (out_dir / "summary.md").write_text(markdown + "\n")
    # One picture per game: Breakout's scores and Pong's share no axis, nor a threshold.
    games: dict[str, list[tuple[RunSummary, pathlib.Path]]] = {}
    for summary, folder in zip(summaries, folders):
        games.setdefault(game_of(summary.run), []).append((summary, folder))
    for game, runs in games.items():
        thresholds = {summary.threshold for summary, _ in runs}
        write_progress_png([str(folder) for _, folder in runs], out_dir / f"learning-{game}.png",
                           solved_at=thresholds.pop() if len(thresholds) == 1 else None,
                           title=f"Reference runs: {game.capitalize()}")
    return markdown


def game_of(run_name: str) -> str:
    """The game a run's name starts with: ``breakout-ddqn-n3-seed1`` is ``breakout``."""
    return run_name.split("-")[0]


def markdown_table(summaries: Sequence[RunSummary]) -> str:
    """The summary as a markdown table, one row per run."""
    thresholds = {summary.threshold for summary in summaries}
    # Runs of two games (Breakout 40, Pong 18): each run's threshold follows its name.
    mixed = len(thresholds) > 1
    threshold = "threshold" if mixed or not summaries else f"{thresholds.pop():g}"
    header = (f"| run | steps to {threshold} | games to {threshold} | hours to {threshold} "
              f"| steps | games | running reward | held-out Q | hours | steps/s | machine |")
    lines = [header, "| " + " | ".join(["---"] * (header.count("|") - 1)) + " |"]
    for summary in summaries:
        if summary.steps_to_threshold is None:
            reached = ["not reached"] * 3
        else:
            reached = [f"{summary.steps_to_threshold:,}", f"{summary.games_to_threshold:,}",
                       f"{summary.hours_to_threshold:.1f}"]
        lines.append("| " + " | ".join([
            f"{summary.run} ({summary.threshold:g})" if mixed else summary.run, *reached,
            f"{summary.steps:,}", f"{summary.games:,}",
            _maybe(summary.running_reward, ".2f"), _maybe(summary.heldout_q, ".3f"),
            f"{summary.hours:.1f}", _maybe(summary.steps_per_second, ".1f"),
            summary.machine]) + " |")
    return "\n".join(lines)


def milestones_table(folders: Sequence[pathlib.Path],
                     milestones: Sequence[int] = MILESTONES) -> str:
    """Each run's running reward and held-out Q at these steps, as a markdown table.

    Why: a user at step 250,000 wants to know whether their run looks healthy; the
    reference runs say what they looked like there. A value is the last one logged at
    or before the step (the last game's running reward, the last held-out Q
    measurement); "-" where the run had not got that far.
    """
    header = "| run | " + " | ".join(f"at {step:,} steps" for step in milestones) + " |"
    lines = [header, "| " + " | ".join(["---"] * (len(milestones) + 1)) + " |"]
    for folder in folders:
        rows = _read_rows(folder / "progress.csv", ("step", "running_reward"))
        heldout = _read_rows(folder / "heldout_q.csv", ("step", "heldout_q")) if (
            folder / "heldout_q.csv").exists() else []
        cells = []
        for step in milestones:
            if not rows or rows[-1]["step"] < step:
                cells.append("-")
                continue
            reward = [row["running_reward"] for row in rows if row["step"] <= step]
            q_value = [row["heldout_q"] for row in heldout if row["step"] <= step]
            cells.append(f"running reward {reward[-1]:.1f}" if reward else "no game yet")
            if q_value:
                cells[-1] += f", held-out Q {q_value[-1]:.2f}"
        lines.append(f"| {folder.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluations_table(folders: Sequence[pathlib.Path]) -> str:
    """The agents' own play at fixed steps (``evaluations.csv``), as a markdown table.

    Why: to compare settings, the running reward lags a whole window of games and
    carries the exploration; a run's agent playing after each stage of
    ``--evaluate-every`` does not. A cell is the mean score and its standard
    deviation over the stage's games; the last column the run's mean steps per second.
    """
    tables = {folder.name: _read_rows(folder / "evaluations.csv", ("step", "mean_score",
                                                                   "std_score"))
              for folder in folders if (folder / "evaluations.csv").exists()}
    steps = sorted({int(row["step"]) for rows in tables.values() for row in rows})
    header = ("| run | " + " | ".join(f"at {step:,}" for step in steps)
              + " | steps/s |")
    lines = ["Evaluation after each stage: mean score (standard deviation) over its games",
             "", header, "| " + " | ".join(["---"] * (len(steps) + 2)) + " |"]
    for folder in folders:
        if folder.name not in tables:
            continue
        scores = {int(row["step"]): row for row in tables[folder.name]}
        cells = [f"{scores[step]['mean_score']:.1f} ({scores[step]['std_score']:.1f})"
                 if step in scores else "-" for step in steps]
        rate = summarize_run(folder, math.inf).steps_per_second
        lines.append(f"| {folder.name} | " + " | ".join(cells) + f" | {_maybe(rate, '.1f')} |")
    return "\n".join(lines)


def _maybe(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def solved_at_of(script: pathlib.Path) -> float:
    """The ``solved_at`` default of a script's ``Config``, read from its source.

    Reading the source spares importing the script, and with it TensorFlow.
    """
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "solved_at" and node.value is not None):
            return float(ast.literal_eval(node.value))
    raise SystemExit(f"{script} has no Config.solved_at; pass --threshold")


def threshold_of(run_name: str, default: float) -> float:
    """The ``solved_at`` of the game a run's name starts with (``pong-seed1``: Pong's 18),
    or ``default`` for a name that starts with no game's name."""
    script = ROOT / f"{game_of(run_name)}_dqn.py"
    return solved_at_of(script) if script.is_file() else default


def train_reference_runs(script: pathlib.Path, seeds: Sequence[int], runs_dir: pathlib.Path,
                         results_dir: pathlib.Path, extra_arguments: Sequence[str],
                         label: str = "", evaluate_every: int = 0,
                         eval_episodes: int = 10) -> int:
    """Trains (or carries on) each seed's run, copying each finished run's CSV files.

    ``label`` names runs of settings other than the defaults (``extra_arguments``):
    ``breakout-<label>-seedN`` instead of ``breakout-seedN``. With ``evaluate_every``,
    each run trains in stages of that many steps and its agent plays
    ``eval_episodes`` games after each (see ``train_in_stages``).

    Returns:
        0 when every run has finished, else the status of the run that did not.
    """
    game = script.stem.removesuffix("_dqn")
    for seed in seeds:
        name = f"{game}-{label}-seed{seed}" if label else f"{game}-seed{seed}"
        run_dir = runs_dir / name
        command = [sys.executable, str(script), "--seed", str(seed), "--run-dir",
                   str(run_dir), "--video-every", "0", *extra_arguments]
        if evaluate_every:
            status = train_in_stages(command, run_dir, results_dir / name, evaluate_every,
                                     eval_episodes, threshold_of(name, solved_at_of(script)))
            if status != 0:
                return status
        elif not (run_dir / "model.keras").exists():
            status = _train(command, run_dir)
            if status != 0 or not (run_dir / "model.keras").exists():
                print(f"{name} did not finish (status {status}); run this command again to "
                      f"carry on.", file=sys.stderr)
                return status or 1
        copy_results(run_dir, results_dir / name)
    return 0


def _train(command: Sequence[str], run_dir: pathlib.Path) -> int:
    """Starts or resumes (when its folder holds a checkpoint) one run in the foreground."""
    command = list(command)
    # The index file TensorFlow's CheckpointManager writes once a checkpoint is whole.
    if (run_dir / "checkpoints" / "checkpoint").exists():
        command.append("--resume")
    print(" ".join(command), flush=True)
    return _run_in_foreground(command)


EVALUATION_FIELDS = ("step", "episodes", "mean_score", "std_score", "min_score", "max_score",
                     "scores")


def train_in_stages(command: Sequence[str], run_dir: pathlib.Path, out_dir: pathlib.Path,
                    stage_steps: int, episodes: int, threshold: float) -> int:
    """Trains a run to its ``--total-steps`` in stages, evaluating the agent after each.

    Why: the running reward lags the agent by a whole window of games and carries
    its exploration; comparing settings needs the agent's own play at fixed steps.
    After every ``stage_steps`` steps the run stops (saving a checkpoint and its
    model), ``--evaluate`` plays ``episodes`` games with it (epsilon 0.05, the
    paper's protocol), and the run resumes. Each stage's scores go to
    ``evaluations.csv`` in the run folder, and the run's files to ``out_dir``.
    A stage already in ``evaluations.csv`` is not run again, so the command can
    be stopped and run again. Each resume starts a new game (the one in progress
    is played again) and, without ``--save-replay``, refills the memory; pass
    ``--save-replay`` so that stages change nothing else.

    Returns:
        0 when the run reached its total steps or its threshold, else the status of
        the stage that did not finish.
    """
    total_steps = _flag_value(command, "--total-steps")
    if total_steps is None:
        raise SystemExit("--evaluate-every needs the run's --total-steps after --")
    done = {int(row["step"]) for row in _read_rows(run_dir / "evaluations.csv", ("step",))} \
        if (run_dir / "evaluations.csv").exists() else set()
    stages = list(range(stage_steps, total_steps, stage_steps)) + [total_steps]
    without_total = _without_flag(command, "--total-steps")
    for stage in stages:
        if stage in done:
            continue
        if done and summarize_run(run_dir, threshold).steps_to_threshold is not None:
            break  # solved in an earlier stage
        model = run_dir / "model.keras"
        before = model.stat().st_mtime if model.exists() else None
        status = _train([*without_total, "--total-steps", str(stage)], run_dir)
        finished = model.exists() and model.stat().st_mtime != before
        if status != 0 or not finished:
            print(f"{run_dir.name} did not finish its stage to {stage:,} steps (status "
                  f"{status}); run this command again to carry on.", file=sys.stderr)
            return status or 1
        scores = _evaluate(command, run_dir, episodes)
        if scores is None:
            return 1
        _append_evaluation(run_dir / "evaluations.csv", stage, scores)
        copy_results(run_dir, out_dir)
        print(f"{run_dir.name} at {stage:,} steps: mean score {sum(scores) / len(scores):.2f} "
              f"over {len(scores)} games", flush=True)
        if summarize_run(run_dir, threshold).steps_to_threshold is not None:
            break  # solved: the run stopped before the stage's end
    return 0


def _evaluate(command: Sequence[str], run_dir: pathlib.Path, episodes: int) -> list[float] | None:
    """Plays ``episodes`` games with a run's agent; their scores, or None if it failed."""
    seed = _flag_value(command, "--seed")
    evaluation = [command[0], command[1], "--evaluate", str(run_dir), "--episodes",
                  str(episodes), "--seed", str(seed), "--video-dir",
                  str(run_dir / "evaluation-videos")]
    print(" ".join(evaluation), flush=True)
    result = subprocess.run(evaluation, cwd=ROOT, capture_output=True, text=True)
    scores = [float(match) for match in re.findall(r"^game \d+: score (\S+)$", result.stdout,
                                                    re.MULTILINE)]
    if result.returncode != 0 or len(scores) != episodes:
        print(f"the evaluation of {run_dir} failed (status {result.returncode}): "
              f"{(result.stderr.strip().splitlines() or ['no message'])[-1]}", file=sys.stderr)
        return None
    return scores


def _append_evaluation(path: pathlib.Path, step: int, scores: Sequence[float]) -> None:
    new = not path.exists()
    mean, std = statistics.fmean(scores), statistics.pstdev(scores)  # as numpy's mean, std
    with open(path, "a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(EVALUATION_FIELDS)
        writer.writerow([step, len(scores), round(mean, 3), round(std, 3), min(scores),
                         max(scores), " ".join(f"{score:g}" for score in scores)])


def _flag_value(command: Sequence[str], flag: str) -> int | None:
    """The whole-number value of the last ``flag`` in a command, or None."""
    values = [command[index + 1] for index, word in enumerate(command[:-1]) if word == flag]
    return int(values[-1]) if values else None


def _without_flag(command: Sequence[str], flag: str) -> list[str]:
    """A command without ``flag`` and its value."""
    kept, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word == flag:
            skip = True
        else:
            kept.append(word)
    return kept


def _run_in_foreground(command: Sequence[str]) -> int:
    """Runs a training run, leaving Ctrl-C to it: it saves a checkpoint, then stops."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return subprocess.run(command, cwd=ROOT,
                              preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                               signal.SIG_DFL)).returncode
    finally:
        signal.signal(signal.SIGINT, previous)


def copy_results(run_dir: pathlib.Path, out_dir: pathlib.Path) -> None:
    """Copies a run's small CSV files and a description of this machine to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("progress.csv", "heldout_q.csv", "evaluations.csv", "settings.json"):
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, out_dir / name)
    (out_dir / "machine.json").write_text(json.dumps(machine_description(), indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Trains the reference runs (unless --summarize-only) and writes their summary."""
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", default="breakout_dqn.py", help="the game script to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help="seeds to run (default: 1 2 3)")
    parser.add_argument("--runs-dir", default="runs/reference",
                        help="where the runs' folders go (default: runs/reference)")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR),
                        help="where the small CSV files and the summary go")
    parser.add_argument("--label", default="",
                        help="names runs of other settings (the flags after --): "
                             "GAME-LABEL-seedN")
    parser.add_argument("--runs", nargs="+", default=None,
                        help="summarize only these folders of --results-dir")
    parser.add_argument("--threshold", type=float, default=None,
                        help="running reward that counts as solved (default: the "
                             "solved_at of each run's game)")
    parser.add_argument("--evaluate-every", type=int, default=0, metavar="STEPS",
                        help="train in stages of STEPS steps and play --eval-episodes games "
                             "with the agent after each (evaluations.csv); needs "
                             "--total-steps after --")
    parser.add_argument("--eval-episodes", type=int, default=10,
                        help="games per evaluation with --evaluate-every (default: 10)")
    parser.add_argument("--summarize-only", action="store_true",
                        help="train nothing; summarize the folders of --results-dir")
    arguments = parser.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_.]*(-[A-Za-z0-9_.]+)*", arguments.label) or \
            arguments.label.startswith("."):
        parser.error(f"--label must be letters, digits and dashes, got {arguments.label!r}")
    script = ROOT / arguments.script
    results_dir = pathlib.Path(arguments.results_dir)
    status = 0
    if not arguments.summarize_only:
        status = train_reference_runs(script, arguments.seeds, ROOT / arguments.runs_dir,
                                      results_dir, extra, arguments.label,
                                      arguments.evaluate_every, arguments.eval_episodes)
    if arguments.runs:
        names = arguments.runs
        missing = [name for name in names if not (results_dir / name / "progress.csv").is_file()]
        if missing:
            parser.error("no progress.csv in "
                         + ", ".join(str(results_dir / name) for name in missing))
    elif results_dir.is_dir():
        names = sorted(entry.name for entry in results_dir.iterdir()
                       if (entry / "progress.csv").is_file())
    else:
        names = []
    folders = [results_dir / name for name in names]
    if not folders:
        print(f"No results in {results_dir} yet.", file=sys.stderr)
        return status or 2
    summaries = [summarize_run(folder, arguments.threshold if arguments.threshold is not None
                               else threshold_of(folder.name, solved_at_of(script)))
                 for folder in folders]
    print(write_summary(summaries, folders, results_dir))
    print(f"Wrote {results_dir / 'summary.md'}, summary.csv and learning-GAME.png.")
    return status


if __name__ == "__main__":
    sys.exit(main())
