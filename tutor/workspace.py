"""The learner's workspace: finding it, laying out a new one, and resetting a day.

A workspace holds the learner's package (``impl/``), their kernels, the tutor's rules and
template, and the tutor's records (``sessions/``, ``progress/``).
"""

from __future__ import annotations

import ast
import os
import shutil
from datetime import datetime
from pathlib import Path

from tutor import paths
from tutor.config import CONFIG_NAME

ENV_VAR = "TINY_LLM_TUTOR_WORKSPACE"
TEMPLATES = ("CLAUDE.md", "AGENTS.md", "SESSION-TEMPLATE.md")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.so", "*.dylib")

CONFIG_TEXT = """\
# tiny-llm-tutor workspace settings.
# The coach works offline by default. To be coached by an LLM, pick a backend:
#
# [llm]
# backend = "anthropic"            # Claude; needs ANTHROPIC_API_KEY in the environment
# model = "claude-sonnet-4-5"
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
    link = target / "curriculum"
    try:
        link.symlink_to(paths.curriculum_dir(), target_is_directory=True)
        made.append(f"curriculum -> {paths.curriculum_dir()}  (the lessons, read-only)")
    except OSError:
        shutil.copytree(paths.curriculum_dir(), link, ignore=_IGNORE)
        made.append("curriculum/  (a copy of the lessons)")
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


def symbols_by_file(lesson) -> dict[str, list[str]]:
    """The day's symbols grouped by the impl file that defines them."""
    by_file: dict[str, list[str]] = {}
    for task in lesson.tasks:
        for sym in task.symbols:
            rel = locate_symbol(paths.stubs_dir(), sym) or task.file
            if not rel.startswith(".."):
                by_file.setdefault(rel, []).append(sym)
    return by_file


def lesson_files(lesson) -> list[str]:
    """The impl files (relative to impl/) the day's tasks ask the learner to edit."""
    return list(symbols_by_file(lesson))


def reset_day(workspace: Path, lesson, now: datetime | None = None) -> tuple[Path, list[str]]:
    """Back up the day's files, then restore the day's symbols from the stubs. Work on
    other days in the same files is kept; a file that no longer parses is restored whole
    (it is in the backup). Returns the backup folder and a line per file."""
    now = now or datetime.now()
    impl = workspace / "impl"
    backup = workspace / "backups" / f"{now:%Y-%m-%dT%H-%M-%S}-day{lesson.id}"
    by_file = symbols_by_file(lesson)
    report = []
    for rel, symbols in by_file.items():
        src = impl / rel
        stub = paths.stubs_dir() / rel
        if src.exists():
            dest = backup / "impl" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        stub_text = stub.read_text(encoding="utf-8")
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_text(stub_text, encoding="utf-8")
            report.append(f"impl/{rel}: restored from the stubs")
            continue
        text = src.read_text(encoding="utf-8")
        try:
            new = restore_symbols(text, stub_text, symbols)
            what = ", ".join(symbols)
            report.append(f"impl/{rel}: {what} back to the stub")
        except SyntaxError:
            new = stub_text
            report.append(f"impl/{rel}: did not parse, restored the whole file")
        tmp = src.with_suffix(src.suffix + ".tmp")
        tmp.write_text(new, encoding="utf-8")
        os.replace(tmp, src)
    return backup, report
