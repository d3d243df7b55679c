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

Ideas (the vocabulary of ``curriculum/ideas.yaml``)
---------------------------------------------------
An idea's days are the lessons whose pitfalls or concept questions are tagged with it. The
learner has *met* an idea once one of its days is started or one of its pitfalls was
diagnosed (on any day). Each met idea gets one level, the first that holds:

- 🔁 Due for review -- the spaced-review queue holds it (the idea, or one of its tagged
  concept questions) and it is due now.
- ❗ Shaky          -- a check diagnosed one of its pitfalls, a concept question tagged with
  it was ever answered wrong (first or latest answer), or one of its days passed
  hint-heavy (the last, pseudo-code rung used, or more than COMPETENT_MAX_HINTS hints).
  A diagnosis or wrong answer stops counting once spaced review has retired its item
  (``idea:<id>`` or ``q:<day>/<question>`` left the schedule, tutor.records.review); it
  stays listed as reviewed. A hint-heavy pass is never retired.
- ⭐ Mastered       -- at least one day of the idea passes its checks (latest run), every
  concept question tagged with it on the passing days is answered with the latest answer
  right, at least one question of it is, and no answered one has its latest answer wrong
  (unless spaced review retired it). A passed check alone, or right answers alone, are
  never mastery: an idea with no tagged question answered stays Learning. Starting another
  day of the idea does not take mastery away until that day passes too (a mistake
  diagnosed there makes it Shaky, above).
- 📖 Learning       -- met, none of the above yet.

The learner's most frequent mistakes are the diagnosed pitfalls summed over the days,
most often first, each with the days it was diagnosed on and the ideas it belongs to.
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
    "IdeaLevel",
    "hint_heavy",
    "assess_ideas",
    "frequent_mistakes",
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


# --------------------------------------------------------------------------- ideas


class IdeaLevel(str, Enum):
    DUE = "due"
    SHAKY = "shaky"
    MASTERED = "mastered"
    LEARNING = "learning"

    @property
    def icon(self) -> str:
        return {"due": "🔁", "shaky": "❗", "mastered": "⭐", "learning": "📖"}[self.value]

    @property
    def label(self) -> str:
        return {"due": "Due for review", "shaky": "Shaky", "mastered": "Mastered",
                "learning": "Learning"}[self.value]

    def __str__(self) -> str:
        return f"{self.icon} {self.label}"


def hint_heavy(rec: dict | None) -> bool:
    """The day passed, but leaning on hints: the last rung, or more than
    COMPETENT_MAX_HINTS distinct hints (the Competent conditions 1-2, seen from the idea)."""
    if not rec or rec.get("last_result") != "pass":
        return False
    return bool(rec.get("final_hint")) or len(rec.get("hints_seen") or []) > COMPETENT_MAX_HINTS


def _pitfall_counts(days: dict) -> dict[str, list[tuple[str, int]]]:
    """pitfall -> [(day, count)] of its diagnoses, in the records' day order."""
    out: dict[str, list[tuple[str, int]]] = {}
    for day, rec in days.items():
        for pid, n in ((rec or {}).get("pitfalls") or {}).items():
            if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
                out.setdefault(str(pid), []).append((str(day), int(n)))
    return out


def _queued(entry: Any) -> tuple[str | None, str | None]:
    """(idea id, "<day>/<question id>") a review-queue entry
    (:meth:`tutor.records.review.ReviewItem.to_json`) is about, either may be None: an idea
    item names its ``idea``, a question item has the id ``q:<day>/<question id>``."""
    if not isinstance(entry, dict):
        return None, None
    idea = entry.get("idea")
    kind, _, rest = str(entry.get("id") or "").partition(":")
    return (str(idea) if idea else None), (rest if kind == "q" and "/" in rest else None)


def assess_ideas(course: Any, state: dict | None, queue: Iterable[dict] = (),
                 retired: Iterable[str] = ()) -> list[dict]:
    """Every idea the learner has met, in the vocabulary's order, with its level and the
    evidence behind it (see "Ideas" in the module docstring). ``queue`` holds the review
    entries due now, ``retired`` the review items that left the schedule (none when the
    records keep no schedule)."""
    retired = set(retired)
    ideas = getattr(getattr(course, "ideas", None), "ideas", None) or ()
    days: dict = (state or {}).get("days") or {}
    lessons = list(getattr(course, "lessons", None) or [])
    diagnosed = _pitfall_counts(days)
    due_ideas, due_questions = set(), set()
    for entry in queue or ():
        idea, question = _queued(entry)
        if idea:
            due_ideas.add(idea)
        if question:
            due_questions.add(question)
    # each lesson's pitfalls and questions once, not once per idea (a series calls this per date)
    tagged = [(l.id, {p.id for p in l.pitfalls}, {f"{l.id}/{q.id}" for q in l.concept_questions})
              for l in lessons]
    out = []
    for idea in ideas:
        own_days = [d for d, pids, qids in tagged
                    if pids.intersection(idea.pitfalls) or qids.intersection(idea.questions)]
        started = [d for d in own_days if _started(days.get(d))]
        mistakes = [{"pitfall": pid, "day": d, "count": n}
                    for pid in idea.pitfalls for d, n in diagnosed.get(pid, [])]
        if not started and not mistakes:
            continue
        passing = [d for d in started if (days.get(d) or {}).get("last_result") == "pass"]
        heavy = [d for d in started if hint_heavy(days.get(d))]
        asked, right, wrong, later = [], [], [], []
        for key in idea.questions:
            d, _, qid = key.partition("/")
            if d not in started:
                later.append(key)
                continue
            asked.append(key)
            c = ((days.get(d) or {}).get("concepts") or {}).get(qid)
            if not c:
                continue
            if c.get("last_correct"):
                right.append(key)
            if not c.get("first_correct") or not c.get("last_correct"):
                wrong.append(key)
        # what mastery still waits for: the questions of the passing days not answered right
        owed = [k for k in asked if k.partition("/")[0] in passing and k not in right]
        due = idea.id in due_ideas or bool(due_questions.intersection(idea.questions))
        # what spaced review has retired no longer makes the idea shaky (it stays listed)
        open_mistakes = [] if f"idea:{idea.id}" in retired else mistakes
        open_wrong = [k for k in wrong if f"q:{k}" not in retired]
        if due:
            level = IdeaLevel.DUE
        elif open_mistakes or open_wrong or heavy:
            level = IdeaLevel.SHAKY
        # (a latest answer wrong and not retired is in open_wrong: Shaky above)
        elif passing and right and not owed:
            level = IdeaLevel.MASTERED
        else:
            level = IdeaLevel.LEARNING
        out.append({
            "id": idea.id, "name": idea.name, "level": level.value,
            "label": str(level), "days": own_days, "started_days": started,
            "passing_days": passing, "questions": asked, "later_questions": later,
            "right": right, "owed": owed,
            "wrong_answers": wrong, "mistakes": mistakes, "hint_heavy_days": heavy,
            "due": due, "reviewed": sorted(
                ([f"idea:{idea.id}"] if mistakes and f"idea:{idea.id}" in retired else [])
                + [f"q:{k}" for k in wrong if f"q:{k}" in retired]),
        })
    return out


def frequent_mistakes(course: Any, state: dict | None, limit: int = 5) -> list[dict]:
    """The diagnosed pitfalls by how many check runs carried them (ties by id), each with
    its days and ideas; at most ``limit``."""
    vocab = getattr(course, "ideas", None)
    rows = []
    for pid, where in _pitfall_counts((state or {}).get("days") or {}).items():
        ideas = [i.id for i in vocab.of_pitfall(pid)] if vocab is not None else []
        rows.append({"pitfall": pid, "count": sum(n for _, n in where),
                     "days": [d for d, _ in where], "ideas": ideas})
    rows.sort(key=lambda r: (-r["count"], r["pitfall"]))
    return rows[:limit] if limit > 0 else rows
