"""Ideas over time: how many ideas the learner had met, and at which level, at the end of
each calendar date (UTC) they worked. Pure: the records go in, a list comes out.

The levels are :func:`tutor.records.mastery.assess_ideas`'s, applied to the records *as
they stood* at the end of each date, rebuilt from the timestamps the state keeps -- no
rule is restated here. What ``state.json`` keeps, and so what the series can honestly show:

- check runs (``attempts``: time, pass/fail, the pitfalls diagnosed): a day is started
  from its ``first_activity``, passes as of a date if its latest run by then passed, and a
  diagnosis counts from the run that carried it;
- hints (time, task, rung, whether the last rung): a hint-heavy pass from when the hints
  were taken;
- concept answers (time, right or wrong): a question's first and latest answer by then;
- spaced review (``review.done``: when an item left the schedule): a mistake stops
  counting from that time, as it does now.

What it cannot show: *due for review* is a property of the schedule at the moment one
looks (the queue is computed, not logged), so the series has no 🔁 level -- a due idea is
counted at the level its evidence gives. An item that left review and came back with a new
mistake keeps no record of its first leaving, so it counts as open in between.

The event lists are capped (:mod:`tutor.records.state`'s ``MAX_*``, oldest dropped): what
was dropped is known only to have happened no later than the oldest event kept, and is
counted from there; a day whose runs before a date were all dropped is taken to pass from
its ``first_pass``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any, Iterable

from tutor.records._util import UTC, parse_iso
from tutor.records.mastery import IdeaLevel, assess_ideas

__all__ = ["ideas_over_time", "retired_at", "work_dates"]

LEVELS = (IdeaLevel.MASTERED.value, IdeaLevel.SHAKY.value, IdeaLevel.LEARNING.value)


def _times(items: Any, key: str = "time") -> list[tuple[datetime, dict]]:
    """``(time, item)`` for the dict items with a readable time, oldest first."""
    out = []
    for it in items or ():
        t = parse_iso(it.get(key)) if isinstance(it, dict) else None
        if t is not None:
            out.append((t, it))
    out.sort(key=lambda x: x[0])
    return out


def _day_times(rec: dict) -> Iterable[datetime]:
    """Every timestamp of a day record: the activity events the learner made."""
    for key in ("first_activity", "last_activity", "first_pass"):
        t = parse_iso(rec.get(key))
        if t is not None:
            yield t
    for key in ("attempts", "hints", "concept_answers", "questions", "insights"):
        for t, _ in _times(rec.get(key)):
            yield t
    for t in (rec.get("files_changed") or {}).values():
        t = parse_iso(t)
        if t is not None:
            yield t
    for p in (rec.get("predictions") or {}).values():
        if isinstance(p, dict):
            for key in ("predicted_at", "measured_at"):
                t = parse_iso(p.get(key))
                if t is not None:
                    yield t


def retired_at(state: dict | None) -> dict[str, datetime]:
    """Review items that left the schedule and have not come back (``idea:<id>``,
    ``q:<day>/<question id>``), with when they left."""
    rv = (state or {}).get("review")
    if not isinstance(rv, dict) or not isinstance(rv.get("done"), dict):
        return {}
    items = rv.get("items") if isinstance(rv.get("items"), dict) else {}
    out = {}
    for item, when in rv["done"].items():
        t = parse_iso(when)
        if t is not None and item not in items:
            out[str(item)] = t
    return out


def work_dates(state: dict | None) -> list[date]:
    """The calendar dates (UTC) with any recorded event, oldest first."""
    state = state if isinstance(state, dict) else {}
    dates = set()
    for rec in (state.get("days") or {}).values():
        if isinstance(rec, dict):
            dates.update(t.date() for t in _day_times(rec))
    dates.update(t.date() for t in retired_at(state).values())
    return sorted(dates)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def _pitfalls_of(runs: Iterable[dict]) -> dict[str, int]:
    """pitfall -> how many of the check runs ``runs`` diagnosed it."""
    out: dict[str, int] = {}
    for a in runs:
        for p in a.get("pitfalls") or ():
            out[str(p)] = out.get(str(p), 0) + 1
    return out


class _Day:
    """One day record with its event times parsed once (a series replays it per date)."""

    def __init__(self, rec: dict):
        self.rec = rec
        self.first = parse_iso(rec.get("first_activity"))
        self.first_pass = parse_iso(rec.get("first_pass"))
        self.runs = _times(rec.get("attempts"))
        self.hints = _times(rec.get("hints"))
        self.answers = _times(rec.get("concept_answers"))
        self.summaries = {str(q): (c, parse_iso(c.get("first_time")), parse_iso(c.get("last_time")))
                          for q, c in (rec.get("concepts") or {}).items() if isinstance(c, dict)}
        # what the cap dropped (oldest first) happened before the oldest event kept
        self.runs_dropped = _int(rec.get("attempts_total")) > len(self.runs)
        every_run = _pitfalls_of(a for _, a in self.runs)
        self.lost_pitfalls = {str(p): _int(n) - every_run.get(str(p), 0)
                              for p, n in (rec.get("pitfalls") or {}).items()
                              if _int(n) > every_run.get(str(p), 0)}
        kept_keys = {f"{h.get('task')}:{h.get('rung')}" for _, h in self.hints}
        self.lost_hints = [k for k in rec.get("hints_seen") or () if k not in kept_keys]
        self.lost_final = bool(rec.get("final_hint")) and not any(h.get("final")
                                                                  for _, h in self.hints)
        known = [t for t in (self.first, *(ev[0][0] for ev in (self.runs, self.hints,
                                                                    self.answers) if ev)) if t]
        self.earliest = min(known) if known else None  # before it, the day is not in the records

    def as_of(self, end: datetime) -> dict:
        """The fields of the day record the idea rules read, as they stood before ``end``."""
        kept = [a for t, a in self.runs if t < end]
        if kept:
            last_result = kept[-1].get("status")
        else:  # every run before ``end`` dropped by the cap: the first pass tells
            fp = self.first_pass
            last_result = "pass" if self.runs_dropped and fp is not None and fp < end else None
        pitfalls = _pitfalls_of(kept)
        if self.runs and self.runs[0][0] < end:
            for p, lost in self.lost_pitfalls.items():
                pitfalls[p] = pitfalls.get(p, 0) + lost

        seen, final = [], False
        for t, h in self.hints:
            if t < end:
                key = f"{h.get('task')}:{h.get('rung')}"
                if key not in seen:
                    seen.append(key)
                final = final or bool(h.get("final"))
        if self.hints and self.hints[0][0] < end:
            seen += [k for k in self.lost_hints if k not in seen]
            final = final or self.lost_final

        answers: dict[str, list[bool]] = {}
        for t, a in self.answers:
            if t < end:
                answers.setdefault(str(a.get("qid")), []).append(a.get("correct") is True)
        concepts = {}
        for qid, (c, ft, lt) in self.summaries.items():
            mine = answers.pop(qid, [])
            if ft is None or ft >= end:
                if not mine:
                    continue
                first_ok = mine[0]
            else:
                first_ok = bool(c.get("first_correct"))  # the summary outlives the cap
            if lt is not None and lt < end:
                last_ok = bool(c.get("last_correct"))
            else:
                last_ok = mine[-1] if mine else first_ok
            concepts[qid] = {"first_correct": first_ok, "last_correct": last_ok}
        for qid, mine in answers.items():  # answers without a summary (should not happen)
            concepts[qid] = {"first_correct": mine[0], "last_correct": mine[-1]}

        started = self.first is not None and self.first < end
        return {"first_activity": self.rec.get("first_activity") if started else None,
                "attempts_total": len(kept), "last_result": last_result,
                "pitfalls": pitfalls, "hints_seen": seen, "final_hint": final,
                "concepts": concepts}


def _records_as_of(days: dict[str, _Day], done: dict[str, datetime],
                   end: datetime) -> tuple[dict, set[str]]:
    """The records as they stood just before ``end`` -- the day fields the idea rules read
    -- and the review items retired by then (see the module docstring for what is kept)."""
    return ({"days": {d: day.as_of(end) for d, day in days.items()
                      if day.earliest is not None and day.earliest < end}},
            {item for item, t in done.items() if t < end})


def _parsed(state: dict | None) -> tuple[dict[str, _Day], dict[str, datetime]]:
    state = state if isinstance(state, dict) else {}
    days = {str(d): _Day(rec) for d, rec in (state.get("days") or {}).items()
            if isinstance(rec, dict)}
    return days, retired_at(state)


def ideas_over_time(course: Any, state: dict | None) -> list[dict]:
    """One point per date worked (UTC, oldest first): the ideas met by the end of it and
    how many were mastered, shaky and learning (``assess_ideas`` on the records as they
    stood; no due-for-review level, see the module docstring). ``[]`` with no records.

    ``{"date": "2025-03-01", "met": 3, "mastered": 0, "shaky": 1, "learning": 2,
    "new": ["attention-scale", ...]}`` -- ``new`` lists the ideas first met that date."""
    if course is None:
        return []
    out: list[dict] = []
    before: set[str] = set()
    days, done = _parsed(state)
    for d in work_dates(state):
        end = datetime.combine(d + timedelta(days=1), time(0), tzinfo=UTC)
        records, retired = _records_as_of(days, done, end)
        ideas = assess_ideas(course, records, (), retired)
        counts = {lvl: sum(1 for i in ideas if i["level"] == lvl) for lvl in LEVELS}
        met = [i["id"] for i in ideas]
        out.append({"date": d.isoformat(), "met": len(ideas), **counts,
                    "new": [i for i in met if i not in before]})
        before.update(met)
    return out
