"""Writes the standalone copies and the Colab notebooks of the game scripts.

    python tools/build_notebooks.py           # writes standalone/*.py and notebooks/*.ipynb
    python tools/build_notebooks.py --check   # writes nothing; names every file out of date

Why: a script imports its tested parts from ``common/``, so pasted alone into a
notebook cell it stops at its first ``from common...`` line. For every ``*_dqn.py``
this writes a copy with those parts written in, and a notebook of the same code.

A standalone file: the script's header, a "generated" notice, the future import,
the script's sections (in Setup, the modules' imports replace its ``from common``
ones), ONE "## Appendix" with each module it needs after those it imports (its
docstring as prose, then its code without imports), and the script's main block.
The script calls the appendix's names only inside functions, so they may come later.

A notebook: the same code as keras-io "tutobook" cells (each top-level string a
markdown cell), the introduction first, then ``tools/notebook_template.py``'s
install, settings (tagged ``parameters``) and Colab cells, the script's sections
each with the module of its subject (``SHOWN_UNDER``), the appendix collapsed, and
the template's training and evaluation cells.

It stops with one line and status 2 when two sources define one top-level name, or a
source imports ``common`` in a form it cannot write in (``import common.x``, ``from
common import x``, relative imports, ``as`` renames).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import re
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = "tools/notebook_template.py"
COMMAND = "python tools/build_notebooks.py"
PACKAGE = "common"

NOTEBOOK_SETTINGS = ("total_steps", "learning_starts", "buffer_size", "video_every",
                     "log_every_games", "seed", "run_dir", "video_dir", "resume",
                     "deterministic", "double_dqn", "n_step", "dueling")
"""Config fields the notebook's settings cell sets (its defaults are the script's)."""

SHOWN_UNDER = {"## Environment": "common/atari.py", "## Q-network": "common/networks.py",
               "## Replay memory": "common/replay.py", "## Training step": "common/dqn.py"}
"""A notebook shows these modules under the script's section of their subject; the long
ones collapsed (``COLLAPSED``), as their sections' prose says what they do."""
COLLAPSED = {"common/atari.py", "common/replay.py"}
REPOSITORY = "OWNER/REPO"  # the README's Colab badges'; notebook links are absolute to it

NOT_NEEDED_TO_RUN = {"pytest", "nbformat", "nbclient", "papermill", "ipykernel"}
"""requirements.txt entries that only the tests need; a notebook never installs them."""

IMPORT_NAMES = {"ale-py": "ale_py", "opencv-python-headless": "cv2",
                "imageio-ffmpeg": "imageio_ffmpeg"}
"""Distributions whose import name is not their name with "-" written as "_"."""


class BuildError(Exception):
    """A source the generator cannot turn into a standalone file; one line says why."""


@dataclass
class Source:
    """One parsed Python file and the line edits the generator makes to it."""

    path: str  # relative to the repository, e.g. "common/atari.py"
    text: str
    tree: ast.Module = field(init=False)
    lines: list[str] = field(init=False)
    dropped: set[int] = field(default_factory=set)  # 1-based line numbers
    replaced: dict[int, str] = field(default_factory=dict)
    common: list[tuple[ast.ImportFrom, str]] | None = None  # what common_imports found

    def __post_init__(self):
        try:
            self.tree = ast.parse(self.text, self.path)
        except SyntaxError as error:
            raise BuildError(f"{self.path}: cannot parse line {error.lineno}: "
                             f"{error.msg}") from None
        self.lines = self.text.splitlines()

    def drop(self, node: ast.AST, replacement: str | None = None) -> None:
        """Removes the lines of ``node``; ``replacement`` stands in its first line."""
        self.dropped.update(range(node.lineno, node.end_lineno + 1))
        if replacement is not None:
            self.replaced[node.lineno] = replacement

    def text_of(self, node: ast.AST) -> str:
        """The source text of ``node``."""
        return ast.get_source_segment(self.text, node)

    def segment(self, first: int, last: int) -> str:
        """Lines ``first`` to ``last`` (1-based, inclusive) after the edits, trimmed."""
        kept = []
        for number in range(first, last + 1):
            if number in self.replaced:
                kept.append(self.replaced[number])
            elif number not in self.dropped:
                kept.append(self.lines[number - 1])
        text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(kept))  # no gap left wider than two lines
        return text.strip("\n")


@dataclass
class Block:
    """A piece of a generated file: a prose block (markdown) or a stretch of code."""

    kind: str  # "header", "prose" or "code"
    text: str  # prose: the source of the string literal, quotes included; code: the code
    markdown: str = ""  # prose only: what its notebook cell shows
    lines: tuple[int, int] = (0, 0)  # where it is in its source file, first and last line
    tags: tuple[str, ...] = ()
    collapsed: str = ""  # code only: shown collapsed in a notebook, under this title


# Reading sources: imports of common, top-level names, prose blocks.

def read_source(root: Path, path: str) -> Source:
    if not (root / path).is_file():
        raise BuildError(f"{path} does not exist")
    return Source(path, (root / path).read_text())


def module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def common_imports(source: Source) -> list[tuple[ast.ImportFrom, str]]:
    """Every ``from common.x import ...`` in ``source``, at any depth, with its module.

    Raises:
        BuildError: for an import of ``common`` in a form that cannot be written in.
    """
    if source.common is not None:
        return source.common
    found = []
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    raise BuildError(f"{source.path} line {node.lineno}: 'import {alias.name}' "
                                     f"cannot be written in; use 'from {alias.name} import name'")
        elif isinstance(node, ast.ImportFrom):
            where = f"{source.path} line {node.lineno}"
            if node.level:
                raise BuildError(f"{where}: relative imports cannot be written in; "
                                 f"use 'from {PACKAGE}.module import name'")
            if node.module == PACKAGE:
                raise BuildError(f"{where}: 'from {PACKAGE} import ...' imports modules, which "
                                 f"cannot be written in; use 'from {PACKAGE}.module import name'")
            if node.module.startswith(PACKAGE + "."):
                if any(alias.asname not in (None, alias.name) or alias.name == "*"
                       for alias in node.names):
                    raise BuildError(f"{where}: 'from {node.module} import' with 'as' or '*' "
                                     f"cannot be written in; import the names as they are")
                found.append((node, node.module))
    source.common = sorted(found, key=lambda item: item[0].lineno)
    return source.common


def is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def is_main_guard(node: ast.stmt) -> bool:
    """Whether ``node`` is ``if __name__ == "__main__":``."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
            and isinstance(node.test.comparators[0], ast.Constant)
            and node.test.comparators[0].value == "__main__")


def defined_names(statements: list[ast.stmt]) -> set[str]:
    """Top-level names the statements bind, other than by import."""
    names = set()
    for node in statements:
        targets = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.For)):
            targets = [node.target]
        elif isinstance(node, ast.With):
            targets = [item.optional_vars for item in node.items if item.optional_vars]
        for target in targets:
            names.update(name.id for name in ast.walk(target) if isinstance(name, ast.Name))
        blocks = (ast.If, ast.Try, ast.For, ast.While, ast.With)
        if isinstance(node, blocks) and not is_main_guard(node):
            for block in ("body", "orelse", "finalbody"):
                names |= defined_names(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                names |= defined_names(handler.body)
    return names


def import_bindings(statements: list[ast.stmt]) -> dict[str, str]:
    """Name to what it is bound to, for the top-level imports (``common`` excluded)."""
    bound = {}
    for node in statements:
        if isinstance(node, ast.Import):
            for alias in node.names:  # "import a.b" binds a; "import a.b as c" binds c to a.b
                name = alias.asname or alias.name.split(".")[0]
                bound[name] = alias.name if alias.asname else name
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__" and not (
                node.module or "").startswith(PACKAGE + "."):
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def statement_lists(tree: ast.AST):
    """Every list of statements in ``tree`` (bodies of functions, classes, if, try...)."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            statements = getattr(node, name, None)
            if isinstance(statements, list) and statements and isinstance(statements[0], ast.stmt):
                yield statements


def drop_common_imports(source: Source) -> list[ast.ImportFrom]:
    """Removes every ``from common...`` import; returns the top-level ones.

    One inside a function or another block becomes a comment saying where the names
    are (``pass`` with that comment where the block would otherwise be empty).
    """
    imports = dict(common_imports(source))
    top_level = [node for node in source.tree.body if node in imports]
    nested = len(imports) > len(top_level)
    for statements in statement_lists(source.tree) if nested else []:
        if statements is source.tree.body:
            continue
        only_imports = all(node in imports for node in statements)
        for index, node in enumerate(statements):
            if node not in imports:
                continue
            line = source.lines[node.lineno - 1]
            if line[:node.col_offset].strip():  # e.g. "if x: from common.y import z"
                raise BuildError(f"{source.path} line {node.lineno}: put 'from {imports[node]} "
                                 f"import' on a line of its own")
            names = ", ".join(alias.name for alias in node.names)
            note = f"# {names}: written in, from {module_path(imports[node])}."
            keep_valid = "pass  " if only_imports and index == 0 else ""
            source.drop(node, " " * node.col_offset + keep_valid + note)
    for node in top_level:
        source.drop(node)
    return top_level


def split_prose(source: Source) -> list[Block]:
    """The file as blocks: each top-level string literal is prose, the rest code."""
    blocks, code_from = [], 1

    def add_code(last: int) -> None:
        code = source.segment(code_from, last)
        if code:
            blocks.append(Block("code", code, lines=(code_from, last)))

    for index, node in enumerate(source.tree.body):
        if is_docstring(node):
            add_code(node.lineno - 1)
            blocks.append(Block("header" if index == 0 else "prose",
                                source.segment(node.lineno, node.end_lineno),
                                inspect.cleandoc(node.value.value),
                                lines=(node.lineno, node.end_lineno)))
            code_from = node.end_lineno + 1
    add_code(len(source.lines))
    return blocks


@dataclass
class Module:
    """A module of ``common`` as it is written in: its prose block and its code."""

    source: Source
    imports: set[tuple] = field(default_factory=set)  # its other imports, moved to Setup
    future: set[str] = field(default_factory=set)
    prose: Block | None = None
    code: str = ""


def load_modules(root: Path, users: list[Source]) -> list[Module]:
    """The modules of ``common`` that ``users`` import, transitively, in dependency order.

    A depth-first walk from the users' imports, in the order they appear, lists
    every module after the modules it imports.
    """
    ordered: list[Module] = []
    loaded: dict[str, Source] = {}
    visiting: list[str] = []

    def visit(node: ast.ImportFrom, module: str, imported_by: Source) -> None:
        if module in visiting:
            raise BuildError(f"{module_path(module)} and {imported_by.path} import each other; "
                             f"a written-in module must come after the ones it uses")
        if module not in loaded:
            visiting.append(module)
            if not (root / module_path(module)).is_file():
                raise BuildError(f"{imported_by.path} imports {module}, but "
                                 f"{module_path(module)} does not exist")
            loaded[module] = source = read_source(root, module_path(module))
            for dependency_node, dependency in common_imports(source):
                visit(dependency_node, dependency, source)
            visiting.pop()
            ordered.append(Module(source))
        source = loaded[module]
        available = (defined_names(source.tree.body) | set(import_bindings(source.tree.body))
                     | {alias.name for other, _ in common_imports(source) for alias in other.names})
        for alias in node.names:
            if alias.name not in available:
                raise BuildError(f"{imported_by.path} imports {alias.name} from {module}, "
                                 f"which does not define it")

    for user in users:
        for node, module in common_imports(user):
            visit(node, module, user)
    for module in ordered:
        prepare_module(module)
    return ordered


def prepare_module(module: Module) -> None:
    """Cuts a module into its prose block (heading and docstring) and its code."""
    source = module.source
    drop_common_imports(source)
    docstring = ""
    for index, node in enumerate(source.tree.body):
        if index == 0 and is_docstring(node):
            docstring = source.segment(node.lineno, node.end_lineno)
            source.drop(node)
        elif isinstance(node, ast.ImportFrom) and node.module == "__future__":
            module.future.update(alias.name for alias in node.names)
            source.drop(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module.imports |= import_keys([node])  # its common imports are dropped already
            source.drop(node)
        elif is_main_guard(node) or "__all__" in defined_names([node]):
            source.drop(node)
    module.imports = {key for key in module.imports if not key[1].startswith(PACKAGE + ".")}
    heading = f"### {source.path}"
    match = re.match(r'([rRuU]?)("""|\'\'\')\n?', docstring)
    if match:  # the docstring as written, escapes and all, under the heading
        literal = f"{match.group(1)}{match.group(2)}\n{heading}\n\n{docstring[match.end():]}"
    else:
        literal = f'"""\n{heading}\n"""'
    module.prose = Block("prose", literal, inspect.cleandoc(ast.literal_eval(literal)))
    module.code = source.segment(1, len(source.lines))


def import_keys(statements: list[ast.stmt]) -> set[tuple]:
    """The imports among ``statements`` as tuples: ("import", module, as) or
    ("from", module, name, as)."""
    keys = set()
    for node in statements:
        if isinstance(node, ast.Import):
            keys.update(("import", alias.name, alias.asname) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            keys.update(("from", node.module, alias.name, alias.asname) for alias in node.names)
    return keys


def import_lines(keys: set[tuple]) -> str:
    """Import statements for ``keys``: the standard library first, then the rest, sorted."""
    groups: dict[bool, list[tuple[str, str]]] = {True: [], False: []}  # standard library?
    from_names: dict[str, list[str]] = {}
    for key in sorted(keys, key=lambda key: tuple(part or "" for part in key)):
        if key[0] == "import":
            line = f"import {key[1]}" + (f" as {key[2]}" if key[2] else "")
            groups[key[1].split(".")[0] in sys.stdlib_module_names].append((key[1], line))
        else:
            from_names.setdefault(key[1], []).append(key[2] + (f" as {key[3]}" if key[3] else ""))
    for module, names in from_names.items():
        prefix = f"from {module} import "
        line = prefix + ", ".join(names)
        if len(line) > 99:  # wrapped as the scripts wrap theirs
            line = textwrap.fill(", ".join(names) + ")", 99, initial_indent=prefix + "(",
                                 subsequent_indent=" " * (len(prefix) + 1))
        # "~" sorts a module's "from" line after its plain import
        groups[module.split(".")[0] in sys.stdlib_module_names].append((module + "~", line))
    return "\n\n".join("\n".join(line for _, line in sorted(group))
                       for group in (groups[True], groups[False]) if group)


def check_names(parts: list[tuple[str, list[ast.stmt]]]) -> None:
    """Fails when two of ``parts`` ((file name, its top-level statements): the script, the
    modules, the template) bind one top-level name, unless both import the same thing."""
    owners: dict[str, tuple[str, str | None]] = {}
    for path, statements in parts:
        bindings = {name: None for name in defined_names(statements)}
        bindings.update(import_bindings(statements))
        for name, target in bindings.items():
            other_path, other_target = owners.setdefault(name, (path, target))
            if other_path != path and (target is None or target != other_target):
                raise BuildError(f"{other_path} and {path} both define the top-level name "
                                 f"{name!r}; rename it in one of them")


# The script, the standalone file and the notebook.

APPENDIX_PROSE = '''"""
## Appendix: the shared parts, from common/

The sections above are the algorithm; here is the rest of the tested code they call,
from the package `common/`: the run's bookkeeping (settings, command line, checkpoints,
logs, pictures, videos) and what the sections above do not show, each module once,
after the modules it uses. Python looks a name up when a function runs, not when it is
defined, so the code above may call what is defined here. Generated: change `common/`.
"""'''


@dataclass
class Game:
    """One game script, cut into blocks, with the modules it needs written in."""

    script: Source
    blocks: list[Block]
    modules: list[Module]
    future: set[str]
    parts: list[tuple[str, list[ast.stmt]]]  # every file's top-level statements


def build_game(root: Path, script_path: str, template: Source | None = None) -> Game:
    """Reads a script (``breakout_dqn.py``) and writes the modules it needs in.

    With ``template`` (for a notebook), the modules the template's cells import are
    written in too, and the script's main block is left out (its training cell trains).
    """
    script = read_source(root, script_path)
    modules = load_modules(root, [script] + ([template] if template else []))
    parts = [(script.path, script.tree.body)]
    parts += [(module.source.path, module.source.tree.body) for module in modules]
    check_names(parts)
    future = set().union(*(module.future for module in modules))
    top_level = drop_common_imports(script)
    main_guard = ""
    for node in script.tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.update(alias.name for alias in node.names)
            script.drop(node)
        elif is_main_guard(node):
            main_guard = script.text_of(node)  # it goes last, after the appendix
            script.drop(node)
    hoisted = import_lines(set().union(*(module.imports for module in modules))
                           - import_keys(script.tree.body))
    if hoisted:
        hoisted = f"# Imported by the shared parts written in below.\n{hoisted}"
        if top_level:  # where the script's first "from common" import was
            script.replaced[top_level[0].lineno] = hoisted
    blocks = split_prose(script)
    if not blocks or blocks[0].kind != "header":
        raise BuildError(f"{script.path} must start with its header docstring (Title: ...)")
    setup = next((index for index, block in enumerate(blocks) if block.kind == "prose"
                  and block.markdown.splitlines()[0] == "## Setup"), None)
    if setup is None or setup + 1 == len(blocks) or blocks[setup + 1].kind != "code":
        raise BuildError(f"{script.path} has no '## Setup' section with code")
    setup_code = blocks[setup + 1]
    for node in top_level:
        if not setup_code.lines[0] <= node.lineno <= setup_code.lines[1]:
            raise BuildError(f"{script.path} line {node.lineno}: imports from {PACKAGE} belong "
                             f"in the '## Setup' section")
    if hoisted and not top_level:
        setup_code.text += "\n\n" + hoisted
    shown = [path for path in SHOWN_UNDER.values() if template]  # a notebook's, in place
    for heading, path in SHOWN_UNDER.items():  # after its section's blocks
        start = next((index for index, block in enumerate(blocks) if block.kind == "prose"
                      and block.markdown.startswith(heading + "\n")), None)
        module = next((module for module in modules if module.source.path == path), None)
        if path in shown and start is not None and module is not None:
            end = next((index for index in range(start + 1, len(blocks))
                        if blocks[index].kind == "prose"), len(blocks))
            blocks[end:end] = module_blocks(module, notebook=True)
    appendix = [module for module in modules if module.source.path not in shown]
    if appendix:
        blocks.append(Block("prose", APPENDIX_PROSE,
                            inspect.cleandoc(ast.literal_eval(APPENDIX_PROSE))))
        for module in appendix:
            blocks += module_blocks(module, notebook=template is not None, in_appendix=True)
    if main_guard and not template:  # in a kernel, the template's training cell trains
        blocks.append(Block("code", main_guard))
    return Game(script, blocks, modules, future, parts)


def module_blocks(module: Module, notebook: bool, in_appendix: bool = False) -> list[Block]:
    """A written-in module: its prose block, then its code (collapsed where it should be)."""
    collapsed = notebook and (in_appendix or module.source.path in COLLAPSED)
    title = f"{module.source.path}: {module.prose.markdown.splitlines()[2]}" if collapsed else ""
    return [module.prose, Block("code", module.code, collapsed=title)]


def generated_notice(game: Game, template: str | None, comment: bool) -> str:
    """Says that the file is generated, from what and by which command."""
    sources = [game.script.path] + [module.source.path for module in game.modules]
    sources += [template] if template else []
    listed = ", ".join(sources[:-1]) + " and " + sources[-1] if len(sources) > 1 else sources[0]
    text = (f"GENERATED FILE: do not edit it by hand. `{COMMAND}` wrote it from {listed}; "
            f"edit those and run that command again.")
    if comment:
        return textwrap.fill(text, 88, initial_indent="# ", subsequent_indent="# ")
    return f"*{text}*"


def standalone_text(game: Game) -> str:
    """The standalone file: the header, the notice, the future import, then the blocks."""
    header, *rest = game.blocks
    text = header.text + "\n\n" + generated_notice(game, None, comment=True)
    if game.future:
        text += f"\n\nfrom __future__ import {', '.join(sorted(game.future))}"
    previous = "prose"  # one blank line after the notice or the future import
    for block in rest:
        definition = block.kind == "code" and re.match(r"(@|def |class )", block.text)
        text += ("\n\n\n" if previous == "code" or definition else "\n\n") + block.text
        previous = block.kind
    return text + "\n"


def header_markdown(header: Block) -> str:
    """The script's "Title: ... / Description: ..." header as a keras-io title cell."""
    fields: list[list[str]] = []
    for line in header.markdown.splitlines():
        match = re.match(r"([A-Z][\w ]*): (.*)", line)
        if match:
            fields.append([match.group(1), match.group(2)])
        elif fields and line.strip():  # a value continued on the next line
            fields[-1][1] += " " + line.strip()
    title = dict(fields).get("Title")
    if title is None:
        raise BuildError("the script's header docstring has no 'Title:' line")
    details = "<br>\n".join(f"**{key}:** {value}" for key, value in fields if key != "Title")
    return f"# {title}\n\n{details}"


def template_cells(template: Source, replacements: dict[str, str]) -> list[Block]:
    """The template's cells; a cell holding only "# <<script>>" marks the script's place.

    In the template, a top-level string is a markdown cell, and a line starting
    with "# %%" starts a new code cell ("# %% parameters": one tagged
    ``parameters``). The lines before the first "# %%" describe the template.
    """
    head, marker, body = template.text.partition("\n# %%")  # the head describes the file
    for placeholder, replacement in replacements.items():
        body = body.replace(placeholder, replacement)
    template = Source(template.path, head + marker + body)
    first_marker = next(number for number, line in enumerate(template.lines, 1)
                        if line.startswith("# %%"))
    template.dropped.update(range(1, first_marker))
    drop_common_imports(template)  # the modules are written in above the cells
    cells = []
    for block in split_prose(template):
        if block.kind != "code":
            cells.append(Block("prose", block.text, block.markdown))
            continue
        for chunk in re.split(r"^(?=# %%)", block.text, flags=re.MULTILINE):
            marker, _, code = chunk.partition("\n") if chunk.startswith("# %%") else ("", "", chunk)
            code = code.strip("\n")
            if code == "# <<script>>":
                cells.append(Block("script", code))
            elif code:
                tags = ("parameters",) if marker.strip() == "# %% parameters" else ()
                cells.append(Block("code", code, tags=tags))
    return cells


def settings_code(script: Source) -> tuple[str, str]:
    """The settings cell's assignments, and the statement that builds a Config of them.

    Both come from the script's ``Config``: each setting's default is the field's
    default as written there, its comment the field's docstring.
    """
    config = next((node for node in script.tree.body
                   if isinstance(node, ast.ClassDef) and node.name == "Config"), None)
    if config is None:
        raise BuildError(f"{script.path} has no Config class")
    fields = {}
    for statement, following in zip(config.body, config.body[1:] + [None]):
        if isinstance(statement, ast.AnnAssign) and statement.value is not None:
            doc = following.value.value if following and is_docstring(following) else ""
            fields[statement.target.id] = (script.text_of(statement.value),
                                           " ".join(doc.split()))
    missing = [name for name in NOTEBOOK_SETTINGS if name not in fields]
    if missing:
        raise BuildError(f"{script.path}: its Config has no field {', '.join(missing)}")
    lines = []
    for name in NOTEBOOK_SETTINGS:
        default, doc = fields[name]
        lines += [textwrap.fill(doc, 88, initial_indent="# ", subsequent_indent="# "),
                  f"{name} = {default}"]
    arguments = "".join(f"\n    {name}={name}," for name in NOTEBOOK_SETTINGS)
    return "\n".join(lines), f"config = Config({arguments}\n)"


def requirements_code(root: Path) -> str:
    """The install cell's list: what requirements.txt names, with each one's import name."""
    entries = []
    for line in (root / "requirements.txt").read_text().splitlines():
        requirement = line.split("#")[0].strip()
        name = re.match(r"[A-Za-z0-9._-]*", requirement).group(0).lower()
        if name and name not in NOT_NEEDED_TO_RUN:
            module = IMPORT_NAMES.get(name, name.replace("-", "_"))
            entries.append(f'    ("{module}", "{requirement}"),')
    return ("REQUIREMENTS = [  # (module to import, what pip installs), from requirements.txt\n"
            + "\n".join(entries) + "\n]")


def cell_of(block: Block) -> nbformat.NotebookNode:
    if block.kind != "code":
        return nbformat.v4.new_markdown_cell(block.markdown)
    cell = nbformat.v4.new_code_cell(f"# @title {block.collapsed}\n" * bool(block.collapsed)
                                     + block.text)
    if block.collapsed:  # Colab hides a form cell's code under its title; Jupyter, source_hidden
        cell.metadata.update({"cellView": "form", "jupyter": {"source_hidden": True}})
    if block.tags:
        cell.metadata["tags"] = list(block.tags)
    return cell


def notebook_text(root: Path, script_path: str) -> str:
    """The notebook of one script, as nbformat writes it: no outputs, stable cell ids."""
    template = read_source(root, TEMPLATE)
    game = build_game(root, script_path, template)
    settings, config_statement = settings_code(game.script)
    around = template_cells(template, {"# <<settings>>": settings,
                                       "# <<config>>": config_statement,
                                       "# <<requirements>>": requirements_code(root),
                                       "<<repository>>": REPOSITORY})
    template_statements = [node for block in around if block.kind == "code"
                           for node in ast.parse(block.text).body]
    check_names(game.parts + [(TEMPLATE, template_statements)])
    header, introduction, *script_blocks = game.blocks  # the introduction opens the notebook
    future = f"from __future__ import {', '.join(sorted(game.future))}\n\n" if game.future else ""
    cells = [nbformat.v4.new_markdown_cell(header_markdown(header) + "\n\n"
                                           + generated_notice(game, TEMPLATE, comment=False)),
             cell_of(introduction)]
    for block in around:
        if block.kind != "script":
            cells.append(cell_of(block))
            continue
        for script_block in script_blocks:
            if future and script_block.kind == "code":  # a future import opens the first code
                script_block = Block("code", future + script_block.text)
                future = ""
            cells.append(cell_of(script_block))
    seen = set()
    for index, cell in enumerate(cells):  # ids from the content, so they change only with it
        cell.id = hashlib.sha1(cell.source.encode()).hexdigest()[:12]
        if cell.id in seen:
            cell.id += f"-{index}"
        seen.add(cell.id)
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "file_extension": ".py", "mimetype": "text/x-python",
                          "pygments_lexer": "ipython3", "nbconvert_exporter": "python",
                          "codemirror_mode": {"name": "ipython", "version": 3}},
        "accelerator": "GPU",  # Colab opens it asking for a GPU runtime, as keras-io's do
        "colab": {"provenance": [], "toc_visible": True},
    })
    nbformat.validate(notebook)
    return nbformat.writes(notebook) + "\n"


def build(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file under ``root``, with the text it should hold."""
    outputs = {}
    for script in sorted(root.glob("*_dqn.py")):
        outputs[root / "standalone" / script.name] = standalone_text(build_game(root, script.name))
        outputs[root / "notebooks" / f"{script.stem}.ipynb"] = notebook_text(root, script.name)
    if not outputs:
        raise BuildError(f"no *_dqn.py script in {root}")
    return outputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit with status 1 naming every file out of date")
    arguments = parser.parse_args(argv)
    try:
        outputs = build(ROOT)
    except BuildError as error:
        print(f"build_notebooks.py: error: {error}", file=sys.stderr)
        return 2
    stale = [path for path, text in outputs.items()
             if not path.is_file() or path.read_text() != text]
    for path in stale:
        name = path.relative_to(ROOT).as_posix()
        if arguments.check:
            print(f"{name} is out of date; run {COMMAND}", file=sys.stderr)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(outputs[path])
            print(f"wrote {name}")
    if arguments.check and stale:
        return 1
    print(f"{len(outputs) - len(stale)} of {len(outputs)} generated files "
          f"{'are' if arguments.check else 'were'} up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
