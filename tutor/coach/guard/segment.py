"""Finding the pieces of code in a reply (pass 1 of the filter): fenced blocks (from the
Markdown tokenizer, :mod:`tutor.textcode`), runs of unfenced code lines in prose, and
inline code spans, each judged on its own as it is found."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tutor.coach.guard.score import _ASSIGN_HEAD, LINE_LIMIT
from tutor.coach.guard.vocab import _core, _generic_call, _norm, _tokens, bracket_depth
from tutor.textcode import (ASSIGN_CALL, ASSIGN_TARGET, BLOCK_HEADER, FENCE_LINE, RETURN, STRONG,
                            fences, inline_spans, is_formula, is_python_line)

# Fences whose language says they hold no Python: judged like prose.
_PROSE_FENCES = {"text", "txt", "plain", "plaintext", "console", "bash", "sh", "shell", "zsh",
                 "math", "latex", "tex", "output", "none", "markdown", "md"}


@dataclass
class _Piece:
    """A piece of code in a reply: a fenced block, a run of code lines, or an inline span."""
    kind: str  # "block" | "run" | "span"
    start: int  # first line (0-based)
    end: int  # one past the last line
    code: list[str]
    reasons: list[str]
    score: float
    statement: bool = True  # spans: an assignment/return that could be pasted
    span: tuple[int, int] = (0, 0)  # spans: character range within the line


def find_pieces(lines: list[str], judged) -> list[_Piece]:
    """Every piece of code in ``lines`` (a reply split at line breaks), judged by
    ``judged(code_lines, fenced) -> (reasons, score)``."""
    # markdown-it reads "\r" as a line break: a blank keeps its lines and ours the same
    found = fences("\n".join(ln.replace("\r", " ") for ln in lines))
    blocks = {f.start: f for f in found}
    pieces: list[_Piece] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        f = blocks.get(i)
        if f is not None:
            code = list(f.code)
            why, score = judged(code, f.lang not in _PROSE_FENCES)
            pieces.append(_Piece("block", i, min(f.end, n), code, why, score))
            i = max(f.end, i + 1)
            continue
        if is_python_line(line) or _indented_code_start(lines, i):
            j = _code_run_end(lines, i, blocks)
            why, score = judged(lines[i:j], False)
            pieces.append(_Piece("run", i, j, lines[i:j], why, score))
            if not why:
                for k in range(i, j):
                    pieces += _spans(lines[k], k, judged)
            i = j
            continue
        pieces += _spans(line, i, judged)
        i += 1
    return pieces


def _indented_code_start(lines: list[str], i: int) -> bool:
    """A markdown indented code block: >= 4 spaces after a blank line, code-looking."""
    ln = lines[i]
    if not ln.startswith(("    ", "\t")) or not ln.strip():
        return False
    if i > 0 and lines[i - 1].strip():
        return False
    s = ln.strip()
    return bool(STRONG.search(s) or BLOCK_HEADER.match(s) or RETURN.match(s)
                or re.match(rf"{ASSIGN_TARGET}\s*=[^=]", s))


def _code_run_end(lines: list[str], i: int, fences=()) -> int:
    """End (exclusive) of the run of code lines starting at ``i``; a fence (a line in
    ``fences``, or any line shaped like one) ends it."""
    base = len(lines[i]) - len(lines[i].lstrip())
    depth = 0
    j = i
    n = len(lines)
    while j < n:
        ln = lines[j]
        s = ln.strip()
        if j in fences or FENCE_LINE.match(ln):
            break
        if j > i:
            if not s:
                # a blank line continues the run only if deeper-indented code follows
                k = j + 1
                while k < n and not lines[k].strip():
                    k += 1
                if k < n and depth == 0 and (len(lines[k]) - len(lines[k].lstrip()) > base
                                             and is_python_line(lines[k])
                                             or is_python_line(lines[k])
                                             and len(lines[k]) - len(lines[k].lstrip()) >= base
                                             and base >= 4):
                    j = k
                    continue
                break
            ind = len(ln) - len(ln.lstrip())
            cont = depth > 0 or is_python_line(ln) or (
                ind > base and not s.endswith("?") and not re.match(r"^[A-Z][a-z]+ [a-z]+ [a-z]+", s)
            ) or s in (")", "]", "}", "):", "pass", "...", "else:", "break", "continue") or (
                s.startswith("#") and ind >= base and j + 1 < n and is_python_line(lines[j + 1]))
            if not cont:
                break
        depth = bracket_depth(ln, depth)
        j += 1
    return max(j, i + 1)


def _spans(line: str, i: int, judged) -> list[_Piece]:
    """The inline code spans of a prose line that are code (not an identifier, a shape or
    a formula), each judged on its own."""
    out = []
    for a, b, code in inline_spans(line):
        if is_formula(code):
            continue
        if not (STRONG.search(code) or RETURN.match(code) or ASSIGN_CALL.match(code)):
            continue
        statement = bool(RETURN.match(code) or _ASSIGN_HEAD.match(code)
                         or re.match(r"^\s*lambda\b", code))
        why, score = judged([code], False)
        if not why and not statement and _generic_call(_core(_norm(_tokens(code)))):
            continue  # how one op is called (`mx.tril(m, k=0)`), not the task
        if why and not statement and _generic_call(_core(_norm(_tokens(code)))) \
                and score < LINE_LIMIT + 0.5 and "answer key" not in " ".join(why):
            continue
        out.append(_Piece("span", i, i + 1, [code], why, score, statement, (a, b)))
    return out
