"""The mastery picture: per-idea levels, the most frequent mistakes, the spaced-review
queue and the ideas over time, from the records (the rules are :mod:`tutor.records.mastery`'s).
One function, so ``progress``, ``progress --json``, the tracker and the app's progress
screen agree."""

from __future__ import annotations

import copy
from datetime import datetime

from tutor.records._util import day_sort_key
from tutor.records.mastery import assess_ideas, frequent_mistakes
from tutor.records.timeline import ideas_over_time, retired_at

__all__ = ["mastery_picture", "review_queue", "retired", "queue_text", "by_level", "level_counts", "idea_evidence", "mistake_text"]


def review_queue(course, state: dict | None, now: datetime | None = None) -> list[dict]:
    """The spaced-review items due today (:mod:`tutor.records.review`), the most overdue
    first, as the next session would find them: the schedule is brought up to date with
    the records on a copy, so a read-only view (``progress``) changes nothing."""
    if course is None or not isinstance(state, dict):
        return []
    from tutor.records import review

    # sync writes only the schedule: copy that, and read the days where they are
    scheduled = {**state, "review": copy.deepcopy(state.get("review"))}
    review.sync(scheduled, course, now)
    return [it.to_json() for it in review.due_items(scheduled, course, now, limit=None)]


def mastery_picture(course, state: dict | None, now: datetime | None = None, *,
                    history: bool = True) -> dict:
    """Per-idea mastery, the most frequent mistakes, the review queue (the rules:
    :mod:`tutor.records.mastery`) and, with ``history``, the ideas over time (one point per
    date worked, :func:`tutor.records.timeline.ideas_over_time`); pure, like
    :func:`progress_rows`."""
    queue = review_queue(course, state, now)
    out = {"ideas": assess_ideas(course, state, queue, retired(state)),
           "frequent_mistakes": frequent_mistakes(course, state),
           "review_queue": queue}
    if history:
        out["ideas_over_time"] = ideas_over_time(course, state)
    return out


def retired(state: dict | None) -> set[str]:
    """Review items that left the schedule and have not come back
    (:func:`tutor.records.timeline.retired_at` without the times)."""
    return set(retired_at(state))


def queue_text(item: dict) -> str:
    """One review item in a line: what it is about and where it came from."""
    what = (f"idea {item['idea']}" if item.get("idea")
            else f"question {item.get('day')}/{item.get('question')}")
    return f"{what} (from day {item.get('source_day')}, due {str(item.get('due') or '')[:10]})"


LEVEL_ORDER = ("due", "shaky", "mastered", "learning")


def by_level(ideas: list[dict]) -> list[dict]:
    """The ideas with what needs attention first: due, shaky, mastered, learning."""
    return sorted(ideas, key=lambda i: LEVEL_ORDER.index(i["level"]))


def level_counts(ideas: list[dict]) -> dict[str, int]:
    """How many of ``ideas`` stand at each level (every level; 0 where none is)."""
    return {lvl: sum(1 for i in ideas if i["level"] == lvl) for lvl in LEVEL_ORDER}


def idea_evidence(idea: dict) -> str:
    """Why an idea stands where it does, in a few words (no answers, only what happened)."""
    parts = []
    if idea.get("due"):
        parts.append("due for review")
    reviewed = set(idea.get("reviewed") or [])
    for m in idea.get("mistakes") or []:
        n = m["count"]
        parts.append(f"{m['pitfall']} diagnosed on {m['day']}" + (f" ×{n}" if n > 1 else "")
                     + (" (reviewed since)" if f"idea:{idea['id']}" in reviewed else ""))
    if idea.get("wrong_answers"):
        parts.append("answered wrong: " + ", ".join(
            k + (" (reviewed since)" if f"q:{k}" in reviewed else "") for k in idea["wrong_answers"]))
    if idea.get("hint_heavy_days"):
        parts.append("hint-heavy pass on " + ", ".join(idea["hint_heavy_days"]))
    if parts or idea["level"] == "mastered":
        if idea["level"] == "mastered":
            parts.append(f"checks pass on {', '.join(idea['passing_days'])}, "
                         f"{len(idea['right'])} concept answer{'s' if len(idea['right']) != 1 else ''} right")
        return "; ".join(parts)
    todo = []
    if not idea.get("passing_days"):
        todo.append("checks not passing yet on " + ", ".join(idea.get("started_days") or []))
    owed = idea.get("owed") or []
    if owed:
        todo.append("concept questions to answer: " + ", ".join(owed))
    elif not idea.get("right"):
        open_now = idea.get("questions") or []
        if open_now:
            todo.append("concept questions to answer: " + ", ".join(open_now))
        elif idea.get("later_questions"):
            days = sorted({q.partition("/")[0] for q in idea["later_questions"]},
                          key=day_sort_key)
            todo.append("its concept questions come on day " + ", ".join(days))
        else:
            todo.append("no concept question on it")
    return "; ".join(todo)


def mistake_text(m: dict) -> str:
    return f"{m['pitfall']} ×{m['count']} (day {', '.join(m['days'])})"
