"""Snapshots (pytest-textual-snapshot) of the main screens at 100x32 (and the lesson and a
concept question at 80x24), theme textual-dark, blinking off, in temp workspaces with fixed
check results from a fake runner and a scripted coach: nothing in them depends on time or
paths.

Regenerate after a deliberate UI change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the report first.
"""

from __future__ import annotations

import time

import pytest

from tui_support import (FakeRunner, failing_result, make_workspace, open_session,
                         passing_result, scripted, seed_history, settle, wait_until)
from tutor.checking.runner import run_day as _real_run_day  # before any test patches it
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink

SIZE = (100, 32)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")
    monkeypatch.delenv("TINY_LLM_TUTOR_WORKSPACE", raising=False)
    monkeypatch.setenv("EDITOR", "true")


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path)


@pytest.fixture
def opened():
    sessions = []

    def _open(ws, target="week1"):
        s = open_session(ws, target)
        sessions.append(s)
        return s

    yield _open
    for s in sessions:
        s.close()


def app_for(session) -> TutorApp:
    return TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)


def test_lesson_screen(snap_compare, ws, opened):
    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=settle)


def test_lesson_screen_at_80x24(snap_compare, ws, opened):
    assert snap_compare(app_for(opened(ws)), terminal_size=(80, 24), run_before=settle)


def test_a_brings_the_concept_question_and_its_feedback_into_view(snap_compare, ws, opened):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("a", *"0.5", "enter")
        await settle(pilot)
        # scrolled to the card by a, and again once its feedback has grown it
        await wait_until(pilot, lambda: pilot.app.reveals == 2, 5, "the card in view")

    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)


def test_a_brings_the_concept_question_into_view_at_80x24(snap_compare, ws, opened):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await wait_until(pilot, lambda: pilot.app.reveals == 1, 5, "the card in view")

    assert snap_compare(app_for(opened(ws)), terminal_size=(80, 24), run_before=run_before)


def test_check_results_with_diagnosis_and_every_icon(snap_compare, ws, opened, monkeypatch):
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(failing_result))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)

    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)


def test_check_run_in_progress(snap_compare, ws, opened, monkeypatch):
    runner = FakeRunner(failing_result, hold=True, hold_max_s=5.0)
    monkeypatch.setattr("tutor.checking.runner.run_day", runner)

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("c")
        deadline = time.monotonic() + 10
        while not (pilot.app._live and pilot.app._live["done"]):
            assert time.monotonic() < deadline, "no progress event"
            await pilot.pause(0.02)
        await pilot.pause()

    try:
        assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)
    finally:
        runner.release()


def test_celebration_asks_for_an_insight(snap_compare, ws, opened, monkeypatch):
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(passing_result))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)

    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)


def test_coach_chat_with_a_hint_and_a_reply(snap_compare, ws, opened):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        await pilot.press("?", *"why scale the scores?", "enter")
        await settle(pilot)

    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)


def test_progress_screen(snap_compare, ws, opened):
    seed_history(ws)

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()

    assert snap_compare(app_for(opened(ws)), terminal_size=SIZE, run_before=run_before)


def test_progress_screen_ideas_and_chart_at_80x24(snap_compare, ws, opened):
    """The mastery picture under the table: a mastered idea (1.1 passes, its two concept
    questions answered right), a shaky one (the diagnosed missing scale), the rest in one
    line; the most frequent mistakes, the review queue and the time/runs chart."""
    from datetime import datetime, timezone

    from tutor.curriculum import load_course
    from tutor.records.state import StateStore

    seed_history(ws)
    t = datetime(2025, 3, 1, 10, 30, tzinfo=timezone.utc)
    with StateStore(ws, course=load_course()) as st:
        st.record_concept_answer("1.1", "softmax-axis", "each query's row", True, now=t)
        st.record_concept_answer("1.1", "score-shape", "L by S", True, now=t)

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("t")
        await pilot.pause()
        pilot.app.screen.query_one("#ideas-title").scroll_visible(top=True, animate=False)
        await pilot.pause()

    assert snap_compare(app_for(opened(ws)), terminal_size=(80, 24), run_before=run_before)


def test_a_predict_card_with_the_measurement_at_80x24(snap_compare, tmp_path, monkeypatch):
    """A prediction beside the learner's engine (a test course whose checks module has a
    measurement, and a learner package that is one page off: tests/predict_support.py)."""
    from predict_support import OFF_BY_ONE, measure_world, predict_course
    from tutor.engine import TutorSession

    world = measure_world(tmp_path, monkeypatch, OFF_BY_ONE)
    session = TutorSession(world.impl.parent, course=predict_course(),
                           impl=world.impl).open("1.1")

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("a", *"1/8", "enter")  # right: the focus moves on to the next card
        await pilot.press("7", "enter")
        await wait_until(pilot, lambda: pilot.app.measurements == 1, 30, "the measurement")
        await settle(pilot)
        await wait_until(pilot, lambda: pilot.app.reveals >= 4, 5, "the card in view")
        await settle(pilot)

    try:
        assert snap_compare(app_for(session), terminal_size=(80, 24), run_before=run_before)
    finally:
        session.close()


_REAL_TOP_LEFT: dict = {}


def _top_left_mask_result(lesson) -> dict:
    """Day 1.3 with the catalogued top-left causal mask, from a real run of the hidden
    checks on the mutated answer key (once per session); only the durations are pinned so
    the screen does not depend on the machine's speed."""
    import copy
    from pathlib import Path
    from tempfile import mkdtemp

    from mutation import apply_mutation, load_mutations

    from tutor import paths

    if "result" not in _REAL_TOP_LEFT:
        entry = next(e for e in load_mutations(paths.checks_dir() / "mistakes" / "day1_3.yaml")
                     if e["id"] == "causal-mask-top-left")
        impl = apply_mutation(paths.answer_key_dir(), entry, Path(mkdtemp()))
        result = _real_run_day(lesson.id, impl, 120)
        result["duration_s"] = 1.0
        result["impl"] = "/impl"
        for c in result["checks"]:
            c["duration_s"] = 0.1
        _REAL_TOP_LEFT["result"] = result
    return copy.deepcopy(_REAL_TOP_LEFT["result"])


def test_a_failed_check_s_difference_map_at_80x24(snap_compare, ws, opened, monkeypatch):
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(_top_left_mask_result))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)

    assert snap_compare(app_for(opened(ws, "1.3")), terminal_size=(80, 24),
                        run_before=run_before)


def test_the_top_left_mask_s_triangle_in_the_checks_tab_at_80x24(snap_compare, ws, opened,
                                                                  monkeypatch):
    """The attention check's map (values = the identity: the weights) scrolled into view."""
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(_top_left_mask_result))

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("end")
        for _ in range(4):
            await pilot.press("k")
        await settle(pilot)

    assert snap_compare(app_for(opened(ws, "1.3")), terminal_size=(80, 24),
                        run_before=run_before)
