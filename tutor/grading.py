"""Grading concept-question answers: a shape, a number or a choice."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    correct: bool
    feedback: str
    expected: str


def _shape_tokens(text: str) -> list[str]:
    text = text.strip().strip("()[]")
    parts = [p.strip().lower().replace(" ", "") for p in re.split(r"[,x×]", text)]
    return [p for p in parts if p]


def _canon(tok: str) -> str:
    tok = tok.replace("_", "").replace("..", "").replace("…", "")
    return {"hq": "hq", "b": "n"}.get(tok, tok)


def format_answer(q) -> str:
    if q.kind == "shape":
        return "(" + ", ".join(str(x) for x in q.answer) + ")"
    if q.kind == "choice":
        idx = "abcdef".index(str(q.answer).lower())
        return f"{q.answer}) {q.options[idx]}"
    return f"{q.answer:g}" if isinstance(q.answer, float) else str(q.answer)


def grade(q, answer: str) -> Grade:
    """Grade the learner's ``answer`` to concept question ``q``. Shapes compare
    axis by axis (``N, H, L, D`` or ``(2, 8, 16)``); numbers within the question's
    tolerance (fractions like ``1/8`` are fine); choices by letter or by option text."""
    expected = format_answer(q)
    text = (answer or "").strip()
    ok = False
    if q.kind == "shape":
        want = [_canon(str(x).lower()) for x in q.answer]
        ok = [_canon(t) for t in _shape_tokens(text)] == want
    elif q.kind == "number":
        value = _number(text)
        ok = value is not None and abs(value - float(q.answer)) <= q.tolerance
    elif q.kind == "choice":
        t = text.lower().rstrip(").").strip()
        letters = "abcdef"[:len(q.options)]
        if len(t) == 1 and t in letters:
            ok = t == str(q.answer).lower()
        else:
            idx = "abcdef".index(str(q.answer).lower())
            ok = t == q.options[idx].strip().lower()
    verdict = "Right." if ok else f"Not quite: the answer is {expected}."
    return Grade(ok, f"{verdict} {q.explanation.strip()}", expected)


def _number(text: str) -> float | None:
    t = text.replace(" ", "").replace("_", "")
    m = re.fullmatch(r"([-+]?\d*\.?\d+(?:e[-+]?\d+)?)/([-+]?\d*\.?\d+)", t, re.IGNORECASE)
    try:
        if m:
            return float(m.group(1)) / float(m.group(2))
        return float(t)
    except (ValueError, ZeroDivisionError):
        return None
