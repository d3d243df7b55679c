"""The course: ``curriculum/course.yaml`` orders the weeks and days; one YAML file per day.

Every file is validated when it is loaded. A missing field, an unknown key or a wrong type
is a :class:`CurriculumError` naming file, line and field; so is a task naming a stub file,
symbol or check that does not exist, a lesson without its checks module, and a check that
module declares for a task the lesson lacks or does not list it under
(:mod:`tutor.curriculum.references`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tutor import paths
from tutor.curriculum import references
from tutor.curriculum.ideas import IDEAS_FILE, Idea, Ideas, load_ideas
from tutor.dayids import book_days_label
from tutor.curriculum.schema import (CurriculumError, Field, ListOf, OneOf, Record, Validator,
                                     compose)

__all__ = ["Course", "Week", "Lesson", "Task", "Edit", "Concept", "ConceptQuestion", "Pitfall",
           "CurriculumError", "Idea", "Ideas", "load_course", "load_lesson"]

HINT_RUNGS = 4

_S = Field(str)
_STRS = Field(ListOf(str))

LESSON_SCHEMA = Record({
    "id": _S,
    "title": _S,
    "week": Field(int),
    "slug": _S,
    "chapter": _S,
    "timeout_s": Field(OneOf((int, float))),
    "prerequisites": Field(ListOf(str)),
    "objectives": Field(ListOf(str), min_items=1),
    "concepts": Field(ListOf(Record({"name": _S, "explanation": _S})), min_items=1),
    "book_days": Field(ListOf(str), required=False, min_items=1),
    "tasks": Field(ListOf(Record({
        "id": Field(int),
        "title": _S,
        # What the learner edits: a list of {file, symbol} pairs, paths relative to the
        # workspace (impl/basics.py, kernels/src/x.cpp). The older single `file` (relative
        # to impl/) with `symbols` still loads, as pairs in that one file.
        "edit": Field(ListOf(Record({"file": _S, "symbol": Field(str, required=False)})),
                      required=False, min_items=1),
        "file": Field(str, required=False),
        "symbols": Field(ListOf(str), required=False),
        "checks": _STRS,
        "description": _S,
        "guiding_questions": Field(ListOf(str), min_items=3),
        "hints": Field(ListOf(str), min_items=HINT_RUNGS, max_items=HINT_RUNGS),
    })), min_items=1),
    "concept_questions": Field(ListOf(Record({
        "id": _S,
        "when": Field(str, choices=("before", "after")),
        # predict: a number about the learner's own engine, graded like number, then
        # measured on the learner's code by the checks module's @measure(`measure`).
        "kind": Field(str, choices=("shape", "number", "choice", "predict")),
        "prompt": _S,
        "answer": Field("any"),
        "tolerance": Field(OneOf((int, float)), required=False),
        "options": Field(ListOf(str), required=False, min_items=2, max_items=6),
        "unit": Field(str, required=False),
        "measure": Field(str, required=False),
        "explanation": _S,
    })), min_items=2),
    "pitfalls": Field(ListOf(Record({"id": _S, "symptom": _S, "question": _S})), min_items=1),
})

COURSE_SCHEMA = Record({
    "title": _S,
    "book": _S,
    # One line shown with every lesson: which edition of the book the tutor follows, and
    # why the book's live site shows other code.
    "edition": Field(str, required=False),
    # The book's own plan (weeks of days), so a book day no lesson covers yet is answered
    # as "not in the tutor yet" instead of a near miss.
    "book_plan": Field(Record({"weeks": Field(int), "days_per_week": Field(int)}),
                       required=False),
    # The book's paths and commands beside the tutor's; {week} and {day} are the lesson's.
    "book_terms": Field(ListOf(Record({"book": _S, "tutor": _S})), required=False),
    "weeks": Field(ListOf(Record({
        "number": Field(int),
        "title": _S,
        "days": Field(ListOf(str), min_items=1),
    })), min_items=1),
})


@dataclass(frozen=True)
class Concept:
    name: str
    explanation: str


@dataclass(frozen=True)
class Edit:
    """One place a task asks the learner to write: a file (relative to the workspace) and
    the top-level function or class in it (None for a file to set up, not to write in)."""
    path: str
    symbol: str | None = None

    @property
    def in_impl(self) -> bool:
        return self.path.startswith("impl/")

    @property
    def impl_rel(self) -> str:
        """The path inside impl/ (``basics.py``); only for edits in impl/."""
        return self.path[len("impl/"):]


@dataclass(frozen=True)
class Task:
    id: int
    title: str
    edits: tuple[Edit, ...]
    checks: tuple[str, ...]
    description: str
    guiding_questions: tuple[str, ...]
    hints: tuple[str, ...]

    @property
    def symbols(self) -> tuple[str, ...]:
        """Every symbol the task names, in order, each once."""
        return tuple(dict.fromkeys(e.symbol for e in self.edits if e.symbol))

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the task names (relative to the workspace), in order, each once."""
        return tuple(dict.fromkeys(e.path for e in self.edits))

    @property
    def file(self) -> str:
        """The task's first file as the older single-file form named it (relative to
        impl/, ``../kernels/...`` outside it)."""
        first = self.edits[0]
        return first.impl_rel if first.in_impl else f"../{first.path}"

    def symbols_in(self, path: str) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.symbol for e in self.edits if e.path == path and e.symbol))


@dataclass(frozen=True)
class ConceptQuestion:
    id: str
    when: str
    kind: str
    prompt: str
    answer: Any
    explanation: str
    tolerance: float = 1e-6
    options: tuple[str, ...] = ()
    unit: str = ""  # predict questions: what the number counts ("pages")
    measure: str = ""  # predict questions: the id of the day's @measure

    @property
    def is_predict(self) -> bool:
        return self.kind == "predict"


@dataclass(frozen=True)
class Pitfall:
    id: str
    symptom: str
    question: str


@dataclass(frozen=True)
class Lesson:
    id: str
    title: str
    week: int
    slug: str
    chapter: str
    timeout_s: float
    prerequisites: tuple[str, ...]
    objectives: tuple[str, ...]
    concepts: tuple[Concept, ...]
    tasks: tuple[Task, ...]
    concept_questions: tuple[ConceptQuestion, ...]
    pitfalls: tuple[Pitfall, ...]
    source: str = ""
    book_days: tuple[str, ...] = ()  # the book's days this lesson covers; () means (id,)
    # The book's paths and commands beside the tutor's, filled in for this lesson (from
    # course.yaml's book_terms: one place for every lesson).
    book_terms: tuple[tuple[str, str], ...] = ()
    edition: str = ""  # course.yaml's edition line, the same for every lesson

    @property
    def covers(self) -> tuple[str, ...]:
        """The book's day numbers this lesson teaches (``("2.2", "2.3")``)."""
        return self.book_days or (self.id,)

    @property
    def book_days_label(self) -> str:
        """``book day 1.3`` or ``book days 2.2-2.3``."""
        return book_days_label(self.covers)

    @property
    def session_filename(self) -> str:
        return f"day{self.id}-{self.slug}.md"

    @property
    def pitfall_questions(self) -> dict[str, str]:
        return {p.id: p.question for p in self.pitfalls}

    def pitfall(self, pid: str) -> Pitfall | None:
        return next((p for p in self.pitfalls if p.id == pid), None)

    def task(self, tid: int) -> Task | None:
        return next((t for t in self.tasks if t.id == tid), None)

    def task_of_check(self, check_id: str) -> Task | None:
        return next((t for t in self.tasks if check_id in t.checks), None)


@dataclass(frozen=True)
class Week:
    number: int
    title: str
    days: tuple[Lesson, ...]


@dataclass(frozen=True)
class Course:
    title: str
    book: str
    weeks: tuple[Week, ...]
    lessons: tuple[Lesson, ...] = field(default=())
    book_plan: tuple[int, int] | None = None  # (weeks, days per week) of the book
    book_terms: tuple[tuple[str, str], ...] = ()  # (the book's, the tutor's)
    edition: str = ""  # which edition of the book the tutor follows (one line)
    ideas: Ideas = field(default_factory=Ideas)  # curriculum/ideas.yaml: what each item tests

    def lesson_covering(self, book_day: str) -> Lesson | None:
        """The lesson that teaches the book's day ``book_day`` (``"2.3"`` -> lesson 2.2)."""
        return next((x for x in self.lessons if book_day in x.covers), None)


    def pitfall_questions(self, day_id: str) -> dict[str, str]:
        """Pitfall id -> guiding question for a day's results: the day's own pitfalls first,
        then every other lesson's, since a check may name a mistake another day teaches (the
        book's int RoPE offset, taught on 2.6, already breaks the 2.1 and 2.4 models)."""
        out: dict[str, str] = {}
        for lesson in self.lessons:
            if lesson.id != day_id:
                out.update(lesson.pitfall_questions)
        out.update(self.lesson(day_id).pitfall_questions)
        return out

    def lesson(self, day_id: str) -> Lesson:
        for lesson in self.lessons:
            if lesson.id == day_id:
                return lesson
        raise KeyError(day_id)

    def week(self, number: int) -> Week:
        for w in self.weeks:
            if w.number == number:
                return w
        raise KeyError(number)

    @property
    def day_ids(self) -> list[str]:
        return [lesson.id for lesson in self.lessons]


_DAY_ID = re.compile(r"^\d+\.\d+$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(paths.content_root()))
    except ValueError:
        return str(path)


def _fill_terms(terms, lesson_id: str) -> tuple[tuple[str, str], ...]:
    week, day = lesson_id.split(".")
    return tuple((b.format(week=week, day=day), t.format(week=week, day=day)) for b, t in terms)


def load_lesson(path: Path, book_terms=(), edition: str = "") -> Lesson:
    name = _rel(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CurriculumError(f"{name}: cannot read: {exc.strerror}") from None
    v = Validator(name)
    data = v.record(compose(text, name), LESSON_SCHEMA, "")

    def bad(msg: str, line: int | None = None) -> CurriculumError:
        return CurriculumError(f"{name}:{line or data['__line__']}: {msg}")

    if not _DAY_ID.match(data["id"]):
        raise bad(f"id: must look like '1.3', not {data['id']!r}")
    if not _SLUG.match(data["slug"]):
        raise bad(f"slug: use lowercase words joined by '-', not {data['slug']!r}")
    if data["timeout_s"] <= 0:
        raise bad("timeout_s: must be positive")
    book_days = tuple(data.get("book_days") or ())
    for d in book_days:
        if not _DAY_ID.match(d) or int(d.split(".")[0]) != data["week"]:
            raise bad(f"book_days: {d!r} is not a day of week {data['week']} (like "
                      f"'{data['week']}.3')")
    if book_days and book_days[0] != data["id"]:
        raise bad(f"book_days: starts with the lesson's own day {data['id']!r}, not {book_days[0]!r}")
    if len(set(book_days)) != len(book_days):
        raise bad("book_days: a day is listed twice")
    seen_checks: set[str] = set()
    edits = [_task_edits(t, lambda m, line=t["__line__"]: bad(m, line), f"tasks[{i}]")
             for i, t in enumerate(data["tasks"])]
    for i, t in enumerate(data["tasks"]):
        for c in t["checks"]:
            if c in seen_checks:
                raise bad(f"tasks[{i}].checks: check '{c}' is listed twice", t["__line__"])
            seen_checks.add(c)
    module = references.checks_module(paths.checks_dir(), data["id"])
    decls = references.check_decls(module)
    if decls is None:
        # Every lesson has one: without it the day could never be checked.
        raise bad(f"id: day {data['id']} has no checks module ({_rel(module)} does not "
                  "exist; see CONTRIBUTING.md, 'Adding a day')", references.id_line(path))
    tasks_line = data["tasks"][0]["__line__"]
    references.readable_decls(decls, module, bad, _rel, tasks_line)
    check_ids = tuple(cid for cid, _task, _line in decls)
    for i, (t, e) in enumerate(zip(data["tasks"], edits)):
        references.check_task(t, e, f"tasks[{i}]", (module, check_ids), text, bad, _rel)
    references.check_tasks(
        data["id"], decls, {t["id"]: (tuple(t["checks"]), t["__line__"]) for t in data["tasks"]},
        module, bad, _rel, tasks_line)
    qids: set[str] = set()
    measure_ids: tuple[str, ...] | None = None
    for i, q in enumerate(data["concept_questions"]):
        where = f"concept_questions[{i}]"
        if q["id"] in qids:
            raise bad(f"{where}.id: duplicate id '{q['id']}'", q["__line__"])
        qids.add(q["id"])
        _check_answer(q, where, lambda m, line=q["__line__"]: bad(m, line))
        if q["kind"] == "predict":
            if measure_ids is None:
                measure_ids = references.measure_ids(module)
            if q["measure"] not in measure_ids:
                raise bad(f"{where}.measure: no measurement {q['measure']!r} in "
                          f"{_rel(module)} (it has: {', '.join(measure_ids) or 'none'}; "
                          "declare it @measure(\"id\", unit=...))",
                          references.line_after(text, q["__line__"], q["measure"]))
    pids = [p["id"] for p in data["pitfalls"]]
    if len(set(pids)) != len(pids):
        raise bad("pitfalls: duplicate pitfall id")

    return Lesson(
        id=data["id"], title=data["title"], week=data["week"], slug=data["slug"],
        chapter=data["chapter"], timeout_s=float(data["timeout_s"]),
        prerequisites=tuple(data["prerequisites"]), objectives=tuple(data["objectives"]),
        concepts=tuple(Concept(c["name"], c["explanation"]) for c in data["concepts"]),
        tasks=tuple(Task(t["id"], t["title"], e, tuple(t["checks"]),
                         t["description"], tuple(t["guiding_questions"]), tuple(t["hints"]))
                    for t, e in zip(data["tasks"], edits)),
        concept_questions=tuple(
            ConceptQuestion(q["id"], q["when"], q["kind"], q["prompt"], q["answer"],
                            q["explanation"], float(q.get("tolerance", 1e-6)),
                            tuple(q.get("options", ())), q.get("unit", ""),
                            q.get("measure", ""))
            for q in data["concept_questions"]),
        pitfalls=tuple(Pitfall(p["id"], p["symptom"], p["question"]) for p in data["pitfalls"]),
        source=name,
        book_days=book_days,
        book_terms=_fill_terms(book_terms, data["id"]),
        edition=edition,
    )


_EDIT_ROOTS = ("impl/", "kernels/")


def _task_edits(t: dict, bad, where: str) -> tuple[Edit, ...]:
    """A task's (file, symbol) pairs, from ``edit`` or from the older ``file`` + ``symbols``."""
    if "edit" in t:
        if "file" in t or "symbols" in t:
            raise bad(f"{where}: use either `edit` or `file` with `symbols`, not both")
        out = []
        for j, e in enumerate(t["edit"]):
            path = e["file"]
            if not path.startswith(_EDIT_ROOTS) or ".." in path.split("/"):
                raise bad(f"{where}.edit[{j}].file: a path inside the workspace's impl/ or "
                          f"kernels/ (like impl/basics.py), not {path!r}")
            out.append(Edit(path, e.get("symbol")))
        if len(set(out)) != len(out):
            raise bad(f"{where}.edit: a file and symbol pair is listed twice")
        return tuple(out)
    if "file" not in t or "symbols" not in t:
        raise bad(f"{where}: missing required field 'edit' (a list of {{file, symbol}})")
    rel = t["file"]
    path = rel[len("../"):] if rel.startswith("../") else f"impl/{rel}"
    if not path.startswith(_EDIT_ROOTS):
        raise bad(f"{where}.file: {rel!r} is neither in impl/ nor in ../kernels/")
    return tuple(Edit(path, s) for s in t["symbols"]) or (Edit(path),)


def _check_answer(q: dict, where: str, bad) -> None:
    kind, answer = q["kind"], q["answer"]
    if kind in ("number", "predict"):
        if isinstance(answer, bool) or not isinstance(answer, (int, float)):
            raise bad(f"{where}.answer: a {kind} question needs a numeric answer")
    elif kind == "shape":
        if not isinstance(answer, list) or not answer or not all(
                isinstance(x, (int, str)) and not isinstance(x, bool) for x in answer):
            raise bad(f"{where}.answer: a shape answer is a list like [N, H, L, D] or [2, 8, 16]")
    elif kind == "choice":
        options = q.get("options") or []
        if len(options) < 2:
            raise bad(f"{where}.options: a choice question needs at least 2 options")
        letters = "abcdef"[:len(options)]
        if not isinstance(answer, str) or answer.lower() not in letters:
            raise bad(f"{where}.answer: must be one of the option letters {', '.join(letters)}")
    if kind != "choice" and "options" in q:
        raise bad(f"{where}.options: only choice questions have options")
    if kind not in ("number", "predict") and "tolerance" in q:
        raise bad(f"{where}.tolerance: only number and predict questions have a tolerance")
    if kind == "predict":
        if "measure" not in q:
            raise bad(f"{where}.measure: a predict question names the measurement (an "
                      "@measure id in the day's checks module) that runs on the learner's code")
        if q.get("tolerance", 0) < 0:
            raise bad(f"{where}.tolerance: must not be negative")
    else:
        for key in ("measure", "unit"):
            if key in q:
                raise bad(f"{where}.{key}: only predict questions have a {key}")


@lru_cache(maxsize=4)
def load_course(root: Path | None = None) -> Course:
    root = Path(root) if root else paths.curriculum_dir()
    course_file = root / "course.yaml"
    name = _rel(course_file)
    try:
        text = course_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CurriculumError(f"{name}: cannot read: {exc.strerror}") from None
    data = Validator(name).record(compose(text, name), COURSE_SCHEMA, "")
    terms = tuple((t["book"], t["tutor"]) for t in data.get("book_terms") or ())
    edition = " ".join(data.get("edition", "").split())  # one line, however it is wrapped
    for t in data.get("book_terms") or ():
        try:
            _fill_terms([(t["book"], t["tutor"])], "1.1")
        except (KeyError, IndexError, ValueError) as exc:
            raise CurriculumError(f"{name}:{t['__line__']}: book_terms: only {{week}} and "
                                  f"{{day}} can be filled in ({exc!r})") from None
    weeks, lessons, files = [], [], []
    for wi, w in enumerate(data["weeks"]):
        days = []
        for di, rel in enumerate(w["days"]):
            if not (root / rel).is_file():
                line = references.line_after(text, w["__line__"], rel)
                raise CurriculumError(f"{name}:{line}: weeks[{wi}].days[{di}]: no lesson file "
                                      f"{rel} ({_rel(root / rel)} does not exist)")
            lesson = load_lesson(root / rel, terms, edition)
            files.append(root / rel)
            if lesson.week != w["number"]:
                raise CurriculumError(f"{lesson.source}:1: week: is {lesson.week} but "
                                      f"course.yaml lists it under week {w['number']}")
            days.append(lesson)
        weeks.append(Week(w["number"], w["title"], tuple(days)))
        lessons.extend(days)
    ids = [x.id for x in lessons]
    first: dict[str, tuple[Lesson, Path]] = {}
    for lesson, path in zip(lessons, files):
        if lesson.id in first:
            other, other_path = first[lesson.id]
            if other_path == path:
                raise CurriculumError(f"{name}: {lesson.source} is listed twice")
            raise CurriculumError(
                f"{lesson.source}:{references.id_line(path)}: id: day {lesson.id} is also the "
                f"id of {other.source}:{references.id_line(other_path)}")
        first[lesson.id] = (lesson, path)
    for lesson in lessons:
        for p in lesson.prerequisites:
            if p not in ids:
                raise CurriculumError(f"{lesson.source}:1: prerequisites: unknown day '{p}'")
    covered: dict[str, str] = {}
    for lesson in lessons:
        for d in lesson.covers:
            if d in covered:
                raise CurriculumError(f"{lesson.source}:1: book_days: book day {d} is already "
                                      f"covered by lesson {covered[d]}")
            covered[d] = lesson.id
    plan = data.get("book_plan")
    book_plan = (plan["weeks"], plan["days_per_week"]) if plan else None
    if book_plan:
        for lesson in lessons:
            for d in lesson.covers:
                w, n = map(int, d.split("."))
                if not (1 <= w <= book_plan[0] and 1 <= n <= book_plan[1]):
                    raise CurriculumError(f"{lesson.source}:1: book_days: day {d} is outside "
                                          f"the book's plan in course.yaml ({book_plan[0]} "
                                          f"weeks of {book_plan[1]} days)")
    ideas = load_ideas(root / IDEAS_FILE, lessons, _rel(root / IDEAS_FILE))
    return Course(data["title"], data["book"], tuple(weeks), tuple(lessons), book_plan, terms,
                  edition, ideas)
