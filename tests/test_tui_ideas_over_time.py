"""The progress screen's "Ideas over time" chart (tutor.tui.render.ideas_chart) at 80x24,
from records seeded with fixed times over four dates: a snapshot, and the screen's text."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tui_support import (make_workspace, open_session, passing_result, scripted, screen_text,
                         seed_history, settle)
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")
    monkeypatch.delenv("TINY_LLM_TUTOR_WORKSPACE", raising=False)
    monkeypatch.setenv("EDITOR", "true")


def seed_dates(ws) -> None:
    """seed_history (Mar 1: 1.1 diagnosed then passing, 1.2 failing), then 1.1's concept
    answers (Mar 2: three right, head-dim wrong), 1.2 passing with its answers right
    (Mar 4), and 1.3 started with the top-left causal mask diagnosed (Mar 5)."""
    from tutor.curriculum import load_course
    from tutor.records.state import StateStore

    seed_history(ws)
    course = load_course()

    def at(d: int, h: int, m: int = 0) -> datetime:
        return datetime(2025, 3, d, h, m, tzinfo=timezone.utc)

    with StateStore(ws, course=course) as st:
        st.start_session(now=at(2, 9))
        for i, (qid, answer, right) in enumerate([
                ("softmax-axis", "each query's row", True), ("score-shape", "L by S", True),
                ("scale-value", "1/sqrt(D)", True), ("head-dim", "4", False)]):
            st.record_concept_answer("1.1", qid, answer, right, now=at(2, 9, i + 1))
        st.end_session(now=at(2, 9, 10))
        st.start_session(now=at(4, 18))
        st.record_check("1.2", passing_result(course.lesson("1.2")), now=at(4, 18, 5))
        for i, qid in enumerate(["first-frequency", "half-split-partner", "qwen2-layout",
                                 "offset-last-position"]):
            st.record_concept_answer("1.2", qid, "x", True, now=at(4, 18, 10 + i))
        st.end_session(now=at(4, 18, 20))
        st.start_session(now=at(5, 20))
        st.record_check("1.3", {"status": "fail", "summary": {}, "checks": [
            {"id": "causal", "status": "fail",
             "diagnosis": {"pitfall": "causal-mask-top-left"}}]}, now=at(5, 20, 5))
        st.end_session(now=at(5, 20, 10))


def app_for(ws) -> TutorApp:
    session = open_session(ws)
    return TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)


async def show_the_chart(pilot) -> None:
    await settle(pilot)
    await pilot.press("t")
    await pilot.pause()
    pilot.app.screen.query_one("#ideas-time-title").scroll_visible(top=True, animate=False)
    await pilot.pause()


def test_progress_screen_ideas_over_time_at_80x24(snap_compare, tmp_path):
    ws = make_workspace(tmp_path)
    seed_dates(ws)
    app = app_for(ws)
    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=show_the_chart)
    finally:
        app.session.close()


async def chart_text(ws) -> str:
    """The progress screen's text at 80x24, scrolled to the chart."""
    app = app_for(ws)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await show_the_chart(pilot)
            return screen_text(app)
    finally:
        app.session.close()


async def test_the_chart_on_screen_reads_date_by_date(tmp_path):
    ws = make_workspace(tmp_path)
    seed_dates(ws)
    text = await chart_text(ws)
    assert "Ideas over time" in text
    rows = [line[:50].split() for line in text.splitlines() if line[:5] == " Mar "]
    assert [r[:2] + r[-3:] for r in rows] == [
        ["Mar", "01", "10", "0", "1"],  # 1.1 and 1.2 started, the missing scale diagnosed
        ["Mar", "02", "10", "1", "2"],  # softmax axis mastered; head-dim answered wrong
        ["Mar", "04", "10", "4", "2"],  # 1.2 passes, its answers right: the rope ideas
        # 1.3 started, failing: the rope ideas are 1.3's too, but a day not passing yet
        # takes no mastery away; the top-left mask makes causal-alignment shaky
        ["Mar", "05", "12", "4", "3"],
    ]


async def test_no_history_says_so(tmp_path):
    text = await chart_text(make_workspace(tmp_path))
    assert "Nothing recorded yet: the ideas you meet will show here" in text
