"""The mastery picture: per-idea levels, the most frequent mistakes and the spaced-review
queue, from the records (the rules are :mod:`tutor.records.mastery`'s). One function, so
``progress``, ``progress --json``, the tracker and the app's progress screen agree."""

from __future__ import annotations

from datetime import datetime

from tutor.records.mastery import assess_ideas, frequent_mistakes

__all__ = ["mastery_picture", "review_queue", "by_level", "idea_evidence", "mistake_text"]


def review_queue(course, state: dict | None, now: datetime | None = None) -> list[dict]:
    """The spaced-review items due now, from the schedule the records keep: [] while they
    keep none (records written before spaced review, or a learner with nothing to
    review)."""
    return []


def mastery_picture(course, state: dict | None, now: datetime | None = None) -> dict:
    """Per-idea mastery, the most frequent mistakes and the review queue (the rules:
    :mod:`tutor.records.mastery`); pure, like :func:`progress_rows`."""
    queue = review_queue(course, state, now)
    return {"ideas": assess_ideas(course, state, queue),
            "frequent_mistakes": frequent_mistakes(course, state),
            "review_queue": queue}


LEVEL_ORDER = ("due", "shaky", "mastered", "learning")


def by_level(ideas: list[dict]) -> list[dict]:
    """The ideas with what needs attention first: due, shaky, mastered, learning."""
    return sorted(ideas, key=lambda i: LEVEL_ORDER.index(i["level"]))


def idea_evidence(idea: dict) -> str:
    """Why an idea stands where it does, in a few words (no answers, only what happened)."""
    parts = []
    if idea.get("due"):
        parts.append("due for review")
    for m in idea.get("mistakes") or []:
        n = m["count"]
        parts.append(f"{m['pitfall']} diagnosed on {m['day']}" + (f" ×{n}" if n > 1 else ""))
    if idea.get("wrong_answers"):
        parts.append("answered wrong: " + ", ".join(idea["wrong_answers"]))
    if idea.get("hint_heavy_days"):
        parts.append("hint-heavy pass on " + ", ".join(idea["hint_heavy_days"]))
    if parts or idea["level"] == "mastered":
        if idea["level"] == "mastered":
            parts.append(f"checks pass on {', '.join(idea['passing_days'])}, "
                         f"{len(idea['right'])} concept answer{'s' if len(idea['right']) != 1 else ''} right")
        return "; ".join(parts)
    todo = []
    failing = [d for d in idea.get("started_days") or [] if d not in (idea.get("passing_days") or [])]
    if failing:
        todo.append("checks not passing on " + ", ".join(failing))
    unanswered = [q for q in idea.get("questions") or [] if q not in (idea.get("right") or [])]
    if unanswered:
        todo.append("concept questions to answer: " + ", ".join(unanswered))
    elif not idea.get("questions"):
        todo.append("no concept question on it yet")
    return "; ".join(todo)


def mistake_text(m: dict) -> str:
    return f"{m['pitfall']} ×{m['count']} (day {', '.join(m['days'])})"
