"""Misconception memory: a mistake diagnosed on one day, brought back as a question when
the learner opens another day that tests the same idea (``curriculum/ideas.yaml``).

    mistakes = misconceptions(course, days)      # every idea behind a diagnosed pitfall
    for m in to_raise(course, days, lesson):     # those today's lesson shares
        print(recall_text(lesson, m))            # the offline coach's question, no answer

``days`` is the records' per-day dict (``state["days"]``): each day's ``pitfalls`` counts
the diagnoses its check runs carried, and its ``concepts`` the concept answers; a concept
question first answered wrong is a misconception of its ideas too. A pitfall another
lesson teaches (a check may name one) counts on the day it was made.

Raised once per day: the app records ``Misconception.asked_id`` in the day's
``coach.asked`` when it shows the question, and the offline coach leads its first reply
of a day with any not yet raised (``pending``), so ``ask`` on the command line asks too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Misconception", "misconceptions", "to_raise", "pending", "recall_text",
           "prompt_lines"]

SYMPTOM_LIMIT = 220
PROMPT_LIMIT = 12  # misconceptions listed in the LLM coach's prompt


@dataclass(frozen=True)
class Misconception:
    idea: object  # tutor.curriculum.Idea
    day: str  # where the mistake was diagnosed (or the question answered)
    pitfall: str  # "" for a wrong concept answer
    symptom: str  # the pitfall's symptom as the lesson tells it, or the question's prompt
    times: int  # check runs that carried the diagnosis (tries, for a question)
    question: str = ""  # the concept question's id, for a wrong answer

    @property
    def asked_id(self) -> str:
        """The coach's record of having raised it on a day (``record_coach_asked``)."""
        return f"idea:{self.idea.id}"


def _short(text: str) -> str:
    flat = " ".join(str(text or "").split())
    if len(flat) <= SYMPTOM_LIMIT:
        return flat
    cut = flat[:SYMPTOM_LIMIT]
    end = max(cut.rfind(". "), cut.rfind("; "), cut.rfind("? "))
    return cut[:end + 1] if end > 60 else cut.rstrip() + " ..."


def _symptom(course, pitfall_id: str) -> str:
    for lesson in course.lessons:
        p = lesson.pitfall(pitfall_id)
        if p is not None:
            return _short(p.symptom)
    return ""


def _question(course, day: str, qid: str):
    try:
        return next((q for q in course.lesson(day).concept_questions if q.id == qid), None)
    except Exception:  # noqa: BLE001 - a day gone from the course: nothing to quote
        return None


def misconceptions(course, days: dict | None) -> list[Misconception]:
    """Each (idea, day) behind a diagnosed pitfall or a concept question first answered
    wrong, in course order; a day's pitfalls most often diagnosed first, then its
    questions."""
    ideas = getattr(course, "ideas", None)
    if ideas is None or not days:
        return []
    out: list[Misconception] = []
    seen: set[tuple[str, str]] = set()
    for day in course.day_ids:
        rec = days.get(day)
        if not isinstance(rec, dict):
            continue
        counts = rec.get("pitfalls")
        ranked = sorted(((int(n or 0), pid) for pid, n in counts.items()
                         if isinstance(n, (int, float)) and n > 0),
                        key=lambda x: -x[0]) if isinstance(counts, dict) else []
        for n, pid in ranked:
            for idea in ideas.of_pitfall(pid):
                if (idea.id, day) not in seen:
                    seen.add((idea.id, day))
                    out.append(Misconception(idea, day, pid, _symptom(course, pid), n))
        concepts = rec.get("concepts")
        for qid, c in concepts.items() if isinstance(concepts, dict) else ():
            q = _question(course, day, str(qid))
            # a prediction far off is what predicting is for, not a misconception
            if not isinstance(c, dict) or c.get("first_correct", True) or (
                    q is not None and q.is_predict):
                continue
            for idea in ideas.of_question(day, str(qid)):
                if (idea.id, day) not in seen:
                    seen.add((idea.id, day))
                    out.append(Misconception(idea, day, "", _short(q.prompt) if q else "",
                                             int(c.get("tries") or 1), question=str(qid)))
    return out


def to_raise(course, days: dict | None, lesson) -> list[Misconception]:
    """The misconceptions of other days that ``lesson`` tests again: one per idea (the
    first day it was made), in the vocabulary's order."""
    shared = [i.id for i in course.ideas.of_lesson(lesson)]
    first: dict[str, Misconception] = {}
    for m in misconceptions(course, days):
        if m.day != lesson.id and m.idea.id in shared:
            first.setdefault(m.idea.id, m)
    return [first[i] for i in shared if i in first]


def pending(mistakes: list[Misconception], asked) -> list[Misconception]:
    """Those not raised yet on the day whose ``coach.asked`` ids are ``asked``."""
    done = set(asked or ())
    return [m for m in mistakes if m.asked_id not in done]


def recall_text(lesson, m: Misconception) -> str:
    """The offline coach's question: where it went wrong before, in the words the lesson
    used for it, then the idea's question for today. Never the answer."""
    symptom = re.sub(r"\s+", " ", m.symptom).strip()
    if m.question:
        said = (f" your first answer to the concept question “{symptom}” was wrong." if symptom
                else f" your first answer to concept question {m.question} was wrong.")
    else:
        said = f" a check recognised this in your code: “{symptom}”" if symptom else (
            f" a check diagnosed `{m.pitfall}` in your code.")
    return (f"From your own history: on day {m.day}{said} Day {lesson.id} tests the same "
            f"idea, {m.idea.name}. {m.idea.question_for(lesson.id)}")


def prompt_lines(lesson, mistakes: list[Misconception], raised: list[Misconception],
                 asked=()) -> list[str]:
    """The LLM coach's view of them: every idea with where it was made, and which of them
    today's lesson tests again (to raise as a question before the learner codes, unless
    ``asked``, the day's ``coach.asked`` ids, says it was raised today already)."""
    if not mistakes:
        return []
    # today's first, then the rest in course order, so a long history stays bounded
    shown = raised + [m for m in mistakes if m not in raised]
    out = ["The learner's misconceptions (diagnosed mistakes on earlier days, by idea):"]
    for m in shown[:PROMPT_LIMIT]:
        how = (f"{m.pitfall}, {m.times} check run{'s' if m.times != 1 else ''}" if m.pitfall
               else f"concept question {m.question} answered wrong first")
        out.append(f"- {m.idea.name} [{m.idea.id}]: made on day {m.day} ({how}): {m.symptom}")
    if raised:
        out.append(f"\nDay {lesson.id} tests these again. Before the learner codes, raise each "
                   "as a question (name the day and what went wrong there; do not give the "
                   "answer):")
        done = set(asked or ())
        out += [f"- {m.idea.id}, from day {m.day}: for example, {m.idea.question_for(lesson.id)}"
                + (" (already raised today: come back to it only when the learner's words "
                   "touch it)" if m.asked_id in done else "")
                for m in raised]
    return out
