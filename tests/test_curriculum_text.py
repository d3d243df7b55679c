"""What the lessons say: the hint ladder keeps asking until its last rung, the letters and
facts agree with the rest of the course, and every lesson links to the edition of the book
the tutor follows."""

from __future__ import annotations

import re

import pytest

from tutor import paths
from tutor.curriculum import HINT_RUNGS, load_course

COURSE = load_course()
LESSONS = [pytest.param(x, id=x.id) for x in COURSE.lessons]


def _texts(lesson):
    """Every piece of learner-facing text in a lesson, with where it is."""
    yield "title", lesson.title
    for i, o in enumerate(lesson.objectives):
        yield f"objectives[{i}]", o
    for c in lesson.concepts:
        yield f"concept {c.name!r}", c.explanation
    for t in lesson.tasks:
        yield f"task {t.id} description", t.description
        for i, g in enumerate(t.guiding_questions):
            yield f"task {t.id} guiding_questions[{i}]", g
        for i, h in enumerate(t.hints):
            yield f"task {t.id} hints[{i}]", h
    for q in lesson.concept_questions:
        yield f"question {q.id}", " ".join([q.prompt, *q.options, q.explanation])
    for p in lesson.pitfalls:
        yield f"pitfall {p.id}", f"{p.symptom} {p.question}"


# --------------------------------------------------------------------------- the ladder


@pytest.mark.parametrize("lesson", LESSONS)
def test_every_rung_below_the_plan_ends_with_a_question(lesson):
    """Rungs 1-3 give a nudge and then hand the thinking back to the learner; only the
    last rung is the plain-language plan."""
    for t in lesson.tasks:
        assert len(t.hints) == HINT_RUNGS
        for rung, text in enumerate(t.hints[:-1], 1):
            assert text.rstrip().endswith("?"), (
                f"{lesson.source}: task {t.id} rung {rung} must end with a question the "
                f"learner answers: {text[-80:]!r}")
        assert t.hints[-1].lstrip().startswith("Plain-language"), (
            f"{lesson.source}: task {t.id} rung {HINT_RUNGS} is the plain-language plan")


# --------------------------------------------------------------------------- facts


def _cxx_standard() -> str:
    text = (paths.kernels_dir() / "CMakeLists.txt").read_text()
    return re.search(r"CMAKE_CXX_STANDARD\s+(\d+)", text).group(1)


def test_lessons_name_the_cxx_standard_the_build_uses():
    want = _cxx_standard()
    seen = []
    for lesson in COURSE.lessons:
        for where, text in _texts(lesson):
            for got in re.findall(r"C\+\+(\d\d)", text):
                seen.append(got)
                assert got == want, f"{lesson.source} {where}: says C++{got}, the build uses C++{want}"
    assert seen, "the toolchain lesson names the C++ standard"


def test_linux_is_not_called_cpu_only():
    """MLX has a CUDA backend on Linux; what is Apple-only is the course's Metal kernels."""
    for lesson in COURSE.lessons:
        for where, text in _texts(lesson):
            assert not re.search(r"CPU[- ]only", text, re.I), f"{lesson.source} {where}"
            assert not re.search(r"Linux, MLX runs on the CPU", text), f"{lesson.source} {where}"


def test_head_dimension_is_always_d():
    """Day 1.1 defines E as the hidden size and D as the head dimension; no lesson may use
    E for the head dimension (the flash attention chapter of the book does)."""
    for lesson in COURSE.lessons:
        for where, text in _texts(lesson):
            flat = " ".join(text.split())
            assert "√E" not in flat, f"{lesson.source} {where}: the scale is 1/√D"
            for m in re.finditer(r"head dim\w*\s*(?:of\s*)?\(?([A-Z])\b", flat):
                assert m.group(1) == "D", f"{lesson.source} {where}: {m.group(0)!r}"
    flash = COURSE.lesson("2.4")
    for where, text in _texts(flash):
        if "writes the head dimension as E" in text:
            continue  # the one line that says how the book names it
        assert not re.search(r"\bE\b", text), f"{flash.source} {where}: uses E"


# --------------------------------------------------------------------------- Socratic order


def _concepts(day: str) -> str:
    return " ".join(" ".join(c.explanation.split()) for c in COURSE.lesson(day).concepts)


@pytest.mark.parametrize("day,answer", [
    ("1.2", "(1, L, 1, D/2)"),                       # how the tables broadcast
    ("1.3", "(N.., H, 1, S, D)"),                    # how K and V broadcast over a group
    ("1.3", "(B, L, heads, D)"),                     # where RoPE goes in Qwen2's attention
    ("2.1", "axis 2"),                               # which axis the cache grows on
    ("2.1", "slice(offset, offset + L)"),            # where the new tokens are rotated
    ("2.1", "single row of zeros"),                  # the decode mask
    ("2.4", "exp(m − m_new)"),                       # the online-softmax rescale factor
    ("2.4", "n / (H_q / H)"),                        # which kv row a query row reads
    ("2.6", "slice(o_0, o_0 + L)"),                  # per-row RoPE slices
    ("2.6", "causal_mask(L, S_i)"),                  # the batch mask
    ("2.6", "mx.eval"),                              # evaluating the caches per chunk
])
def test_concepts_leave_the_specifics_to_the_questions_and_hints(day, answer):
    assert answer not in _concepts(day)


# --------------------------------------------------------------------------- the pitfalls


def test_symptoms_say_what_the_mistake_really_does():
    day11 = COURSE.lesson("1.1").pitfall("mha-heads-not-transposed").symptom
    assert "one head or one token" not in day11 and "more than one head or more than one token" in day11
    day16 = COURSE.lesson("1.6").pitfall("gen-logits-wrong-position").symptom
    assert "same token" in day16 and "appending" in day16
    day21 = COURSE.lesson("2.1").pitfall("kv-offset-not-advanced").symptom
    assert "already holds" not in day21 and "offset" in day21
    day26 = COURSE.lesson("2.6")
    assert "leak" not in day26.pitfall("batch-padded-slot-unmasked").symptom
    right_align = next(q for q in day26.concept_questions if q.id == "why-right-align")
    correct = right_align.options["abcdef".index(right_align.answer)]
    assert "Left alignment would be just as correct" in correct
    assert "up to float16 rounding" in _concepts("2.6")
    assert "identical to a whole-prompt prefill" not in _concepts("2.6")


# --------------------------------------------------------------------------- the book's edition

# The book's live site moved to a Qwen3 edition; the tutor follows the Qwen2 edition at this
# commit of skyzh/tiny-llm, whose chapters are Markdown files under book/src/.
BOOK_COMMIT = "ea4769d"
BOOK_SRC = f"https://github.com/skyzh/tiny-llm/blob/{BOOK_COMMIT}/book/src/"
# `ls book/src/*.md` in the book's repository at that commit.
CHAPTERS_AT_COMMIT = {
    "SUMMARY.md", "copyright.md", "glossary.md", "preface.md", "setup.md",
    "week1-overview.md", "week1-01-attention.md", "week1-02-positional-encodings.md",
    "week1-03-gqa.md", "week1-04-rmsnorm-and-mlp.md", "week1-05-qwen2-model.md",
    "week1-06-generate-response.md", "week1-07-sampling-prepare.md",
    "week2-overview.md", "week2-01-kv-cache.md", "week2-02-quantized-matmul.md",
    "week2-04-flash-attention.md", "week2-06-prefill-and-batch.md",
    "week3-overview.md", "week3-01-paged-attention-part1.md",
    "week3-02-paged-attention-part2.md",
}


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_links_its_chapter_at_the_pinned_commit(lesson):
    assert lesson.chapter.startswith(BOOK_SRC), lesson.chapter
    name = lesson.chapter[len(BOOK_SRC):]
    assert name in CHAPTERS_AT_COMMIT, f"{lesson.source}: no chapter {name} at {BOOK_COMMIT}"
    week, day = lesson.id.split(".")
    if name == f"week{week}-overview.md" and not any(
            c.startswith(f"week{week}-{int(day):02d}-") for c in CHAPTERS_AT_COMMIT):
        return  # a day the book has not written at that commit links its week's overview
    assert name.startswith(f"week{week}-{int(day):02d}-"), f"{lesson.source}: {name}"


def test_course_links_the_book_at_the_pinned_commit():
    assert COURSE.book.startswith(BOOK_SRC)
    assert COURSE.book[len(BOOK_SRC):] in CHAPTERS_AT_COMMIT


def test_every_lesson_says_which_edition_it_follows():
    """One line, the same for every lesson (course.yaml's `edition`): the edition and commit
    the tutor follows, and why the live site's code differs."""
    note = COURSE.edition
    assert note and "\n" not in note.strip()
    for needle in ("Qwen2 edition", BOOK_COMMIT, "Qwen3", "https://skyzh.github.io/tiny-llm/"):
        assert needle in note, needle
    assert {lesson.edition for lesson in COURSE.lessons} == {note}


@pytest.mark.parametrize("lesson", LESSONS)
def test_lesson_view_shows_the_edition(lesson):
    """The TUI's Lesson tab (and `start`, which opens it) renders this view."""
    from tutor.tui import render

    text = " ".join(render.lesson_plain(lesson).split())
    assert " ".join(COURSE.edition.split()) in text
    assert text.index(BOOK_COMMIT) < text.index("Objectives")  # up top, by the chapter link


def test_lessons_command_says_which_edition(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "100"}
    env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    r = subprocess.run([sys.executable, "-m", "tutor", "lessons"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert " ".join(COURSE.edition.split()) in " ".join(r.stdout.split())


def test_coach_prompt_says_which_edition():
    """So the LLM coach can tell a learner why code from the live site looks different."""
    from tutor.coach.context import CoachContext
    from tutor.coach.prompt import build_system_prompt

    lesson = COURSE.lesson("1.3")
    ctx = CoachContext(lesson=lesson, task=lesson.tasks[0], day_record=None, latest_result=None,
                       learner_code="", rung=0)
    assert COURSE.edition in build_system_prompt(ctx, "rules")
