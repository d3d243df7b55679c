"""The app's predict card: graded as a number, then "measuring on your code…", then the
prediction beside the learner's engine (or why it could not be measured), on a small test
course whose checks module has only measurements (tests/predict_support.py)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from predict_support import OFF_BY_ONE, STUB, measure_world, predict_course
from tui_support import flat, screen_text, settle, wait_until
from tutor.engine import TutorSession
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.widgets import LessonTree, QuestionCard

from tui_support import offline  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("offline")
SIZE = (100, 32)


@pytest.fixture
def opened(tmp_path, monkeypatch):
    sessions = []

    def _open(source=OFF_BY_ONE, course=None):
        world = measure_world(tmp_path, monkeypatch, source)
        s = TutorSession(world.impl.parent, course=course or predict_course(),
                         impl=world.impl).open("1.1")
        sessions.append(s)
        return s

    yield _open
    for s in sessions:
        s.close()


def app_for(session) -> TutorApp:
    return TutorApp(session, coach=CoachLink(session, factory=lambda s: None), blink=False)


def card(app, qid: str) -> QuestionCard:
    return next(c for c in app.query(QuestionCard) if c.question.id == qid)


def card_text(app, qid: str) -> str:
    from rich.console import Console
    import io

    console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
    for w in card(app, qid).children:
        if w.display and hasattr(w, "content"):
            console.print(w.content)
    return flat(console.export_text())


async def _answer_pages(pilot, text: str) -> None:
    app = pilot.app
    app.set_focus(app.query_one("#answer-pages", Input))
    await pilot.press(*text, "enter")


async def test_a_prediction_is_graded_then_measured_on_the_learners_engine(opened):
    s = opened()
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "(in pages; then it is measured on your code)" in card_text(app, "pages")
        await _answer_pages(pilot, "7")
        await wait_until(pilot, lambda: "Right." in card_text(app, "pages"), 5, "the grade")
        await wait_until(pilot, lambda: app.measurements == 1, 30, "the measurement")
        await pilot.pause()
        text = card_text(app, "pages")
        assert "✓ Right." in text
        assert "You predicted 7 pages · your engine: 8 pages" in text
        assert "measuring on your code" not in text
        assert app.errors == []
    assert s.prediction("pages")["measured"] == 8


async def test_measuring_shows_while_the_learners_code_runs(opened, monkeypatch):
    import threading

    s = opened()
    gate = threading.Event()
    real = s.measure_questions

    def held(*a, **kw):
        gate.wait(10)
        return real(*a, **kw)

    monkeypatch.setattr(s, "measure_questions", held)
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _answer_pages(pilot, "9")
        await wait_until(pilot, lambda: "measuring on your code…" in card_text(app, "pages"),
                         5, "the measuring line")
        assert "Not quite: the answer is 7 pages" in card_text(app, "pages")
        gate.set()
        await wait_until(pilot, lambda: app.measurements == 1, 30, "the measurement")
        assert "You predicted 9 pages · your engine: 8 pages" in card_text(app, "pages")


async def test_a_stub_is_the_reason_not_a_number(opened):
    s = opened(STUB)
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _answer_pages(pilot, "7")
        await wait_until(pilot, lambda: app.measurements == 1, 30, "the measurement")
        assert ("You predicted 7 pages · could not measure: Not implemented yet: pages_needed"
                in card_text(app, "pages"))


async def test_a_failing_measurement_worker_is_a_visible_message(opened, monkeypatch):
    s = opened()

    def broken(*a, **kw):
        raise RuntimeError("the records are on fire")

    monkeypatch.setattr(s, "measure_questions", broken)
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await _answer_pages(pilot, "7")
        await wait_until(pilot, lambda: app.measurements == 1, 10, "the error on the card")
        assert "could not measure: RuntimeError: the records are on fire" in card_text(app, "pages")
        assert any("measuring your engine" in e for e in app.errors)


async def test_the_last_measurement_is_shown_again_when_the_day_is_reopened(opened):
    s = opened()
    s.answer("pages", "7")
    s.measure("pages")
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "✓ answered right" in card_text(app, "pages")
        assert "You predicted 7 pages · your engine: 8 pages" in card_text(app, "pages")


async def test_esc_after_a_right_answer_leaves_the_keys_to_the_app(opened):
    """The focus race of issue 10: a right answer moves the focus to the next open box at
    once, before its own box is disabled (disabling the focused box made Textual pick a
    focus of its own, and the app's move came a refresh later), and Esc takes it to the
    tree at once: so the next key is a command, whatever the load. Checked in the same
    step as the handlers, with no refresh in between: that is where the race was."""
    s = opened()
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.set_focus(app.query_one("#answer-scale", Input))
        app._answered(QuestionCard.Answered(card(app, "scale"), "1/8"))
        assert app.focused is app.query_one("#answer-pages", Input)
        assert app.query_one("#answer-scale", Input).disabled
        await app.action_cancel()
        assert isinstance(app.focused, LessonTree)
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.focused, LessonTree)
        await pilot.press("c")  # a command now, not text for the box
        assert app.query_one("#answer-pages", Input).value == ""
        await app.workers.wait_for_complete()


async def test_a_measurement_taken_before_any_prediction_stays_hidden_on_the_card(opened):
    """`measure` run in a shell before answering records the engine's number; the card,
    still waiting for a prediction, must not show it (it would be the answer)."""
    s = opened()
    s.measure("pages")
    app = app_for(s)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "your engine" not in card_text(app, "pages")
        await _answer_pages(pilot, "7")
        await wait_until(pilot, lambda: "your engine: 8 pages" in card_text(app, "pages"))
