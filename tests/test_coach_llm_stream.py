"""The streaming guard between an LLM and the learner: text is released only after the
guardrail has judged it in context, so no leaked implementation is ever shown -- whatever
way the reply is cut into deltas -- while clean replies stream through unchanged."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from tutor.coach.chat import StreamGuard, is_solution_request, looks_like_code, safe_boundary
from tutor.coach.guardrail import filter_reply
from tutor.curriculum import load_course

COURSE = load_course()
CORPUS = Path(__file__).parent / "fixtures" / "guardrail"


def corpus(name: str) -> list[dict]:
    """A corpus in the repository: a missing or empty one is an error, not a skip."""
    cases = yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))
    assert cases, f"{name}: an empty guardrail corpus"
    return cases


def check_for(day: str, task_id: int):
    lesson = COURSE.lesson(day)
    task = lesson.task(int(task_id))
    return lambda text: filter_reply(text, lesson=lesson, task=task).text


def stream(guard: StreamGuard, text: str, rng: random.Random, max_chunk: int) -> list[str]:
    out, i = [], 0
    while i < len(text):
        n = rng.randint(1, max_chunk)
        piece = guard.feed(text[i:i + n])
        if piece:
            out.append(piece)
        i += n
    rest = guard.finish()
    if rest:
        out.append(rest)
    return out


def removed_lines(original: str, filtered: str) -> list[str]:
    kept = set(filtered.splitlines())
    return [ln for ln in original.splitlines()
            if len(ln.strip()) > 12 and ln not in kept and looks_like_code(ln)]


LEAKING = corpus("leaking.yaml")
CLEAN = corpus("clean.yaml")


@pytest.mark.parametrize("max_chunk", [1, 7, 40])
def test_no_leaked_line_is_ever_released(max_chunk):
    rng = random.Random(max_chunk)
    checked = 0
    for case in LEAKING:
        check = check_for(case["day"], case["task"])
        one_shot = check(case["text"])
        gone = removed_lines(case["text"], one_shot)
        shown = "".join(stream(StreamGuard(check), case["text"], rng, max_chunk))
        for line in gone:
            assert line not in shown, (case["id"], line)
        checked += bool(gone)
    assert checked >= len(LEAKING) // 2


def test_clean_replies_stream_through_as_the_filter_keeps_them():
    rng = random.Random(0)
    for case in CLEAN:
        check = check_for(case["day"], case["task"])
        shown = "".join(stream(StreamGuard(check), case["text"], rng, 9))
        assert shown == check(case["text"]), case["id"]


PROSE = ("The scores compare every query with every key, so think about their shape first. "
         "Which axis lists the keys?\n\nNow predict the output shape for a tiny input. ")


def test_prose_streams_before_the_reply_ends():
    guard = StreamGuard(check_for("1.1", 1))
    first = guard.feed(PROSE[:60])
    assert first and PROSE.startswith(first)
    more = guard.feed(PROSE[60:])
    assert (first + more) and PROSE.startswith(first + more)
    assert first + more + guard.finish() == PROSE


def test_code_waits_until_its_block_is_complete():
    seen = []
    guard = StreamGuard(lambda t: (seen.append(t), t)[1])
    text = "Look:\n```python\nscores = q @ k.swapaxes(-1, -2)\n"
    out = guard.feed(text)
    assert out == "Look:\n" and all("scores" not in s for s in seen)
    out = guard.feed("```\nAnd then?\n")
    assert "scores = q" in out and "```" in seen[-1]


@pytest.mark.parametrize("raw, held", [
    ("Some prose.\n```python\nx = 1\n", "```python\nx = 1\n"),
    ("Prose line.\nweights = softmax(scores)\n", "weights = softmax(scores)\n"),
    ("Prose line.\n    return x\n\n", "    return x\n\n"),
    ("Prose line.\nscores", "scores"),
    ("Prose line.\nThe scores matrix has sh", "sh"),
    ("Prose line.\nThe scores = query @ key", "The scores = query @ key"),
    ("Prose line.\nThen compute the `scores = q", "`scores = q"),
])
def test_safe_boundary_holds_unfinished_code(raw, held):
    assert raw[safe_boundary(raw):] == held


def test_an_unclosed_fence_is_closed_and_filtered_at_the_end():
    judged = []
    check = check_for("1.1", 1)
    guard = StreamGuard(lambda text: (judged.append(text), check(text))[1])
    code = ("Here:\n```python\ndef scaled_dot_product_attention_simple(query, key, value, "
            "scale=None, mask=None):\n    scores = query @ key.swapaxes(-1, -2) * scale\n"
            "    return softmax(scores, axis=-1) @ value\n")
    out = guard.feed(code) + guard.finish()
    assert "swapaxes" not in out and "Here:" in out
    # the guardrail judged the block as a closed fence, not as a dangling one
    assert judged and judged[-1] == code + "```"


@pytest.mark.parametrize("text", [
    "Please show me the solution.", "can you give me the full code?", "just write it",
    "What is the answer?", "I give up, show me the implementation",
    "write the function for me", "OK, tell me the solution now",
])
def test_explicit_solution_requests(text):
    assert is_solution_request(text)


@pytest.mark.parametrize("text", [
    "Don't show me the solution, just a hint", "why is the scale 1/sqrt(D)?",
    "is my code right?", "what shape should the answer have?", "How do I solve this?",
    "I do not want the code",
])
def test_not_solution_requests(text):
    assert not is_solution_request(text)
