"""What the interfaces do with the records after an event: log it, then regenerate the
tracker and the day's session doc. One place, so the CLI and the TUI agree."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from tutor.records._util import parse_iso
from tutor.records.mastery import assess, hint_heavy
from tutor.records.picture import mastery_picture
from tutor.records.sessions import write_session_doc
from tutor.records.state import StateStore, read_state
from tutor.records.tracker import knowledge_gaps, tracker_path, write_tracker


def changed_files(workspace: Path, lesson, recorded: dict | None = None) -> list[str]:
    """The day's files (in impl/ and kernels/) that differ from the stubs and were saved
    after the change ``recorded`` holds for each (``files_changed``: path -> ISO time),
    relative to the workspace. Per file, not since the day's last activity: an edit made
    before a hint or the editor's return is an edit all the same."""
    from tutor.workspace import lesson_files, stub_of

    out = []
    for rel in lesson_files(lesson):
        p = workspace / rel
        try:
            # Whole seconds, as the records store times: a file saved in the second it
            # was recorded is not a new change.
            mtime = datetime.fromtimestamp(int(p.stat().st_mtime), tz=timezone.utc)
            last = parse_iso((recorded or {}).get(rel))
            if last is not None and mtime <= last:
                continue
            if p.read_bytes() == stub_of(rel).read_bytes():
                continue
        except (OSError, ValueError):
            continue
        out.append(rel)
    return out


def record_changed_files(workspace: Path, store: StateStore, lesson) -> list[str]:
    """Log the day's files changed since they were last logged, for any day; returns
    them. A change belongs to the day that logged it: attention.py, written on day 1.1,
    is not day 1.3's work until it is saved again."""
    logged: dict[str, str] = {}
    for rec in (store.state.get("days") or {}).values():
        for path, t in (rec.get("files_changed") or {}).items():
            if isinstance(t, str) and t > logged.get(path, ""):
                logged[path] = t
    files = changed_files(workspace, lesson, logged)
    if files:
        store.record_files_changed(lesson.id, files)
    return files


def refresh_documents(workspace: Path, store: StateStore, course, lesson) -> None:
    write_tracker(workspace, store, course)
    write_session_doc(workspace, lesson, store, course=course)


def record_check(workspace: Path, course, lesson, result: dict) -> str | None:
    """Log a check run of ``lesson``'s day; returns a notice for the learner, if any.
    Raises :class:`~tutor.records.lock.StateLocked` when another tutor holds the records."""
    with StateStore(workspace, course=course) as store:
        record_changed_files(workspace, store, lesson)
        store.record_check(lesson.id, result)
        try:
            refresh_documents(workspace, store, course, lesson)
        except OSError as exc:  # the attempt is in state.json; the documents catch up later
            why = exc.strerror or str(exc)
            return (f"{store.notice + ' ' if store.notice else ''}The check run was recorded, "
                    f"but the tracker or session notes could not be written ({why}).")
        return store.notice


def progress_rows(course, state: dict) -> list[dict]:
    """The progress table as plain data, per week, from the records in ``state`` (pure:
    no file is read or written). The CLI's table, ``progress --json`` and the TUI's
    progress screen all show these rows."""
    days_state = (state or {}).get("days", {})
    weeks = []
    for week in course.weeks:
        rows = []
        for lesson in week.days:
            rec = days_state.get(lesson.id)
            a = assess(rec, lesson)
            pitfalls, missed = knowledge_gaps(rec)
            heavy = hint_heavy(rec)
            rows.append({
                "id": lesson.id, "title": lesson.title,
                "status": a.status.value, "status_icon": a.status.icon,
                "mastery": f"{a.mastery.icon} {a.mastery.label}" if a.mastery else "-",
                "mastery_level": a.mastery.value if a.mastery else None,
                "active_seconds": (rec or {}).get("active_seconds", 0),
                "attempts": (rec or {}).get("attempts_total", 0),
                "hints": len((rec or {}).get("hints_seen", [])),
                "hint_heavy": heavy,
                "gaps": ([p for p, _ in pitfalls] + [f"concept:{q}" for q in missed]
                         + (["hint-heavy pass"] if heavy else [])),
            })
        weeks.append({"number": week.number, "title": week.title, "days": rows})
    return weeks


def progress_summary(workspace: Path, course) -> tuple[dict, str | None]:
    """The progress table (see :func:`progress_rows`) after rewriting the tracker. Reads
    without the lock, so it works while a tutor is open. Records that cannot be read
    leave the tracker as it is: it is the learner's last good view of their history."""
    state, notice = read_state(workspace)
    if notice is None:
        try:
            write_tracker(workspace, state, course)
        except OSError as exc:  # a read-only progress/ or a full disk: the table still shows
            notice = (f"The tracker could not be written ({exc.strerror or exc}); "
                      "progress/tiny-llm-tracker.md was left as it was.")
    else:
        notice += " The tracker was left as it was."
    return ({"workspace": str(workspace), "current_day": state.get("current_day"),
             "tracker": str(tracker_path(workspace)),
             "weeks": progress_rows(course, state),
             **mastery_picture(course, state)}, notice)


def day_icons(workspace: Path, course) -> dict[str, str]:
    state, _ = read_state(workspace)
    days_state = state.get("days", {})
    return {lesson.id: assess(days_state.get(lesson.id), lesson).status.icon
            for lesson in course.lessons}
