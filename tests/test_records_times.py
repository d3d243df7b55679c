"""Stored times are read by one parser, and durations are written one way."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from tutor.records import fmt_duration
from tutor.records._util import parse_iso
from tutor.tui import render

REPO = Path(__file__).resolve().parents[1]
T = datetime(2025, 1, 2, 10, 15, tzinfo=timezone.utc)


def test_stored_times_parse_with_z_an_offset_or_none():
    assert parse_iso("2025-01-02T10:15:00Z") == T
    assert parse_iso("2025-01-02T11:15:00+01:00") == T
    assert parse_iso("2025-01-02T10:15:00") == T  # naive means UTC
    assert parse_iso("2025-01-02T10:15:00Z").tzinfo == timezone.utc
    for junk in ("", None, 3, "yesterday"):
        assert parse_iso(junk) is None


def test_one_parser_of_stored_times():
    """recorder.parse_time was a second parser (and choked on 'Z' before Python 3.11)."""
    users = [p.relative_to(REPO).as_posix() for p in (REPO / "tutor").rglob("*.py")
             if "fromisoformat" in p.read_text(encoding="utf-8")]
    assert users == ["tutor/records/_util.py"]


def test_the_progress_tables_and_the_notes_write_durations_alike():
    for seconds in (30, 720, 3900):
        assert render.duration(seconds) == fmt_duration(seconds)
    assert render.duration(3900) == "1h 05m"
    # No time at all is an empty cell in a table, and "0m" in prose.
    assert render.duration(0) == "-" and fmt_duration(0) == "0m"


def test_the_cli_progress_table_writes_durations_as_the_tracker_does(tmp_path, monkeypatch, capsys):
    from tutor import cli
    from tutor.records.state import StateStore
    from tutor.workspace import ENV_VAR, init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws)
    with StateStore(ws) as store:
        store.touch("1.1", now=T)
        store.state["days"]["1.1"]["active_seconds"] = 3900
        store.save()
    monkeypatch.setenv(ENV_VAR, str(ws))
    monkeypatch.setenv("COLUMNS", "200")
    assert cli.main(["progress"]) == 0
    out = capsys.readouterr().out
    assert "1h 05m" in out, out
    assert "1h 05m" in (ws / "progress" / "tiny-llm-tracker.md").read_text()
