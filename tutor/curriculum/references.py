"""What a lesson names outside itself: each task's files and symbols among the shipped
stubs, and its check ids in the day's checks module; and the other way round, each check
that module declares belongs to a task of the lesson that lists it.

Checked when the lesson loads, because otherwise they fail much later and far away: a
missing stub as a traceback in ``reset``, a missing check as a run that never happens.
Files are read as text (checks modules are never imported: that would load MLX).
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

from tutor import paths

# How the checks modules declare a check: ``@check("sdpa-simple", 1, ...)``, the id and the
# task number first (the day is the module's). Anchored on the newline, not on ``^`` with
# re.M, which is several times slower on these files.
_CHECK_DECL = re.compile(r"""\n@check\(\s*["']([^"'\n]+)["']\s*,\s*(\d+)""")
_DECORATOR = re.compile(r"\n@check\(")
# How they declare a measurement for a predict question: ``@measure("pages-for-batch", ...)``.
_MEASURE_DECL = re.compile(r"""\n@measure\(\s*["']([^"'\n]+)["']""")


def check_task(t: dict, edits, where: str, checks, text: str, bad, rel) -> None:
    """A task's stub files and Python symbols exist, and its checks are in the day's module
    (``checks``: the module's path and its ids). ``t`` is the task's validated mapping (with
    its lines), ``edits`` its (file, symbol) pairs; ``bad(message, line)`` makes the error
    and ``rel`` shortens a path for it."""
    stubs = paths.stubs_root()
    for j, e in enumerate(edits):
        if "edit" in t:
            at, line = f"{where}.edit[{j}]", t["edit"][j]["__line__"]
        else:
            at, line = where, t["__line__"]
        stub = stubs / e.path
        if not stub.is_file():
            raise bad(f"{at}.file: {e.path} has no shipped stub ({rel(stub)} does not exist)",
                      line)
        if e.symbol and missing_symbol(stub, e.symbol):
            raise bad(f"{at}.symbol: {e.path} has no top-level function or class "
                      f"{e.symbol!r} in its stub ({rel(stub)})", line)
    module, ids = checks
    for c in t["checks"]:
        if c not in ids:
            line = line_after(text, t["__line__"], c)
            raise bad(f"{where}.checks: no check {c!r} in {rel(module)} (it has: "
                      f"{', '.join(ids) or 'none'})", line)


def id_line(path: Path) -> int:
    """The line of a lesson file's ``id:`` key (1 if the file cannot be read again)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return 1
    return next((i for i, line in enumerate(text.splitlines(), 1) if line.startswith("id:")), 1)


def checks_module(checks_dir: Path, day: str) -> Path:
    week, d = day.split(".")
    return checks_dir / f"week{week}" / f"day{week}_{d}.py"


def check_decls(module: Path) -> tuple[tuple[str | None, int | None, int], ...] | None:
    """(id, task number, line) of each check ``module`` declares, in order (id and task None
    for a declaration not written ``@check("id", task, ...)``); None when there is no such
    module."""
    text = _read(module)
    if text is None:
        return None
    text = "\n" + text
    out = []
    for start in _DECORATOR.finditer(text):
        m = _CHECK_DECL.match(text, start.start())
        out.append((m.group(1) if m else None, int(m.group(2)) if m else None,
                    text.count("\n", 0, start.start()) + 1))
    return tuple(out)


def measure_ids(module: Path) -> tuple[str, ...]:
    """The ids of the measurements ``module`` declares with ``@measure("id", ...)``."""
    text = _read(module)
    if text is None:
        return ()
    return tuple(m.group(1) for m in _MEASURE_DECL.finditer("\n" + text))


def readable_decls(decls, module: Path, bad, rel, line: int) -> None:
    """Every check in ``decls`` (from :func:`check_decls`) is written so that it can be read
    here: one that cannot would be missed by every other test of the lesson."""
    for cid, _task, at in decls:
        if cid is None:
            raise bad(f"tasks: {rel(module)}:{at} declares a check the tutor cannot read: "
                      "write it @check(\"id\", task, \"title\", ...)", line)


def check_tasks(day: str, decls, tasks: dict[int, tuple[tuple[str, ...], int]], module: Path,
                bad, rel, line: int) -> None:
    """Each check ``module`` declares (``decls``, from :func:`check_decls`) is for a task the
    lesson has, and that task lists it. ``tasks`` maps each task number to its check ids and
    its line; ``line`` is where the lesson's tasks begin."""
    for cid, task, at in decls:
        where = f"{rel(module)}:{at}"
        if task not in tasks:
            raise bad(f"tasks: {where} declares check {cid!r} for task {task}, but lesson "
                      f"{day} has tasks {', '.join(map(str, tasks))}", line)
        listed, task_line = tasks[task]
        if cid not in listed:
            raise bad(f"tasks: {where} declares check {cid!r} for task {task}, whose checks "
                      f"do not list it", task_line)


def missing_symbol(stub: Path, symbol: str) -> bool:
    """Whether a Python stub lacks ``symbol`` at top level. C++ and Metal symbols are not
    looked for: some are the learner's to declare (the primitive's class in the header)."""
    if stub.suffix != ".py":
        return False
    text = _read(stub)
    return text is None or symbol not in _top_level(str(stub), text)


def line_after(text: str, start: int, needle: str) -> int:
    """The first line at or after ``start`` (1-based) that holds ``needle``; else ``start``.
    Plain strings in a YAML list keep no line of their own."""
    for i, line in enumerate(text.splitlines()[start - 1:], start):
        if needle in line:
            return i
    return start


@lru_cache(maxsize=64)
def _top_level(path: str, text: str) -> frozenset[str]:
    try:
        body = ast.parse(text).body
    except SyntaxError:
        return frozenset()
    return frozenset(n.name for n in body
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
