"""Slow tests: the generated standalone files and notebooks run alone, as in Colab.

Each copies one generated file alone into an empty folder and runs it there with
PYTHONPATH unset, so nothing of the repository (``common/`` above all) can be
imported: as a script, as a notebook executed by papermill in a real kernel, and
as one notebook cell holding the whole file. Budgets are tiny (a few hundred steps,
about fifty updates); together they take about two minutes on a 2-core CPU.
"""

import ast
import base64
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TINY = {"total_steps": 600, "learning_starts": 400, "buffer_size": 2000, "video_every": 1,
        "log_every_games": 1}
# A random game of Pong lasts about 850 to 890 agent steps: 1,000 steps finish one.
TINY_PONG = {"total_steps": 1000, "learning_starts": 900, "buffer_size": 2000, "video_every": 1,
             "log_every_games": 1}


@pytest.fixture
def alone(tmp_path, monkeypatch):
    """An empty folder, and no PYTHONPATH for the processes started from here."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    folder = tmp_path / "alone"
    folder.mkdir()
    return folder


def flags(settings):
    return [part for name, value in settings.items()
            for part in (f"--{name.replace('_', '-')}", str(value))]


def stream_text(cell):
    return "".join(output.text for output in cell.outputs if output.output_type == "stream")


def embedded_mp4s(cell):
    """The MP4 files embedded in a cell's outputs, as bytes."""
    videos = []
    for output in cell.outputs:
        html = output.get("data", {}).get("text/html", "")
        if "<video" in html:
            assert 'src="data:video/mp4;base64,' in html  # the data itself, not a link
            encoded = html.split("base64,", 1)[1].split('"', 1)[0]
            videos.append(base64.b64decode(encoded))
    return videos


def test_the_standalone_file_trains_alone(alone):
    shutil.copy(ROOT / "standalone" / "breakout_dqn.py", alone)
    result = subprocess.run([sys.executable, "breakout_dqn.py", *flags(TINY)], cwd=alone,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished (total steps reached) after 600 steps" in result.stdout
    progress = (alone / "runs" / "breakout" / "progress.csv").read_text().splitlines()
    assert progress[0].startswith("step,game,score,") and len(progress) >= 2
    videos = sorted((alone / "videos" / "breakout").glob("breakout_game*_score*.mp4"))
    assert videos and videos[0].read_bytes()[4:8] == b"ftyp"  # an MP4 file
    assert sorted(path.name for path in alone.iterdir()) == ["breakout_dqn.py", "runs", "videos"]


@pytest.mark.parametrize("game, settings", [("breakout", TINY), ("pong", TINY_PONG)])
def test_the_notebook_runs_alone_with_a_live_curve_and_embedded_videos(alone, game, settings):
    assert KernelSpecManager().get_kernel_spec("python3")  # pip install ipykernel provides it
    shutil.copy(ROOT / "notebooks" / f"{game}_dqn.ipynb", alone)
    executed = papermill.execute_notebook(
        str(alone / f"{game}_dqn.ipynb"), str(alone / "executed.ipynb"),
        parameters={**settings, "evaluation_games": 1}, cwd=str(alone), progress_bar=False)

    training = next(cell for cell in executed.cells if "live = LiveProgress(config)" in cell.source)
    assert f"Finished (total steps reached) after {settings['total_steps']:,} steps" in \
        stream_text(training)
    displays = [output for output in training.outputs if output.output_type == "display_data"]
    # nbclient writes an update_display_data into the output that the display created, so
    # the cell keeps one learning curve and one video, and the placeholders are gone.
    assert [sorted(output.data) for output in displays] == [["image/png", "text/plain"],
                                                            ["text/html", "text/plain"]]
    assert base64.b64decode(displays[0].data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    videos = sorted((alone / "videos" / game).glob(f"{game}_game*_score*.mp4"))
    assert embedded_mp4s(training) == [videos[-1].read_bytes()]  # the newest game, embedded

    evaluation = next(cell for cell in executed.cells if "evaluation_config =" in cell.source)
    assert "over 1 game." in stream_text(evaluation)
    evaluation_videos = list((alone / "videos" / game).glob(f"{game}_evaluation_game*.mp4"))
    assert embedded_mp4s(evaluation) == [evaluation_videos[0].read_bytes()]


def with_config_defaults(source, **defaults):
    """``source`` with new defaults for some fields of its ``Config`` class."""
    config = next(node for node in ast.parse(source).body
                  if isinstance(node, ast.ClassDef) and node.name == "Config")
    lines = source.splitlines(keepends=True)
    for node in config.body:
        if isinstance(node, ast.AnnAssign) and node.target.id in defaults:
            value = node.value
            assert value.lineno == value.end_lineno and lines[value.lineno - 1].isascii()
            line = lines[value.lineno - 1]
            lines[value.lineno - 1] = (line[:value.col_offset] + repr(defaults.pop(node.target.id))
                                       + line[value.end_col_offset:])
    assert not defaults, f"Config has no field {defaults}"
    return "".join(lines)


def test_the_standalone_file_trains_as_one_notebook_cell(alone):
    # A kernel's own command line is not the user's, so the settings are changed as a
    # Colab user would change them: by editing the Config defaults in the pasted text.
    source = (ROOT / "standalone" / "breakout_dqn.py").read_text()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        with_config_defaults(source, **TINY))])
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(alone)}}).execute()
    outputs = notebook.cells[0].outputs
    assert not [output for output in outputs if output.output_type == "error"]
    assert "Finished (total steps reached) after 600 steps" in stream_text(notebook.cells[0])
    assert (alone / "runs" / "breakout" / "model.keras").is_file()
    assert list((alone / "videos" / "breakout").glob("breakout_game*_score*.mp4"))


def test_a_refused_training_stops_the_notebook_before_any_evaluation(alone):
    # A folder whose run ended before its first checkpoint: training is refused at once.
    run_dir = alone / "runs" / "breakout"
    run_dir.mkdir(parents=True)
    (run_dir / "progress.csv").write_text("step,game\n100,1\n")
    shutil.copy(ROOT / "notebooks" / "breakout_dqn.ipynb", alone)
    with pytest.raises(papermill.PapermillExecutionError, match="TrainingStopped"):
        papermill.execute_notebook(
            str(alone / "breakout_dqn.ipynb"), str(alone / "executed.ipynb"),
            parameters={**TINY, "evaluation_games": 1}, cwd=str(alone), progress_bar=False)
    executed = nbformat.read(alone / "executed.ipynb", as_version=4)
    training = next(cell for cell in executed.cells if "live = LiveProgress(config)" in cell.source)
    refusal = stream_text(training)
    assert "choose another run_dir, or delete" in refusal and "--run-dir" not in refusal
    evaluation = next(cell for cell in executed.cells if "evaluation_config =" in cell.source)
    assert evaluation.execution_count is None and not evaluation.outputs
    assert not list(alone.rglob("*.mp4"))  # nothing was played
