"""The app's spaced review: `r` opens today's due items one card at a time, graded as
concept answers are and rescheduled (tutor.records.review); the Coach tab says at the
start how many are due."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from textual.widgets import Input, Static

from tui_support import no_coach, settle, wait_until  # noqa: F401
from tui_support import offline, ws  # noqa: F401  (fixtures)
from tutor.engine import TutorSession
from tutor.records.state import state_path
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.review_screen import ReviewScreen
from tutor.tui.widgets import ChatLog

from test_tui_app import chat_text, plain, scripted

SIZE = (100, 32)
pytestmark = pytest.mark.usefixtures("offline")


def _app(session) -> TutorApp:
    return TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)


def _wrong_answers_days_ago(ws, days: int = 2) -> None:
    """1.2's first two questions answered wrong ``days`` days ago (the app reads the real
    clock, so the mistakes are placed in the past)."""
    when = datetime.now(timezone.utc) - timedelta(days=days)
    with TutorSession(ws).open("1.2") as s:
        s.answer("first-frequency", "0.5", now=when)
        s.answer("half-split-partner", "4", now=when)


async def test_r_reviews_the_due_items_and_reschedules_them(ws):
    _wrong_answers_days_ago(ws)
    session = TutorSession(ws).open("1.5")
    app = _app(session)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "2 earlier mistakes (spaced review) are due today: press r" in chat_text(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ReviewScreen), 5, "the review")
        screen = app.screen
        title = plain(screen.query_one("#review-title", Static).content)
        assert "Review 1/2" in title and "from day 1.2" in title
        assert "radians" in plain(screen.query_one("#review-prompt", Static).content)
        assert app.focused is screen.query_one("#review-input", Input)
        await pilot.press("1", "enter")  # right
        await wait_until(pilot, lambda: screen.answered == 1, 5, "the first grade")
        fb = plain(screen.query_one("#review-feedback", Static).content)
        assert "Right." in fb and "Next review:" in fb
        await pilot.press("enter")  # next item
        await wait_until(pilot, lambda: screen.index == 1, 5, "the second item")
        assert "feature 1" in plain(screen.query_one("#review-prompt", Static).content)
        await pilot.press("7", "enter")  # wrong
        await wait_until(pilot, lambda: screen.answered == 2, 5, "the second grade")
        fb = plain(screen.query_one("#review-feedback", Static).content)
        assert "Not quite" in fb and "Next review:" in fb
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.reviews_done == 2, 5, "the screen to close")
        assert not isinstance(app.screen, ReviewScreen)
        assert [r["correct"] for r in screen.results] == [True, False]
        await pilot.press("r")  # nothing left today
        await pilot.pause()
        assert not isinstance(app.screen, ReviewScreen)
    session.close()
    items = json.loads(state_path(ws).read_text())["review"]["items"]
    assert items["q:1.2/first-frequency"]["right"] == 1
    assert items["q:1.2/half-split-partner"]["reviews"] == 1
    assert items["q:1.2/half-split-partner"]["right"] == 0


async def test_no_review_note_and_r_says_nothing_is_due_for_a_new_learner(ws):
    session = TutorSession(ws).open("1.1")
    app = _app(session)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "spaced review" not in chat_text(app)
        await pilot.press("r")
        await pilot.pause()
        assert not isinstance(app.screen, ReviewScreen)
    session.close()
