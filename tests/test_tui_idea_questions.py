"""The concept questions that made four ideas masterable (mask-application,
used-where-it-counts, request-lifecycle, routing-weights) reach the learner: each is
rendered as a card on its day in the app (a before-coding card when the day opens, an
after-coding card once the day passes), a wrong answer is marked wrong there, a right one
right, and both are recorded. Mastery counts only answers the learner could give.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from textual.widgets import Input, Static, TabbedContent

from tui_support import make_workspace, open_session, passing_result, scripted, settle
from tutor.curriculum import load_course
from tutor.records.state import StateStore
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.render import question_prompt
from tutor.tui.widgets import QuestionCard

SIZE = (100, 32)

# day, question, where its card sits, a wrong answer, the right one
CASES = [
    ("1.1", "masked-weight", "before", "0.090", "0.119"),
    ("1.5", "mask-lost-in-last-block", "after", "a", "b"),
    ("2.4", "is-the-kernel-used", "after", "a", "c"),
    ("2.6", "done-at-prefill", "after", "c", "b"),
    ("3.3", "mixed-output", "before", "12", "3"),
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")
    monkeypatch.delenv("TINY_LLM_TUTOR_WORKSPACE", raising=False)


def _plain(content) -> str:
    return content.plain if hasattr(content, "plain") else str(content)


@pytest.mark.parametrize("day,qid,when,wrong,right", CASES, ids=[c[1] for c in CASES])
async def test_the_question_is_shown_on_its_day_and_graded(tmp_path, day, qid, when, wrong,
                                                           right):
    course = load_course()
    lesson = course.lesson(day)
    q = next(x for x in lesson.concept_questions if x.id == qid)
    assert q.when == when
    assert course.ideas.of_question(day, qid), "tagged with its idea in ideas.yaml"
    ws = make_workspace(tmp_path)
    if when == "after":  # after-coding cards appear once the day's checks pass
        t = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)
        with StateStore(ws, course=course) as st:
            st.touch(day, now=t)
            st.record_check(day, passing_result(lesson), now=t)
            st.record_insight(day, "in my own words", now=t)  # no celebration on opening
    session = open_session(ws, f"day{day}")
    try:
        app = TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert session.lesson.id == day
            cards = {c.question.id: c for c in
                     app.query(f"#{when}-questions QuestionCard").results(QuestionCard)}
            assert qid in cards, f"{day}/{qid} not among the {when} cards: {sorted(cards)}"
            card = cards[qid]
            if when == "after":  # the after-coding cards sit under the check results
                app.query_one(TabbedContent).active = "checks-tab"
                await pilot.pause()
            shown = _plain(card.query_one(".prompt", Static).content)
            assert shown == question_prompt(q) and q.prompt.strip() in shown
            box = app.query_one(f"#answer-{qid}", Input)
            for keys, verdict in ((wrong, "✗ Not quite"), (right, "✓ Right.")):
                box.value = ""
                box.focus()
                await pilot.pause()
                await pilot.press(*keys, "enter")
                await pilot.pause()
                feedback = _plain(card.query_one(".feedback", Static).content)
                assert feedback.startswith(verdict), feedback
            await pilot.press("q")
        got = session.day_record(day)["concepts"][qid]
        assert got["tries"] == 2 and got["first_correct"] is False and got["last_correct"] is True
    finally:
        session.close()
