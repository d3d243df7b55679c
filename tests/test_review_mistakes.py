"""Issue 9's bar on held-out mistakes: of mistakes written independently of the catalogue
(tests/fixtures/book_solution/mutants_review_week{1,2,3}.yaml, applied to the book-layout
solution), at least 95% fail their day, none is given a wrong diagnosis, and at least 75%
carry a diagnosis (run with -s to see the table). `python tests/review_mistakes.py -v`
prints the same table with each failing check's message, for judging a new diagnosis by
hand."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from mutation import apply_mutation
from review_mistakes import (BOOK, DIAGNOSIS_BAR, FAIL_BAR, FILES, load, measure, row,
                             summary, summary_text)

from tutor.curriculum import load_course

DAYS = {w.number: [d.id for d in w.days] for w in load_course().weeks}


def _written_lessons(week: int, day: str) -> list:
    from tutor import paths

    return sorted((paths.curriculum_dir() / f"week{week}").glob(f"day{day}-*.yaml"))


def _written_pitfalls(week: int, day: str) -> set[str]:
    import yaml

    return {p["id"] for f in _written_lessons(week, day)
            for p in (yaml.safe_load(f.read_text()) or {}).get("pitfalls") or []}


def _enforce_diagnosis_bar() -> bool:
    # On since the catalogue reached the bar (week 1: 88%, week 2: 89%);
    # REVIEW_DIAGNOSIS_BAR=0 only measures, for work in progress.
    return os.environ.get("REVIEW_DIAGNOSIS_BAR", "1") != "0"


@pytest.mark.parametrize("week", sorted(DAYS))
def test_review_mistakes_are_well_formed(week, tmp_path):
    """Every week of the course has its held-out mistakes, at least four on each day; every
    entry applies to the fixture, sits on a lesson of its week, and its judged pitfalls
    exist in some lesson (a right diagnosis may belong to an earlier day: a RoPE mistake
    made inside the attention layer is still a RoPE mistake)."""
    assert week in FILES, f"week {week} has no held-out review mistakes (see CONTRIBUTING.md)"
    mutants = load(week)
    ids = [m["id"] for m in mutants]
    assert len(ids) == len(set(ids))
    per_day = Counter(m["day"] for m in mutants)
    for day in DAYS[week]:
        assert per_day[day] >= 4, (day, per_day[day])
    course = load_course()
    known = {p.id for lesson in course.lessons for p in lesson.pitfalls}
    for i, m in enumerate(mutants):
        # a day of the week whose lesson is written but not yet in the course is allowed
        # (its mistakes are measured once the course lists it)
        in_course = m["day"] in DAYS[week]
        assert in_course or _written_lessons(week, m["day"]), m["id"]
        assert m["id"].startswith(f"rv{week}-"), m["id"]
        apply_mutation(BOOK, m, tmp_path / str(i))  # each `find` occurs exactly once
        assert isinstance(m.get("expect_pitfalls"), list), m["id"]
        unknown = set(m["expect_pitfalls"]) - known
        if not in_course:
            unknown -= _written_pitfalls(week, m["day"])
        assert not unknown, (m["id"], unknown)


def _check_bars(week: int, outcomes) -> None:
    s = summary(week, outcomes)
    print("\n" + "\n".join(row(o) for o in outcomes) + "\n" + summary_text(s))
    assert s["fail_rate"] >= FAIL_BAR, s["missed"]
    # A named pitfall nobody judged for this mistake: read the check's message
    # (tests/review_mistakes.py -v --id ...) and either fix the diagnosis or, if it is
    # right, add the pitfall to the entry's expect_pitfalls.
    assert not s["wrong"], s["wrong"]
    if _enforce_diagnosis_bar():
        assert s["diagnosis_rate"] >= DIAGNOSIS_BAR, s["undiagnosed"]


def test_review_week1_mistakes(tmp_path):
    _check_bars(1, measure(1, tmp_path))


def test_review_week2_mistakes(tmp_path, answer_key_ext):
    _check_bars(2, measure(2, tmp_path, kernels=answer_key_ext))


def test_review_week3_mistakes(tmp_path, request):
    # Only the days already in the course: a day's held-out mistakes count once its lesson
    # is there (the well-formedness test above asks for them then).
    days = set(DAYS.get(3, []))
    if not days:
        pytest.skip("week 3 has no day in the course yet")
    ids = {m["id"] for m in load(3) if m["day"] in days}
    kernels = request.getfixturevalue("answer_key_ext")  # built only when there is work
    _check_bars(3, measure(3, tmp_path, kernels=kernels, ids=ids))
