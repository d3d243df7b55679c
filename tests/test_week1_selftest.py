"""Week 1's checks, proven on known code: they pass on the answer key, fail on the stubs,
and name every catalogued mistake; a solution written independently for the book's own
package passes, and mistakes written independently of the catalogue are caught."""

from __future__ import annotations

from pathlib import Path
from tempfile import mkdtemp

import pytest
from mutation import apply_mutation, load_mutations, run_ahead, run_each

from tutor import paths
from tutor.checking.runner import run_day
from tutor.curriculum import load_course

REPO = Path(__file__).resolve().parents[1]
DAYS = [d.id for d in load_course().week(1).days]  # as curriculum/course.yaml lists them
TIMEOUT = 120  # generous: the suite may share two cores with other runs
CATALOGUE = load_mutations(*sorted((paths.checks_dir() / "mistakes").glob("day1_*.yaml")))
BOOK = REPO / "tests" / "fixtures" / "book_solution" / "tiny_llm"
BOOK_MUTANTS = REPO / "tests" / "fixtures" / "book_solution" / "mutants.yaml"


def _statuses(result):
    return {c["id"]: c["status"] for c in result["checks"]}


def _only_weights_skipped(result):
    for c in result["checks"]:
        if c["status"] == "skipped":
            assert "hf download" in c["skip_reason"], c
        else:
            assert c["status"] == "pass", c


@pytest.mark.parametrize("day", DAYS)
def test_answer_key_passes_every_check(day):
    result = run_day(day, paths.answer_key_dir(), TIMEOUT)
    assert result["status"] == "pass", result
    _only_weights_skipped(result)


@pytest.mark.parametrize("day", DAYS)
def test_stubs_fail_every_check(day, stub_impl):
    result = run_day(day, stub_impl, TIMEOUT)
    assert result["status"] == "fail"
    for c in result["checks"]:
        assert c["status"] in ("fail", "error", "skipped"), c
        if c["status"] == "skipped":
            assert "hf download" in c["skip_reason"]


def test_every_check_and_pitfall_is_wired_to_a_lesson():
    """Every check id a lesson names exists, and every pitfall the catalogue provokes has
    a guiding question in its lesson."""
    course = load_course()
    for day in DAYS:
        lesson = course.lesson(day)
        result = run_day(day, paths.answer_key_dir(), TIMEOUT)
        ran = {c["id"] for c in result["checks"]}
        named = {cid for t in lesson.tasks for cid in t.checks}
        assert ran == named, (day, ran ^ named)
    for entry in CATALOGUE:
        lesson = course.lesson(entry["day"])
        assert lesson.pitfall(entry["id"]), (entry["day"], entry["id"])


def test_catalogue_covers_the_required_mistakes():
    per_day = {d: [e for e in CATALOGUE if e["day"] == d] for d in DAYS}
    for day, entries in per_day.items():
        need = 3 if day in ("1.6", "1.7") else 4  # a new day catalogues at least four
        assert len(entries) >= need, (day, len(entries))
    ids = [e["id"] for e in CATALOGUE]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", CATALOGUE, ids=[e["id"] for e in CATALOGUE])
def test_catalogued_mistake_fails_and_is_diagnosed(entry, tmp_path, request):
    result = run_ahead(request, entry, lambda e: run_day(
        e["day"], apply_mutation(paths.answer_key_dir(), e, Path(mkdtemp(dir=tmp_path))), TIMEOUT))
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert entry["id"] in diagnosed, (diagnosed, _statuses(result))


@pytest.mark.parametrize("day", DAYS)
def test_book_style_solution_passes(day):
    result = run_day(day, BOOK, TIMEOUT)
    assert result["status"] == "pass", [(c["id"], c["message"]) for c in result["checks"]
                                        if c["status"] != "pass"]
    _only_weights_skipped(result)


def test_independent_mistakes_are_caught(tmp_path):
    """The bar: at least 95% of mistakes written without seeing our catalogue fail."""
    mutants = load_mutations(BOOK_MUTANTS)
    results = run_each(lambda i, m: run_day(m["day"], apply_mutation(BOOK, m, tmp_path / str(i)),
                                            TIMEOUT), mutants)
    caught, missed = 0, []
    for m, result in zip(mutants, results):
        if result["status"] == "fail":
            caught += 1
        else:
            missed.append(m["id"])
    rate = caught / len(mutants)
    print(f"independent mutants caught: {caught}/{len(mutants)} = {rate:.1%}; missed: {missed}")
    assert rate >= 0.95, missed
