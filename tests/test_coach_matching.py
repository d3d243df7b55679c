"""How well the offline coach's ranking (tutor.coach.match) finds the lesson item a
learner's question is about, measured on the labelled questions in
tests/fixtures/coach_questions/ (one file per lesson; see its README)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tutor.coach import match
from tutor.curriculum import load_course

FIXTURES = Path(__file__).parent / "fixtures" / "coach_questions"
MIN_OVERALL = 0.80


@pytest.fixture(scope="module")
def course():
    return load_course()


def _sets():
    return {d["day"]: d["questions"] for d in
            (yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(FIXTURES.glob("day*.yaml")))}


def test_every_lesson_has_a_labelled_set_with_real_ids(course):
    sets = _sets()
    assert sorted(sets) == sorted(course.day_ids)
    for day, questions in sets.items():
        keys = {it.key for it in match.items(course.lesson(day))}
        assert len(questions) >= 8, day
        assert len({q["ask"] for q in questions}) == len(questions), day
        for q in questions:
            assert {q["expect"], *q.get("also", [])} <= keys, (day, q)


def test_top1_accuracy_per_day_and_overall(course):
    hits = total = late_hits = late_total = 0
    lines = []
    for day, questions in sorted(_sets().items()):
        lesson = course.lesson(day)
        ok = 0
        for q in questions:
            ranked = match.rank(lesson, q["ask"])
            good = bool(ranked) and ranked[0][0].key in {q["expect"], *q.get("also", [])}
            ok += good
            if q.get("late"):  # written after the ranker was tuned: how well it generalises
                late_hits, late_total = late_hits + good, late_total + 1
        lines.append(f"day {day}: {ok}/{len(questions)} = {ok / len(questions):.0%}")
        hits, total = hits + ok, total + len(questions)
    print("\n".join(["", "offline coach top-1 accuracy", *lines,
                     f"overall: {hits}/{total} = {hits / total:.1%}",
                     f"(questions written after tuning: {late_hits}/{late_total})"]))
    assert hits / total >= MIN_OVERALL


def test_the_ranking_folds_the_courses_spellings(course):
    lesson = course.lesson("1.1")
    for msg in ("why divide by the square root of d", "why scale by √D", "why scaling by sqrt(D)"):
        assert match.rank(lesson, msg)[0][0].key == "concept:why-divide-by-d", msg
    assert match.rank(lesson, "") == [] and match.rank(lesson, "the of and") == []
    assert match.tokens("Normalize the KV heads") == ["normalise", "key", "value", "head"]


def test_replies_to_the_labelled_questions_explain_and_ask_without_code_or_echo(course):
    """Every labelled question, asked on each task of its day: the reply passes the
    guardrail untouched and never asks the learner's own question back."""
    from tutor.coach.context import CoachContext
    from tutor.coach.guardrail import filter_reply
    from tutor.coach.offline import OfflineCoach, _is_echo

    coach = OfflineCoach()
    for day, questions in _sets().items():
        lesson = course.lesson(day)
        texts = {it.key: it.text for it in match.items(lesson)}
        for task in lesson.tasks:
            for q in questions:
                ctx = CoachContext(lesson=lesson, task=task, day_record=None, latest_result=None,
                                   learner_code="", rung=0, history=[])
                r = coach.reply(ctx, q["ask"])
                assert r.text.strip() and "```" not in r.text
                assert filter_reply(r.text, lesson=lesson, task=task).removed == 0, (day, q["ask"])
                for key in r.asked:
                    assert not _is_echo(q["ask"], texts[key]), (day, q["ask"], key)
