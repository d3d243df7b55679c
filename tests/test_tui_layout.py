"""What the learner can see and reach at ordinary terminal sizes (issue 10, "In the app"):
the concept question cards come into view with `a`, the page keys scroll the active tab
whatever has focus, the chat line lets go after a question, the key bar lists every key,
and every day's title reads whole in the tree.

Assertions are on the rendered screen (``screen_text``), not on widget contents: a card
that exists but is clipped or scrolled away is exactly the bug these tests are about.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tui_support import (FakeRunner, flat, passing_result, screen_text,
                         scripted, settle, wait_until)
from tui_support import offline, session, ws  # noqa: F401  (fixtures)
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.screens import InsightScreen, ProgressScreen
from tutor.tui.widgets import LessonTree

SIZES = [(100, 32), (80, 24)]
FIRST_QUESTION = "With D = 64 and no scale passed, by what factor are the scores multiplied?"


pytestmark = pytest.mark.usefixtures("offline")




def make_app(session) -> TutorApp:
    return TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)


# a card's left bar and the scrollbars' thumbs, which cut into wrapped sentences
BARS = str.maketrans({c: " " for c in "█▁▂▃▄▅▆▇▔"})


def seen(app) -> str:
    """The words right of the tree (the tabs), wrapped lines joined."""
    lines = screen_text(app).translate(BARS).splitlines()
    return flat(" ".join(line.split("▕", 1)[-1] for line in lines))


async def shows(pilot, text: str, what: str) -> str:
    await wait_until(pilot, lambda: text in seen(pilot.app), 5, what)
    return seen(pilot.app)


# --------------------------------------------------------------------------- concept questions


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_shows_the_question_its_answer_box_and_the_feedback(session, size):
    app = make_app(session)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        assert FIRST_QUESTION not in seen(app)  # the lesson comes first
        await pilot.press("a")
        screen = await shows(pilot, FIRST_QUESTION, "the first question on screen")
        assert "your answer · Enter submits" in screen
        await pilot.press(*"0.5", "enter")
        screen = await shows(pilot, "✗ Not quite: the answer is 0.125.", "the feedback")
        assert FIRST_QUESTION in screen  # still beside its feedback
        app.query_one("#answer-scale-value", Input).value = ""
        await pilot.press(*"1/8", "enter")
        screen = await shows(pilot, "query is (N, H, L, D) and key is (N, H, S, D).",
                             "the next question")
        assert "✓ Right." in screen  # the answer just graded stays in view too


async def test_after_coding_questions_show_on_the_checks_tab(session, monkeypatch):
    monkeypatch.setattr("tutor.checking.runner.run_day", FakeRunner(passing_result))
    app = make_app(session)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        if isinstance(app.screen, InsightScreen):
            await pilot.press("escape")
            await pilot.pause()
        await pilot.press("a")
        assert app.query_one("#tabs").active == "checks-tab"
        await shows(pilot, "Along which axis does the softmax normalise?", "the after question")
        await pilot.press("b", "enter")
        screen = await shows(pilot, "✓ Right.", "the feedback")
        assert "Qwen2-0.5B has hidden size E = 896" in screen  # and on to the next one


# --------------------------------------------------------------------------- scrolling


async def test_page_keys_scroll_the_active_tab_whatever_has_focus(session):
    app = make_app(session)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        lesson = app.query_one("#lesson")
        assert isinstance(app.focused, LessonTree)
        await pilot.press("pagedown")
        assert lesson.scroll_y > 10
        await pilot.press("pageup")
        assert lesson.scroll_y == 0
        await pilot.press("end")
        assert lesson.scroll_y == lesson.max_scroll_y > 0
        await pilot.press("home")
        assert lesson.scroll_y == 0
        await pilot.press("j", "j")
        assert lesson.scroll_y == 2
        await pilot.press("k")
        assert lesson.scroll_y == 1
        assert session.lesson.id == "1.1"  # the tree's cursor did not move either

        await pilot.press("?")  # typing: j and k are letters, the page keys still scroll
        chat = app.query_one("#chat-log")
        for _ in range(30):
            chat.add_notice("a line of history")
        await pilot.pause()
        await pilot.press("home")
        assert chat.scroll_y == chat.max_scroll_y > 0  # Home moved the cursor, not the log
        await pilot.press("pageup")
        assert chat.scroll_y < chat.max_scroll_y
        await pilot.press(*"jk")
        assert app.query_one("#chat-input", Input).value == "jk"


async def test_sending_a_question_gives_the_keys_back(session):
    app = make_app(session)
    async with app.run_test(size=(100, 32)) as pilot:
        await settle(pilot)
        await pilot.press("?", *"why scale?", "enter")
        await settle(pilot)
        assert not isinstance(app.focused, Input)
        assert "esc" not in app.query_one("#keys").render().plain  # the reply is done
        await pilot.press("t")
        assert isinstance(app.screen, ProgressScreen)
        assert app.query_one("#chat-input", Input).value == ""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_key_bar_lists_answer_insight_lesson_and_scrolling(session, size):
    app = make_app(session)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        keys = flat(app.query_one("#keys").render().plain)
        for item in ("a Answer", "i Insight", "l Lesson", "j/k/PgUp/PgDn Scroll", "q Quit"):
            assert item in keys, keys  # none cut off, at 80 columns too
        await pilot.press("a")
        await pilot.pause()
        keys = flat(app.query_one("#keys").render().plain)
        assert "PgUp/PgDn Scroll" in keys and "j/k" not in keys and "a Answer" not in keys


# --------------------------------------------------------------------------- the tree


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_day_title_reads_whole_in_the_tree(session, size):
    app = make_app(session)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        tree = app.query_one(LessonTree)
        for lesson in session.course.lessons:
            tree.show_day(lesson.id)  # scrolled into view, as the cursor brings it
            await pilot.pause()
            rows = [line.split("▕")[0].translate(BARS)
                    for line in screen_text(app).splitlines()]
            covers = lesson.covers
            head = "⬜ " + (lesson.id if len(covers) == 1 else f"{covers[0]}–{covers[-1]}")
            start = next(i for i, r in enumerate(rows) if head + " " in r)
            indent = rows[start].index(head) + len(head)
            title = [rows[start][indent:]]
            for r in rows[start + 1:]:  # continuation lines hang under the title
                if r[:indent].strip() or not r.strip():
                    break
                title.append(r)
            assert flat(" ".join(title)) == lesson.title, rows[start:start + 4]
