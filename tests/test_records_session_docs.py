"""What the session docs and the tracker say after real use: the files the learner changed,
concepts with their lists, activity in the order it happened, sessions that were real
work, and tutor markers in the learner's code fences left as text."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from course_factory import make_lesson

from tutor import cli
from tutor.curriculum import load_course
from tutor.engine import TutorSession
from tutor.records import recorder
from tutor.records.sessions import begin_marker, end_marker, merge_blocks, render_blocks
from tutor.records.state import StateStore
from tutor.records.tracker import recent_activity, render_tracker
from tutor.workspace import init_workspace

COURSE = load_course()
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


def _result(day: str, ok: bool = False) -> dict:
    st = "pass" if ok else "fail"
    return {"day": day, "impl": "impl", "status": st, "duration_s": 0.1,
            "checks": [{"id": "c", "task": 1, "title": "t", "status": st, "message": "",
                        "evidence": {}, "diagnosis": None, "skip_reason": None}],
            "summary": {"pass": int(ok), "fail": int(not ok), "error": 0, "timeout": 0,
                        "crashed": 0, "skipped": 0}}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    init_workspace(ws)
    monkeypatch.setenv("TINY_LLM_TUTOR_WORKSPACE", str(ws))
    return ws


def _doc(ws: Path, day: str = "1.1") -> str:
    lesson = COURSE.lesson(day)
    return (ws / "sessions" / f"week{lesson.week}" / lesson.session_filename).read_text()


def _edit(path: Path, ago_s: float) -> None:
    with open(path, "a") as f:
        f.write("\n# my work\n")
    t = time.time() - ago_s
    os.utime(path, (t, t))


# --------------------------------------------------------------------------- files changed


def test_an_edit_before_other_activity_is_still_recorded(ws):
    """The editor returns, the tutor notes the work, then the check runs: the edit was
    saved before the day's latest activity and must still be listed."""
    lesson = COURSE.lesson("1.1")
    _edit(ws / "impl" / "attention.py", ago_s=30)
    with StateStore(ws, course=COURSE) as s:
        s.touch("1.1", now=datetime.now(timezone.utc) - timedelta(seconds=10))
    recorder.record_check(ws, COURSE, lesson, _result("1.1"))
    doc = _doc(ws)
    assert "No file changes recorded yet" not in doc
    assert "- `impl/attention.py` (last change" in doc


def test_every_later_edit_is_recorded_again_and_an_unchanged_file_is_not(ws):
    lesson = COURSE.lesson("1.1")
    _edit(ws / "impl" / "attention.py", ago_s=120)
    recorder.record_check(ws, COURSE, lesson, _result("1.1"))
    first = StateStore(ws).open()
    first_time = first.day_record("1.1")["files_changed"]["impl/attention.py"]
    first.close()
    assert recorder.changed_files(ws, lesson, {"impl/attention.py": first_time}) == []
    _edit(ws / "impl" / "basics.py", ago_s=0)
    recorder.record_check(ws, COURSE, lesson, _result("1.1"))
    with StateStore(ws) as s:
        assert set(s.day_record("1.1")["files_changed"]) == {"impl/attention.py", "impl/basics.py"}


def test_a_change_belongs_to_the_day_that_logged_it(ws):
    """attention.py is written on day 1.1 and again on day 1.3: day 1.3 lists it only
    once it is saved again."""
    _edit(ws / "impl" / "attention.py", ago_s=60)
    recorder.record_check(ws, COURSE, COURSE.lesson("1.1"), _result("1.1"))
    recorder.record_check(ws, COURSE, COURSE.lesson("1.3"), _result("1.3"))
    with StateStore(ws) as s:
        assert s.day_record("1.3")["files_changed"] == {}
    _edit(ws / "impl" / "attention.py", ago_s=-2)  # saved after the records' last second
    recorder.record_check(ws, COURSE, COURSE.lesson("1.3"), _result("1.3"))
    with StateStore(ws) as s:
        assert list(s.day_record("1.3")["files_changed"]) == ["impl/attention.py"]


def test_the_tutors_editor_session_records_the_files(ws):
    session = TutorSession(ws, course=COURSE).open("1.1")
    _edit(ws / "impl" / "attention.py", ago_s=0)
    session.worked()  # back from the editor
    session.close()
    assert "- `impl/attention.py` (last change" in _doc(ws)


# --------------------------------------------------------------------------- concepts


def test_a_concept_keeps_its_list():
    lesson = COURSE.lesson("1.1")
    concept = next(c for c in lesson.concepts if "\n- " in c.explanation)
    block = render_blocks(lesson, {"days": {}})["concepts"]
    lines = block.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.startswith(f"- **{concept.name}**"))
    items = [ln.strip()[2:] for ln in concept.explanation.splitlines() if ln.startswith("- ")]
    assert lines[head + 1: head + 1 + len(items)] == [f"  - {it}" for it in items]
    assert " - `" not in lines[head]  # the list is not run into the sentence


def test_a_numbered_list_keeps_its_numbers():
    lesson = make_lesson("9.1", concepts=[
        ("Steps", "Do this:\n\n1. first\n2. second\n\nThen rest.")])
    block = render_blocks(lesson, {"days": {}})["concepts"]
    assert block.splitlines()[:3] == ["- **Steps** — Do this:", "  1. first", "  2. second"]


# --------------------------------------------------------------------------- order, sessions


def test_recent_activity_is_in_chronological_order(tmp_path):
    with StateStore(tmp_path) as s:
        s.start_session(now=T0)
        s.record_hint("1.1", 1, 1, now=T0)  # the same second as the start
        s.record_check("1.1", _result("1.1"), now=T0 + timedelta(minutes=1))
        s.record_question("1.1", "why?", now=T0 + timedelta(minutes=2))
        s.end_session(now=T0 + timedelta(minutes=2))
        events = [text for _, text in recent_activity(s.state)]
        md = render_tracker(s.state, COURSE)
    assert [e.split(" ", 1)[1].split(":")[0] for e in events] == [
        "session started", "day 1.1", "day 1.1", "day 1.1", "session ended after 2m"]
    assert "hint" in events[1] and "checks failed" in events[2] and "asked" in events[3]
    recent = md.split("## Recent activity", 1)[1]
    assert recent.index("session started") < recent.index("hint") < recent.index("session ended")


def test_cli_hint_and_ask_add_no_empty_sessions(ws, capsys):
    assert cli.main(["hint", "day1.1"]) == 0
    assert cli.main(["ask", "day1.1", "why divide by sqrt(D)?"]) == 0
    capsys.readouterr()
    with StateStore(ws) as s:
        assert s.sessions == []
        rec = s.day_record("1.1")
        assert rec["hints"] and rec["questions"]  # the work itself is recorded
    tracker = (ws / "progress" / "tiny-llm-tracker.md").read_text()
    assert "session started" not in tracker and "after 0m" not in tracker


def test_a_days_session_count_counts_sessions_where_it_was_worked_on(ws, capsys):
    session = TutorSession(ws, course=COURSE).open("1.1")
    session.hint()
    session.close()
    looked = TutorSession(ws, course=COURSE).open("1.1")  # only looked at it
    looked.close()
    cli.main(["hint", "day1.1"])
    cli.main(["hint", "day1.1"])
    capsys.readouterr()
    assert ", over 1 session\n" in _doc(ws)


# --------------------------------------------------------------------------- fences


def _blk(name: str, body: str) -> str:
    return f"{begin_marker(name)}\n{body}\n{end_marker(name)}"


NOTES_WITH_FENCE = f"""\
## Progress Update

{_blk("progress", "old")}

How my notes look:

```markdown
{_blk("progress", "an example I keep")}
```

~~~
{begin_marker("next")}
~~~
"""


def test_a_marker_in_a_code_fence_is_text():
    out = merge_blocks(NOTES_WITH_FENCE, {"progress": "new"})
    assert "```markdown\n" + _blk("progress", "an example I keep") + "\n```" in out
    assert out.startswith("## Progress Update\n\n" + _blk("progress", "new"))
    assert merge_blocks(out, {"progress": "new"}) == out


def test_a_block_only_in_a_fence_is_inserted_outside_it():
    doc = "## Questions\n\n```\n" + _blk("questions", "example") + "\n```\n\nmine\n"
    out = merge_blocks(doc, {"questions": "real"})
    assert "```\n" + _blk("questions", "example") + "\n```" in out
    assert out.endswith("mine\n\n" + _blk("questions", "real") + "\n")
    assert merge_blocks(out, {"questions": "real"}) == out


def test_an_unclosed_fence_does_not_make_blocks_multiply():
    doc = "## Questions\n\n" + _blk("questions", "old") + "\n\n```python\nx = 1\n"
    out = merge_blocks(doc, {"questions": "new"})
    assert out.count(begin_marker("questions")) == 1 and _blk("questions", "new") in out
    assert merge_blocks(out, {"questions": "new"}) == out
