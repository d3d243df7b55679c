"""The course's vocabulary of ideas (``curriculum/ideas.yaml``): what each pitfall and
concept question tests, one set of names across all days.

The coach brings an earlier mistake back when a day shares its idea; spaced review and the
mastery picture count by idea. Loaded with the course: an idea naming a pitfall, concept
question or day the course lacks is a :class:`CurriculumError` with file and line.
Whether every pitfall and question carries an idea is tests/test_ideas.py's to say, so a
day being written does not stop the tutor from starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tutor.curriculum import references
from tutor.curriculum.schema import CurriculumError, Field, ListOf, Record, Validator, compose

__all__ = ["Idea", "Ideas", "load_ideas", "IDEAS_FILE"]

IDEAS_FILE = "ideas.yaml"

_S = Field(str)

IDEAS_SCHEMA = Record({
    "ideas": Field(ListOf(Record({
        "id": _S,
        "name": _S,
        # The offline coach's question for bringing the idea back before the learner codes;
        # `ask_on` words it for a day where a sharper question exists.
        "ask": _S,
        "ask_on": Field("any", required=False),
        "pitfalls": Field(ListOf(str)),
        # "<day>/<question id>": question ids are the day's own.
        "questions": Field(ListOf(str)),
    })), min_items=1),
})


@dataclass(frozen=True)
class Idea:
    id: str
    name: str
    ask: str
    ask_on: dict[str, str] = field(default_factory=dict)
    pitfalls: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()  # "<day>/<question id>"

    def question_for(self, day: str) -> str:
        """The question that brings this idea back on ``day``."""
        return self.ask_on.get(day, self.ask)


@dataclass(frozen=True)
class Ideas:
    ideas: tuple[Idea, ...] = ()

    def get(self, idea_id: str) -> Idea | None:
        return next((i for i in self.ideas if i.id == idea_id), None)

    def of_pitfall(self, pitfall_id: str) -> tuple[Idea, ...]:
        return tuple(i for i in self.ideas if pitfall_id in i.pitfalls)

    def of_question(self, day: str, qid: str) -> tuple[Idea, ...]:
        key = f"{day}/{qid}"
        return tuple(i for i in self.ideas if key in i.questions)

    def of_lesson(self, lesson) -> tuple[Idea, ...]:
        """The ideas a lesson's own pitfalls and concept questions test, in vocabulary order."""
        pids = {p.id for p in lesson.pitfalls}
        qids = {f"{lesson.id}/{q.id}" for q in lesson.concept_questions}
        return tuple(i for i in self.ideas
                     if pids.intersection(i.pitfalls) or qids.intersection(i.questions))


def load_ideas(path: Path, lessons, name: str) -> Ideas:
    """The vocabulary in ``path`` checked against ``lessons``; none when there is no file
    (a course being assembled, a test's course)."""
    if not path.is_file():
        return Ideas()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CurriculumError(f"{name}: cannot read: {exc.strerror}") from None
    data = Validator(name).record(compose(text, name), IDEAS_SCHEMA, "")
    pitfalls = {p.id for lesson in lessons for p in lesson.pitfalls}
    questions = {f"{lesson.id}/{q.id}" for lesson in lessons for q in lesson.concept_questions}
    days = {lesson.id for lesson in lessons}
    seen: set[str] = set()
    out = []
    for i, raw in enumerate(data["ideas"]):
        where, line = f"ideas[{i}]", raw["__line__"]

        def bad(msg: str, needle: str | None = None) -> CurriculumError:
            key = msg.split(":", 1)[0]  # look for the value under its own key
            start = references.line_after(text, line, f"{key}:")
            at = references.line_after(text, start, needle) if needle else start
            return CurriculumError(f"{name}:{at}: {where}.{msg}")

        if raw["id"] in seen:
            raise bad(f"id: the idea '{raw['id']}' is defined twice", raw["id"])
        seen.add(raw["id"])
        for key, known, what in (("pitfalls", pitfalls, "pitfall"),
                                 ("questions", questions, "concept question")):
            if len(set(raw[key])) != len(raw[key]):
                raise bad(f"{key}: an id is listed twice")
            for item in raw[key]:
                if item not in known:
                    hint = (" (write a question as '<day>/<question id>', like "
                            "'1.1/softmax-axis')" if key == "questions" and "/" not in item
                            else "")
                    raise bad(f"{key}: no {what} '{item}' in the course{hint}", item)
        ask_on = raw.get("ask_on") or {}
        if not isinstance(ask_on, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v.strip()
                for k, v in ask_on.items()):
            raise bad("ask_on: a mapping from a day ('2.4') to its question", "ask_on")
        for day in ask_on:
            if day not in days:
                raise bad(f"ask_on: no day '{day}' in the course", f'"{day}"')
        out.append(Idea(raw["id"], " ".join(raw["name"].split()), " ".join(raw["ask"].split()),
                        {k: " ".join(v.split()) for k, v in ask_on.items()},
                        tuple(raw["pitfalls"]), tuple(raw["questions"])))
    return Ideas(tuple(out))
