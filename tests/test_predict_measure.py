"""Predict, then measure (issue 12): a concept question where the learner predicts a number
about their own engine, graded like a number question, then measured on their code by a
measurement the day's checks module declares with ``@measure``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tutor import paths
from tutor.curriculum import CurriculumError, load_lesson
from tutor.grading import grade

from course_factory import make_question

LESSON = "week1/day1.1-attention.yaml"

PREDICT = """  - id: pages-guess
    when: after
    kind: predict
    prompt: "page_size 16, requests of 5, 16, 17 and 40 tokens: how many pages?"
    answer: 7
    unit: pages
    measure: {mid}
    explanation: "One page for 5, one for 16, two for 17, three for 40."
"""


@pytest.fixture
def course_copy(tmp_path):
    dest = tmp_path / "curriculum"
    shutil.copytree(paths.curriculum_dir(), dest)
    return dest


@pytest.fixture
def checks_copy(tmp_path, monkeypatch):
    """A copy of day 1.1's checks module with one measurement, as the lesson validator
    sees it (it reads the module's text, never imports it)."""
    checks = tmp_path / "checks"
    (checks / "week1").mkdir(parents=True)
    text = (paths.checks_dir() / "week1" / "day1_1.py").read_text()
    text += ('\n\n@measure("pages-for-batch", unit="pages")\n'
             'def measure_pages(ctx):\n    return 7.0\n')
    (checks / "week1" / "day1_1.py").write_text(text)
    monkeypatch.setattr(paths, "checks_dir", lambda: checks)
    return checks


def _add_predict(lesson: Path, mid: str) -> None:
    text = lesson.read_text()
    text = text.replace("concept_questions:\n", "concept_questions:\n" + PREDICT.format(mid=mid), 1)
    lesson.write_text(text)


def test_a_predict_question_loads_with_its_unit_and_measurement(course_copy, checks_copy):
    f = course_copy / LESSON
    _add_predict(f, "pages-for-batch")
    q = next(q for q in load_lesson(f).concept_questions if q.id == "pages-guess")
    assert (q.kind, q.answer, q.unit, q.measure, q.is_predict) == (
        "predict", 7, "pages", "pages-for-batch", True)


def test_a_predict_question_naming_a_missing_measurement_names_file_and_id(course_copy,
                                                                           checks_copy):
    f = course_copy / LESSON
    _add_predict(f, "pages-for-bacth")
    line = next(i for i, ln in enumerate(f.read_text().splitlines(), 1)
                if "pages-for-bacth" in ln)
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{line}: concept_questions[0].measure: no measurement "
                          "'pages-for-bacth' in "), msg
    assert "week1/day1_1.py" in msg
    assert "pages-for-batch" in msg  # what it has


@pytest.mark.parametrize("old, new, message", [
    ("    measure: pages-for-batch\n", "", "a predict question names the measurement"),
    ("    answer: 7\n", "    answer: seven\n", "a predict question needs a numeric answer"),
    ("    unit: pages\n", "    unit: pages\n    options: [a, b]\n", "only choice questions"),
])
def test_a_broken_predict_question_is_caught(course_copy, checks_copy, old, new, message):
    f = course_copy / LESSON
    _add_predict(f, "pages-for-batch")
    f.write_text(f.read_text().replace(old, new, 1))
    with pytest.raises(CurriculumError, match=message):
        load_lesson(f)


def test_only_predict_questions_have_a_measurement(course_copy):
    f = course_copy / LESSON
    text = f.read_text().replace("    kind: number\n", "    kind: number\n    measure: x\n", 1)
    f.write_text(text)
    with pytest.raises(CurriculumError, match=r"\.measure: only predict questions"):
        load_lesson(f)


def test_a_prediction_is_graded_like_a_number_with_its_unit():
    q = make_question("p", kind="predict", answer=7, unit="pages", measure="m",
                      explanation="Seven.", tolerance=0.0)
    assert grade(q, "7").correct and grade(q, " 7 ").correct
    g = grade(q, "8")
    assert not g.correct and g.expected == "7 pages" and "the answer is 7 pages" in g.feedback


def test_the_harness_registers_a_measurement_per_day():
    import types

    from checks import harness

    mod = types.ModuleType("checks.week9.day9_9")

    def fn(ctx):
        return 3

    fn.__module__ = mod.__name__
    try:
        harness.measure("tokens-per-call", unit="tokens")(fn)
        (spec,) = harness.MEASURES["9.9"]
        assert (spec.day, spec.id, spec.unit, spec.fn) == ("9.9", "tokens-per-call", "tokens", fn)
    finally:
        harness.MEASURES.pop("9.9", None)
