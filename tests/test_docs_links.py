"""Every relative link in the README and in `docs/` leads somewhere.

A link `[text](path)`, `[text](path#anchor)`, `[text](#anchor)`, an image
`![alt](path)` or a reference definition `[name]: path` must name a file or folder of
the repository, and its `#anchor` a heading of the markdown file it points at, with the
anchor computed as GitHub computes it. Links to `http(s)://` and other schemes are not
followed, and nothing inside fenced code blocks or inline code counts as a link.
"""

import pathlib
import re
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text):
    """The lines outside fenced code blocks, with their line numbers."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def links(text):
    """(line number, target) of every link, image and reference definition in the prose."""
    for number, line in prose_lines(text):
        line = INLINE_CODE.sub("", line)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            yield number, definition.group(1)
            continue
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)


def github_anchor(heading):
    """The anchor GitHub gives a heading: lowercase, only letters, digits, spaces, hyphens
    and underscores kept, spaces turned into hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.strip().lower()
    text = "".join(char for char in text if char.isalnum() or char in " -_")
    return text.replace(" ", "-")


def anchors(text):
    """The anchors of a markdown file's headings; a repeated one gets -1, -2, ..."""
    seen = {}
    found = set()
    for _, line in prose_lines(text):
        heading = HEADING.match(line)
        if not heading:
            continue
        anchor = github_anchor(heading.group(2))
        if anchor in seen:
            seen[anchor] += 1
            found.add(f"{anchor}-{seen[anchor]}")
        else:
            seen[anchor] = 0
            found.add(anchor)
    return found


def broken_links(page, root=ROOT):
    """Each link of ``page`` that leads nowhere, as "file:line: target (why)"."""
    problems = []
    name = page.relative_to(root)
    for number, target in links(page.read_text()):
        if not target or SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        path_part = urllib.parse.unquote(path_part)
        if path_part.startswith("/"):
            destination = (root / path_part.lstrip("/")).resolve()
        elif path_part:
            destination = (page.parent / path_part).resolve()
        else:
            destination = page.resolve()
        where = f"{name}:{number}: {target}"
        if not destination.is_relative_to(root.resolve()):
            problems.append(f"{where} (outside the repository)")
            continue
        if not destination.exists():
            problems.append(f"{where} (no such file)")
            continue
        if anchor and destination.suffix == ".md" and destination.is_file():
            if urllib.parse.unquote(anchor).lower() not in anchors(destination.read_text()):
                problems.append(f"{where} (no heading with anchor #{anchor} in "
                                f"{destination.relative_to(root.resolve())})")
    return problems


def test_the_pages_exist():
    assert (ROOT / "README.md") in PAGES and len(PAGES) > 1, "no docs/*.md pages"


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_relative_link_resolves(page):
    problems = broken_links(page)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_github_anchors():
    assert github_anchor("Long runs: stop, resume, evaluate") == "long-runs-stop-resume-evaluate"
    assert github_anchor("Compared with the keras-io example") == "compared-with-the-keras-io-example"
    assert github_anchor("What `--seed` promises (v2)") == "what---seed-promises-v2"
    assert github_anchor("common/run_state.py") == "commonrun_statepy"
    assert anchors("# A\n## B\n## B\n```\n## B\n```\n### B\n") == {"a", "b", "b-1", "b-2"}


def test_a_broken_link_is_reported_with_its_file_and_link(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## Section two\n")
    page = tmp_path / "README.md"
    page.write_text("# Title\n\n"
                    "[fine](docs/other.md#section-two) [fine too](#title)\n"
                    "![missing picture](pictures/none.png)\n"
                    "[bad anchor](docs/other.md#section-three) [bad here](#nowhere)\n"
                    "[web](https://example.com/x.md#y) `[code](nothing.md)`\n"
                    "```\n[in a fence](nothing.md)\n```\n"
                    "[ref]: docs/gone.md\n")
    assert broken_links(page, root=tmp_path) == [
        "README.md:4: pictures/none.png (no such file)",
        "README.md:5: docs/other.md#section-three (no heading with anchor #section-three "
        "in docs/other.md)",
        "README.md:5: #nowhere (no heading with anchor #nowhere in README.md)",
        "README.md:10: docs/gone.md (no such file)",
    ]
