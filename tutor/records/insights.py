"""When to ask the learner for a day's key idea in their own words.

The tutor asks once per day, after the day first passes: not on a failing day, and never
again once the learner has answered (an insight recorded at or after the first pass) or
dismissed the prompt (``insight_skipped``). Both are in the records, so a new session
remembers them. Pure functions over the state document: no file is read or written.
"""

from __future__ import annotations

from tutor.records._util import parse_iso


def insight_due(rec: dict | None) -> bool:
    """Should the tutor ask for this day's insight now?"""
    if not rec or rec.get("last_result") != "pass" or rec.get("insight_skipped"):
        return False
    first_pass = parse_iso(rec.get("first_pass"))
    for item in rec.get("insights") or []:
        t = parse_iso(item.get("time")) if isinstance(item, dict) else None
        # An idea written before the code worked does not answer the after-pass prompt.
        if first_pass is None or t is None or t >= first_pass:
            return False
    return True


def _in_a_session(t, sessions: list[dict]) -> bool:
    for s in sessions:
        start, end = parse_iso(s.get("start")), parse_iso(s.get("end"))
        # strictly after the start: `check` may record in the second the app opens
        if start is not None and start < t and (end is None or t <= end):
            return True
    return False


def insight_to_ask(state: dict, current: str | None) -> str | None:
    """The day to ask about when the tutor opens: the current day if it is due, else the
    latest day that first passed outside the app (``check`` in a terminal), where no
    prompt could be shown. A day that passed in the app was asked there already."""
    days = (state or {}).get("days") or {}
    if current and insight_due(days.get(current)):
        return current
    sessions = [s for s in (state.get("sessions") or []) if isinstance(s, dict)]
    outside = []
    for day, rec in days.items():
        t = parse_iso((rec or {}).get("first_pass"))
        if t is not None and insight_due(rec) and not _in_a_session(t, sessions):
            outside.append((t, day))
    return max(outside)[1] if outside else None
