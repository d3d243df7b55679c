"""The solution-leak guardrail: every coach reply passes :func:`filter_reply` before the
learner sees it.

Code that implements the task is removed and replaced by a nudge toward a guiding
question. Allowed through: formulas (LaTeX, Unicode or plain), shapes, plain-language or
numbered pseudo-code, function signatures of the book's API, code that builds test
inputs or prints shapes and dtypes, shell commands, inline single identifiers.

How a piece of code is judged (a fenced block, a markdown-indented block, a run of
unfenced code lines inside prose, or an inline `code span`):

1. **Defines the task.** A ``def``/``class`` of one of the lesson's symbols (or a method
   of a lesson class, such as ``__call__``) whose body is more than a stub
   (``pass``/``...``/``raise NotImplementedError``/docstring/comments).
2. **Near-copy of the answer key.** Tokens are normalised (every identifier that is not
   part of the tensor API becomes ``v``, so renaming variables does not help); a line
   equal to a substantive answer-key line, or whose token 4-grams are mostly the key's,
   is a copy. Day-independent: the whole answer key is the reference.
3. **Computes what the task computes.** Each statement gets a score from the tensor
   operations it performs (matmul/``@``, transposes, softmax, reductions, ``sqrt``,
   masks with ``-inf``, RoPE trigonometry, sorting and sampling, casts, the course's own
   building blocks such as ``linear``/``softmax``...), arithmetic on top, calls into
   ``self.<module>``, and the lesson's own names (``input_layernorm``,
   ``eos_token_id``...). Inspection (``print``, ``.shape``, ``mx.eval``, ``allclose``),
   test inputs (``mx.random.normal``, literal shapes) and MLX shortcuts the checks
   reject (``mx.fast.*``, ``nn.*``) score nothing. One statement scoring
   >= ``LINE_LIMIT`` or a block totalling >= ``BLOCK_LIMIT`` is an implementation.

A line counts as code when it is inside a fence, or carries unmistakable Python (``mx.``,
``self.``, a method call, a keyword argument, slicing, ``@``, ``.T``, ``**``, ``def``,
``return``, ``lambda``...). A line with formula marks (``√ · ² ᵀ ^ \\frac``...) and none
of those is a formula, never code.

Pieces are also judged together: when the statements that could be pasted (assignments,
returns, lambdas) across the whole reply add up to more than ``BLOCK_LIMIT + 0.5``, all of
them go, so an implementation spread over inline spans or small blocks is caught. REPL
lines (``>>> a.sum(axis=-1)``) evaluated for display count half. Lines quoted verbatim
from ``learner_code`` (the learner's own code) are not judged.

Its parts live in :mod:`tutor.coach.guard` (the vocabulary, the answer-key index,
scoring, segmenting a reply, the nudge); fences and inline spans are found by the
Markdown tokenizer and lines of code in prose by :mod:`tutor.textcode`. This module is
the filter on top.

The filter is pure, fast (about 2-3 ms for a 4 KB reply; the answer-key index costs
about 25 ms once per process, see :func:`prepare`) and never raises: on an internal error
it falls back to removing every code-looking line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tutor.coach.guard.answerkey import _key_index, _key_stamp, _Profile, _profile_for
from tutor.coach.guard.nudge import NUDGE_PREFIX, _nudge, _words_of
from tutor.coach.guard.score import BLOCK_LIMIT, LINE_LIMIT, _judge, code_score
from tutor.coach.guard.segment import _Piece, find_pieces
from tutor.coach.guard.vocab import NGRAM
from tutor.textcode import FENCE_LINE, STRONG

__all__ = ["FilterResult", "filter_reply", "prepare", "LINE_LIMIT", "BLOCK_LIMIT", "code_score",
           "NUDGE_PREFIX", "NGRAM"]


@dataclass
class FilterResult:
    text: str
    removed: int = 0  # pieces of code removed (blocks, line runs or inline spans)
    reasons: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.removed == 0


def filter_reply(text: str, *, lesson, task, answer_key_dir: Path | None = None,
                 allow_solution: bool = False, learner_code: str = "") -> FilterResult:
    """Remove code that implements the task from a coach reply.

    ``lesson``/``task`` are :mod:`tutor.curriculum` objects (duck-typed: ``tasks``,
    ``symbols``, ``guiding_questions``); ``answer_key_dir`` defaults to the installed
    answer key. ``allow_solution`` (the learner asked explicitly after the whole ladder)
    returns the text unchanged. Lines quoted verbatim from ``learner_code`` (the
    learner's own code) are not judged. Never raises.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if allow_solution or not text.strip():
        return FilterResult(text, 0, [])
    try:
        profile = _profile_for(lesson, task, answer_key_dir)
        return _filter(text, profile, task, learner_code)
    except Exception as exc:  # never let the guardrail break a reply: fail closed
        return _fallback(text, exc)


def prepare(answer_key_dir: Path | None = None) -> None:
    """Build the answer-key index now (once per process, about 25 ms) so the first
    filtered reply is not slower than the rest. Optional; never raises."""
    try:
        key = _key_stamp(answer_key_dir)
        if key[0]:
            _key_index(*key)
    except Exception:
        pass


def _fallback(text: str, exc: Exception) -> FilterResult:
    out, removed, in_fence = [], 0, False
    for ln in text.splitlines():
        # the parser may be what failed: a plain fence toggle, and every strong line
        if FENCE_LINE.match(ln):
            in_fence = not in_fence
            if in_fence:
                removed += 1
                out.append(f"*({NUDGE_PREFIX}.)*")
            continue
        if in_fence:
            continue
        if STRONG.search(ln):
            removed += 1
            out.append(f"*({NUDGE_PREFIX}.)*")
            continue
        out.append(ln)
    return FilterResult("\n".join(out), removed,
                        [f"guardrail error ({type(exc).__name__}); code-looking lines removed"])



def _filter(text: str, profile: _Profile, task, learner_code: str) -> FilterResult:
    lines = text.split("\n")
    own = {re.sub(r"\s+", " ", ln.strip()) for ln in learner_code.splitlines() if len(ln.strip()) > 8}

    def judged(chunk: list[str], fenced: bool) -> tuple[list[str], float]:
        if own:
            chunk = [ln for ln in chunk if re.sub(r"\s+", " ", ln.strip()) not in own]
        return _judge(chunk, profile, fenced=fenced)

    # pass 1: find every piece of code and judge it on its own
    pieces = find_pieces(lines, judged)
    n = len(lines)

    # pass 2: code spread over many small pieces is judged as a whole
    kept = [p for p in pieces if not p.reasons and p.score >= 0.75 and p.statement]
    total = sum(p.score for p in pieces if p.statement and (p.reasons or p.score >= 0.75))
    if total >= BLOCK_LIMIT + 0.5 and len(kept) + sum(1 for p in pieces if p.reasons) > 1:
        for p in kept:
            p.reasons = [f"one of several pieces that together compute the task "
                             f"(score {total:.1f})"]

    # pass 3: rebuild the text
    bad = [p for p in pieces if p.reasons]
    if not bad:
        return FilterResult(text, 0, [])
    nudged = False

    def nudge(code: list[str]) -> str:
        nonlocal nudged
        if nudged:
            return f"*({NUDGE_PREFIX}.)*"
        nudged = True
        return _nudge(task, _words_of(code))

    drop: dict[int, _Piece] = {}
    spans: dict[int, list[_Piece]] = {}
    for p in bad:
        if p.kind == "span":
            spans.setdefault(p.start, []).append(p)
        else:
            drop[p.start] = p
    out: list[str] = []
    reasons: list[str] = []
    i = 0
    while i < n:
        if i in drop:
            p = drop[i]
            out.append(nudge(p.code))
            reasons.append(f"lines {p.start + 1}-{p.end}: " + "; ".join(p.reasons))
            i = p.end
            continue
        line = lines[i]
        if i in spans:
            codes = []
            for p in sorted(spans[i], key=lambda p: -p.span[0]):
                a, b = p.span
                line = line[:a] + "(code removed)" + line[b:]
                codes.append(p.code[0])
                reasons.append(f"inline `{p.code[0][:40]}`: " + "; ".join(p.reasons))
            line = line.rstrip() + " " + nudge(codes)
        out.append(line)
        i += 1
    return FilterResult("\n".join(out), len(bad), reasons)
