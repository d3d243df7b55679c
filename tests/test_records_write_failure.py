"""Records that cannot be written (read-only progress/ or sessions/, a full disk) never
hide the check results: the results come first, then one line says so; the exit code
follows the checks. `start`, `hint` and `ask` say the same in one line, no traceback.

Running as root, chmod does not stop a write, so most tests make the writer fail the way
a read-only folder or a full disk does; the chmod test runs for other users only."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tutor import cli
from tutor.records import sessions as sessions_mod
from tutor.records import state as state_mod
from tutor.workspace import init_workspace


def _result(day: str = "1.1") -> dict:
    check = {"id": "linear", "task": 1, "title": "linear", "status": "fail",
             "message": "still a stub", "evidence": {}, "pitfall": None, "skip_reason": None}
    return {"day": day, "impl": "impl", "status": "fail", "duration_s": 0.1, "checks": [check],
            "summary": {"pass": 0, "fail": 1, "error": 0, "timeout": 0, "crashed": 0, "skipped": 0}}


@pytest.fixture
def ws(tmp_path, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    init_workspace(ws)
    monkeypatch.setenv("TINY_LLM_TUTOR_WORKSPACE", str(ws))

    def fake_run_days(budgets, impl, on_day=None, cancel=None, python=None, kernels=None):
        for day, _ in budgets:
            if on_day:
                on_day(day)
            yield _result(day)

    import tutor.checking.runner as runner

    monkeypatch.setattr(runner, "run_days", fake_run_days)
    return ws


def _refuse(path, *a, **k):
    raise PermissionError(errno.EACCES, "Permission denied", str(path))


def _disk_full(path, *a, **k):
    raise OSError(errno.ENOSPC, "No space left on device", str(path))


def _main(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_json_prints_results_when_progress_is_read_only(ws, monkeypatch, capsys):
    monkeypatch.setattr(state_mod, "atomic_write_text", _refuse)
    rc, out, err = _main(capsys, "check", "day1.1", "--json")
    assert rc == 1
    assert json.loads(out)["day"] == "1.1"  # stdout stays the JSON, whole
    assert "Traceback" not in out + err
    lines = [ln for ln in err.splitlines() if "not recorded" in ln]
    assert len(lines) == 1 and "could not be written" in lines[0] and "progress" in lines[0]


def test_check_prints_results_then_one_line_when_sessions_disk_is_full(ws, monkeypatch, capsys):
    monkeypatch.setattr(sessions_mod, "atomic_write_bytes", _disk_full)
    rc, out, err = _main(capsys, "check", "day1.1")
    assert rc == 1 and "Traceback" not in out + err
    assert "linear" in out and "1 failed" in out
    notice = [ln for ln in out.splitlines() if "could not be written" in ln]
    assert len(notice) == 1 and "No space left" in notice[0]
    assert "run was recorded" in notice[0]  # state.json took it; only the notes did not
    assert out.index("1 failed") < out.index("could not be written")  # the results come first


def test_a_passing_week_still_exits_by_the_checks(ws, monkeypatch, capsys):
    import tutor.checking.runner as runner

    def passing(budgets, impl, on_day=None, **kw):
        for day, _ in budgets:
            r = _result(day)
            r["status"] = "pass"
            r["checks"][0]["status"] = "pass"
            r["summary"].update(fail=0, **{"pass": 1})
            yield r

    monkeypatch.setattr(runner, "run_days", passing)
    monkeypatch.setattr(state_mod, "atomic_write_text", _refuse)
    rc, out, err = _main(capsys, "check", "week1", "--json")
    assert rc == 0 and len(json.loads(out)) == 7
    assert len([ln for ln in err.splitlines() if "not recorded" in ln]) == 1  # once, not per day


def test_start_says_so_in_one_line(ws, monkeypatch, capsys):
    monkeypatch.setattr(state_mod, "atomic_write_text", _refuse)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    rc, out, err = _main(capsys, "start")
    assert rc == 2 and "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1 and "could not be written" in err


@pytest.mark.parametrize("argv", [("hint", "day1.1"), ("ask", "day1.1", "why?")])
def test_hint_and_ask_say_so_in_one_line(ws, monkeypatch, capsys, argv):
    monkeypatch.setattr(state_mod, "atomic_write_text", _refuse)
    rc, out, err = _main(capsys, *argv)
    assert rc == 2 and "Traceback" not in out + err
    assert "could not be written" in err


def test_progress_shows_the_table_when_the_tracker_cannot_be_written(ws, monkeypatch, capsys):
    from tutor.records import tracker

    monkeypatch.setattr(tracker, "atomic_write_text", _refuse)
    rc, out, err = _main(capsys, "progress")
    assert rc == 0 and "Traceback" not in out + err
    assert "Week 1" in out and "tracker could not be written" in out


ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _bound_by_permissions():
    """Run as root, the child drops the capabilities that let root write where chmod says
    it may not (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER: Linux only)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.skipif(ROOT and not sys.platform.startswith("linux"),
                    reason="running as root: chmod does not stop root from writing")
def test_read_only_progress_for_real(tmp_path):
    exe = Path(sys.executable).parent / "tiny-llm-tutor"
    env = {k: v for k, v in os.environ.items() if k != "TINY_LLM_TUTOR_WORKSPACE"}
    subprocess.run([str(exe), "init", "ws"], cwd=tmp_path, check=True, capture_output=True)
    ws = tmp_path / "ws"
    (ws / "progress").chmod(0o555)
    try:
        r = subprocess.run([str(exe), "check", "day1.1", "--json"], cwd=ws, env=env,
                           capture_output=True, text=True, timeout=120,
                           preexec_fn=_bound_by_permissions if ROOT else None)
    finally:
        (ws / "progress").chmod(0o755)
    assert r.returncode == 1 and json.loads(r.stdout)["day"] == "1.1"
    assert "Traceback" not in r.stderr and "could not be written" in r.stderr


# ------------------------------------------------------------------ inside the app's session


def _session(ws, monkeypatch):
    from tutor.engine import TutorSession
    import tutor.checking.runner as runner

    monkeypatch.setattr(runner, "run_day", lambda day, *a, **k: _result(day))
    return TutorSession(ws).open("day1.1")


def test_a_check_run_in_the_app_keeps_its_results_when_notes_cannot_be_written(ws, monkeypatch):
    session = _session(ws, monkeypatch)
    monkeypatch.setattr(sessions_mod, "atomic_write_bytes", _disk_full)
    result = session.run_checks()
    assert result["day"] == "1.1" and session.latest_result() is result
    notice = session.take_notice()
    assert notice and "results are shown" in notice and "No space left" in notice
    assert session.take_notice() is None  # said once


def test_autosave_trouble_is_said_once_not_every_minute(ws, monkeypatch):
    session = _session(ws, monkeypatch)
    monkeypatch.setattr(sessions_mod, "atomic_write_bytes", _disk_full)
    session.save_documents()
    assert "notes were not saved" in (session.take_notice() or "")
    session.save_documents()
    assert session.take_notice() is None
    monkeypatch.undo()
    session.save_documents()  # the disk has room again: a later failure is news again
    monkeypatch.setattr(sessions_mod, "atomic_write_bytes", _disk_full)
    session.question("why is the mask added?")  # something new for the notes to hold
    session.save_documents()
    assert session.take_notice()
