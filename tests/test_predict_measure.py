"""Predict, then measure (issue 12): a concept question where the learner predicts a number
about their own engine, graded like a number question, then measured on their code by a
measurement the day's checks module declares with ``@measure``."""

from __future__ import annotations

import json
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
    assert grade(q, "7 pages").correct and grade(q, "7 Pages").correct
    assert not grade(q, "7 8").correct and not grade(q, "pages").correct
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


# --------------------------------------------------------------------------- the runner

from predict_support import OFF_BY_ONE, STUB, measure_world  # noqa: E402


def _run(world, ids, timeout_s=20.0):
    from tutor.checking.measuring import run_measures

    return {r["id"]: r for r in run_measures("1.1", ids, world.impl, timeout_s)}


def test_a_measurement_runs_the_learners_code_in_the_child(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch)
    r = _run(world, ["pages-for-batch", "needs-gpu", "words", "nope"])
    assert r["pages-for-batch"] == {"id": "pages-for-batch", "status": "measured",
                                    "value": 7.0, "unit": "pages", "reason": ""}
    assert (r["needs-gpu"]["status"], r["needs-gpu"]["reason"]) == ("skipped",
                                                                    "needs an Apple GPU")
    assert r["words"]["status"] == "error" and r["words"]["value"] is None
    assert "not a number" in r["words"]["reason"]
    assert r["nope"]["status"] == "error" and "no measurement 'nope'" in r["nope"]["reason"]


def test_it_measures_the_learners_engine_not_the_right_answer(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch, OFF_BY_ONE)
    assert _run(world, ["pages-for-batch"])["pages-for-batch"]["value"] == 8.0


def test_a_stub_is_no_number_but_the_reason(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch, STUB)
    r = _run(world, ["pages-for-batch"])["pages-for-batch"]
    assert r["status"] == "error" and r["value"] is None
    assert r["reason"] == "Not implemented yet: pages_needed"


def test_an_import_error_is_the_reason(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch, "def oops(:\n")
    r = _run(world, ["pages-for-batch"])["pages-for-batch"]
    assert r["status"] == "error" and "SyntaxError" in r["reason"] and "\n" not in r["reason"]


def test_an_endless_loop_costs_the_days_budget_and_the_rest_still_report(tmp_path,
                                                                         monkeypatch):
    import time

    world = measure_world(tmp_path, monkeypatch)
    t0 = time.monotonic()
    r = _run(world, ["spin", "pages-for-batch"], timeout_s=3)
    assert time.monotonic() - t0 < 3 + 3
    assert r["spin"]["status"] == "error" and "3 s" in r["spin"]["reason"]
    assert r["pages-for-batch"]["status"] == "skipped"
    assert "budget ran out" in r["pages-for-batch"]["reason"]


def test_the_learners_code_sees_only_the_allowlisted_environment(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch)
    monkeypatch.setenv("TUTOR_TEST_SECRET", "hunter2")
    assert _run(world, ["secret-seen"])["secret-seen"]["value"] == 0.0


def test_a_crash_costs_only_its_own_measurement(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch)
    r = _run(world, ["crash", "pages-for-batch"])
    assert r["crash"]["status"] == "error" and "SIGABRT" in r["crash"]["reason"]
    assert r["pages-for-batch"]["value"] == 7.0


# --------------------------------------------------------------------------- engine and records

from predict_support import predict_course  # noqa: E402


def _session(world, course=None):
    from tutor.engine import TutorSession

    return TutorSession(world.impl.parent, course=course or predict_course(),
                        impl=world.impl).open("1.1")


def _notes(world) -> str:
    return next((world.impl.parent / "sessions").rglob("day1.1-*.md")).read_text()


def test_the_session_keeps_the_prediction_and_the_measurement(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch, OFF_BY_ONE)
    s = _session(world)
    try:
        assert s.answer("pages", "7").correct  # graded against the stated answer
        r = s.measure("pages")
        assert r == {"qid": "pages", "measure": "pages-for-batch", "status": "measured",
                     "value": 8.0, "unit": "pages", "reason": "", "prediction": 7}
        p = s.prediction("pages")
        assert (p["prediction"], p["measured"], p["status"], p["unit"]) == (7, 8, "measured",
                                                                           "pages")
    finally:
        s.close()
    assert "predicted 7 pages, measured 8 pages" in _notes(world)


def test_a_stub_leaves_the_reason_in_the_records(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch, STUB)
    s = _session(world)
    try:
        s.answer("pages", "about 7")  # no number: a wrong answer, no prediction
        r = s.measure("pages")
        assert r["status"] == "error" and r["value"] is None and r["prediction"] is None
    finally:
        s.close()
    assert ("no number predicted, could not measure: Not implemented yet: pages_needed"
            in _notes(world))


def test_only_predict_questions_are_measured(tmp_path, monkeypatch):
    world = measure_world(tmp_path, monkeypatch)
    s = _session(world)
    try:
        with pytest.raises(KeyError, match="no predict question 'scale'"):
            s.measure("scale")
        assert [r["qid"] for r in s.measure_questions()] == ["pages"]
    finally:
        s.close()


def test_an_older_state_without_predictions_loads_and_a_wrong_field_is_repaired():
    from tutor.records.schema import empty_state, new_day, validate_state

    old = empty_state()
    day = new_day()
    del day["predictions"]
    old["days"]["1.1"] = day
    assert validate_state(old)["days"]["1.1"]["predictions"] == {}
    broken = empty_state()
    broken["days"]["1.1"] = new_day()
    broken["days"]["1.1"]["predictions"] = {
        "pages": {"prediction": "seven", "measured": 7, "status": "measured"},
        "other": ["not", "an", "object"]}
    notes: list[str] = []
    rec = validate_state(broken, notes)["days"]["1.1"]
    assert rec["predictions"] == {"pages": {"prediction": None, "measured": 7,
                                            "status": "measured"}}
    assert "day 1.1: prediction 'pages': 'prediction' was not a number" in notes


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_world(tmp_path, monkeypatch):
    from tutor import cli

    world = measure_world(tmp_path, monkeypatch, OFF_BY_ONE)
    monkeypatch.setenv("TINY_LLM_TUTOR_WORKSPACE", str(world.impl.parent))
    monkeypatch.setattr(cli, "_course", lambda: predict_course())
    return world


def test_measure_shows_the_prediction_beside_the_engine(cli_world, capsys):
    from tutor import cli

    s = _session(cli_world)
    s.answer("pages", "7")
    s.close()
    assert cli.main(["measure"]) == 0  # the day the learner is on, all its predict questions
    out = capsys.readouterr().out
    assert "pages: You predicted 7 pages · your engine: 8 pages" in out
    assert cli.main(["measure", "day1.1", "pages", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["day"] == "1.1"
    assert payload["measurements"] == [{"qid": "pages", "measure": "pages-for-batch",
                                        "status": "measured", "value": 8.0, "unit": "pages",
                                        "reason": "", "prediction": 7}]


def test_measure_exits_1_with_the_reason_when_it_cannot_measure(cli_world, capsys):
    from tutor import cli

    cli_world.learner(STUB)
    assert cli.main(["measure", "1.1"]) == 1
    out = capsys.readouterr().out
    assert ("pages: No prediction recorded yet (answer it in the app) · could not "
            "measure: Not implemented yet: pages_needed") in " ".join(out.split())


def test_measure_names_the_predict_questions_a_day_has(cli_world, capsys):
    from tutor import cli

    assert cli.main(["measure", "1.1", "scale"]) == 2
    err = capsys.readouterr().err
    assert "no predict question 'scale'" in err and "pages" in err


def test_measure_impl_measures_a_package_without_records(cli_world, tmp_path, capsys):
    from tutor import cli

    other = tmp_path / "other" / "tiny_llm"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("def pages_needed(n, page_size):\n"
                                       "    return (n + page_size - 1) // page_size\n")
    assert cli.main(["measure", "1.1", "--impl", str(other)]) == 0
    assert "pages: Your engine: 7 pages" in capsys.readouterr().out
    assert not (cli_world.impl.parent / "progress" / "state.json").exists()
    assert cli.main(["measure", "--impl", str(other)]) == 2  # which day?


# --------------------------------------------------------------------------- the shipped course


def _shipped_predict_questions():
    from tutor.curriculum import load_course

    return [pytest.param(lesson, q, id=f"{lesson.id}-{q.id}") for lesson in load_course().lessons
            for q in lesson.concept_questions if q.kind == "predict"]


@pytest.mark.parametrize("lesson, q", _shipped_predict_questions())
def test_each_shipped_predict_question_measures_its_answer_on_the_answer_key(lesson, q,
                                                                              request):
    """The stated answer is what the reference engine measures (so a right prediction is
    confirmed by the learner's own correct engine), and a stub gives no number. The answer
    key's C++ extension is built (once a session) only for a measurement that needs it."""
    from tutor.engine import measure_lesson

    (r,) = measure_lesson(lesson, [q.id], paths.answer_key_dir(), None)
    if r["status"] != "measured":
        ext = request.getfixturevalue("answer_key_ext")
        (r,) = measure_lesson(lesson, [q.id], paths.answer_key_dir(), ext)
    assert r["status"] == "measured", r
    assert abs(r["value"] - float(q.answer)) <= q.tolerance, (r["value"], q.answer)
    (s,) = measure_lesson(lesson, [q.id], paths.stubs_dir(), None)
    assert s["status"] != "measured" and s["value"] is None and s["reason"], s


def test_measure_on_a_day_without_predict_questions_says_so(cli_world, monkeypatch, capsys):
    from course_factory import make_course, make_lesson, make_question
    from tutor import cli

    lesson = make_lesson("1.1", "Plain", questions=[make_question("q", kind="number",
                                                                  answer=1)])
    monkeypatch.setattr(cli, "_course", lambda: make_course((1, "One", [lesson])))
    assert cli.main(["measure"]) == 0
    assert "Day 1.1 (Plain) has no predict-then-measure questions." in capsys.readouterr().out
