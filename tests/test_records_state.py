"""tutor.records.state: the store, its lock, corrupt-file recovery and the recorders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from course_factory import make_course, make_lesson, make_task

from tutor.records import state as state_mod
from tutor.records.state import (
    SCHEMA,
    SCHEMA_VERSION,
    StateError,
    StateLocked,
    StateStore,
    empty_state,
    read_state,
)
from tutor.records.mastery import Mastery, Status

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


def at(minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def make_result(statuses: dict, diagnoses: dict | None = None, task: int = 1) -> dict:
    diagnoses = diagnoses or {}
    checks = []
    summary = dict.fromkeys(["pass", "fail", "error", "timeout", "crashed", "skipped"], 0)
    for cid, st in statuses.items():
        summary[st] += 1
        checks.append(
            {
                "id": cid,
                "task": task,
                "title": f"title of {cid}",
                "status": st,
                "message": "" if st == "pass" else f"{cid}: max abs error 0.25",
                "evidence": {},
                "diagnosis": {"pitfall": diagnoses[cid], "question": "?"} if cid in diagnoses else None,
                "skip_reason": "needs an Apple GPU" if st == "skipped" else None,
            }
        )
    bad = sum(summary[k] for k in ("fail", "error", "timeout", "crashed"))
    ok = bad == 0 and summary["pass"] > 0
    return {"day": "1.1", "impl": "impl", "status": "pass" if ok else "fail",
            "duration_s": 1.5, "checks": checks, "summary": summary}


@pytest.fixture
def store(tmp_path):
    with StateStore(tmp_path) as s:
        yield s


# --------------------------------------------------------------------------- basics


def test_new_store_has_empty_versioned_state(tmp_path):
    with StateStore(tmp_path) as s:
        assert s.notice is None
        assert s.state["schema"] == SCHEMA
        assert s.state["schema_version"] == SCHEMA_VERSION
        assert s.state["days"] == {} and s.state["sessions"] == []
        assert s.current_day is None
        s.touch("1.1", now=at(0))
    data = json.loads((tmp_path / "progress" / "state.json").read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["current_day"] == "1.1"
    assert data["days"]["1.1"]["first_activity"] == "2025-03-01T09:00:00Z"


def test_state_survives_reopen(tmp_path):
    with StateStore(tmp_path) as s:
        s.record_check("1.1", make_result({"a": "fail"}, {"a": "attn-missing-scale"}), now=at(0))
        s.record_hint("1.1", 1, 1, now=at(1))
    with StateStore(tmp_path) as s:
        rec = s.day_record("1.1")
        assert rec["attempts_total"] == 1
        assert rec["pitfalls"] == {"attn-missing-scale": 1}
        assert rec["hints_seen"] == ["1:1"]
        assert s.current_day == "1.1"


def test_recorders_need_an_open_store(tmp_path):
    s = StateStore(tmp_path)
    with pytest.raises(StateError):
        s.touch("1.1")
    assert s.day_status("1.1") is Status.NOT_STARTED


def test_autosave_off_saves_on_close(tmp_path):
    s = StateStore(tmp_path, autosave=False).open()
    s.touch("1.2", now=at(0))
    assert not (tmp_path / "progress" / "state.json").exists()
    s.close()
    assert json.loads((tmp_path / "progress" / "state.json").read_text())["current_day"] == "1.2"


def test_day_ids_are_normalised(store):
    store.touch("day1.3", now=at(0))
    assert store.current_day == "1.3"
    assert store.day_status("1.3") is Status.IN_PROGRESS
    assert store.day_status("day1.3") is Status.IN_PROGRESS


def test_naive_and_non_utc_times_become_utc(store):
    store.touch("1.1", now=datetime(2025, 3, 1, 9, 0, 0))  # naive: taken as UTC
    store.touch("1.1", now=datetime(2025, 3, 1, 10, 1, 0, tzinfo=timezone(timedelta(hours=1))))
    rec = store.day_record("1.1")
    assert rec["first_activity"] == "2025-03-01T09:00:00Z"
    assert rec["last_activity"] == "2025-03-01T09:01:00Z"
    assert store.active_seconds("1.1") == 60


# --------------------------------------------------------------------------- lock

_HOLDER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from tutor.records.state import StateStore
s = StateStore(sys.argv[1]).open()
print("locked", flush=True)
sys.stdin.readline()
s.close()
print("released", flush=True)
"""

_CONTENDER = r"""
import sys, json
sys.path.insert(0, sys.argv[2])
from tutor.records.state import StateStore, StateLocked
try:
    StateStore(sys.argv[1]).open()
except StateLocked as e:
    print(json.dumps({"locked": True, "pid": e.pid, "message": str(e)}))
else:
    print(json.dumps({"locked": False}))
"""


def test_lock_blocks_a_second_tutor_in_another_process(tmp_path):
    with StateStore(tmp_path):
        out = subprocess.run(
            [sys.executable, "-c", _CONTENDER, str(tmp_path), str(REPO)],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout
        verdict = json.loads(out)
        assert verdict["locked"] is True
        assert verdict["pid"] == os.getpid()
        assert f"PID {os.getpid()}" in verdict["message"]
    # released: a new process gets in
    out = subprocess.run(
        [sys.executable, "-c", _CONTENDER, str(tmp_path), str(REPO)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert json.loads(out) == {"locked": False}


def test_lock_held_by_another_process_names_its_pid(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path), str(REPO)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StateLocked) as info:
            StateStore(tmp_path).open()
        assert info.value.pid == proc.pid
        assert f"PID {proc.pid}" in str(info.value)
        assert info.value.lock_path == tmp_path / "progress" / ".lock"
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "released"
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    with StateStore(tmp_path) as s:
        assert s.is_open


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with StateStore(tmp_path):
        with pytest.raises(StateLocked):
            StateStore(tmp_path).open()
    with StateStore(tmp_path):
        pass


def test_failed_open_does_not_leave_the_lock_held(tmp_path, monkeypatch):
    def broken_load(self, now):
        raise RuntimeError("boom")

    monkeypatch.setattr(StateStore, "_load", broken_load)
    with pytest.raises(RuntimeError):
        StateStore(tmp_path).open()
    monkeypatch.undo()
    with StateStore(tmp_path):
        pass


# --------------------------------------------------------------------------- corrupt


def _write_state(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "progress" / "state.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_bad_json_is_moved_aside_with_a_notice(tmp_path):
    p = _write_state(tmp_path, '{"schema": "tiny-llm-tutor/state", "days": {')
    with StateStore(tmp_path) as s:
        assert s.state["days"] == {}
        assert s.notice and "\n" not in s.notice
        assert "state.json.bak" in s.notice and "invalid JSON" in s.notice
    bak = tmp_path / "progress" / "state.json.bak"
    assert bak.read_text() == '{"schema": "tiny-llm-tutor/state", "days": {'
    assert json.loads(p.read_text())["schema_version"] == SCHEMA_VERSION  # rebuilt on disk


@pytest.mark.parametrize(
    "doc, reason",
    [
        ([1, 2, 3], "not a JSON object"),
        ({"hello": "world"}, "unknown schema"),
        ({"schema": SCHEMA, "schema_version": "1", "days": {}}, "schema_version"),
        ({"schema": SCHEMA, "schema_version": 1, "days": []}, "'days'"),
    ],
)
def test_wrong_schema_is_moved_aside(tmp_path, doc, reason):
    # a newer tutor's file and one wrong field inside a day: tests/test_records_repair.py
    _write_state(tmp_path, json.dumps(doc))
    with StateStore(tmp_path) as s:
        assert s.notice is not None and reason in s.notice
        assert s.state["days"] == {}
    assert json.loads((tmp_path / "progress" / "state.json.bak").read_text()) == doc


def test_second_corruption_gets_a_timestamped_backup(tmp_path):
    _write_state(tmp_path, "garbage 1")
    with StateStore(tmp_path) as s:
        assert s.notice
    _write_state(tmp_path, "garbage 2")
    with StateStore(tmp_path).open(now=at(0)) as s:
        assert "state.json.20250301T090000Z.bak" in s.notice
    _write_state(tmp_path, "garbage 3")
    with StateStore(tmp_path).open(now=at(0)) as s:
        assert "state.json.20250301T090000Z-1.bak" in s.notice
    prog = tmp_path / "progress"
    assert (prog / "state.json.bak").read_text() == "garbage 1"
    assert (prog / "state.json.20250301T090000Z.bak").read_text() == "garbage 2"
    assert (prog / "state.json.20250301T090000Z-1.bak").read_text() == "garbage 3"


def test_empty_file_counts_as_corrupt(tmp_path):
    _write_state(tmp_path, "")
    with StateStore(tmp_path) as s:
        assert "empty" in s.notice


def test_valid_state_missing_optional_keys_is_filled_in(tmp_path):
    doc = {"schema": SCHEMA, "schema_version": 1, "days": {"1.1": {"first_activity": "2025-03-01T09:00:00Z"}}}
    _write_state(tmp_path, json.dumps(doc))
    with StateStore(tmp_path) as s:
        assert s.notice is None
        assert s.day_record("1.1")["attempts"] == []
        assert s.day_status("1.1") is Status.IN_PROGRESS


def test_read_state_is_lock_free_and_read_only(tmp_path):
    with StateStore(tmp_path) as s:
        s.touch("1.1", now=at(0))
        st, notice = read_state(tmp_path)  # while the tutor holds the lock
        assert notice is None and st["current_day"] == "1.1"
    p = _write_state(tmp_path, "{nope")
    st, notice = read_state(tmp_path)
    assert st["days"] == {} and "unreadable" in notice
    assert p.read_text() == "{nope"  # untouched
    assert not (tmp_path / "progress" / "state.json.bak").exists()
    assert read_state(tmp_path / "elsewhere")[0]["days"] == {}


def test_open_removes_temp_files_left_by_a_killed_writer(tmp_path):
    prog = tmp_path / "progress"
    prog.mkdir()
    leftover = prog / ".state.json.abc123.tmp"
    leftover.write_text("{half")
    with StateStore(tmp_path):
        assert not leftover.exists()


# --------------------------------------------------------------------------- active time


def test_active_time_skips_gaps_over_five_minutes(store):
    for minute in (0, 2, 4, 20, 21, 26, 31.5):
        store.touch("1.1", now=at(minute))
    # 0->2->4 counts 4m; 4->20 is a break; 20->21 counts 1m; 21->26 is exactly 5m: counts;
    # 26->31.5 is 5.5m: a break.
    assert store.active_seconds("1.1") == (4 + 1 + 5) * 60


def test_active_time_credits_the_later_days_event(store):
    store.touch("1.1", now=at(0))
    store.touch("1.1", now=at(3))
    store.touch("1.2", now=at(4))  # switch: the 1-minute gap belongs to 1.2
    store.touch("1.2", now=at(6))
    store.touch("1.1", now=at(8))
    assert store.active_seconds("1.1") == 3 * 60 + 2 * 60
    assert store.active_seconds("1.2") == 1 * 60 + 2 * 60
    assert store.total_active_seconds() == 8 * 60
    assert store.current_day == "1.1"


def test_every_recorder_counts_as_activity(store):
    store.record_check("1.1", make_result({"a": "fail"}), now=at(0))
    store.record_hint("1.1", 1, 1, now=at(1))
    store.record_question("1.1", "why scale?", now=at(2))
    store.record_concept_answer("1.1", "q", "0.125", True, now=at(3))
    store.record_insight("1.1", "softmax saturates", now=at(4))
    store.record_files_changed("1.1", ["impl/attention.py"], now=at(5))
    store.touch("1.1", now=at(6))
    assert store.active_seconds("1.1") == 6 * 60
    rec = store.day_record("1.1")
    assert rec["first_activity"] == "2025-03-01T09:00:00Z"
    assert rec["last_activity"] == "2025-03-01T09:06:00Z"


def test_out_of_order_event_adds_no_time_and_keeps_bounds(store):
    store.touch("1.1", now=at(10))
    store.touch("1.1", now=at(8))
    store.touch("1.1", now=at(11))
    rec = store.day_record("1.1")
    assert rec["first_activity"] == "2025-03-01T09:08:00Z"
    assert rec["last_activity"] == "2025-03-01T09:11:00Z"
    assert store.active_seconds("1.1") == 60


def test_unknown_day_has_no_time(store):
    assert store.active_seconds("9.9") == 0
    assert store.mastery("9.9") is None


# --------------------------------------------------------------------------- recorders


def test_record_check_keeps_attempt_details_and_check_history(store):
    r1 = make_result({"a": "fail", "b": "pass", "c": "error"}, {"a": "attn-missing-scale"})
    a1 = store.record_check("1.1", r1, now=at(0))
    assert a1 == {
        "time": "2025-03-01T09:00:00Z", "status": "fail", "duration_s": 1.5,
        "summary": {"pass": 1, "fail": 1, "error": 1, "timeout": 0, "crashed": 0, "skipped": 0},
        "failing": ["a", "c"], "pitfalls": ["attn-missing-scale"],
    }
    store.record_check("1.1", make_result({"a": "fail", "b": "pass", "c": "pass"}, {"a": "attn-missing-scale"}), now=at(1))
    store.record_check("1.1", make_result({"a": "pass", "b": "pass", "c": "pass"}), now=at(2))
    rec = store.day_record("1.1")
    assert rec["attempts_total"] == 3
    assert rec["fails_before_pass"] == 2
    assert rec["first_pass"] == "2025-03-01T09:02:00Z"
    assert rec["last_result"] == "pass"
    assert rec["pitfalls"] == {"attn-missing-scale": 2}
    a = rec["checks"]["a"]
    assert (a["fails"], a["failing"], a["fixed_at"], a["fixed_after"]) == (2, False, "2025-03-01T09:02:00Z", 2)
    assert a["pitfalls"] == {"attn-missing-scale": 2}
    assert rec["checks"]["c"]["fixed_at"] == "2025-03-01T09:01:00Z"
    assert rec["checks"]["b"]["fails"] == 0 and rec["checks"]["b"]["fixed_at"] is None
    # a regression reopens the failure
    store.record_check("1.1", make_result({"a": "timeout", "b": "pass", "c": "pass"}), now=at(3))
    a = store.day_record("1.1")["checks"]["a"]
    assert a["failing"] and a["fixed_at"] is None and a["last_message"].startswith("a:")
    assert store.day_record("1.1")["fails_before_pass"] == 2  # frozen after the first pass


def test_pitfall_counted_once_per_run(store):
    store.record_check(
        "1.1", make_result({"a": "fail", "b": "fail"}, {"a": "attn-missing-scale", "b": "attn-missing-scale"}),
        now=at(0),
    )
    assert store.day_record("1.1")["pitfalls"] == {"attn-missing-scale": 1}
    assert store.day_record("1.1")["checks"]["b"]["pitfalls"] == {"attn-missing-scale": 1}


def test_only_skipped_checks_do_not_pass(store):
    store.record_check("1.1", make_result({"metal": "skipped"}), now=at(0))
    assert store.day_status("1.1") is Status.IN_PROGRESS
    assert store.day_record("1.1")["first_pass"] is None


def test_attempts_are_capped_but_counters_are_not(store, monkeypatch):
    monkeypatch.setattr(state_mod, "MAX_ATTEMPTS", 5)
    store.autosave = False
    for i in range(12):
        store.record_check("1.1", make_result({"a": "fail"}), now=at(i))
    rec = store.day_record("1.1")
    assert len(rec["attempts"]) == 5
    assert rec["attempts"][0]["time"] == "2025-03-01T09:07:00Z"
    assert rec["attempts_total"] == 12 and rec["fails_before_pass"] == 12
    assert rec["checks"]["a"]["fails"] == 12


def test_default_caps_bound_the_file(tmp_path):
    with StateStore(tmp_path, autosave=False) as s:
        for i in range(state_mod.MAX_ATTEMPTS + 30):
            s.record_check("1.1", make_result({"a": "fail", "b": "pass"}), now=at(i))
            s.record_question("1.1", "q" * 10_000, now=at(i))
        assert len(s.day_record("1.1")["attempts"]) == state_mod.MAX_ATTEMPTS
        assert len(s.day_record("1.1")["questions"]) == state_mod.MAX_QUESTIONS
        assert len(s.day_record("1.1")["questions"][0]["text"]) == state_mod.MAX_TEXT
    assert (tmp_path / "progress" / "state.json").stat().st_size < 2_000_000


def test_record_hint_marks_the_last_rung(tmp_path):
    course = make_course((1, "W1", [make_lesson("1.1", tasks=[make_task(1, hints=["a", "b"])])]))
    with StateStore(tmp_path, course=course) as s:
        assert s.record_hint("1.1", 1, 1, now=at(0))["final"] is False
        assert s.day_record("1.1")["final_hint"] is False
        assert s.record_hint("1.1", 1, 2, now=at(1))["final"] is True  # ladder of 2 from the lesson
        assert s.day_record("1.1")["final_hint"] is True
        assert s.record_hint("1.2", 1, 3, now=at(2))["final"] is False  # unknown lesson: ladder of 4
        assert s.record_hint("1.2", 1, 4, now=at(3))["final"] is True
        assert s.record_hint("1.3", 2, 2, now=at(4), rungs=2)["final"] is True
        s.record_hint("1.1", 1, 1, now=at(5))  # seen again: not a new hint
        assert s.day_record("1.1")["hints_seen"] == ["1:1", "1:2"]
        assert len(s.day_record("1.1")["hints"]) == 3
        with pytest.raises(ValueError):
            s.record_hint("1.1", 1, 0)


def test_record_concept_answer_tracks_first_and_last(store):
    store.record_concept_answer("1.1", "scale", "8", False, now=at(0))
    store.record_concept_answer("1.1", "scale", 0.125, True, now=at(1))
    store.record_concept_answer("1.1", "shape", ["N", "L", "D"], True, now=at(2))
    rec = store.day_record("1.1")
    assert rec["concepts"]["scale"]["first_correct"] is False
    assert rec["concepts"]["scale"]["last_correct"] is True
    assert rec["concepts"]["scale"]["tries"] == 2
    assert rec["concept_answers"][2] == {
        "time": "2025-03-01T09:02:00Z", "qid": "shape", "answer": ["N", "L", "D"], "correct": True,
    }


def test_questions_insights_and_files(store):
    store.record_question("1.1", "  Why divide by sqrt(D)?  ", now=at(0))
    store.record_question("1.1", "   ", now=at(1))  # empty: activity only
    store.record_insight("1.1", "Scaling keeps the softmax from saturating.", now=at(2))
    store.record_files_changed("1.1", ["impl/attention.py", Path("impl/basics.py")], now=at(3))
    store.record_files_changed("1.1", ["impl/attention.py"], now=at(4))
    rec = store.day_record("1.1")
    assert rec["questions"] == [{"time": "2025-03-01T09:00:00Z", "text": "Why divide by sqrt(D)?"}]
    assert rec["insights"][0]["text"] == "Scaling keeps the softmax from saturating."
    assert rec["files_changed"] == {
        "impl/basics.py": "2025-03-01T09:03:00Z",
        "impl/attention.py": "2025-03-01T09:04:00Z",
    }


def test_sessions_start_end_and_implicit_end(store):
    s1 = store.start_session(now=at(0))
    store.touch("1.1", now=at(1))
    store.touch("1.2", now=at(2))
    assert store.end_session(now=at(30)) is s1
    assert s1 == {"start": "2025-03-01T09:00:00Z", "end": "2025-03-01T09:30:00Z", "days": ["1.1", "1.2"]}
    assert store.end_session(now=at(31)) is None
    store.start_session(now=at(60))
    store.touch("1.2", now=at(65))
    s3 = store.start_session(now=at(200))  # previous one never ended (a crash)
    prev = store.sessions[-2]
    assert prev["end"] == "2025-03-01T10:05:00Z" and prev["implicit_end"] is True
    assert s3["end"] is None and len(store.sessions) == 3


def test_status_and_mastery_are_cached_in_the_file(tmp_path):
    with StateStore(tmp_path) as s:
        s.record_check("1.1", make_result({"a": "pass"}), now=at(0))
    rec = json.loads((tmp_path / "progress" / "state.json").read_text())["days"]["1.1"]
    assert rec["status"] == "completed" and rec["mastery"] == "implementing"


def test_store_queries_use_the_course(tmp_path):
    course = make_course((1, "W1", [make_lesson("1.1", questions=[("after-q", "after")])]))
    with StateStore(tmp_path, course=course) as s:
        s.record_check("1.1", make_result({"a": "pass"}), now=at(0))
        s.record_concept_answer("1.1", "other", "x", True, now=at(1))
        assert s.mastery("1.1") is Mastery.IMPLEMENTING  # the lesson's after-q is unanswered
        s.record_concept_answer("1.1", "after-q", "x", True, now=at(2))
        assert s.mastery("1.1") is Mastery.COMPETENT
        assert s.assess("1.1").missing == ("explain the key idea in your own words (record an insight)",)


def test_empty_state_shape():
    st = empty_state(at(0))
    assert st["created"] == st["updated"] == "2025-03-01T09:00:00Z"
    assert set(st) == {"schema", "schema_version", "created", "updated", "current_day",
                       "last_activity", "sessions", "days", "review"}
    assert st["review"] == {"items": {}, "done": {}}  # the spaced-review schedule


def test_records_import_no_ui_or_heavy_modules():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import tutor.records, tutor.records.state, "
        "tutor.records.tracker, tutor.records.sessions, tutor.records.atomic; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'textual', 'rich', 'mlx', 'yaml', 'numpy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
