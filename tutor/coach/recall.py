"""Misconception memory: a mistake diagnosed on one day, brought back as a question when
the learner opens another day that tests the same idea (``curriculum/ideas.yaml``).

    mistakes = misconceptions(course, days)      # every idea behind a diagnosed pitfall
    for m in to_raise(course, days, lesson):     # those today's lesson shares
        print(recall_text(lesson, m))            # the offline coach's question, no answer

``days`` is the records' per-day dict (``state["days"]``): each day's ``pitfalls`` counts
the diagnoses its check runs carried. A pitfall another lesson teaches (a check may name
one) counts on the day it was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Misconception", "misconceptions", "to_raise", "recall_text", "prompt_lines"]

SYMPTOM_LIMIT = 220
PROMPT_LIMIT = 12  # misconceptions listed in the LLM coach's prompt


@dataclass(frozen=True)
class Misconception:
    idea: object  # tutor.curriculum.Idea
    day: str  # where the mistake was diagnosed
    pitfall: str
    symptom: str  # the pitfall's symptom, as the lesson tells the learner
    times: int  # check runs that carried the diagnosis

    @property
    def asked_id(self) -> str:
        """The coach's record of having raised it on a day (``record_coach_asked``)."""
        return f"idea:{self.idea.id}"


def _symptom(course, pitfall_id: str) -> str:
    for lesson in course.lessons:
        p = lesson.pitfall(pitfall_id)
        if p is not None:
            flat = " ".join(p.symptom.split())
            if len(flat) <= SYMPTOM_LIMIT:
                return flat
            cut = flat[:SYMPTOM_LIMIT]
            end = max(cut.rfind(". "), cut.rfind("; "))
            return cut[:end] + "." if end > 60 else cut.rstrip() + " ..."
    return ""


def misconceptions(course, days: dict | None) -> list[Misconception]:
    """Each (idea, day) behind a diagnosed pitfall, in course order; a day's pitfalls
    most often diagnosed first."""
    ideas = getattr(course, "ideas", None)
    if ideas is None or not days:
        return []
    out: list[Misconception] = []
    seen: set[tuple[str, str]] = set()
    for day in course.day_ids:
        rec = days.get(day)
        counts = rec.get("pitfalls") if isinstance(rec, dict) else None
        if not isinstance(counts, dict):
            continue
        ranked = sorted(((int(n or 0), pid) for pid, n in counts.items()
                         if isinstance(n, (int, float)) and n > 0), key=lambda x: -x[0])
        for n, pid in ranked:
            for idea in ideas.of_pitfall(pid):
                if (idea.id, day) not in seen:
                    seen.add((idea.id, day))
                    out.append(Misconception(idea, day, pid, _symptom(course, pid), n))
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


def recall_text(lesson, m: Misconception) -> str:
    """The offline coach's question: where it went wrong before, in the words the lesson
    used for it, then the idea's question for today. Never the answer."""
    symptom = re.sub(r"\s+", " ", m.symptom).strip()
    said = f" a check recognised this in your code: “{symptom}”" if symptom else (
        f" a check diagnosed `{m.pitfall}` in your code.")
    return (f"From your own history: on day {m.day}{said} Day {lesson.id} tests the same "
            f"idea, {m.idea.name}. {m.idea.question_for(lesson.id)}")


def prompt_lines(lesson, mistakes: list[Misconception], raised: list[Misconception]) -> list[str]:
    """The LLM coach's view of them: every idea with where it was made, and which of them
    today's lesson tests again (to raise as a question before the learner codes)."""
    if not mistakes:
        return []
    # today's first, then the rest in course order, so a long history stays bounded
    shown = raised + [m for m in mistakes if m not in raised]
    out = ["The learner's misconceptions (diagnosed mistakes on earlier days, by idea):"]
    for m in shown[:PROMPT_LIMIT]:
        out.append(f"- {m.idea.name} [{m.idea.id}]: made on day {m.day} ({m.pitfall}, "
                   f"{m.times} check run{'s' if m.times != 1 else ''}): {m.symptom}")
    if raised:
        out.append(f"\nDay {lesson.id} tests these again. Before the learner codes, raise each "
                   "as a question (name the day and what went wrong there; do not give the "
                   "answer):")
        out += [f"- {m.idea.id}, from day {m.day}: for example, {m.idea.question_for(lesson.id)}"
                for m in raised]
    return out
