"""Tests of tools/build_notebooks.py: the generated files are up to date, and the generator
writes modules in the right order, removes every import of common, refuses name
collisions, splits prose into markdown cells and takes the settings from Config.

The generator only ever runs here on temporary copies of the sources, or with --check.
"""

import ast
import re
import dataclasses
import importlib.util
import inspect
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

import breakout_dqn
import pong_dqn

ROOT = Path(__file__).resolve().parent.parent
GAMES = {"breakout_dqn": breakout_dqn, "pong_dqn": pong_dqn}
GENERATED = ["standalone/breakout_dqn.py", "notebooks/breakout_dqn.ipynb",
             "standalone/pong_dqn.py", "notebooks/pong_dqn.ipynb"]


def load_generator():
    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  ROOT / "tools" / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


generator = load_generator()


def run_generator(root, *arguments):
    return subprocess.run([sys.executable, str(root / "tools" / "build_notebooks.py"), *arguments],
                          cwd=root, capture_output=True, text=True, timeout=120)


def copy_repository(destination):
    """The files the generator reads and writes, copied to ``destination``."""
    for name in ["requirements.txt", *[path.name for path in ROOT.glob("*_dqn.py")]]:
        shutil.copy(ROOT / name, destination / name)
    for folder in ["common", "tools", "standalone", "notebooks"]:
        shutil.copytree(ROOT / folder, destination / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return destination


SCRIPT_HEAD = '''\
"""
Title: A small game
Description: A script for the generator's tests.
"""

"""
## Setup
"""

import os

{imports}

"""
## Play
"""

{code}
'''


def make_repository(root, modules, imports, code="print('played')"):
    """A tiny repository: ``common/<name>.py`` for each module and ``game_dqn.py``."""
    (root / "common").mkdir()
    (root / "common" / "__init__.py").write_text('"""The package."""\n')
    for name, text in modules.items():
        (root / "common" / f"{name}.py").write_text(textwrap.dedent(text))
    (root / "game_dqn.py").write_text(SCRIPT_HEAD.format(imports=imports, code=code))
    return root


def standalone_of(root):
    return generator.standalone_text(generator.build_game(root, "game_dqn.py"))


CHAIN = {
    "a": '''\
        """Module a: the base."""

        import math

        A_VALUE = math.sqrt(4)
        ''',
    "b": '''\
        """Module b: uses a, inside functions only."""

        import os


        def b_value():
            from common.a import A_VALUE  # imported late on purpose

            return A_VALUE + 1


        def b_check():
            if os.sep:
                from common.a import A_VALUE
            return True
        ''',
    "c": '''\
        """Module c: uses b at the top."""

        from __future__ import annotations

        import math
        from typing import Any

        from common.b import b_value

        __all__ = ["c_value"]


        def c_value() -> Any:
            return b_value() * math.pi


        if __name__ == "__main__":
            print("c run as a script")
        ''',
}


def test_generated_files_are_up_to_date():
    result = run_generator(ROOT, "--check")
    assert result.returncode == 0, result.stderr + "\nrun: python tools/build_notebooks.py"
    assert "4 of 4 generated files are up to date" in result.stdout


def test_modules_come_once_each_after_the_modules_they_import(tmp_path):
    root = make_repository(tmp_path, CHAIN,
                           "from common.c import c_value\nfrom common.a import A_VALUE",
                           code="def play():\n    print(round(c_value(), 3), A_VALUE)\n\n\n"
                                "if __name__ == \"__main__\":\n    play()")
    text = standalone_of(root)
    headings = [line for line in text.splitlines() if line.startswith("### common/")]
    assert headings == ["### common/a.py", "### common/b.py", "### common/c.py"]
    # The script's own text first, then the appendix; the main block last.
    assert text.index("## Setup") < text.index("## Play") < text.index("## Appendix")
    # The file runs alone, in an empty folder.
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "game.py").write_text(text)
    result = subprocess.run([sys.executable, "game.py"], cwd=tmp_path / "alone",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "9.425 2.0\n"
    assert "c run as a script" not in result.stdout  # a module's main block is left out


def test_real_modules_are_in_dependency_order():
    """In a standalone file every module sits in the appendix, after the ones it imports."""
    for name in GAMES:
        text = (ROOT / "standalone" / f"{name}.py").read_text()
        order = [line[len("### "):] for line in text.splitlines() if line.startswith("### common/")]
        assert len(order) == len(set(order)) and "common/config.py" in order
        for position, path in enumerate(order):
            imported = {node.module.replace(".", "/") + ".py"
                        for node in ast.walk(ast.parse((ROOT / path).read_text()))
                        if isinstance(node, ast.ImportFrom)
                        and (node.module or "").startswith("common.")}
            assert imported <= set(order[:position]), f"{path} comes before {imported}"


def test_imports_of_common_go_and_in_function_ones_become_comments(tmp_path):
    root = make_repository(tmp_path, CHAIN, "from common.c import c_value")
    text = standalone_of(root)
    tree = ast.parse(text)
    assert not [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                and "common" in ((node.module or "") if isinstance(node, ast.ImportFrom)
                                 else node.names[0].name)]
    assert "    # A_VALUE: written in, from common/a.py.\n\n    return A_VALUE + 1" in text
    # The only statement of a block becomes "pass" with the comment, so the block stays valid.
    assert "        pass  # A_VALUE: written in, from common/a.py.\n    return True" in text
    assert "__all__" not in text
    # The future import comes first, right after the header and the notice.
    assert isinstance(tree.body[1], ast.ImportFrom) and tree.body[1].module == "__future__"
    assert text.count("from __future__") == 1
    # The modules' imports moved to Setup, once each, in place of the script's common imports.
    setup = text[text.index("## Setup"):text.index("## Appendix")]
    assert "import math\nfrom typing import Any" in setup
    assert text.count("import math") == 1 and text.count("import os") == 1


def test_generated_files_say_they_are_generated():
    for name in GAMES:
        text = (ROOT / "standalone" / f"{name}.py").read_text()
        notice = text[text.index('"""\n\n# GENERATED FILE'):text.index("from __future__")]
        assert f"from {name}.py, common/files.py, common/config.py" in " ".join(notice.split())
        assert "python tools/build_notebooks.py" in notice and "do not edit it by hand" in notice
        first_cell = nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), 4).cells[0]
        assert "GENERATED FILE" in first_cell.source
        assert "tools/notebook_template.py" in first_cell.source


@pytest.mark.parametrize("modules, imports, name", [
    ({"a": "def helper():\n    return 1\n", "b": "def helper():\n    return 2\n"},
     "from common.a import helper\nfrom common.b import helper", "helper"),
    ({"a": "import math as m\n\nHALF_PI = m.pi / 2\n", "b": "m = 3\n"},
     "from common.a import HALF_PI\nfrom common.b import m", "m"),
])
def test_two_modules_defining_one_name_fail_loudly(tmp_path, modules, imports, name):
    root = make_repository(tmp_path, modules, imports)
    with pytest.raises(generator.BuildError) as error:
        standalone_of(root)
    assert str(error.value) == (f"common/a.py and common/b.py both define the top-level name "
                                f"{name!r}; rename it in one of them")


def test_a_module_name_defined_by_the_script_fails_and_the_command_exits_2(tmp_path):
    root = make_repository(tmp_path, {"a": "def helper():\n    return 1\n"},
                           "from common.a import helper", code="def helper():\n    return 2")
    (root / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "build_notebooks.py", root / "tools")
    shutil.copy(ROOT / "tools" / "notebook_template.py", root / "tools")
    (root / "requirements.txt").write_text("numpy\n")
    result = run_generator(root, "--check")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert "game_dqn.py and common/a.py both define the top-level name 'helper'" in result.stderr


@pytest.mark.parametrize("imports, words", [
    ("import common.a as a", "import common.a"),
    ("import common.a", "import common.a"),
    ("import common", "'import common'"),
    ("from common import a", "from common import"),
    ("from common.a import *", "'*'"),
    ("from common.a import missing_name", "does not define it"),
    ("from common.nothing import x", "common/nothing.py does not exist"),
])
def test_unsupported_imports_of_common_fail_loudly(tmp_path, imports, words):
    root = make_repository(tmp_path, {"a": "A = 1\n"}, imports)
    with pytest.raises(generator.BuildError) as error:
        standalone_of(root)
    assert words in str(error.value) and "game_dqn.py" in str(error.value)


def test_modules_that_import_each_other_fail_loudly(tmp_path):
    modules = {"a": "from common.b import B\n\nA = 1\n",
               "b": "def b():\n    from common.a import A\n    return A\n\n\nB = 2\n"}
    root = make_repository(tmp_path, modules, "from common.a import A")
    with pytest.raises(generator.BuildError, match="common/a.py and common/b.py import each other"):
        standalone_of(root)


def test_prose_blocks_are_split_from_code():
    source = generator.Source("x.py", textwrap.dedent('''\
        """Title: T"""
        import os
        """
        ## One

        Text.
        """
        x = 1
        # a comment stays with its code
        def f():
            """Not prose: a function's docstring."""
        """## Two"""
        """## Three"""
        y = 2
        '''))
    blocks = generator.split_prose(source)
    assert [(block.kind, block.markdown or block.text) for block in blocks] == [
        ("header", "Title: T"), ("code", "import os"), ("prose", "## One\n\nText."),
        ("code", 'x = 1\n# a comment stays with its code\ndef f():\n'
                 '    """Not prose: a function\'s docstring."""'),
        ("prose", "## Two"), ("prose", "## Three"), ("code", "y = 2")]


def test_notebook_cells_follow_the_script_prose():
    for name in GAMES:
        script = (ROOT / f"{name}.py").read_text()
        prose = [inspect.cleandoc(node.value.value) for node in ast.parse(script).body[1:]
                 if generator.is_docstring(node)]
        notebook = nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), 4)
        markdown = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"]
        title = ast.get_docstring(ast.parse(script)).splitlines()[0].removeprefix("Title: ")
        assert markdown[0].startswith(f"# {title}\n\n**Description:** ")
        script_cells = [text for text in markdown if text in prose]
        assert script_cells == prose  # every prose block, in order, as a markdown cell
        code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
        assert any(cell.startswith("from __future__ import annotations\n") for cell in code)
        after_configuration = notebook.cells[[cell.source for cell in notebook.cells].index(
            next(text for text in prose if text.startswith("## Configuration"))) + 1]
        assert after_configuration.source.startswith("@dataclass\nclass Config:")
        for cell in code:
            tree = ast.parse(cell)  # every code cell is valid Python on its own
            assert not [node for node in tree.body if generator.is_docstring(node)
                        and node.value.value.lstrip().startswith("## ")]
            assert not [node for node in tree.body if generator.is_main_guard(node)]


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_notebooks_are_valid_deterministic_and_without_outputs():
    outputs = generator.build(ROOT)
    assert outputs == generator.build(ROOT)
    for name in GAMES:
        text = (ROOT / "notebooks" / f"{name}.ipynb").read_text()
        notebook = nbformat.reads(text, 4)
        nbformat.validate(notebook)
        assert notebook.metadata.kernelspec.name == "python3"
        assert notebook.metadata.language_info.name == "python"
        ids = [cell.id for cell in notebook.cells]
        assert len(set(ids)) == len(ids)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None


def settings_cell(notebook):
    cells = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(cells) == 1
    return {node.targets[0].id: ast.literal_eval(node.value)
            for node in ast.parse(cells[0].source).body}


def test_the_parameters_cell_holds_the_config_defaults():
    for name, script in GAMES.items():
        notebook = nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), 4)
        settings = settings_cell(notebook)
        defaults = dataclasses.asdict(script.Config())
        for setting in ["total_steps", "learning_starts", "buffer_size", "video_every", "seed",
                        "run_dir", "video_dir", "resume"]:
            assert settings[setting] == defaults[setting], setting
        assert set(settings) - set(defaults) == {"mount_drive", "evaluation_games"}
        assert settings["mount_drive"] is False
        training = next(cell.source for cell in notebook.cells if "config = Config(" in cell.source)
        for setting in set(settings) & set(defaults):
            assert f"    {setting}={setting},\n" in training


def test_the_install_cell_installs_only_what_is_missing(monkeypatch):
    notebook = nbformat.reads((ROOT / "notebooks" / "breakout_dqn.ipynb").read_text(), 4)
    install = next(cell.source for cell in notebook.cells if "REQUIREMENTS = [" in cell.source)
    namespace = {}
    exec(install, namespace)  # everything is installed here: nothing to do
    assert namespace["missing"] == []
    listed = {requirement for _, requirement in namespace["REQUIREMENTS"]}
    needed = [line.split("#")[0].strip()
              for line in (ROOT / "requirements.txt").read_text().splitlines()]
    assert listed == {line for line in needed if line and line.split(">")[0].split("<")[0]
                      not in generator.NOT_NEEDED_TO_RUN}
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    exec(install.replace('("psutil",', '("not_a_module_here",'), {})
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet", "psutil>=5.9"]]


def test_the_drive_cell_moves_the_folders_only_in_colab(monkeypatch, capsys):
    notebook = nbformat.reads((ROOT / "notebooks" / "breakout_dqn.ipynb").read_text(), 4)
    drive_cell = next(cell.source for cell in notebook.cells if "drive.mount" in cell.source)
    settings = {"run_dir": "runs/breakout", "video_dir": "videos/breakout"}
    for mount_drive in (False, True):  # outside Colab nothing moves
        namespace = dict(settings, mount_drive=mount_drive)
        exec(drive_cell, namespace)
        assert namespace["run_dir"] == "runs/breakout"
    assert "only works in Colab" in capsys.readouterr().out
    mounted = []
    colab = type(sys)("google.colab")
    colab.drive = type(sys)("google.colab.drive")
    colab.drive.mount = mounted.append
    monkeypatch.setitem(sys.modules, "google", type(sys)("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    sys.modules["google"].colab = colab
    namespace = dict(settings, mount_drive=True)
    exec(drive_cell, namespace)
    assert mounted == ["/content/drive"]
    assert namespace["run_dir"] == "/content/drive/MyDrive/dqn-atari/runs/breakout"
    assert namespace["video_dir"] == "/content/drive/MyDrive/dqn-atari/videos/breakout"


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_check_names_every_stale_file_and_writes_nothing(tmp_path):
    root = copy_repository(tmp_path)
    assert run_generator(root, "--check").returncode == 0
    before = {path: (root / path).read_bytes() for path in GENERATED}

    script = root / "breakout_dqn.py"
    script.write_text(script.read_text().replace("## Introduction", "## Introductions", 1))
    result = run_generator(root, "--check")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "standalone/breakout_dqn.py is out of date; run python tools/build_notebooks.py",
        "notebooks/breakout_dqn.ipynb is out of date; run python tools/build_notebooks.py"]
    assert {path: (root / path).read_bytes() for path in GENERATED} == before

    video = root / "common" / "video.py"
    video.write_text(video.read_text().replace("MP4 recordings", "MP4 recording", 1))
    result = run_generator(root, "--check")
    assert result.returncode == 1
    assert sorted(line.split()[0] for line in result.stderr.splitlines()) == sorted(GENERATED)

    result = run_generator(root)
    assert result.returncode == 0 and result.stdout.count("wrote ") == 4
    assert run_generator(root, "--check").returncode == 0


@pytest.mark.parametrize("name", GAMES)
def test_the_standalone_file_has_the_scripts_flags_and_defaults(name, capsys):
    spec = importlib.util.spec_from_file_location(f"standalone_{name}",
                                                  ROOT / "standalone" / f"{name}.py")
    standalone = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = standalone
    try:
        spec.loader.exec_module(standalone)  # defines everything; its main block does not run
        assert dataclasses.asdict(standalone.Config()) == dataclasses.asdict(GAMES[name].Config())
        helps = []
        for module in (GAMES[name], standalone):
            with pytest.raises(SystemExit):
                module.main(["--help"])
            helps.append(capsys.readouterr().out)
        assert helps[0] == helps[1] and "--total-steps" in helps[0]
        for function in ("train", "evaluate"):
            assert (inspect.signature(getattr(standalone, function)).parameters.keys()
                    == inspect.signature(getattr(GAMES[name], function)).parameters.keys())
    finally:
        del sys.modules[spec.name]


BOOKKEEPING = ("common/files.py", "common/config.py", "common/cli.py", "common/checkpoint.py",
               "common/run.py", "common/logger.py", "common/plot.py", "common/video.py",
               "common/fault_points.py")


def collapsed(cell):
    return (cell.metadata.get("cellView") == "form" and cell.source.startswith("# @title ")
            and cell.metadata.get("jupyter", {}).get("source_hidden") is True)


@pytest.mark.parametrize("name", GAMES)
def test_a_notebook_shows_the_algorithm_before_the_bookkeeping(name):
    cells = nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), 4).cells
    train = next(index for index, cell in enumerate(cells) if "\ndef train(" in "\n" + cell.source)
    before = cells[:train]
    assert [cell.source.splitlines()[0] for cell in cells[:2]][1] == "## Introduction"
    visible = [cell for cell in before if not collapsed(cell)]
    assert sum(len(cell.source.splitlines()) for cell in visible) <= 1200
    # The network and the train step are there to read, each under its own section.
    def section(text):  # the heading of the script's section a cell stands in
        index = next(index for index, cell in enumerate(before) if text in cell.source)
        return next(cell.source.splitlines()[0] for cell in before[index::-1]
                    if cell.source.startswith("## ")), before[index]

    heading, network = section("def build_q_network(")
    assert heading == "## Q-network" and not collapsed(network)
    heading, step = section("def make_train_step(")
    assert heading == "## Training step" and not collapsed(step)
    assert "tf.GradientTape()" in step.source and "Huber" in step.source
    # No bookkeeping module's code before the loop; all of it collapsed, in the appendix,
    # before the training cell.
    for cell in before:
        assert not any(f"### {path}" in cell.source for path in BOOKKEEPING)
    appendix = next(index for index, cell in enumerate(cells) if cell.source.startswith(
        "## Appendix"))
    training = next(index for index, cell in enumerate(cells) if cell.source.startswith(
        "## Training, with a live learning curve"))
    assert train < appendix < training
    code = [cell for cell in cells[appendix:training] if cell.cell_type == "code"]
    assert len(code) == len(BOOKKEEPING) and all(collapsed(cell) for cell in code)
    # The long modules shown under their sections are collapsed too.
    assert sum(collapsed(cell) for cell in before) == 2


@pytest.mark.parametrize("name", GAMES)
def test_a_standalone_file_opens_with_the_script_and_ends_with_its_main_block(name):
    lines = (ROOT / "standalone" / f"{name}.py").read_text().splitlines()
    train = next(number for number, line in enumerate(lines, 1) if line.startswith("def train("))
    appendix = lines.index("## Appendix: the shared parts, from common/")
    assert train <= 450 and train < appendix
    assert lines[-2:] == ['if __name__ == "__main__":', "    exit_with(main())"]


def test_notebook_links_are_absolute_and_name_the_badges_repository():
    badges = [path.read_text() for path in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
              if path.exists()]
    badge = f"colab.research.google.com/github/{generator.REPOSITORY}/blob/main/notebooks/"
    assert any(badge in text for text in badges)
    for name in GAMES:
        for cell in nbformat.reads((ROOT / "notebooks" / f"{name}.ipynb").read_text(), 4).cells:
            for link in re.findall(r"\]\(([^)]+)\)", cell.source):
                assert link.startswith("https://"), (name, link)
