"""The course as a corpus: one document per lesson, for day 3.5's retrieval ("ask the
course"). Our own text, shipped with the tutor, so no data set is downloaded.

A document holds what a learner reads before working: the title, objectives, concepts and
task descriptions. Hints, guiding questions, concept questions and pitfalls stay out: the
hint ladder is climbed one rung at a time, and answers should not come back as retrieved
context.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Document:
    source: str  # what a citation shows, e.g. "day 3.4 Speculative Decoding"
    text: str


def lesson_text(lesson) -> str:
    parts = [lesson.title, *lesson.objectives]
    for c in lesson.concepts:
        parts += [c.name, c.explanation]
    for t in lesson.tasks:
        parts += [t.title, t.description]
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def course_documents(weeks: tuple[int, ...] | None = None,
                     root: Path | None = None) -> list[Document]:
    """The lessons of the course (or of ``weeks`` only) in course order."""
    from .curriculum import load_course

    course = load_course(root)
    return [Document(f"day {lesson.id} {lesson.title}", lesson_text(lesson))
            for lesson in course.lessons if weeks is None or lesson.week in weeks]
