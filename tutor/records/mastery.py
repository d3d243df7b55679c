"""Day status and mastery level, judged from a day's records.

Pure functions over one day record of ``progress/state.json`` (a dict, see
:mod:`tutor.records.state`) and, when known, the day's lesson (for its concept
questions). The same rules are printed by :func:`rules_text` for the CLI and the TUI.

Status
------
- ⬜ Not started -- no activity recorded for the day.
- 🟡 In progress -- activity recorded, but the latest check run did not pass (or none yet).
- ✅ Completed   -- the latest check run passed.
- ⭐ Mastered    -- the latest check run passed and the mastery level is ⭐ Mastery.

A check run passes when no check failed, errored, timed out or crashed and at least one
check passed; a skipped check never counts as passed. Status follows the *latest* run, so
breaking a finished day later shows it as in progress again.

Mastery levels (None while the day is not started)
--------------------------------------------------
- 📖 Learning     -- started; the latest check run does not pass yet.
- 💻 Implementing -- the latest check run passes, but a Competent condition is missing.
- ✅ Competent    -- the latest check run passes, and
    1. no hint at the last rung of a ladder (rung 4, the pseudo-code rung) was used;
    2. at most COMPETENT_MAX_HINTS (3) distinct hints (task, rung) were used;
    3. at most COMPETENT_MAX_FAILED_RUNS (10) failing check runs came before the first pass;
    4. every after-coding concept question (``when: after``) of the lesson is answered
       and its latest answer is right. When the lesson is unknown: at least one concept
       question is answered and every answered one's latest answer is right.
- ⭐ Mastery      -- Competent, and
    1. at least one insight (the key idea in the learner's own words) is recorded;
    2. every concept question of the day (before and after coding) is answered, each
       right on the first try (when the lesson is unknown: every answered one).

Levels are recomputed from the records on every read; a later failing run moves a day
back to 📖 Learning until it passes again. The counters behind conditions 2-3 and the
first-try answers are kept as summaries, so capping the stored event lists never changes
a level.

Active time
-----------
The gaps between consecutive activity events (check runs, hints, questions, answers,
insights, file saves) are added up and credited to the later event's day; a gap over
5 minutes (ACTIVITY_GAP_S) is a break and counts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

__all__ = [
    "Status",
    "Mastery",
    "Assessment",
    "assess",
    "rules_text",
    "COMPETENT_MAX_HINTS",
    "COMPETENT_MAX_FAILED_RUNS",
    "DEFAULT_LADDER_RUNGS",
    "ACTIVITY_GAP_S",
]

COMPETENT_MAX_HINTS = 3
COMPETENT_MAX_FAILED_RUNS = 10
DEFAULT_LADDER_RUNGS = 4  # lessons have exactly 4 hint rungs; rung 4 is pseudo-code
ACTIVITY_GAP_S = 300  # gaps longer than this between activity events are breaks


class Status(str, Enum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    MASTERED = "mastered"

    @property
    def icon(self) -> str:
        return _STATUS_ICONS[self]

    @property
    def label(self) -> str:
        return _STATUS_LABELS[self]

    def __str__(self) -> str:
        return f"{self.icon} {self.label}"


class Mastery(str, Enum):
    LEARNING = "learning"
    IMPLEMENTING = "implementing"
    COMPETENT = "competent"
    MASTERY = "mastery"

    @property
    def icon(self) -> str:
        return _MASTERY_ICONS[self]

    @property
    def label(self) -> str:
        return _MASTERY_LABELS[self]

    @property
    def rank(self) -> int:
        return list(Mastery).index(self)

    def __str__(self) -> str:
        return f"{self.icon} {self.label}"


_STATUS_ICONS = {
    Status.NOT_STARTED: "⬜",
    Status.IN_PROGRESS: "🟡",
    Status.COMPLETED: "✅",
    Status.MASTERED: "⭐",
}
_STATUS_LABELS = {
    Status.NOT_STARTED: "Not started",
    Status.IN_PROGRESS: "In progress",
    Status.COMPLETED: "Completed",
    Status.MASTERED: "Mastered",
}
_MASTERY_ICONS = {
    Mastery.LEARNING: "📖",
    Mastery.IMPLEMENTING: "💻",
    Mastery.COMPETENT: "✅",
    Mastery.MASTERY: "⭐",
}
_MASTERY_LABELS = {
    Mastery.LEARNING: "Learning",
    Mastery.IMPLEMENTING: "Implementing",
    Mastery.COMPETENT: "Competent",
    Mastery.MASTERY: "Mastery",
}


@dataclass(frozen=True)
class Assessment:
    """Where a day stands. ``missing`` lists what the next mastery level still needs."""

    status: Status
    mastery: Mastery | None
    passing: bool
    missing: tuple[str, ...] = field(default_factory=tuple)


def _started(rec: dict | None) -> bool:
    return bool(rec) and bool(rec.get("first_activity") or rec.get("attempts_total"))


def _question_ids(lesson: Any, when: str | None = None) -> list[str] | None:
    """Concept question ids of the lesson (optionally only those asked ``when``)."""
    if lesson is None:
        return None
    out = []
    for q in getattr(lesson, "concept_questions", None) or []:
        if when is None or str(getattr(q, "when", "")).lower() == when:
            out.append(str(getattr(q, "id")))
    return out


def _listing(ids: Iterable[str]) -> str:
    return ", ".join(f"`{i}`" for i in ids)


def assess(rec: dict | None, lesson: Any = None) -> Assessment:
    """Status and mastery level of one day record (see the module docstring for the rules)."""
    if not _started(rec):
        return Assessment(Status.NOT_STARTED, None, False, ("start the day",))
    assert rec is not None
    passing = rec.get("last_result") == "pass"
    if not passing:
        if not rec.get("attempts_total"):
            need = "run the day's checks and make them all pass"
        else:
            failing = []
            for a in reversed(rec.get("attempts") or []):
                failing = list(a.get("failing") or [])
                break
            need = "make every check pass" + (f" (failing now: {_listing(failing)})" if failing else "")
        return Assessment(Status.IN_PROGRESS, Mastery.LEARNING, False, (need,))

    concepts: dict = rec.get("concepts") or {}

    # -- Competent ---------------------------------------------------------------------
    missing: list[str] = []
    if rec.get("final_hint"):
        missing.append("pass without the last (pseudo-code) hint rung -- this day used it")
    hints = len(rec.get("hints_seen") or [])
    if hints > COMPETENT_MAX_HINTS:
        missing.append(f"pass with at most {COMPETENT_MAX_HINTS} hints -- this day used {hints}")
    fails = int(rec.get("fails_before_pass") or 0)
    if fails > COMPETENT_MAX_FAILED_RUNS:
        missing.append(
            f"pass within {COMPETENT_MAX_FAILED_RUNS} failing check runs -- "
            f"this day had {fails} before the first pass"
        )
    after = _question_ids(lesson, "after")
    if after is None:  # lesson unknown: judge the questions that were answered
        if not concepts:
            missing.append("answer the after-coding concept questions")
        else:
            wrong = [q for q, c in concepts.items() if not c.get("last_correct")]
            if wrong:
                missing.append(f"answer these concept questions right: {_listing(wrong)}")
    else:
        unanswered = [q for q in after if q not in concepts]
        wrong = [q for q in after if q in concepts and not concepts[q].get("last_correct")]
        if unanswered:
            missing.append(f"answer the after-coding concept questions: {_listing(unanswered)}")
        if wrong:
            missing.append(f"answer these after-coding concept questions right: {_listing(wrong)}")
    if missing:
        return Assessment(Status.COMPLETED, Mastery.IMPLEMENTING, True, tuple(missing))

    # -- Mastery -----------------------------------------------------------------------
    if not rec.get("insights"):
        missing.append("explain the key idea in your own words (record an insight)")
    every = _question_ids(lesson)
    if every is None:
        every = list(concepts)
    unanswered = [q for q in every if q not in concepts]
    not_first = [q for q in every if q in concepts and not concepts[q].get("first_correct")]
    if unanswered:
        missing.append(f"answer every concept question: {_listing(unanswered)}")
    if not_first:
        missing.append(
            "get every concept question right on the first try -- "
            f"missed first time: {_listing(not_first)}"
        )
    if missing:
        return Assessment(Status.COMPLETED, Mastery.COMPETENT, True, tuple(missing))
    return Assessment(Status.MASTERED, Mastery.MASTERY, True, ())


def rules_text() -> str:
    """The status and mastery rules as plain text, for ``progress`` output and the TUI."""
    m = {lvl: str(lvl) for lvl in Mastery}
    s = {st: str(st) for st in Status}
    return "\n".join(
        [
            "Day status",
            f"  {s[Status.NOT_STARTED]:<16} no activity recorded for the day.",
            f"  {s[Status.IN_PROGRESS]:<16} started, but the latest check run did not pass (or none yet).",
            f"  {s[Status.COMPLETED]:<16} the latest check run passed.",
            f"  {s[Status.MASTERED]:<16} the latest check run passed and the level is {m[Mastery.MASTERY]}.",
            "  A run passes when no check fails, errors, times out or crashes and at least one",
            "  check passed; skipped checks never count as passed.",
            "",
            "Mastery level",
            f"  {m[Mastery.LEARNING]:<16} started; the latest check run does not pass yet.",
            f"  {m[Mastery.IMPLEMENTING]:<16} the checks pass, but a Competent condition is missing.",
            f"  {m[Mastery.COMPETENT]:<16} the checks pass, and",
            f"                   - no last-rung hint (rung {DEFAULT_LADDER_RUNGS}, the pseudo-code) was used,",
            f"                   - at most {COMPETENT_MAX_HINTS} hints were used,",
            f"                   - at most {COMPETENT_MAX_FAILED_RUNS} failing check runs came before the first pass,",
            "                   - every after-coding concept question is answered right.",
            f"  {m[Mastery.MASTERY]:<16} Competent, and",
            "                   - the key idea is recorded in your own words (an insight),",
            "                   - every concept question of the day was right on the first try.",
            "  Levels are recomputed on every read: a later failing run means Learning again.",
            "",
            "Active time",
            "  The gaps between consecutive activity events (checks, hints, questions, answers,",
            f"  file saves) are added up; a gap over {ACTIVITY_GAP_S // 60} minutes is a break and counts nothing.",
        ]
    )
