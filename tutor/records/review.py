"""Spaced review: what the learner got wrong comes back on later days, on an FSRS schedule
(the ``fsrs`` library), until it has stuck.

What enters the schedule (read from the records, so nothing else has to remember to add
it; :func:`sync` does it):

- a concept question answered wrong: item ``q:<day>/<question id>``;
- an idea behind a mistake a check diagnosed (``curriculum/ideas.yaml``): item
  ``idea:<idea id>``, asked with one of that idea's concept questions (a different one on
  each review) or, for an idea without any, its own question, graded by the learner.

The wrong answer or diagnosis is the item's first review, rated *Again*, at the time it
happened. Each review asked later is rated *Good* when answered right, *Again* when not.

THE RULE FOR LEAVING THE SCHEDULE (the one place it is written down): an item leaves once
a review answered right leaves its FSRS stability at ``GRADUATE_DAYS`` (21) days or more,
i.e. the scheduler would next ask it three weeks or more later. With the default
parameters that is the fourth right answer in a row on its due days (after 2, 6 and 17
days); a wrong answer on the way resets the stability and the count goes on from there.
An item that left comes back only with a new wrong answer or diagnosis after it left.

Due: an item is due when its due time falls on or before the end of the current UTC day,
so an item due this evening is asked at this morning's session. At most
``SESSION_LIMIT`` (3) are asked at a session's start, the most overdue first.

The schedule lives in the state (``state["review"]``, see tutor.records.schema)::

    {"items": {item_id: {"card": FSRS Card.to_dict(), "day": "1.2", "since": ISO,
                         "reviews": int, "right": int}},
     "done": {item_id: ISO}}          # when it left the schedule

Every function takes ``now`` (tests drive "a later day" with a fixed clock).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from fsrs import Card, Rating, Scheduler

from tutor.records._util import UTC, parse_iso, to_iso, utc_now

__all__ = ["GRADUATE_DAYS", "SESSION_LIMIT", "ReviewItem", "empty_review", "repair_review",
           "sync", "due_items", "next_due", "record_review", "items", "RULE"]

GRADUATE_DAYS = 21.0
SESSION_LIMIT = 3
# Only these kinds are reviewed: a predict question is about the learner's own engine and
# belongs with its measurement, on its day.
REVIEW_KINDS = ("shape", "number", "choice")

RULE = (f"A review item leaves the schedule once a right answer on its due day leaves its "
        f"FSRS stability at {GRADUATE_DAYS:g} days or more (with the default parameters: "
        f"four right answers in a row, after 1, 2, 6 and 17 days).")

# No same-day learning steps: sessions are days apart, so the first interval is a day.
# No fuzz: the learner (and the tests) can count on the dates.
_SCHEDULER = Scheduler(learning_steps=(), relearning_steps=(), enable_fuzzing=False)


@dataclass(frozen=True)
class ReviewItem:
    """One due (or scheduled) item, ready to ask."""
    id: str
    kind: str  # "question" (graded) or "idea" (self-graded when no question is given)
    day: str  # the day the question is asked from (for an idea: the question's day)
    source_day: str  # where the wrong answer or the diagnosis happened
    due: datetime
    question: Any = None  # tutor.curriculum ConceptQuestion, or None
    idea: Any = None  # tutor.curriculum Idea for an idea item
    prompt: str = ""  # the idea's own question when there is no concept question
    reviews: int = 0

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "day": self.day,
                "source_day": self.source_day, "due": to_iso(self.due),
                "idea": getattr(self.idea, "id", None),
                "question": getattr(self.question, "id", None),
                "prompt": self.question.prompt if self.question is not None else self.prompt,
                "graded": self.question is not None, "reviews": self.reviews}


def empty_review() -> dict:
    return {"items": {}, "done": {}}


def _card_ok(card: Any) -> bool:
    if not isinstance(card, dict):
        return False
    try:
        c = Card.from_dict(card)
    except Exception:  # noqa: BLE001 - any malformed card is the same repair
        return False
    return c.due is not None and c.due.tzinfo is not None


def repair_review(data: dict) -> list[str]:
    """Give ``data`` (the whole state) a sound ``review`` field in place; a malformed entry
    is dropped (``sync`` rebuilds it from the wrong answer or diagnosis it came from).
    Returns one note per repair."""
    notes: list[str] = []
    rv = data.get("review")
    if rv is None:  # a file from before spaced review
        data["review"] = empty_review()
        return notes
    if not isinstance(rv, dict):
        data["review"] = empty_review()
        return ["'review' was not an object"]
    for key in ("items", "done"):
        if not isinstance(rv.get(key), dict):
            if key in rv:
                notes.append(f"review '{key}' was not an object")
            rv[key] = {}
    for item_id, entry in list(rv["items"].items()):
        if not (isinstance(entry, dict) and _card_ok(entry.get("card"))
                and isinstance(entry.get("day"), str)):
            notes.append(f"review item '{item_id}' was malformed")
            del rv["items"][item_id]
            continue
        for k in ("reviews", "right"):
            if not isinstance(entry.get(k), int) or isinstance(entry.get(k), bool):
                entry[k] = 0
    for item_id, when in list(rv["done"].items()):
        if parse_iso(when) is None:
            notes.append(f"review 'done' entry '{item_id}' was not a time")
            del rv["done"][item_id]
    return notes


def _review(state: dict) -> dict:
    rv = state.get("review")
    if not isinstance(rv, dict) or not isinstance(rv.get("items"), dict) \
            or not isinstance(rv.get("done"), dict):
        repair_review(state)
        rv = state["review"]
    return rv


def _sources(state: dict, course) -> list[tuple[datetime, str, str]]:
    """``(time, item id, day)`` for every wrong concept answer and every diagnosis in the
    records, oldest first."""
    ideas = getattr(course, "ideas", None)
    kinds = {}
    for lesson in course.lessons:
        for q in lesson.concept_questions:
            kinds[(lesson.id, q.id)] = q.kind
    out = []
    for day, rec in (state.get("days") or {}).items():
        if not isinstance(rec, dict):
            continue
        for a in rec.get("concept_answers") or ():
            if not isinstance(a, dict) or a.get("correct") is not False:
                continue
            t = parse_iso(a.get("time"))
            if t is not None and kinds.get((day, str(a.get("qid")))) in REVIEW_KINDS:
                out.append((t, f"q:{day}/{a['qid']}", day))
        if ideas is None:
            continue
        for a in rec.get("attempts") or ():
            t = parse_iso(a.get("time")) if isinstance(a, dict) else None
            if t is None:
                continue
            for pid in a.get("pitfalls") or ():
                for idea in ideas.of_pitfall(str(pid)):
                    out.append((t, f"idea:{idea.id}", day))
    out.sort(key=lambda x: x[0])
    return out


def sync(state: dict, course, now: datetime | None = None) -> list[str]:
    """Put every wrong answer and diagnosis not yet scheduled on the schedule (changing
    ``state``); returns the ids added. An item already scheduled keeps its schedule; one
    that left comes back only for a mistake made after it left."""
    now = utc_now(now)
    rv = _review(state)
    added = []
    for t, item_id, day in _sources(state, course):
        if item_id in rv["items"] or t > now:
            continue
        left = parse_iso(rv["done"].get(item_id))
        if left is not None and t <= left:
            continue
        rv["done"].pop(item_id, None)
        card = Card(card_id=zlib.crc32(item_id.encode()), due=t)
        card, _ = _SCHEDULER.review_card(card, Rating.Again, t)
        rv["items"][item_id] = {"card": card.to_dict(), "day": day, "since": to_iso(t),
                                "reviews": 0, "right": 0}
        added.append(item_id)
    return added


def _end_of_day(now: datetime) -> datetime:
    return datetime.combine(now.date() + timedelta(days=1), time(0), tzinfo=UTC)


def _question(course, day: str, qid: str):
    """The concept question ``qid`` of ``day``; None when the course no longer has it."""
    try:
        lesson = course.lesson(day)
    except Exception:  # noqa: BLE001 - a day the course lost: nothing to ask
        return None
    return next((q for q in lesson.concept_questions if q.id == qid), None)


def _resolve(course, item_id: str, entry: dict) -> ReviewItem | None:
    """The item as asked: its question (or idea prompt); None when the course no longer
    has it."""
    due = Card.from_dict(entry["card"]).due
    reviews = int(entry.get("reviews") or 0)
    if item_id.startswith("q:"):
        day, _, qid = item_id[2:].partition("/")
        q = _question(course, day, qid)
        if q is None:
            return None
        return ReviewItem(item_id, "question", day, entry["day"], due, question=q,
                          reviews=reviews)
    if item_id.startswith("idea:"):
        ideas = getattr(course, "ideas", None)
        idea = ideas.get(item_id[5:]) if ideas is not None else None
        if idea is None:
            return None
        gradable = []
        for ref in idea.questions:
            day, _, qid = ref.partition("/")
            q = _question(course, day, qid)
            if q is not None and q.kind in REVIEW_KINDS:
                gradable.append((day, q))
        if gradable:  # a different question of the idea each time it comes back
            day, q = gradable[reviews % len(gradable)]
            return ReviewItem(item_id, "idea", day, entry["day"], due, question=q,
                              idea=idea, reviews=reviews)
        return ReviewItem(item_id, "idea", entry["day"], entry["day"], due, idea=idea,
                          prompt=f"{idea.name}: {idea.question_for(entry['day'])}",
                          reviews=reviews)
    return None


def items(state: dict, course) -> list[ReviewItem]:
    """Every scheduled item, soonest due first (the schedule as it is; no sync)."""
    rv = state.get("review")
    entries = rv.get("items") if isinstance(rv, dict) else None
    out = []
    for item_id, entry in (entries or {}).items():
        if isinstance(entry, dict) and _card_ok(entry.get("card")):
            it = _resolve(course, item_id, entry)
            if it is not None:
                out.append(it)
    out.sort(key=lambda it: (it.due, it.id))
    return out


def due_items(state: dict, course, now: datetime | None = None,
              limit: int | None = SESSION_LIMIT) -> list[ReviewItem]:
    """The items due today (the most overdue first), at most ``limit`` (None: all)."""
    end = _end_of_day(utc_now(now))
    due = [it for it in items(state, course) if it.due < end]
    return due if limit is None else due[:max(0, limit)]


def next_due(state: dict, course, now: datetime | None = None) -> datetime | None:
    """When the first item not due today is due (None: the schedule is empty)."""
    end = _end_of_day(utc_now(now))
    later = [it.due for it in items(state, course) if it.due >= end]
    return min(later) if later else None


def record_review(state: dict, item_id: str, correct: bool,
                  now: datetime | None = None) -> dict:
    """Reschedule ``item_id`` after a review answered right (``correct``) or not; returns
    ``{"id", "correct", "left": bool, "due": ISO | None, "stability": float}``. An item
    that passes the rule above leaves the schedule (``left``). KeyError if not scheduled."""
    now = utc_now(now)
    rv = _review(state)
    entry = rv["items"][item_id]
    card = Card.from_dict(entry["card"])
    # A review before the card's due time still counts; FSRS weighs the early recall.
    card, _ = _SCHEDULER.review_card(card, Rating.Good if correct else Rating.Again, now)
    entry["card"] = card.to_dict()
    entry["reviews"] = int(entry.get("reviews") or 0) + 1
    entry["right"] = int(entry.get("right") or 0) + (1 if correct else 0)
    left = bool(correct) and (card.stability or 0.0) >= GRADUATE_DAYS
    if left:
        del rv["items"][item_id]
        rv["done"][item_id] = to_iso(now)
    return {"id": item_id, "correct": bool(correct), "left": left,
            "due": None if left else to_iso(card.due), "stability": card.stability}
