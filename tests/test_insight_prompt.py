"""The after-pass prompt for the day's key idea: asked once per day, after the day first
passes (in the app, or with ``check`` in a terminal before the app opens), never on a
failing day, and not again once answered or dismissed -- remembered in the records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tui_support import (FakeRunner, failing_result, open_session,
                         passing_result, scripted, seed_history, settle, wait_until)
from tui_support import offline, ws  # noqa: F401  (fixtures)
from tutor.curriculum import load_course
from tutor.records import recorder
from tutor.records.insights import insight_due, insight_to_ask
from tutor.records.state import new_day
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.screens import InsightScreen

SIZE = (100, 32)
T0 = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)


def iso(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def passed(first_pass: int = 10, **kw) -> dict:
    rec = new_day()
    rec.update(first_activity=iso(0), attempts_total=1, last_result="pass",
               first_pass=iso(first_pass), **kw)
    return rec


# --------------------------------------------------------------------------- the rule


def test_due_once_the_day_passes_until_answered_or_dismissed():
    assert not insight_due(None)
    failing = passed()
    failing["last_result"] = "fail"
    assert not insight_due(failing)  # never on a failing day
    assert insight_due(passed())
    assert not insight_due(passed(insight_skipped=iso(11)))
    assert not insight_due(passed(insights=[{"time": iso(12), "text": "scale"}]))
    # an idea written before the code worked does not answer the after-pass prompt
    assert insight_due(passed(insights=[{"time": iso(5), "text": "a guess"}]))


def test_on_opening_the_current_day_first_then_a_day_passed_outside_the_app():
    state = {"sessions": [{"start": iso(0), "end": iso(30), "days": ["1.1"]}],
             "days": {"1.1": passed(10), "1.2": passed(60), "1.3": passed(50)}}
    assert insight_to_ask(state, "1.1") == "1.1"
    # 1.1 passed in an app session (asked there); 1.2 and 1.3 with `check` later
    assert insight_to_ask(state, "1.4") == "1.2"
    state["days"]["1.2"]["insight_skipped"] = iso(61)
    assert insight_to_ask(state, "1.4") == "1.3"
    state["days"]["1.3"]["last_result"] = "fail"
    assert insight_to_ask(state, "1.4") is None


# --------------------------------------------------------------------------- the app


pytestmark = pytest.mark.usefixtures("offline")




def make_app(session) -> TutorApp:
    return TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)


def check_in_a_terminal(ws, day: str, result_for) -> None:
    """What `tiny-llm-tutor check dayN.M` records, with no tutor open."""
    course = load_course()
    lesson = course.lesson(day)
    recorder.record_check(ws, course, lesson, result_for(lesson))


async def test_a_day_passed_with_check_in_a_terminal_is_asked_about_when_the_app_opens(ws):
    check_in_a_terminal(ws, "1.1", passing_result)
    s = open_session(ws, "week1")  # the first unfinished day: 1.2
    try:
        assert s.lesson.id == "1.2"
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, InsightScreen), 5,
                             "the insight prompt")
            assert app.screen.day == "1.1" and app.screen.passed
            await pilot.press(*"Scores are scaled by 1/sqrt(D).", "enter")
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
        assert s.day_record("1.1")["insights"][-1]["text"] == "Scores are scaled by 1/sqrt(D)."
        assert s.store.current_day == "1.2"  # writing about 1.1 did not move the learner
    finally:
        s.close()
    doc = (ws / "sessions" / "week1" / "day1.1-attention.md").read_text()
    assert "Scores are scaled by 1/sqrt(D)." in doc


async def test_rechecking_a_day_that_passed_earlier_asks_once_and_a_dismissal_is_kept(
        ws, monkeypatch):
    seed_history(ws)  # 1.1 passed in an earlier session, no insight; 1.2 failing
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(passing_result))
    s = open_session(ws, "day1.1")
    try:
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, InsightScreen), 5,
                             "the insight prompt")
            await pilot.press("escape")  # dismissed
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
        assert s.day_record("1.1")["insight_skipped"]
    finally:
        s.close()
    s = open_session(ws, "day1.1")  # a new session remembers the dismissal
    try:
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
            assert app.check_runs == 1
    finally:
        s.close()


async def test_a_recheck_in_the_app_asks_for_a_day_never_asked(ws, monkeypatch):
    seed_history(ws)  # 1.1 passed in an earlier app session that never asked
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(passing_result))
    s = open_session(ws, "week1")
    try:
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert s.lesson.id == "1.2"
            assert not isinstance(app.screen, InsightScreen)  # 1.2 fails; 1.1 was in-app
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            assert isinstance(app.screen, InsightScreen) and app.screen.day == "1.1"
            await pilot.press(*"Softmax over the last axis.", "enter")
            await settle(pilot)
            await pilot.press("c")  # answered: a re-check only says it passes
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
            assert app.check_runs == 2
    finally:
        s.close()


async def test_never_asked_on_a_failing_day(ws, monkeypatch):
    check_in_a_terminal(ws, "1.1", passing_result)
    check_in_a_terminal(ws, "1.1", failing_result)  # passed once, failing now
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(failing_result))
    s = open_session(ws, "day1.1")
    try:
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
            await pilot.press("c")
            await settle(pilot)
            assert not isinstance(app.screen, InsightScreen)
    finally:
        s.close()
