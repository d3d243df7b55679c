"""Grading concept-question answers: what a learner types that is right must be marked
right, and what is wrong must stay wrong."""

from __future__ import annotations

import math
import re

import pytest

from tutor.curriculum import ConceptQuestion, load_course
from tutor.grading import format_answer, grade

LETTERS = "abcdef"


def _q(kind, answer, options=(), tolerance=1e-6, prompt="?"):
    return ConceptQuestion("q", "before", kind, prompt, answer, "Because.", tolerance,
                           tuple(options))


def _shipped_questions():
    for lesson in load_course().lessons:
        for q in lesson.concept_questions:
            yield pytest.param(q, id=f"{lesson.id}-{q.id}")


CHOICES = [p for p in _shipped_questions() if p.values[0].kind == "choice"]


# --------------------------------------------------------------------------- choices


@pytest.mark.parametrize("q", CHOICES)
def test_every_option_text_grades_as_itself(q):
    """Typing an option exactly as shown is right for the correct option and wrong for
    every other one (options ending in ")" used to lose their last character)."""
    right = LETTERS.index(q.answer.lower())
    for i, option in enumerate(q.options):
        assert grade(q, option).correct is (i == right), (option, i, right)


@pytest.mark.parametrize("q", CHOICES)
def test_letter_and_shown_answer_grade_as_correct(q):
    letter = q.answer.lower()
    for typed in (letter, letter.upper(), f"{letter})", f"{letter}.", format_answer(q)):
        assert grade(q, typed).correct, typed
    wrong = next(c for c in LETTERS[:len(q.options)] if c != letter)
    assert not grade(q, wrong).correct


def test_shipped_options_ending_in_a_parenthesis_are_covered():
    """The three questions the issue names really have a correct option ending in ')',
    so the walk above exercises the bug."""
    ending = {p.id for p in CHOICES
              if p.values[0].options[LETTERS.index(p.values[0].answer)].endswith(")")}
    assert {"1.1-softmax-axis", "1.2-qwen2-layout", "1.5-mlp-input"} <= ending


def test_option_with_a_closing_parenthesis():
    q = _q("choice", "b", ["x", "post_attention_layernorm(x + a)", "mlp(x)"])
    assert grade(q, "post_attention_layernorm(x + a)").correct
    assert grade(q, "  Post_Attention_LayerNorm(x + a)  ").correct
    assert grade(q, "post_attention_layernorm(x+a)").correct  # spacing is not the point
    assert not grade(q, "post_attention_layernorm(x + a").correct
    assert not grade(q, "mlp(x)").correct
    assert not grade(q, "x").correct


def test_unicode_minus_and_ascii_minus_are_the_same():
    q = _q("choice", "b", ["The query axis L (axis −2)", "The key axis S (axis −1)"])
    assert grade(q, "The key axis S (axis -1)").correct
    assert grade(q, "The key axis S (axis −1)").correct
    assert not grade(q, "The key axis S (axis -2)").correct
    ascii_q = _q("choice", "a", ["bias -0.15", "bias 0.15"])
    assert grade(ascii_q, "bias −0.15").correct
    assert not grade(ascii_q, "bias 0.15").correct


def test_letter_with_the_option_text():
    q = _q("choice", "b", ["3, then 10", "10, then 3"])
    assert grade(q, "b) 10, then 3").correct
    assert not grade(q, "a) 10, then 3").correct  # the letter and the text disagree
    assert not grade(q, "b) 3, then 10").correct


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("typed", ["12288", "12,288", "12 288", "12\u2009288", "12\u00a0288",
                                   "12\u202f288", "12_288", "12'288", " 12,288 ", "12,288.0"])
def test_thousands_separators(typed):
    assert grade(_q("number", 12288), typed).correct


@pytest.mark.parametrize("typed", ["1,2288", "12,28", "122,88", "12, 288", "12,288 000",
                                   "0,125", "1 2288", "12,288,", "12 288,000"])
def test_malformed_groups_are_not_numbers(typed):
    """A separator counts only between groups of three digits, one kind at a time, so a
    typo or a decimal comma is never silently read as another number."""
    assert not grade(_q("number", 12288), typed).correct


def test_decimal_comma_is_not_read_as_a_thousands_separator():
    assert not grade(_q("number", 125), "0,125").correct
    assert not grade(_q("number", 0.125), "0,125").correct


def test_large_grouped_number():
    q = _q("number", 272269312)
    assert grade(q, "272,269,312").correct
    assert grade(q, "272 269 312").correct
    assert not grade(q, "272,269 312").correct  # mixed separators


def test_unicode_minus_in_numbers():
    q = _q("number", -1.63, tolerance=1e-4)
    assert grade(q, "−1.63").correct
    assert grade(q, "-1.63").correct
    assert not grade(q, "1.63").correct
    assert grade(_q("number", -0.5), "−1/2").correct


def test_fractions_still_work():
    q = _q("number", 0.125)
    for typed in ("1/8", "1 / 8", "0.125", ".125", "1.25e-1"):
        assert grade(q, typed).correct, typed
    assert not grade(q, "1/0").correct
    assert not grade(q, "nan").correct


# --------------------------------------------------------------------------- stated precision

_DECIMALS = re.compile(r"(\d+) decimals")
_SIGNIFICANT = re.compile(r"(\d+) significant digits")


def _stated_step(q) -> float | None:
    """Half a unit in the last digit the prompt asks for, or None when it asks for none."""
    m = _DECIMALS.search(q.prompt)
    if m:
        return 0.5 * 10 ** -int(m.group(1))
    m = _SIGNIFICANT.search(q.prompt)
    if m:
        digits = int(m.group(1))
        exponent = math.floor(math.log10(abs(q.answer)))
        return 0.5 * 10 ** (exponent - digits + 1)
    return None


PRECISE = [p for p in _shipped_questions()
           if p.values[0].kind == "number" and _stated_step(p.values[0]) is not None]


def test_questions_stating_a_precision_exist():
    ids = {p.id for p in PRECISE}
    assert "2.4-rescale-factor" in ids and len(ids) >= 4


@pytest.mark.parametrize("q", PRECISE)
def test_tolerance_matches_the_stated_precision(q):
    """A question that asks for N decimals (or N significant digits) accepts the answer
    rounded that way and rejects one that is two units off in that digit."""
    step = _stated_step(q)
    assert q.tolerance <= step * 1.0001, (q.tolerance, step)
    unit = 2 * step
    digits = max(0, -math.floor(math.log10(unit)))
    rounded = f"{round(q.answer, digits):.{digits}f}"
    assert grade(q, rounded).correct, rounded
    for off in (q.answer + 2 * unit, q.answer - 2 * unit):
        assert not grade(q, f"{off:.{digits}f}").correct, off


def test_rescale_factor_is_graded_at_three_significant_digits():
    q = load_course().lesson("2.4")
    q = next(x for x in q.concept_questions if x.id == "rescale-factor")
    assert grade(q, "0.0498").correct
    assert grade(q, f"{math.exp(-3):.6f}").correct
    for typed in ("0.0488", "0.0508", "0.049", "0.05"):
        assert not grade(q, typed).correct, typed


# --------------------------------------------------------------------------- ideas that had none

# The concept questions that made four ideas masterable (mask-application,
# used-where-it-counts, request-lifecycle, routing-weights): a right answer in the forms a
# learner types, and the answers each catalogued mistake leads to, which must stay wrong.
IDEA_QUESTIONS = [
    ("1.1", "masked-weight", ["0.119", "0.1192", ".119"], ["0.090", "0.0900", "0.5", "0.12", "0"]),
    ("1.5", "mask-lost-in-last-block", ["b", "B)", "Only position 4, the last one"],
     ["a", "c", "d", "None of them: every position is off"]),
    ("2.4", "is-the-kernel-used", ["c", "c."], ["a", "b", "d"]),
    ("2.6", "done-at-prefill", ["b", "b)"], ["a", "c", "d"]),
    ("3.3", "mixed-output", ["3", "3.0", "3.00"], ["12", "2", "1", "4.29", "30/7"]),
]


@pytest.mark.parametrize("day,qid,right,wrong", IDEA_QUESTIONS,
                         ids=[f"{d}-{q}" for d, q, _, _ in IDEA_QUESTIONS])
def test_the_questions_of_the_ideas_that_had_none(day, qid, right, wrong):
    lesson = load_course().lesson(day)
    q = next(x for x in lesson.concept_questions if x.id == qid)
    for typed in right:
        g = grade(q, typed)
        assert g.correct and g.feedback.startswith("Right."), typed
    for typed in wrong:
        g = grade(q, typed)
        assert not g.correct and g.feedback.startswith("Not quite"), typed


# --------------------------------------------------------------------------- every question


@pytest.mark.parametrize("q", list(_shipped_questions()))
def test_shown_answer_grades_as_correct(q):
    """What the tutor says the answer is must itself be accepted."""
    assert grade(q, format_answer(q)).correct, format_answer(q)


def test_shapes():
    q = _q("shape", ["N", "H", "L", "S"])
    for typed in ("N, H, L, S", "(N, H, L, S)", "n x h x l x s", "B, H, L, S", "[N,H,L,S]"):
        assert grade(q, typed).correct, typed
    assert not grade(q, "N, L, H, S").correct
    q = _q("shape", [1, 12, 151936])
    assert grade(q, "(1, 12, 151936)").correct
    assert grade(q, "1 × 12 × 151\u2009936").correct
    assert not grade(q, "(1, 12, 151937)").correct
