"""A state.json the tutor cannot fully use keeps as much of the learner's history as it
can: a newer tutor's file is left alone, one wrong field is repaired on its own, and an
unreadable file never leads to an empty tracker over the real one."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tutor import cli
from tutor.records.state import SCHEMA, NewerState, StateStore, read_state

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


def _write_state(ws: Path, doc) -> Path:
    p = ws / "progress" / "state.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def _history(ws: Path) -> dict:
    """Two days of real work, as saved by this tutor."""
    with StateStore(ws) as s:
        s.start_session(now=T0)
        s.record_question("1.1", "why sqrt(D)?", now=T0)
        s.record_hint("1.1", 1, 1, now=T0)
        s.touch("1.2", now=T0)
        s.end_session(now=T0)
    return json.loads((ws / "progress" / "state.json").read_text())


def test_a_newer_tutors_state_is_left_untouched(tmp_path):
    doc = {"schema": SCHEMA, "schema_version": 99, "days": {"1.1": {"future": True}}}
    p = _write_state(tmp_path, doc)
    before = p.read_bytes()
    with pytest.raises(NewerState) as exc:
        StateStore(tmp_path).open()
    msg = str(exc.value)
    assert "upgrade" in msg and "\n" not in msg
    assert p.read_bytes() == before
    assert [f.name for f in p.parent.iterdir() if "bak" in f.name] == []
    state, notice = read_state(tmp_path)
    assert "upgrade" in notice and p.read_bytes() == before
    # the lock is released: a later, upgraded tutor can open the records
    assert not StateStore(tmp_path)._lock_fd


def test_one_wrong_field_is_repaired_alone(tmp_path):
    doc = _history(tmp_path)
    doc["days"]["1.1"]["hints"] = "oops"
    _write_state(tmp_path, doc)
    with StateStore(tmp_path) as s:
        rec = s.day_record("1.1")
        assert rec["hints"] == []
        assert rec["questions"][0]["text"] == "why sqrt(D)?"  # the rest is kept
        assert rec["hints_seen"] == ["1:1"] and s.day_record("1.2") is not None
        assert len(s.sessions) == 1
        assert s.notice and "\n" not in s.notice
        assert "1.1" in s.notice and "'hints'" in s.notice
    saved = json.loads((tmp_path / "progress" / "state.json").read_text())
    assert saved["days"]["1.1"]["hints"] == [] and saved["days"]["1.1"]["questions"]
    # the file as it was is kept next to it
    assert json.loads((tmp_path / "progress" / "state.json.bak").read_text()) == doc


@pytest.mark.parametrize("break_it, check", [
    (lambda d: d.update(sessions={"x": 1}), lambda s: s.sessions == []),
    (lambda d: d["sessions"].append("junk"), lambda s: len(s.sessions) == 1),
    (lambda d: d["days"].update({"1.3": []}), lambda s: s.day_record("1.3") is None),
    (lambda d: d["days"]["1.1"].update(active_seconds="lots"),
     lambda s: s.day_record("1.1")["active_seconds"] == 0),
    (lambda d: d["days"]["1.1"]["hints"].append(7), lambda s: len(s.day_record("1.1")["hints"]) == 1),
    (lambda d: d.update(current_day=3), lambda s: s.current_day is None),
])
def test_each_kind_of_wrong_field_keeps_the_other_days(tmp_path, break_it, check):
    doc = _history(tmp_path)
    break_it(doc)
    _write_state(tmp_path, doc)
    with StateStore(tmp_path) as s:
        assert check(s)
        assert s.day_record("1.2") is not None and s.day_record("1.1")["questions"]
        assert s.notice and "repaired" in s.notice


def _progress(ws: Path, monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setenv("TINY_LLM_TUTOR_WORKSPACE", str(ws))
    rc = cli.main(["progress", *args])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("text", ["{broken", json.dumps({"schema": SCHEMA, "schema_version": 99})])
def test_progress_never_writes_an_empty_tracker_over_the_real_one(tmp_path, monkeypatch, capsys,
                                                                  text, as_json):
    tracker = tmp_path / "progress" / "tiny-llm-tracker.md"
    tracker.parent.mkdir(parents=True)
    tracker.write_text("# my real tracker\n")
    _write_state(tmp_path, text)
    rc, out = _progress(tmp_path, monkeypatch, capsys, *(["--json"] if as_json else []))
    assert rc == 0
    assert tracker.read_text() == "# my real tracker\n"
    assert "state.json" in out and "tracker" in out


def test_progress_rewrites_the_tracker_from_readable_records(tmp_path, monkeypatch, capsys):
    _history(tmp_path)
    rc, _ = _progress(tmp_path, monkeypatch, capsys)
    assert rc == 0 and "| 1.1 |" in (tmp_path / "progress" / "tiny-llm-tracker.md").read_text()
