"""The README's list of departures from Mnih et al. (2015) and the code's markers agree.

Each departure is marked in the code with a comment `# Deviation (name): ...` and
listed in the README's implementation details as `**Deviation (name)**`, so that a
reader who greps for the marker finds exactly the README's list, and the other way
round.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CODE_MARKER = re.compile(r"#\s*Deviation \(([a-z-]+)\):")
README_MARKER = re.compile(r"\*\*Deviation \(([a-z-]+)\)\*\*")


def code_markers(*paths):
    return {name for path in paths for name in CODE_MARKER.findall(path.read_text())}


def readme_markers():
    return set(README_MARKER.findall((ROOT / "README.md").read_text()))


def test_the_readme_lists_departures():
    assert len(readme_markers()) >= 8  # FIRE, time limit, Adam, clipping, target, ...


@pytest.mark.parametrize("script", ["breakout_dqn.py", "pong_dqn.py"])
def test_each_script_and_common_mark_exactly_the_readme_list(script):
    marked = code_markers(ROOT / script, *sorted((ROOT / "common").glob("*.py")))
    listed = readme_markers()
    assert marked == listed, (f"marked in the code only: {sorted(marked - listed)}; "
                              f"listed in the README only: {sorted(listed - marked)}")


def test_no_old_note_markers_remain():
    files = [ROOT / "breakout_dqn.py", ROOT / "pong_dqn.py", *(ROOT / "common").glob("*.py")]
    assert not [str(path) for path in files if re.search(r"\bNote:", path.read_text())]
