"""Grading concept-question answers: a shape, a number (or a prediction) or a choice."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Grade:
    correct: bool
    feedback: str
    expected: str


# Spaces a keyboard or a copy from a document may put inside a number (no-break, thin,
# narrow no-break, figure space); they count as plain spaces.
_SPACES = dict.fromkeys(map(ord, "\u00a0\u2009\u202f\u2007"), " ")
# The lessons print minus signs as U+2212; learners type "-". Both mean the same.
_MINUS = {ord("\u2212"): "-"}


def _plain(text: str) -> str:
    return (text or "").translate(_SPACES).translate(_MINUS).strip()


def _shape_tokens(text: str) -> list[str]:
    text = _plain(text).strip("()[]")
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
    return format_number(q.answer, getattr(q, "unit", "") if q.kind == "predict" else "")


def format_number(value, unit: str = "") -> str:
    """``7 pages``, ``0.25``, ``12288 bytes``: a number as the tutor shows it, with its unit."""
    text = f"{value:g}" if isinstance(value, float) and not float(value).is_integer() else (
        str(int(value)) if isinstance(value, float) else str(value))
    return f"{text} {unit}" if unit else text


def measurement_line(prediction, status: str, value=None, unit: str = "", reason: str = "",
                     no_prediction: str = "Your answer held no number") -> str:
    """"You predicted 7 pages · your engine: 7 pages" (or the one-line reason it could not
    be measured): a prediction beside the measurement of the learner's engine. With no
    prediction and an empty ``no_prediction``, the measurement alone."""
    said = (f"You predicted {format_number(prediction, unit)}" if prediction is not None
            else no_prediction)
    if status == "measured" and value is not None:
        got = f"your engine: {format_number(value, unit)}"
    else:
        got = f"could not measure: {reason or status}"
    return f"{said} · {got}" if said else got[:1].upper() + got[1:]


def grade(q, answer: str) -> Grade:
    """Grade the learner's ``answer`` to concept question ``q``. Shapes compare
    axis by axis (``N, H, L, D`` or ``(2, 8, 16)``); numbers within the question's
    tolerance (fractions like ``1/8`` and thousands separators are fine); choices by
    letter or by option text."""
    expected = format_answer(q)
    text = answer or ""
    ok = False
    if q.kind == "shape":
        want = [_canon(str(x).lower()) for x in q.answer]
        ok = [_canon(t) for t in _shape_tokens(text)] == want
    elif q.kind in ("number", "predict"):  # a prediction is graded against the stated answer
        value = _number(text) if q.kind == "number" else read_number(text, q.unit)
        ok = value is not None and abs(value - float(q.answer)) <= q.tolerance
    elif q.kind == "choice":
        ok = _choice(q, text) == str(q.answer).lower()
    verdict = "Right." if ok else f"Not quite: the answer is {expected}."
    return Grade(ok, f"{verdict} {q.explanation.strip()}", expected)


def _option_key(text: str) -> str:
    """An option as compared: case, spacing and the kind of minus sign do not matter."""
    return re.sub(r"\s+", "", _plain(text).lower()).rstrip(".")


def _choice(q, text: str) -> str | None:
    """The letter the learner chose: a letter (``b``, ``b)``, ``B.``), an option's text
    as shown (which may itself end in ")"), or both (``b) The key axis S``), in which case
    the letter and the text must agree. None when it names no option."""
    letters = "abcdef"[:len(q.options)]
    keys = [_option_key(o) for o in q.options]
    t = _plain(text)
    m = re.fullmatch(r"([a-fA-F])\s*[).:]?", t)
    if m and m.group(1).lower() in letters:
        return m.group(1).lower()
    key = _option_key(t)
    if key in keys:
        return letters[keys.index(key)]
    m = re.fullmatch(r"([a-fA-F])\s*[).:]\s*(.+)", t, re.S)
    if m and m.group(1).lower() in letters:
        letter = m.group(1).lower()
        if _option_key(m.group(2)) == keys[letters.index(letter)]:
            return letter
    return None


# Digits grouped by threes with one kind of separator (12,288 · 12 288 · 12_288 · 12'288).
# The first group never starts with 0, so a decimal comma (0,125) is not read as 125.
_GROUPED = re.compile(r"[-+]?[1-9]\d{0,2}(?P<sep>[ ,_'])\d{3}(?:(?P=sep)\d{3})*(?:\.\d+)?")


def _one_number(text: str) -> float:
    t = text.strip()
    m = _GROUPED.fullmatch(t)
    if m:
        t = t.replace(m.group("sep"), "")
    elif not re.fullmatch(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?", t, re.IGNORECASE):
        raise ValueError(t)
    return float(t)


def read_number(text: str, unit: str = "") -> float | None:
    """The number in a learner's answer (as a number question reads it), or None. A
    prediction may carry its unit after it ("9 pages", as the tutor shows the answer)."""
    t = _plain(text)
    if unit and t.lower().endswith(unit.lower()):
        t = t[:-len(unit)]
    else:
        t = re.sub(r"\s+[A-Za-z][A-Za-z ]*$", "", t)
    return _number(t)


def _number(text: str) -> float | None:
    """A plain number, a grouped one or a fraction like ``1/8``; None if it is none."""
    parts = _plain(text).split("/")
    try:
        if len(parts) == 2:
            return _one_number(parts[0]) / _one_number(parts[1])
        if len(parts) == 1:
            return _one_number(parts[0])
    except (ValueError, ZeroDivisionError):
        pass
    return None
