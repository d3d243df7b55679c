"""Ideas over time (tutor.records.timeline): the idea levels replayed date by date from the
timestamps the records keep, and the chart the progress screen draws of them."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from tutor.curriculum import load_course
from tutor.records.mastery import assess_ideas
from tutor.records.picture import mastery_picture, retired
from tutor.records.state import StateStore
from tutor.records.timeline import ideas_over_time

DAY_11_IDEAS = ["softmax-axis", "attention-scale", "mask-application", "head-layout",
                "weight-layout", "weights-in-their-slots", "float16-range"]


@pytest.fixture(scope="module")
def course():
    return load_course()


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=timezone.utc)


def run(status: str, pitfall: str | None = None) -> dict:
    check = {"id": "sdpa-simple", "status": status}
    if pitfall:
        check["diagnosis"] = {"pitfall": pitfall}
    return {"status": status, "summary": {}, "checks": [check]}


def scripted_state(tmp_path, course) -> dict:
    """Day 1.1 over five dates: a diagnosed mistake (Mar 1), right and wrong answers and a
    pass (Mar 3), a later failing run (Mar 4), a pass again and spaced review retiring the
    diagnosis (Mar 5). Mar 2 has no record."""
    with StateStore(tmp_path, course=course) as st:
        st.record_check("1.1", run("fail", "attn-missing-scale"), now=at(1, 10))
        st.record_concept_answer("1.1", "softmax-axis", "rows", True, now=at(3, 9))
        st.record_concept_answer("1.1", "score-shape", "L by S", True, now=at(3, 9, 1))
        st.record_concept_answer("1.1", "scale-value", "0.125", True, now=at(3, 9, 2))
        st.record_concept_answer("1.1", "head-dim", "8", False, now=at(3, 9, 3))
        st.record_check("1.1", run("pass"), now=at(3, 9, 30))
        st.record_check("1.1", run("fail"), now=at(4, 11))
        st.record_check("1.1", run("pass"), now=at(5, 11))
        st.record_concept_answer("1.1", "head-dim", "16", True, now=at(5, 11, 5))
        state = copy.deepcopy(st.state)
    # the idea behind the diagnosis left the review schedule (four right reviews)
    state["review"]["done"]["idea:attention-scale"] = "2025-03-05T12:00:00Z"
    return state


def test_ideas_over_time_replays_the_levels_date_by_date(tmp_path, course):
    state = scripted_state(tmp_path, course)
    series = ideas_over_time(course, state)
    assert [(p["date"], p["met"], p["mastered"], p["shaky"], p["learning"]) for p in series] == [
        # the run that diagnosed the missing scale starts the day: its ideas are met, the
        # scale is shaky
        ("2025-03-01", 7, 0, 1, 6),
        # the pass and the right answers master the softmax axis; head-dim answered wrong
        ("2025-03-03", 7, 1, 2, 4),
        # a later failing run: the softmax axis is no longer mastered (latest run counts)
        ("2025-03-04", 7, 0, 2, 5),
        # passing again; the scale's diagnosis retired by review, its answer right: mastered.
        # head-dim right now, but it was wrong first and its item never left review: shaky
        ("2025-03-05", 7, 2, 1, 4),
    ]
    assert series[0]["new"] == DAY_11_IDEAS
    assert all(p["new"] == [] for p in series[1:])


def test_the_last_date_agrees_with_the_picture_without_the_queue(tmp_path, course):
    state = scripted_state(tmp_path, course)
    last = ideas_over_time(course, state)[-1]
    now = assess_ideas(course, state, (), retired(state))
    for lvl in ("mastered", "shaky", "learning"):
        assert last[lvl] == sum(1 for i in now if i["level"] == lvl)
    assert last["met"] == len(now)


def test_the_series_is_in_progress_json_and_the_tracker_does_not_compute_it(tmp_path, course):
    state = scripted_state(tmp_path, course)
    assert mastery_picture(course, state)["ideas_over_time"] == ideas_over_time(course, state)
    assert "ideas_over_time" not in mastery_picture(course, state, history=False)
    from tutor.records.recorder import progress_summary

    summary, _ = progress_summary(tmp_path, course)  # `progress --json` prints this
    assert [p["date"] for p in summary["ideas_over_time"]] == [
        "2025-03-01", "2025-03-03", "2025-03-04", "2025-03-05"]


def test_no_records_no_points(course):
    assert ideas_over_time(course, None) == []
    assert ideas_over_time(course, {"days": {}}) == []
    assert ideas_over_time(None, {"days": {}}) == []


def test_events_the_cap_dropped_count_from_the_oldest_event_kept(course):
    """Three runs, only the last kept (the cap): the dropped diagnosis is known from the
    kept run's date on, and the day passes from its first pass."""
    rec = {"first_activity": "2025-03-01T10:00:00Z", "last_activity": "2025-03-05T10:00:00Z",
           "attempts_total": 3, "first_pass": "2025-03-02T10:00:00Z", "last_result": "pass",
           "attempts": [{"time": "2025-03-05T10:00:00Z", "status": "pass", "pitfalls": []}],
           "pitfalls": {"attn-missing-scale": 1}, "hints": [], "hints_seen": [],
           "concept_answers": [], "concepts": {}}
    series = ideas_over_time(course, {"days": {"1.1": rec}})
    assert [(p["date"], p["shaky"]) for p in series] == [
        ("2025-03-01", 0), ("2025-03-02", 0), ("2025-03-05", 1)]


# --------------------------------------------------------------------------- the chart


def test_ideas_chart_draws_one_row_per_date_within_50_columns(tmp_path, course):
    from rich.cells import cell_len

    from tutor.tui.render import ideas_chart

    text = ideas_chart(ideas_over_time(course, scripted_state(tmp_path, course)), 38).plain
    lines = text.splitlines()
    assert lines[0].startswith("date   ideas met (of 38)")
    assert lines[1:5] == [
        "Mar 01 ▓░░░░░░              7   0   1",
        "Mar 03 █▓▓░░░░              7   1   2",
        "Mar 04 ▓▓░░░░░              7   0   2",
        "Mar 05 ██▓░░░░              7   2   1",
    ]
    assert max(cell_len(line) for line in lines) <= 50
    assert "Nothing recorded yet" in ideas_chart([], 38).plain


def test_ideas_chart_scales_and_keeps_the_last_dates():
    from rich.cells import cell_len

    from tutor.tui.render import ideas_chart

    series = [{"date": f"2025-04-{d:02d}", "met": 2 * d, "mastered": d // 2, "shaky": 1,
               "learning": 2 * d - d // 2 - 1} for d in range(1, 20)]
    lines = ideas_chart(series, 38).plain.splitlines()
    assert lines[1] == "… 7 earlier dates"
    assert lines[2].startswith("Apr 08") and lines[13].startswith("Apr 19")
    assert max(cell_len(line) for line in lines) <= 50
    # 38 ideas met draw 30 cells; the shaky one never vanishes
    assert lines[13][7:37].count("▓") == 1 and len(lines[13][7:37].strip()) == 30
