"""Judging one piece of code: how much tensor computation each statement performs
(:func:`code_score`), whether a line is a near-copy of the answer key, whether the piece
defines one of the lesson's symbols with a real body, and the verdict on the whole piece
(:func:`_judge`)."""

from __future__ import annotations

import re

from tutor.coach.guard.answerkey import _DEF, _EMPTY, _Profile
from tutor.coach.guard.vocab import (
    _API_WORDS, _LITERAL_DISCOUNT, _NEUTRAL, _SCALAR_LIBS, _SEMANTIC_KWARGS, _SHORTCUT_ROOTS,
    _UNINFORMATIVE, OPS, _core, _generic_call, _grams, _norm, _tokens, bracket_depth, bracket_walk)
from tutor.textcode import ASSIGN_TARGET, LIST_MARKER, is_formula, is_python_line, strip_comment, unmark

LINE_LIMIT = 1.25
BLOCK_LIMIT = 2.5

# An assignment (also augmented) or a return: a statement that could be pasted.
_ASSIGN_HEAD = re.compile(rf"^\s*{ASSIGN_TARGET}\s*[-+*/@]?=(?!=)")
_ASSIGNMENT = re.compile(_ASSIGN_HEAD.pattern + r"|^\s*(return|yield|lambda)\b")
_REPL = re.compile(r"^\s*(?:>>>|\.\.\.)\s?")
_STUB_LINE = re.compile(
    r"^\s*(?:pass|\.\.\.|raise\s+NotImplementedError\b.*|#.*|[rbu]?(\"\"\"|''').*|\"[^\"]*\"|'[^']*')?\s*$")


def code_score(line: str, profile: _Profile = _EMPTY) -> tuple[float, list[str]]:
    """How much tensor computation one statement performs, with the ops found."""
    src = strip_comment(line)
    toks = _tokens(src)
    if not toks:
        return 0.0, []
    names = [t for k, t in toks if k == "name"]
    inspect = bool(names) and names[0] in {"print", "assert", "eval"} or (
        len(names) >= 2 and names[0] == "mx" and names[1] == "eval")
    statement = bool(names) and (names[0] in ("return", "yield", "lambda") or bool(_ASSIGN_HEAD.match(src)))
    if not statement and re.search(r"\.(shape|dtype|ndim|size)\s*$|\.(item|tolist)\(\)\s*$",
                                   src.strip()):
        inspect = True
    score, found, arith, lesson_names = 0.0, [], 0.0, 0.0
    n = len(toks)
    for i, (kind, tok) in enumerate(toks):
        prev = toks[i - 1][1] if i else ""
        prev2 = toks[i - 2][1] if i > 1 else ""
        nxt = toks[i + 1][1] if i + 1 < n else ""
        if kind == "name":
            if prev == "." and prev2 in _SHORTCUT_ROOTS or prev2 == "fast":
                continue
            if tok in _SHORTCUT_ROOTS and nxt == ".":
                continue
            called = nxt == "("
            if tok == "T" and prev == "." or tok == "mT" and prev == ".":
                score += 1.0
                found.append("transpose")
                continue
            if tok == "inf" and prev == "." and i > 2 and toks[i - 3][1] == "-":
                score += 1.0
                found.append("-inf")
                continue
            if tok in ("inf",) and prev == "-":
                score += 1.0
                found.append("-inf")
                continue
            if called and tok in _NEUTRAL:
                continue
            if called and prev == "." and prev2 in _SCALAR_LIBS:
                score += 0.5
                found.append(tok)
                continue
            if called and tok in OPS:
                group = OPS[tok]
                args = _call_args(toks, i + 1)
                literal = args is not None and all(k in ("num", "op") for k, _ in args)
                if group == "reduce" and args is not None and not args:
                    w = 0.25  # x.max(): a whole-array summary, inspection-like
                elif group in _LITERAL_DISCOUNT and literal:
                    w = 0.25
                else:
                    w = 1.0 if (group in profile.ops or not profile.ops) else 0.75
                if group == "cast":
                    w = 0.5  # a cast alone computes nothing
                score += w
                found.append(tok)
                continue
            if called and tok in profile.course_fns:
                if tok in profile.symbols:
                    continue  # calling the learner's own function: testing it
                score += 1.0  # a course building block: composing the solution
                found.append(tok)
                continue
            if called and prev == "." and prev2 == "self":
                score += 0.5
                found.append(f"self.{tok}")
                continue
            if tok in profile.names and prev == ".":
                lesson_names += 0.25
            if tok in _SEMANTIC_KWARGS and nxt == "=" and i + 2 < n and toks[i + 2][1] not in ("...", "None"):
                score += 0.5 if tok in ("axis", "dim", "k", "kth") else 0.25
        elif kind == "str" and re.fullmatch(r"[rbfuRBFU]{0,2}['\"]\s*-\s*inf(inity)?\s*['\"]", tok):
            score += 1.0  # float("-inf"): a blocked entry
            found.append("-inf")
        elif kind == "num" and prev == "-" and _is_huge(tok):
            score += 1.0  # -1e9 standing in for -inf
            found.append("-inf")
        elif kind == "op":
            if tok == "@" and prev not in ("", "(", ",", "="):
                score += 1.0
                found.append("@")
            elif tok == "**":
                score += 0.5
                found.append("**")
            elif tok in ("+", "-", "*", "/", "//", "+=", "-=", "*=", "/=", "@="):
                if tok == "-" and (prev in ("", "(", ",", "=", "[", ":") or toks[i - 1][0] == "op"
                                   and prev not in (")", "]")):
                    continue  # unary minus
                arith += 0.25
            elif tok == "[" and i and (toks[i - 1][0] == "name" and toks[i - 1][1] not in _API_WORDS
                                       or prev in (")", "]")):
                inner = _bracket(toks, i)
                if any(k == "name" for k, _ in inner) or any(t in (":", "...", "None") for _, t in inner):
                    score += 0.5
                    found.append("index")
    score += min(arith, 1.0)
    if found:  # the lesson's own names only matter where something is computed
        score += min(lesson_names, 0.75)
    if score and names and names[0] in ("return", "yield"):
        score += 0.25
    if inspect:
        score *= 0.5
    return score, found


def _is_huge(num: str) -> bool:
    try:
        return float(num) >= 1e4
    except ValueError:
        return False


def _inside(toks, open_idx: int, opens: str = "([{", closes: str = ")]}"):
    """The tokens inside the bracket opened at ``open_idx`` (nested brackets counted),
    and whether it closes."""
    depth, out = 0, []
    for k, t in toks[open_idx:]:
        if t in opens and k == "op":
            depth += 1
            if depth == 1:
                continue
        elif t in closes and k == "op":
            depth -= 1
            if depth == 0:
                return out, True
        out.append((k, t))
    return out, False


def _call_args(toks, open_idx: int):
    """The argument tokens of the call opened at ``open_idx`` (commas left out), or None."""
    if open_idx >= len(toks) or toks[open_idx][1] != "(":
        return None
    args, closed = _inside(toks, open_idx)
    return [x for x in args if x[1] != ","] if closed else None


def _bracket(toks, open_idx: int):
    return _inside(toks, open_idx, "[", "]")[0]


# --------------------------------------------------------------------------- judging


def _near_copy(line: str, profile: _Profile, found: list[str]) -> bool:
    """Equal to a substantive answer-key line after normalisation, or mostly made of its
    4-grams. Only statements that compute something (``found``) are compared, and
    signatures (``def``/``class`` lines) never are: they are the book's API."""
    if not profile.key_lines or not found or _DEF.match(line):
        return False
    toks = _tokens(strip_comment(line).strip())
    norm = _core(_norm(toks))
    if len(norm) < 6 or _generic_call(norm):
        return False
    if norm in profile.key_cores:
        return True
    if len(norm) < 10:
        return False
    grams = [g for g in _grams(norm) if not set(g) <= _UNINFORMATIVE]
    if len(grams) < 4:
        return False
    hit = sum(1 for g in grams if g in profile.key_grams)
    return hit >= 4 and hit / len(grams) >= 0.7


def _statements(lines: list[str]) -> list[str]:
    """Join bracket continuations so one statement is scored once."""
    out, buf, depth = [], [], 0
    for ln in lines:
        s = strip_comment(ln)
        if not s.strip() and not buf:
            continue
        buf.append(s.strip())
        depth = bracket_depth(s, depth)
        if depth == 0:
            out.append(" ".join(buf))
            buf = []
    if buf:
        out.append(" ".join(buf))
    return out


def _header_end(lines: list[str], i: int) -> tuple[int, str]:
    """The line where a def/class header starting at ``i`` ends (the colon at bracket
    depth 0) and whatever follows that colon on the same line."""
    depth = 0
    for j in range(i, len(lines)):
        for m, depth in bracket_walk(lines[j], depth):
            if m.group() == ":" and depth == 0:
                return j, strip_comment(lines[j])[m.end():]
    return len(lines) - 1, ""


def _defines_task(lines: list[str], profile: _Profile) -> str | None:
    """A def/class of a lesson symbol (or a lesson class's method) with a real body."""
    targets = profile.lesson_symbols | profile.methods
    i = 0
    while i < len(lines):
        m = _DEF.match(lines[i])
        if not m or m.group(3) not in targets:
            i += 1
            continue
        indent = len(m.group(1).expandtabs())
        j, inline = _header_end(lines, i)
        if inline.strip() and not _STUB_LINE.match(inline):
            return m.group(3)  # a one-line def with its body after the colon
        in_doc = False
        for body in lines[j + 1:]:
            if not body.strip():
                continue
            ind = len(body) - len(body.lstrip())
            if ind <= indent:
                break
            s = body.strip()
            if in_doc:
                if '"""' in s or "'''" in s:
                    in_doc = False
                continue
            if s.startswith(('"""', "'''", 'r"""')):
                q = s[:3] if not s.startswith("r") else s[1:4]
                if s.count(q) == 1:
                    in_doc = True
                continue
            if _DEF.match(body):
                continue  # a nested method header; its body is judged line by line
            if not _STUB_LINE.match(body):
                return m.group(3)
        i = j + 1
    return None


def _judge(lines: list[str], profile: _Profile, *, fenced: bool) -> tuple[list[str], float]:
    """Reasons this piece of code is an implementation (empty: it is fine), and its total
    score (for the reply-level sum)."""
    reasons: list[str] = []
    code_lines = [ln for ln in lines if ln.strip() and (fenced or is_python_line(ln)
                                                        or ln[:1].isspace())]
    if not fenced:
        code_lines = [unmark(ln) for ln in code_lines]
    if fenced:
        code_lines = [ln for ln in code_lines if not is_formula(ln)
                      and not (LIST_MARKER.match(ln) and not is_python_line(ln))]
    repl = {_REPL.sub("", ln).strip() for ln in code_lines if _REPL.match(ln)}
    code_lines = [_REPL.sub("", ln) if _REPL.match(ln) else ln for ln in code_lines]
    if not code_lines:
        return reasons, 0.0
    sym = _defines_task(code_lines, profile)
    if sym:
        reasons.append(f"defines {sym}")
    total, ops = 0.0, []
    for st in _statements(code_lines):
        sc, found = code_score(st, profile)
        if st.strip() in repl and not _ASSIGNMENT.match(st):
            sc *= 0.5  # a REPL line evaluated for display: a demonstration
        if _near_copy(st, profile, found):
            reasons.append("near-copy of the answer key")
            total += max(sc, LINE_LIMIT)
            break
        if sc >= LINE_LIMIT:
            reasons.append(f"computes the task ({', '.join(dict.fromkeys(found))})")
            total += sc
            break
        total += sc
        ops += found
    else:
        if total >= BLOCK_LIMIT:
            reasons.append(f"computes the task ({', '.join(dict.fromkeys(ops))})")
    return reasons, total


