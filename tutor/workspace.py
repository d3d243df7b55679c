"""The learner's workspace: finding it, laying out a new one, and resetting a day.

A workspace holds the learner's package (``impl/``), their kernels, the tutor's rules and
template, and the tutor's records (``sessions/``, ``progress/``).
"""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tutor import paths
from tutor.config import CONFIG_NAME, DEFAULT_ANTHROPIC_MODEL

ENV_VAR = "TINY_LLM_TUTOR_WORKSPACE"
TEMPLATES = ("CLAUDE.md", "AGENTS.md", "SESSION-TEMPLATE.md")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.so", "*.dylib")

# The default model comes from tutor.config, so the file never names another one.
CONFIG_TEXT = f"""\
# tiny-llm-tutor workspace settings.
# The coach works offline by default. To be coached by an LLM, pick a backend:
#
# [llm]
# backend = "anthropic"            # Claude; needs ANTHROPIC_API_KEY in the environment
# model = "{DEFAULT_ANTHROPIC_MODEL}"  # the default
# # base_url = "http://127.0.0.1:8080"   # any Anthropic-compatible server
#
# [llm]
# backend = "openai"               # OpenAI-compatible server: mlx_lm.server, Ollama, llama.cpp, vLLM
# base_url = "http://127.0.0.1:8080/v1"
# model = "mlx-community/Qwen2.5-7B-Instruct-4bit"
"""


class WorkspaceError(Exception):
    pass


def is_workspace(d: Path) -> bool:
    return (d / CONFIG_NAME).is_file() or ((d / "impl").is_dir() and (d / "CLAUDE.md").is_file())


def find_workspace(start: Path | None = None) -> Path | None:
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser().resolve()
        return p if p.is_dir() else None
    d = (start or Path.cwd()).resolve()
    for cand in (d, *d.parents):
        if is_workspace(cand):
            return cand
    return None


def init_workspace(target: Path) -> list[str]:
    """Lay out a fresh workspace in ``target`` (created if needed). Refuses to overwrite
    an existing workspace. Returns what was created, for the CLI to list."""
    target = target.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise WorkspaceError(f"{target} exists and is not a directory.")
    if target.is_dir() and ((target / "impl").exists() or (target / CONFIG_NAME).exists()):
        raise WorkspaceError(f"{target} already holds a workspace (impl/ or {CONFIG_NAME}); "
                             "nothing was changed.")
    target.mkdir(parents=True, exist_ok=True)
    made = []
    shutil.copytree(paths.stubs_dir(), target / "impl", ignore=_IGNORE)
    made.append("impl/  (the course package as stubs: your code goes here)")
    if paths.kernels_dir().is_dir():
        shutil.copytree(paths.kernels_dir(), target / "kernels", ignore=_IGNORE)
    else:
        (target / "kernels").mkdir()
    made.append("kernels/  (your C++/Metal extension, week 2)")
    # A link to the lessons the tutor reads, or nothing: a copy would look editable
    # while the tutor kept reading the installed lessons.
    lessons = paths.curriculum_dir()
    try:
        (target / "curriculum").symlink_to(lessons, target_is_directory=True)
        made.append(f"curriculum -> {lessons}  (the lessons the tutor reads, read-only)")
    except OSError:
        made.append(f"(no curriculum link: links are not allowed here; the lessons are in {lessons})")
    for name in TEMPLATES:
        shutil.copyfile(paths.template(name), target / name)
        made.append(name)
    for d in ("sessions", "progress"):
        (target / d).mkdir(exist_ok=True)
        made.append(f"{d}/")
    (target / CONFIG_NAME).write_text(CONFIG_TEXT, encoding="utf-8")
    made.append(CONFIG_NAME)
    gi = target / ".gitignore"
    if not gi.exists():
        gi.write_text("__pycache__/\n*.pyc\nkernels/build/\n*.so\nprogress/.lock\n", encoding="utf-8")
    return made


# --------------------------------------------------------------------------- reset


def _top_level_nodes(source: str) -> dict[str, ast.AST]:
    tree = ast.parse(source)
    return {n.name: n for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _segment(lines: list[str], node: ast.AST) -> tuple[int, int]:
    start = node.lineno - 1
    if getattr(node, "decorator_list", None):
        start = min(d.lineno for d in node.decorator_list) - 1
    return start, node.end_lineno


def restore_symbols(learner_src: str, stub_src: str, symbols: list[str]) -> str:
    """The learner's file with ``symbols`` (top-level functions/classes) put back to the
    stub's version; everything else in the file is left as the learner wrote it. A symbol
    missing from the learner's file is appended."""
    stub_nodes = _top_level_nodes(stub_src)
    stub_lines = stub_src.splitlines(keepends=True)
    lines = learner_src.splitlines(keepends=True)
    nodes = _top_level_nodes(learner_src)
    # Replace from the bottom up so line numbers above stay valid.
    todo = sorted((s for s in symbols if s in nodes and s in stub_nodes),
                  key=lambda s: nodes[s].lineno, reverse=True)
    for sym in todo:
        a, b = _segment(lines, nodes[sym])
        sa, sb = _segment(stub_lines, stub_nodes[sym])
        lines[a:b] = stub_lines[sa:sb]
    for sym in symbols:
        if sym not in nodes and sym in stub_nodes:
            sa, sb = _segment(stub_lines, stub_nodes[sym])
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines += ["\n", "\n", *stub_lines[sa:sb]]
    return "".join(lines)


def locate_symbol(package: Path, symbol: str) -> str | None:
    """The file (relative to ``package``) that defines ``symbol`` at top level. A task's
    symbols may live in more than one file (``linear`` in basics.py for day 1.1)."""
    for path in sorted(package.glob("*.py")):
        try:
            if symbol in _top_level_nodes(path.read_text(encoding="utf-8")):
                return path.name
        except (SyntaxError, OSError, UnicodeDecodeError):
            continue
    return None


def stub_of(rel: str) -> Path:
    """The shipped stub of a workspace file (``impl/basics.py``, ``kernels/src/x.cpp``)."""
    return paths.stubs_root() / rel


def day_edits(lesson) -> dict[str, list[str]]:
    """Every file the day's tasks name (relative to the workspace), with the symbols to
    write in it, in task order. A file named without a symbol maps to []."""
    by_file: dict[str, list[str]] = {}
    for task in lesson.tasks:
        for e in task.edits:
            syms = by_file.setdefault(e.path, [])
            if e.symbol and e.symbol not in syms:
                syms.append(e.symbol)
    return by_file


def symbols_by_file(lesson) -> dict[str, list[str]]:
    """The day's Python symbols grouped by their impl file (relative to impl/)."""
    return {rel[len("impl/"):]: syms for rel, syms in day_edits(lesson).items()
            if rel.startswith("impl/") and syms}


def lesson_files(lesson) -> list[str]:
    """The files (relative to the workspace) the day's tasks ask the learner to edit."""
    return list(day_edits(lesson))


def symbol_line(path: Path, symbol: str | None) -> int:
    """The line where ``symbol`` is defined in ``path`` (1 if not found). Python files are
    parsed; in C++ and Metal the first line naming it (``A::b``, else ``b``) is taken."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return 1
    if not symbol:
        return 1
    if path.suffix == ".py":
        try:
            node = _top_level_nodes(text).get(symbol)
        except SyntaxError:
            node = None
        return node.lineno if node is not None else 1
    import re

    lines = text.splitlines()
    # Code before comments: the stubs' comments name what is still to be written.
    for code_only in (True, False):
        for name in dict.fromkeys((symbol, symbol.split("::")[-1])):
            word = re.compile(rf"(?<![\w:]){re.escape(name)}\b(?!\.)")
            for i, line in enumerate(lines, 1):
                if code_only and line.lstrip().startswith(("//", "/*", "*")):
                    continue
                if word.search(line):
                    return i
    return 1


def _still_stub(workspace: Path, rel: str, symbol: str | None) -> bool:
    """Whether the learner's file (or, in Python, the symbol) is as shipped."""
    try:
        mine = (workspace / rel).read_text(encoding="utf-8")
        stub = stub_of(rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if rel.endswith(".py") and symbol:
        try:
            a, b = _top_level_nodes(mine).get(symbol), _top_level_nodes(stub).get(symbol)
        except SyntaxError:
            return False
        if a is None or b is None:
            return False
        return ast.get_source_segment(mine, a) == ast.get_source_segment(stub, b)
    return mine == stub


def edit_target(workspace: Path, task, impl: Path | None = None) -> tuple[Path, int]:
    """Where ``e`` opens a task: the first of its (file, symbol) pairs still as shipped
    (the piece not started yet), else its first pair; at the symbol's line."""
    impl = Path(impl) if impl else workspace / "impl"

    def where(e) -> Path:
        return impl / e.impl_rel if e.in_impl else workspace / e.path

    edits = list(task.edits)
    pick = next((e for e in edits if _still_stub(workspace, e.path, e.symbol)), edits[0])
    path = where(pick)
    line = symbol_line(path, pick.symbol)
    if line == 1 and pick.in_impl and pick.symbol and path.suffix == ".py":
        moved = locate_symbol(impl, pick.symbol)  # the learner moved it to another file
        if moved and moved != pick.impl_rel:
            path = impl / moved
            line = symbol_line(path, pick.symbol)
    return path, line


@dataclass(frozen=True)
class ResetItem:
    path: str  # relative to the workspace
    symbols: tuple[str, ...]
    whole_file: bool  # C++/Metal: no per-function reset, the file goes back whole
    shared_with: tuple[str, ...] = ()  # other lessons writing in a whole file: left alone
    earlier: tuple[str, ...] = ()  # earlier lessons that wrote these symbols first

    def describe(self) -> str:
        if self.shared_with:
            return (f"{self.path}: left as it is, since {_days_text(self.shared_with)} "
                    f"writes in it too (take {', '.join(self.symbols)} out by hand if you "
                    "want it gone)")
        what = "the whole file" if self.whole_file else ", ".join(self.symbols)
        line = f"{self.path}: {what} back to the stub"
        if self.earlier:
            line += f" (this also undoes your work on it from {_days_text(self.earlier)})"
        return line


def _days_text(days) -> str:
    days = list(days)
    if len(days) == 1:
        return f"day {days[0]}"
    return f"days {', '.join(days[:-1])} and {days[-1]}"


def reset_plan(lesson, course=None) -> list[ResetItem]:
    """What ``reset`` does to each of the day's files. Files named without a symbol (a
    build file to set up, say) are not touched."""
    others = [x for x in (getattr(course, "lessons", None) or ()) if x.id != lesson.id]
    before = [x for x in others if _order(x.id) < _order(lesson.id)]
    plan = []
    for rel, syms in day_edits(lesson).items():
        if not syms:
            continue
        whole = not rel.endswith(".py")
        shared = tuple(x.id for x in others if rel in day_edits(x)) if whole else ()
        earlier = tuple(x.id for x in before
                        if set(day_edits(x).get(rel, ())) & set(syms)) if not whole else ()
        plan.append(ResetItem(rel, tuple(syms), whole, shared, earlier))
    return plan


def _order(day: str) -> tuple[int, ...]:
    return tuple(int(x) for x in day.split("."))


def reset_day(workspace: Path, lesson, now: datetime | None = None,
              course=None) -> tuple[Path, list[str]]:
    """Back up the day's files, then put the day's symbols back to the stubs, in every
    file the day's tasks name. Work on other days in the same Python files is kept; a
    Python file that no longer parses, and a C++/Metal file only this day writes in, are
    restored whole (they are in the backup). Returns the backup folder and a line per
    file."""
    now = now or datetime.now()
    backup = workspace / "backups" / f"{now:%Y-%m-%dT%H-%M-%S}-day{lesson.id}"
    report = []
    for item in reset_plan(lesson, course):
        src = workspace / item.path
        if item.shared_with:
            report.append(item.describe())
            continue
        if src.exists():
            dest = backup / item.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        stub_text = stub_of(item.path).read_text(encoding="utf-8")
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(stub_text, encoding="utf-8")
            report.append(f"{item.path}: restored from the stubs")
            continue
        if item.whole_file:
            new, line = stub_text, item.describe()
        else:
            try:
                new = restore_symbols(src.read_text(encoding="utf-8"), stub_text,
                                      list(item.symbols))
                line = item.describe()
            except SyntaxError:
                new, line = stub_text, f"{item.path}: did not parse, restored the whole file"
        report.append(line)
        tmp = src.with_suffix(src.suffix + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, src)
    return backup, report
