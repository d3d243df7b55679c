"""``progress/tiny-llm-tracker.md``: the learner's progress tracker, rendered from state.

The tracker is fully generated (regenerated after every check run and at the end of a
session), so it carries no learner-editable blocks: notes belong in the session docs.

    render_tracker(state, course) -> str     # pure
    write_tracker(workspace, state, course)  # atomic write, returns the path
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from pathlib import Path
from typing import Any

from tutor.records._util import day_sort_key, fmt_duration, fmt_time, md_cell, md_safe, parse_iso
from tutor.records.atomic import atomic_write_text
from tutor.records.mastery import Status, assess, hint_heavy
from tutor.records.picture import (by_level, idea_evidence, level_counts, mastery_picture,
                                   mistake_text, queue_text)

__all__ = ["render_tracker", "write_tracker", "tracker_path", "knowledge_gaps", "recent_activity"]

RECENT_LIMIT = 12


def tracker_path(workspace: Path | str) -> Path:
    return Path(workspace) / "progress" / "tiny-llm-tracker.md"


def _state_dict(state: Any) -> dict:
    if isinstance(state, dict):
        return state
    inner = getattr(state, "state", None)  # a StateStore
    if isinstance(inner, dict):
        return inner
    raise TypeError("state must be the state dict or a StateStore")


def _weeks(course: Any) -> list:
    return list(getattr(course, "weeks", None) or []) if course is not None else []


def knowledge_gaps(rec: dict | None) -> tuple[list[tuple[str, int]], list[str]]:
    """(pitfalls hit with counts, most frequent first; concept questions ever missed)."""
    if not rec:
        return [], []
    pitfalls = sorted(
        ((str(p), int(n)) for p, n in (rec.get("pitfalls") or {}).items()),
        key=lambda x: (-x[1], x[0]),
    )
    missed = [
        qid
        for qid, c in (rec.get("concepts") or {}).items()
        if not c.get("first_correct") or not c.get("last_correct")
    ]
    return pitfalls, missed


def _gaps_cell(rec: dict | None) -> str:
    pitfalls, missed = knowledge_gaps(rec)
    parts = []
    if pitfalls:
        parts.append("pitfalls: " + ", ".join(f"{p} ×{n}" for p, n in pitfalls))
    if missed:
        parts.append("missed questions: " + ", ".join(missed))
    if hint_heavy(rec):
        parts.append("hint-heavy pass")
    return md_cell("; ".join(parts), 400) if parts else "—"


def _check_line(day: str, a: dict) -> str:
    summary = a.get("summary") or {}
    if a.get("status") == "pass":
        return f"day {day}: checks passed ({int(summary.get('pass', 0))} passing)"
    failing = a.get("failing") or []
    text = f"day {day}: checks failed ({len(failing)} failing"
    if a.get("pitfalls"):
        text += "; diagnosed " + ", ".join(a["pitfalls"])
    return text + ")"


def recent_activity(state: Any, limit: int = RECENT_LIMIT) -> list[tuple[str, str]]:
    """The latest ``limit`` (ISO time, description) pairs over all days and sessions, in
    the order they happened (oldest first, read like a log)."""
    st = _state_dict(state)
    # Times are whole seconds, so ties are common (a CLI command, a quick session): order
    # by time, then by the session an event falls in, then start < work < end.
    sessions = [s for s in st.get("sessions") or [] if isinstance(s.get("start"), str)]
    starts = [s["start"] for s in sessions]
    events: list[tuple[str, int, int, str]] = []

    def add(t: Any, text: str) -> None:
        t = str(t or "")
        events.append((t, bisect_right(starts, t) - 1, 1, text))

    for day, rec in (st.get("days") or {}).items():
        for a in rec.get("attempts") or []:
            icon = "✅" if a.get("status") == "pass" else "❌"
            add(a.get("time"), f"{icon} {_check_line(day, a)}")
        for h in rec.get("hints") or []:
            add(h.get("time"), f"💡 day {day}: hint, task {h.get('task')} rung {h.get('rung')}")
        for c in rec.get("concept_answers") or []:
            verdict = "right" if c.get("correct") else "not right yet"
            add(c.get("time"), f"❓ day {day}: concept question `{c.get('qid')}` answered, {verdict}")
        for q in rec.get("questions") or []:
            add(q.get("time"), f"💬 day {day}: asked “{md_safe(q.get('text'), 80)}”")
        for i in rec.get("insights") or []:
            add(i.get("time"), f"✍️ day {day}: insight recorded")
    for n, s in enumerate(sessions):
        events.append((s["start"], n, 0, "▶️ session started"))
        if isinstance(s.get("end"), str):
            start, end = parse_iso(s.get("start")), parse_iso(s.get("end"))
            took = f" after {fmt_duration((end - start).total_seconds())}" if start and end else ""
            events.append((s["end"], n, 2, "⏹️ session ended" + took))
    events.sort()
    return [(t, text) for t, _, _, text in events[-limit:]] if limit > 0 else []


def _row(day: str, title: str, lesson: Any, rec: dict | None, link: str | None) -> str:
    a = assess(rec, lesson)
    hints = len((rec or {}).get("hints_seen") or [])
    attempts = int((rec or {}).get("attempts_total") or 0)
    active = fmt_duration((rec or {}).get("active_seconds")) if rec else "—"
    title_cell = md_cell(title, 120)
    if link and a.status is not Status.NOT_STARTED:
        title_cell = f"[{title_cell}]({link})"
    mastery = str(a.mastery) if a.mastery else "—"
    return (
        f"| {a.status.icon} | {md_cell(day)} | {title_cell} | {active} | {attempts} | {hints} "
        f"| {mastery} | {_gaps_cell(rec)} |"
    )


_HEADER = (
    "| Status | Day | Title | Active | Attempts | Hints | Mastery | Knowledge gaps |\n"
    "|:-:|---|---|--:|--:|--:|---|---|"
)


def _picture_lines(st: dict, course: Any, now: datetime | None = None) -> list[str]:
    """The ideas met, the most frequent mistakes and the review queue (the rules:
    tutor.records.mastery)."""
    if course is None:
        return []
    picture = mastery_picture(course, st, now, history=False)  # the app and --json draw it
    ideas = by_level(picture["ideas"])
    out = ["", "## Ideas", ""]
    if ideas:
        n = level_counts(ideas)
        out += [(f"{len(ideas)} ideas met: ⭐ {n['mastered']} mastered · ❗ {n['shaky']} shaky · "
                 f"🔁 {n['due']} due for review · 📖 {n['learning']} learning. Mastered needs "
                 "a day of the idea passing its checks and the concept questions on it of the "
                 "passing days answered right; a diagnosed mistake, a wrong answer or a "
                 "hint-heavy pass makes it shaky."), "",
                "| Level | Idea | Days met | Why |", "|---|---|---|---|"]
        for i in ideas:
            out.append(f"| {i['label']} | {md_cell(i['name'], 120)} (`{i['id']}`) | "
                       f"{md_cell(', '.join(i['started_days']) or '—')} | "
                       f"{md_cell(idea_evidence(i), 300) or '—'} |")
    else:
        out.append("_No idea met yet._")
    out += ["", "## Most frequent mistakes", ""]
    mistakes = picture["frequent_mistakes"]
    out += [f"- {md_safe(mistake_text(m), 200)}" for m in mistakes] or ["_None diagnosed._"]
    out += ["", "## Review queue", ""]
    queue = picture["review_queue"]
    out += ([f"- {md_safe(queue_text(q), 200)}" for q in queue]
            or ["_Nothing due for review._"])
    return out


def render_tracker(state: Any, course: Any, now: datetime | None = None) -> str:
    """The tracker markdown for ``state`` (dict or StateStore) and ``course``; ``now``
    (default: the clock) decides which review items are due."""
    st = _state_dict(state)
    days: dict = st.get("days") or {}
    lessons_by_id: dict[str, Any] = {}
    for week in _weeks(course):
        for lesson in getattr(week, "days", None) or []:
            lessons_by_id[str(lesson.id)] = lesson

    all_ids = list(lessons_by_id) + [d for d in sorted(days, key=day_sort_key) if d not in lessons_by_id]
    assessments = {d: assess(days.get(d), lessons_by_id.get(d)) for d in all_ids}
    n_total = len(lessons_by_id) or len(all_ids)
    done = sum(1 for d, a in assessments.items() if a.status in (Status.COMPLETED, Status.MASTERED))
    mastered = sum(1 for a in assessments.values() if a.status is Status.MASTERED)
    going = sum(1 for a in assessments.values() if a.status is Status.IN_PROGRESS)
    active = sum(int(r.get("active_seconds") or 0) for r in days.values())
    runs = sum(int(r.get("attempts_total") or 0) for r in days.values())
    hints = sum(len(r.get("hints_seen") or []) for r in days.values())
    current = st.get("current_day")

    out = ["# tiny-llm progress tracker", ""]
    out.append(
        "<!-- Generated by tiny-llm-tutor from progress/state.json after every check run and "
        "at the end of each session. Edits here are overwritten; write notes in sessions/. -->"
    )
    out.append("")
    summary = (
        f"**Summary:** {done}/{n_total} days completed ({mastered} ⭐ mastered) · "
        f"{going} 🟡 in progress · {fmt_duration(active)} active · {runs} check runs · "
        f"{hints} hints"
    )
    if current:
        cur = lessons_by_id.get(current)
        summary += f" · current: day {md_safe(current)}" + (f" — {md_safe(cur.title, 80)}" if cur is not None else "")
    out.append(summary)
    out.append("")
    out.append(
        "Status: ⬜ not started · 🟡 in progress · ✅ completed · ⭐ mastered. "
        "Mastery: 📖 Learning · 💻 Implementing · ✅ Competent · ⭐ Mastery. "
        "Active time leaves out breaks over 5 minutes."
    )

    for week in _weeks(course):
        number = getattr(week, "number", "?")
        title = getattr(week, "title", "")
        out += ["", f"## Week {number}: {md_safe(title, 120)}" if title else f"## Week {number}", "", _HEADER]
        for lesson in getattr(week, "days", None) or []:
            d = str(lesson.id)
            fname = getattr(lesson, "session_filename", None)
            wk = getattr(lesson, "week", number)
            link = f"../sessions/week{wk}/{fname}" if fname else None
            out.append(_row(d, getattr(lesson, "title", ""), lesson, days.get(d), link))

    extra = [d for d in all_ids if d not in lessons_by_id]
    if extra:
        out += ["", "## Other recorded days", "", _HEADER]
        for d in extra:
            out.append(_row(d, "(not in the current course)", None, days.get(d), None))

    out += _picture_lines(st, course, now)

    out += ["", "## Recent activity", ""]
    recent = recent_activity(st)
    if recent:
        out += [f"- {fmt_time(t)} · {text}" for t, text in recent]
    else:
        out.append("_Nothing yet: start a day with `tiny-llm-tutor start`._")
    out.append("")
    return "\n".join(out)


def write_tracker(workspace: Path | str, state: Any, course: Any) -> Path:
    """Render and atomically write ``progress/tiny-llm-tracker.md``; returns its path."""
    return atomic_write_text(tracker_path(workspace), render_tracker(state, course))
