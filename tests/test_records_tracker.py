"""tutor.records.tracker: the tracker markdown rendered from state + course."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from course_factory import make_course, make_lesson

from tutor.records.state import StateStore
from tutor.records.tracker import knowledge_gaps, recent_activity, render_tracker, tracker_path, write_tracker

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def lesson(id, title, slug, week=1, questions=()):
    return make_lesson(id, title, slug, week=week, questions=questions,
                       chapter="https://example.invalid/ch")


def result(ok: bool, pitfall: str | None = None) -> dict:
    st = "pass" if ok else "fail"
    return {
        "day": "x", "impl": "impl", "status": "pass" if ok else "fail", "duration_s": 0.5,
        "checks": [{"id": "c1", "task": 1, "title": "t", "status": st, "message": "",
                    "evidence": None, "diagnosis": {"pitfall": pitfall, "question": "?"} if pitfall else None,
                    "skip_reason": None}],
        "summary": {"pass": int(ok), "fail": int(not ok), "error": 0, "timeout": 0, "crashed": 0, "skipped": 0},
    }


COURSE = make_course(
    (1, "From Matmul to Text", [
        lesson("1.1", "Attention | heads", "attention", questions=[("q-after", "after")]),
        lesson("1.2", "RoPE", "rope"),
        lesson("1.3", "GQA", "gqa"),
    ]),
    (2, "Tiny vLLM", [lesson("2.1", "KV cache", "kv-cache", week=2)]),
)


def populated(tmp_path):
    store = StateStore(tmp_path, course=COURSE).open()
    store.start_session(now=at(0))
    store.record_check("1.1", result(False, "attn-missing-scale"), now=at(1))
    store.record_hint("1.1", 1, 1, now=at(2))
    store.record_check("1.1", result(False, "attn-missing-scale"), now=at(3))
    store.record_check("1.1", result(True), now=at(4))
    store.record_concept_answer("1.1", "q-after", "7", False, now=at(5))
    store.record_concept_answer("1.1", "q-after", "8", True, now=at(6))
    store.record_insight("1.1", "scale keeps softmax soft", now=at(7))
    store.record_question("1.2", "what is theta?", now=at(8))
    store.touch("1.2", now=at(70))
    store.touch("9.9", now=at(71))  # a day no longer in the course
    store.end_session(now=at(72))
    return store


def test_render_tracker(tmp_path):
    store = populated(tmp_path)
    md = render_tracker(store.state, COURSE)
    store.close()
    lines = md.splitlines()
    assert lines[0] == "# tiny-llm progress tracker"
    summary = next(l for l in lines if l.startswith("**Summary:**"))
    assert "1/4 days completed (0 ⭐ mastered)" in summary
    assert "2 🟡 in progress" in summary  # 1.2 and the stray 9.9
    # 1.1: events at minutes 1..7 (6m); 1.2: 7->8 (1m); 8->70 is a break; 9.9: 70->71 (1m)
    assert "8m active" in summary and "3 check runs" in summary and "1 hints" in summary
    assert "current: day 9.9" in summary
    assert "## Week 1: From Matmul to Text" in md and "## Week 2: Tiny vLLM" in md
    row11 = next(l for l in lines if l.startswith("| ✅ | 1.1 |"))
    assert "[Attention \\| heads](../sessions/week1/day1.1-attention.md)" in row11
    cells = [c.strip() for c in row11.strip("|").split(" | ")]
    # passes, 1 hint, 2 failing runs, q-after right on the 2nd try, an insight: Competent, not
    # Mastery (q-after was not right on the first try)
    assert cells[3:7] == ["6m", "3", "1", "✅ Competent"]
    assert "attn-missing-scale ×2" in cells[7] and "missed questions: q-after" in cells[7]
    row12 = next(l for l in lines if l.startswith("| 🟡 | 1.2 |"))
    assert "| 📖 Learning |" in row12 and "RoPE](../sessions/week1/day1.2-rope.md)" in row12
    row13 = next(l for l in lines if "| 1.3 |" in l)
    assert row13 == "| ⬜ | 1.3 | GQA | — | 0 | 0 | — | — |"
    assert "## Other recorded days" in md and "| 🟡 | 9.9 |" in md
    recent = md.split("## Recent activity", 1)[1]
    # oldest first, like a log
    assert recent.index("day 1.2: asked “what is theta?”") < recent.index("session ended after 1h 12m")
    assert "✅ day 1.1: checks passed" in recent and "❌ day 1.1: checks failed (1 failing; diagnosed attn-missing-scale)" in recent


def test_mastered_day_shows_star(tmp_path):
    with StateStore(tmp_path, course=COURSE) as s:
        s.record_check("1.2", result(True), now=at(0))
        s.record_insight("1.2", "rotation by position", now=at(1))
        md = render_tracker(s, COURSE)
    assert "| ⭐ | 1.2 |" in md and "| ⭐ Mastery |" in md
    assert "1/4 days completed (1 ⭐ mastered)" in md


def test_empty_state_renders(tmp_path):
    with StateStore(tmp_path) as s:
        md = render_tracker(s, COURSE)
    assert "0/4 days completed" in md
    assert md.count("| ⬜ |") == 4
    assert "_Nothing yet" in md


def test_write_tracker_is_atomic_and_returns_path(tmp_path):
    store = populated(tmp_path)
    path = write_tracker(tmp_path, store.state, COURSE)
    store.close()
    assert path == tracker_path(tmp_path) == tmp_path / "progress" / "tiny-llm-tracker.md"
    assert path.read_text(encoding="utf-8") == render_tracker(store.state, COURSE)
    assert [p.name for p in path.parent.glob(".*.tmp")] == []


def test_knowledge_gaps_and_recent_limit(tmp_path):
    store = populated(tmp_path)
    store.close()
    pitfalls, missed = knowledge_gaps(store.state["days"]["1.1"])
    assert pitfalls == [("attn-missing-scale", 2)] and missed == ["q-after"]
    assert knowledge_gaps(None) == ([], [])
    events = recent_activity(store.state, limit=3)
    assert len(events) == 3 and events[0][0] <= events[1][0] <= events[2][0]
    assert events[-1][1] == "⏹️ session ended after 1h 12m"  # the latest three, oldest first


def test_tracker_carries_the_ideas_the_mistakes_and_the_review_queue(tmp_path):
    from tutor.curriculum import load_course

    course = load_course()
    l1 = course.lesson("1.1")
    fail = {**result(False, "attn-softmax-wrong-axis"), "day": "1.1"}
    with StateStore(tmp_path, course=course) as store:
        store.record_check("1.1", fail, now=at(1))
        store.record_check("1.1", fail, now=at(2))
        store.record_check("1.1", {**result(True), "day": "1.1"}, now=at(3))
        store.record_concept_answer("1.1", "scale-value", "x", True, now=at(4))
        store.record_concept_answer("1.1", "softmax-axis", "x", True, now=at(5))
        text = render_tracker(store, course, now=at(6))  # the diagnosis's review is tomorrow
        later = render_tracker(store, course, now=at(60 * 24 * 3))
        assert store.state["review"]["items"] == {}  # the picture schedules on a copy
    assert l1.pitfall("attn-softmax-wrong-axis") is not None
    ideas = text[text.index("## Ideas"):text.index("## Most frequent mistakes")]
    assert "⭐ 1 mastered · ❗ 1 shaky" in ideas
    shaky = next(x for x in ideas.splitlines() if "(`softmax-axis`)" in x)
    assert shaky.startswith("| ❗ Shaky |") and "attn-softmax-wrong-axis diagnosed on 1.1 ×2" in shaky
    mastered = next(x for x in ideas.splitlines() if "(`attention-scale`)" in x)
    assert mastered.startswith("| ⭐ Mastered |") and "1 concept answer right" in mastered
    # what needs a look comes first
    assert ideas.index("❗ Shaky") < ideas.index("⭐ Mastered") < ideas.index("📖 Learning")
    mistakes = text[text.index("## Most frequent mistakes"):text.index("## Review queue")]
    assert "- attn-softmax-wrong-axis ×2 (day 1.1)" in mistakes
    assert "_Nothing due for review._" in text[text.index("## Review queue"):text.index("## Recent activity")]
    # days later the idea behind the diagnosis is due for review (tutor.records.review)
    due = next(x for x in later.splitlines() if "(`softmax-axis`)" in x)
    assert due.startswith("| 🔁 Due for review |") and "due for review" in due
    queue = later[later.index("## Review queue"):later.index("## Recent activity")]
    assert "- idea softmax-axis (from day 1.1, due 2025-03-02)" in queue


def test_a_hint_heavy_pass_is_shown_in_the_day_row(tmp_path):
    store = StateStore(tmp_path, course=COURSE).open()
    store.record_hint("1.1", 1, 4, now=at(1))  # the last rung
    store.record_check("1.1", result(True), now=at(2))
    row = next(x for x in render_tracker(store, COURSE).splitlines() if "| 1.1 |" in x)
    store.close()
    assert "hint-heavy pass" in row
