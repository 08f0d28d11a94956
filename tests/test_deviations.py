"""The implementation details' list of departures from Mnih et al. (2015) and the code's
markers agree, script by script.

Each departure is marked in the code with a comment `# Deviation (name): ...` and
listed in `docs/implementation-details.md` as `**Deviation (name)**`, so that a reader
who greps for the marker finds exactly that page's list, and the other way round. An
item written `**Deviation (name)** (pong_dqn.py only)` (or `(breakout_dqn.py only)`)
applies to that script alone; every other item applies to both. For each script, the
markers in it and in `common/*.py` must name exactly the items that apply to it.
"""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DETAILS = ROOT / "docs" / "implementation-details.md"
SCRIPTS = ("breakout_dqn.py", "pong_dqn.py")
CODE_MARKER = re.compile(r"#\s*Deviation \(([a-z0-9-]+)\):")
DOCS_MARKER = re.compile(r"\*\*Deviation \(([a-z0-9-]+)\)\*\*(?: \(([a-z0-9_]+\.py) only\))?")


def code_markers(*paths):
    return {name for path in paths for name in CODE_MARKER.findall(path.read_text())}


def docs_items(text):
    """The listed departures, as (name, script) pairs; script is "" for both scripts."""
    return set(DOCS_MARKER.findall(text))


def listed_for(script, items):
    return {name for name, only in items if only in ("", script)}


def test_markers_with_digits_and_script_only_items_are_read():
    text = ("1. **A** (**Deviation (n-step)**, off by default): ...\n"
            "2. **B** (**Deviation (life-loss-2)** (pong_dqn.py only)): ...\n"
            "3. **C** (**Deviation (fire-reset)** (breakout_dqn.py only)): ...\n")
    items = docs_items(text)
    assert items == {("n-step", ""), ("life-loss-2", "pong_dqn.py"),
                     ("fire-reset", "breakout_dqn.py")}
    assert listed_for("pong_dqn.py", items) == {"n-step", "life-loss-2"}
    assert listed_for("breakout_dqn.py", items) == {"n-step", "fire-reset"}
    assert CODE_MARKER.findall("    # Deviation (life-loss-2): Pong has no lives\n") == ["life-loss-2"]


def test_the_implementation_details_list_departures():
    names = {name for name, _ in docs_items(DETAILS.read_text())}
    assert len(names) >= 8  # FIRE, time limit, Adam, clipping, target, ...


def test_script_only_items_name_a_game_script():
    scripts = {only for _, only in docs_items(DETAILS.read_text()) if only}
    assert scripts <= set(SCRIPTS), f"unknown scripts: {sorted(scripts - set(SCRIPTS))}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_and_common_mark_exactly_the_items_that_apply_to_it(script):
    marked = code_markers(ROOT / script, *sorted((ROOT / "common").glob("*.py")))
    listed = listed_for(script, docs_items(DETAILS.read_text()))
    assert marked == listed, (f"{script}: marked in the code only: {sorted(marked - listed)}; "
                              f"listed in {DETAILS.relative_to(ROOT)} only: "
                              f"{sorted(listed - marked)}")


def test_no_old_note_markers_remain():
    files = [ROOT / "breakout_dqn.py", ROOT / "pong_dqn.py", *(ROOT / "common").glob("*.py")]
    assert not [str(path) for path in files if re.search(r"\bNote:", path.read_text())]
