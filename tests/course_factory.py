"""Small courses for tests, made of the curriculum's own classes (tutor.curriculum): a test
names only what it cares about and the rest takes the real defaults, so a fake lesson can
never have a field, a default or a method the real one lacks."""

from __future__ import annotations

from tutor.curriculum import (Concept, ConceptQuestion, Course, Edit, Lesson, Pitfall, Task,
                              Week)


def make_task(id: int = 1, title: str | None = None, *, file: str = "attention.py",
              symbols=(), checks=(), description: str = "", guiding_questions=(),
              hints=()) -> Task:
    """A task whose edits are ``symbols`` in ``impl/<file>`` (the file alone without any)."""
    path = f"impl/{file}"
    edits = tuple(Edit(path, s) for s in symbols) or (Edit(path),)
    return Task(id=id, title=title or f"Task {id}", edits=edits, checks=tuple(checks),
                description=description, guiding_questions=tuple(guiding_questions),
                hints=tuple(hints))


def make_question(id: str, when: str = "after", kind: str = "text", prompt: str = "?",
                  answer="", explanation: str = "", **kw) -> ConceptQuestion:
    return ConceptQuestion(id=id, when=when, kind=kind, prompt=prompt, answer=answer,
                           explanation=explanation, **kw)


def make_lesson(id: str = "1.1", title: str | None = None, slug: str | None = None, *,
                week: int | None = None, chapter: str = "https://example.invalid/chapter",
                timeout_s: float = 30.0, prerequisites=(), objectives=(), concepts=(),
                tasks=(), questions=(), pitfalls=(), **kw) -> Lesson:
    """``concepts`` as Concept or (name, explanation); ``questions`` as ConceptQuestion or
    (id, when); ``pitfalls`` as Pitfall or (id, symptom, question)."""
    return Lesson(
        id=id, title=title or f"Lesson {id}", week=int(id.split(".")[0]) if week is None else week,
        slug=slug or f"lesson-{id.replace('.', '-')}", chapter=chapter, timeout_s=timeout_s,
        prerequisites=tuple(prerequisites), objectives=tuple(objectives),
        concepts=tuple(c if isinstance(c, Concept) else Concept(*c) for c in concepts),
        tasks=tuple(tasks),
        concept_questions=tuple(q if isinstance(q, ConceptQuestion) else make_question(*q)
                                for q in questions),
        pitfalls=tuple(p if isinstance(p, Pitfall) else Pitfall(*p) for p in pitfalls), **kw)


def make_course(*weeks, book_plan: tuple[int, int] | None = None) -> Course:
    """``weeks`` as (number, title, lessons)."""
    ws = tuple(Week(number=n, title=t, days=tuple(days)) for n, t, days in weeks)
    return Course(title="A test course", book="tiny-llm", weeks=ws,
                  lessons=tuple(x for w in ws for x in w.days), book_plan=book_plan)
