"""Check titles are shown to the learner next to every result, so none may give the
answer away: no operators, no calls into MLX, no formulas."""

from __future__ import annotations

import ast
import re

import pytest

from tutor import paths

# What would turn a title into a hint the learner has not earned yet.
ANSWER_PATTERNS = {
    "matrix product operator": r"@",
    "transpose": r"\.T\b|swapaxes|transpose|moveaxis",
    "a call into MLX": r"\bmx\.|\bnn\.|\bmlx\.",
    "a reshape": r"reshape|flatten|\bconcatenate|\bbroadcast_to",
    # Spaced binary operators ("logprobs / T", "S - L"); hyphens and "keys/values" are words.
    "arithmetic on symbols": r"\S\s+[-+*/]\s+\S|\(\s*[-+*/]\s|\*\*|√|\bsqrt\b|\bexp\(",
    "a formula call": r"\b(softmax|sigmoid|argmax|logsumexp|rsqrt)\(",
    "an axis": r"\baxis\s*=?\s*-?\d|\b(on|along) the \w+ axis",
    "where the work happens (accumulate, cast)": r"\baccumulat|\bcast\b|\bastype\b",
}


def _titles():
    root = paths.content_root() / "checks"
    for path in sorted(root.glob("week*/day*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "check"
                        and len(dec.args) >= 3 and isinstance(dec.args[2], ast.Constant)):
                    # @check("id", task, "title", ...)
                    yield path.name, dec.args[0].value, dec.args[2].value


TITLES = list(_titles())


def test_titles_are_found():
    ids = {cid for _, cid, _ in TITLES}
    assert len(TITLES) >= 50 and {"linear", "sdpa-simple", "chunked-prefill"} <= ids


# A range or an inequality in a bar ("L = S = 512", ">= 1.3x", "L <= S", "L != S") states
# a test condition, not an answer, so comparisons are allowed; only these are exempt.
_CONDITION = re.compile(r"\b[A-Z]\s*(?:<=|>=|!=|=)\s*[A-Z0-9]|>=\s*[\d.]+x")


@pytest.mark.parametrize("where,check_id,title", TITLES, ids=[c for _, c, _ in TITLES])
def test_title_does_not_state_the_answer(where, check_id, title):
    text = _CONDITION.sub(" ", title)
    for what, pattern in ANSWER_PATTERNS.items():
        m = re.search(pattern, text)
        assert m is None, f"{where} {check_id}: title shows {what} ({m.group(0)!r}): {title!r}"
