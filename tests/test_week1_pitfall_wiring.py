"""Every pitfall a week-1 check can name has its symptom and guiding question in that day's
lesson: the tutor looks the question up in the lesson of the day it checked, so a pitfall
named by a check of another day would reach the learner without its question."""

from __future__ import annotations

import ast

import pytest

from tutor import paths
from tutor.curriculum import load_course, references

DAYS = [d.id for d in load_course().week(1).days]


def _all_pitfall_ids(course) -> set[str]:
    return {p.id for d in DAYS for p in course.lesson(d).pitfalls}


@pytest.mark.parametrize("day", DAYS)
def test_pitfalls_named_by_a_days_checks_are_in_its_lesson(day):
    course = load_course()
    known = _all_pitfall_ids(course)
    src = references.checks_module(paths.checks_dir(), day).read_text()
    named = {n.value for n in ast.walk(ast.parse(src))
             if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in known}
    missing = named - {p.id for p in course.lesson(day).pitfalls}
    assert not missing, (day, sorted(missing))
