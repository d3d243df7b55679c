"""What the answer key says about a lesson (:class:`_Profile`): the ops and distinctive
names its solution uses, its symbols and methods, and its substantive lines in normal
form, from an index of every answer-key module built once per process."""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tutor.coach.guard.vocab import _NEUTRAL, OPS, _core, _grams, _norm, _tokens
from tutor.textcode import strip_comment

_DEF = re.compile(r"^(\s*)(def|class)\s+([A-Za-z_]\w*)")


@dataclass
class _Profile:
    """What the answer key says about the lesson: its ops, names and key lines."""
    symbols: frozenset = frozenset()  # the current task's symbols (calling them is testing)
    lesson_symbols: frozenset = frozenset()
    methods: frozenset = frozenset()  # methods of the lesson's classes
    ops: frozenset = frozenset()  # op groups and course functions the lesson's key uses
    names: frozenset = frozenset()  # distinctive attribute names of the lesson's key
    course_fns: frozenset = frozenset()  # every public symbol of the answer key
    key_lines: frozenset = frozenset()  # normalised substantive key lines
    key_cores: frozenset = frozenset()  # the same without their return/assignment head
    key_grams: frozenset = frozenset()


_EMPTY = _Profile()


def _default_key_dir() -> Path | None:
    try:
        from tutor import paths

        d = paths.answer_key_dir()
    except Exception:
        return None
    return d if d.is_dir() else None


@lru_cache(maxsize=4)
def _key_index(key_dir: str, stamp: float) -> dict:
    """Parse every answer-key module: symbol -> (source, names, attributes, methods), plus
    the normalised substantive lines (docstrings, signatures and imports left out) and
    their n-grams."""
    symbols: dict[str, dict] = {}
    lines: set[tuple[str, ...]] = set()
    candidates: list[str] = []
    for path in sorted(Path(key_dir).glob("*.py")):
        try:
            src = path.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        src_lines = src.splitlines()
        doc_lines: set[int] = set()
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                    and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            seg = "\n".join(src_lines[node.lineno - 1:node.end_lineno])
            methods = {n.name for n in node.body
                       if isinstance(node, ast.ClassDef)
                       and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
            symbols[node.name] = {"src": seg, "calls": set(_NAME_RE.findall(seg)),
                                  "attrs": set(_ATTR_RE.findall(seg)), "methods": methods,
                                  "cls": isinstance(node, ast.ClassDef)}
        for no, raw in enumerate(src_lines, 1):
            if no in doc_lines:
                continue
            s = strip_comment(raw).strip()
            if not s or _DEF.match(raw) or s.startswith(("import ", "from ", "assert ", "@")):
                continue
            candidates.append(s)
    fns = [n for n in symbols if not n.startswith("_")]
    course_call = re.compile(r"\b(?:" + "|".join(map(re.escape, fns)) + r")\s*\(") if fns else None
    for s in candidates:
        if _SUBSTANTIVE.search(s) or course_call is not None and course_call.search(s):
            toks = _tokens(s)
            if len(toks) >= 6:
                lines.add(_norm(toks))
    grams: set[tuple[str, ...]] = set()
    for ln in lines:
        grams |= _grams(ln)
    cores = frozenset(c for c in (_core(ln) for ln in lines) if len(c) >= 6)
    return {"symbols": symbols, "lines": frozenset(lines), "grams": frozenset(grams),
            "cores": cores}


_NAME_RE = re.compile(r"(?<![.\w])([A-Za-z_]\w*)")
_ATTR_RE = re.compile(r"\.([A-Za-z_]\w*)")
_SUBSTANTIVE = re.compile(r"@|\w\[|\bself\.\w+\(|\binf\b|\b(?:" + "|".join(sorted(OPS)) + r")\s*\(")


def _key_stamp(key_dir: Path | None) -> tuple[str, float]:
    key_dir = key_dir or _default_key_dir()
    if key_dir is None or not Path(key_dir).is_dir():
        return "", 0.0
    try:
        stamp = max((os.stat(p).st_mtime for p in Path(key_dir).glob("*.py")), default=0.0)
    except OSError:
        return "", 0.0
    return str(Path(key_dir).resolve()), stamp


def _closure(symbols: dict, start: set[str], depth: int = 3) -> set[str]:
    seen, frontier = set(), set(start)
    for _ in range(depth):
        nxt = set()
        for s in frontier:
            if s in seen or s not in symbols:
                continue
            seen.add(s)
            nxt |= {c for c in symbols[s]["calls"] if c in symbols}
        frontier = nxt
    return seen


_GENERIC_NAMES = set("""x y h q k v w b t out args model weight bias scale mask dims shape dtype
    step append reset encode""".split())


@lru_cache(maxsize=64)
def _profile(key_dir: str, stamp: float, task_symbols: tuple, lesson_symbols: tuple) -> _Profile:
    index = _key_index(key_dir, stamp) if key_dir else None
    if index is None:
        return _Profile(symbols=frozenset(task_symbols), lesson_symbols=frozenset(lesson_symbols))
    syms = index["symbols"]
    reach = _closure(syms, set(lesson_symbols))
    ops, names, methods = set(), set(), set()
    for s in reach:
        info = syms[s]
        for tok in re.findall(r"[A-Za-z_]\w*", info["src"]):
            if tok in OPS:
                ops.add(OPS[tok])
        ops |= {c for c in info["calls"] if c in syms}
        if "@" in info["src"]:
            ops.add("matmul")
        names |= {a for a in info["attrs"] if a not in OPS and a not in _NEUTRAL
                  and a not in _GENERIC_NAMES and len(a) > 3}
    for s in lesson_symbols:
        if s in syms:
            methods |= syms[s]["methods"]
    course_fns = frozenset(n for n in syms if not n.startswith("_"))
    return _Profile(
        symbols=frozenset(task_symbols), lesson_symbols=frozenset(lesson_symbols),
        methods=frozenset(methods), ops=frozenset(ops), names=frozenset(names),
        course_fns=course_fns, key_lines=index["lines"], key_grams=index["grams"],
        key_cores=index["cores"])


def _profile_for(lesson, task, key_dir: Path | None) -> _Profile:
    task_syms = tuple(getattr(task, "symbols", ()) or ())
    lesson_syms = tuple(dict.fromkeys(
        s for t in (getattr(lesson, "tasks", ()) or ()) for s in (getattr(t, "symbols", ()) or ())))
    lesson_syms = tuple(dict.fromkeys(lesson_syms + task_syms))
    return _profile(*_key_stamp(key_dir), task_syms, lesson_syms)


