"""What a day is made of (CONTRIBUTING.md, "Adding a day"): every lesson of the course has
its checks module, its mistake catalogue, its answer key and a self-test for its week, and
nothing of the kind is left over without a lesson. The course is the one list of days: the
tests that run every day take their days from it. These look at files only; the week
self-tests (tests/test_week{1,2}_selftest.py) run the checks."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

from tutor import paths
from tutor.curriculum import load_course, references

REPO = Path(__file__).resolve().parents[1]
COURSE = load_course()
LESSONS = COURSE.lessons


def _catalogue(day: str) -> Path:
    return paths.checks_dir() / "mistakes" / f"day{day.replace('.', '_')}.yaml"


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_a_lessons_mistakes_are_catalogued_for_its_pitfalls(lesson):
    path = _catalogue(lesson.id)
    assert path.is_file(), f"day {lesson.id} has no mistake catalogue ({path})"
    assert "CONTRIBUTING.md" in "".join(path.read_text().splitlines(keepends=True)[:2])
    entries = yaml.safe_load(path.read_text())
    assert entries, path
    for e in entries:
        assert e["day"] == lesson.id, (path.name, e["id"])
        assert lesson.pitfall(e["id"]), f"{path.name}: {e['id']!r} is not a pitfall of {lesson.id}"


@pytest.mark.parametrize("lesson", LESSONS, ids=[x.id for x in LESSONS])
def test_the_answer_key_has_what_each_task_asks_for(lesson):
    for task in lesson.tasks:
        for edit in task.edits:
            if not edit.path.startswith("impl/"):
                continue  # kernels: the answer key's extension, built by the self-tests
            key = paths.answer_key_dir() / edit.path.removeprefix("impl/")
            assert key.is_file(), f"day {lesson.id} task {task.id}: no answer key {key}"
            if edit.symbol:
                assert not references.missing_symbol(key, edit.symbol), (lesson.id, edit)


def test_every_week_has_a_self_test():
    for week in COURSE.weeks:
        test = REPO / "tests" / f"test_week{week.number}_selftest.py"
        assert test.is_file(), f"week {week.number} has days but no {test.name}"


def test_no_checks_module_or_catalogue_without_a_lesson():
    days = {x.id for x in LESSONS}
    modules = {f"{p.parent.name[4:]}.{p.stem.split('_')[1]}"
               for p in paths.checks_dir().glob("week*/day*_*.py")}
    catalogues = {p.stem[3:].replace("_", ".")
                  for p in (paths.checks_dir() / "mistakes").glob("day*.yaml")}
    assert modules - days == set() and catalogues - days == set()


def test_checks_modules_take_their_day_from_their_name():
    """No module says its day itself (``DAY = "2.6"``, ``@check(DAY, ...)``): its name does."""
    for p in paths.checks_dir().glob("week*/day*_*.py"):
        text = p.read_text()
        assert not re.search(r"^DAY\s*=", text, re.M), p
        decls = references.check_decls(p)
        assert decls and all(cid for cid, _task, _line in decls), p


# --------------------------------------------------------------------------- the harness


@pytest.fixture
def harness():
    from checks import harness

    before = {day: list(specs) for day, specs in harness.REGISTRY.items()}
    yield harness
    harness.REGISTRY.clear()
    harness.REGISTRY.update(before)


@pytest.mark.parametrize("name, day", [
    ("checks.week2.day2_6", "2.6"),
    ("_tutor_checks.week1.day1_1", "1.1"),
    ("week3.day3_12", "3.12"),
])
def test_a_modules_day_is_its_name(harness, name, day):
    assert harness.day_of_module(name) == day


@pytest.mark.parametrize("name", ["checks.week2.probes", "checks.week3.day2_1", "day2_6",
                                  "checks.week2.day2_6.extra"])
def test_a_check_outside_a_day_module_is_refused(harness, name):
    with pytest.raises(ValueError, match="weekW.dayW_D"):
        harness.day_of_module(name)


def test_a_check_registers_under_its_modules_day(harness):
    def fn(ctx):
        return {}

    fn.__module__ = "_tutor_checks.week3.day3_2"
    assert harness.check("a-check", 2, "A check", symbols=("f",))(fn) is fn
    [spec] = harness.REGISTRY["3.2"]
    assert (spec.day, spec.id, spec.task, spec.title, spec.fn, spec.symbols) == \
        ("3.2", "a-check", 2, "A check", fn, ("f",))
    fn.__module__ = "checks.week3.helpers"
    with pytest.raises(ValueError):
        harness.check("b-check", 1, "B")(fn)


def test_the_checks_modules_declare_what_the_registry_holds():
    """The lesson is validated against the modules' text; importing them gives the same
    (id, task) pairs, in the same order."""
    from checks import harness

    for lesson in LESSONS:
        module = references.checks_module(paths.checks_dir(), lesson.id)
        importlib.import_module(f"checks.{module.parent.name}.{module.stem}")
        got = [(s.id, s.task) for s in harness.REGISTRY[lesson.id]]
        want = [(cid, task) for cid, task, _line in references.check_decls(module)]
        assert got == want, lesson.id
