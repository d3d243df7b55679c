"""Day identifiers as a learner types them: ``day1.3``, ``1.3``, ``w1d3``, ``week1``.

Learners number days as the book does (2.1-2.7), while the tutor merges some of the
book's days into one lesson (book days 2.2 and 2.3 are lesson 2.2). Which lesson covers
which book day is data: ``book_days`` in the lesson files, read through the course. A
book day that no lesson covers yet, inside the book's plan (``book_plan`` in course.yaml),
is "not in the tutor yet" rather than a typo.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

_DAY = re.compile(r"^(?:day|d)?\s*(\d+)\.(\d+)$", re.IGNORECASE)
_WD = re.compile(r"^w(?:eek)?\s*(\d+)\s*d(?:ay)?\s*(\d+)$", re.IGNORECASE)
_WEEK = re.compile(r"^(?:w|week)\s*(\d+)$", re.IGNORECASE)


@dataclass(frozen=True)
class _Lesson:
    id: str
    title: str
    covers: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    """Where a typed id leads: the lesson ids, and one line to show when the learner typed
    a book day that a lesson with another number covers."""
    days: list[str]
    note: str | None = None


def _week(day: str) -> int:
    return int(day.split(".")[0])


def _catalog(source) -> tuple[list[_Lesson], tuple[int, int] | None]:
    """Lessons and the book's plan, from a Course or from a plain list of lesson ids."""
    lessons = getattr(source, "lessons", None)
    if lessons is None:
        return [_Lesson(d, "", (d,)) for d in source], None
    out = [_Lesson(x.id, x.title, tuple(getattr(x, "covers", None) or (x.id,))) for x in lessons]
    return out, getattr(source, "book_plan", None)


def _ranges(days: list[str]) -> str:
    """``day1.1–day1.7, day2.1–day2.7``: each week's run of days, written as a range."""
    out, run = [], []
    for d in days + [None]:
        if run and (d is None or _week(d) != _week(run[-1])
                    or int(d.split(".")[1]) != int(run[-1].split(".")[1]) + 1):
            out.append(f"day{run[0]}" if len(run) == 1 else f"day{run[0]}–day{run[-1]}")
            run = []
        if d is not None:
            run.append(d)
    return ", ".join(out)


def _sorted_days(days) -> list[str]:
    return sorted(days, key=lambda d: tuple(int(x) for x in d.split(".")))


class UnknownDay(ValueError):
    def __init__(self, text: str, valid, *, accepted: list[str] | None = None):
        self.text = text
        lessons, _ = _catalog(valid)
        self.valid = [x.id for x in lessons]
        self.accepted = accepted or _sorted_days({d for x in lessons for d in x.covers})
        forms = [f"day{v}" for v in self.accepted] + self.accepted
        close = difflib.get_close_matches(text.lower(), forms, n=1, cutoff=0.5)
        self.suggestion = close[0] if close else None
        super().__init__(self.render())

    def render(self) -> str:
        shown = self.text if len(self.text) <= 24 else self.text[:21] + "..."
        msg = f"Unknown day '{shown}'."
        if self.suggestion:
            msg += f" Did you mean '{self.suggestion}'?"
        weeks = sorted({_week(v) for v in self.valid})
        return (msg + "\nValid ids: " + _ranges(self.accepted)
                + " (numbered as in the book; also written 1.3 or w1d3), or a whole week: "
                + ", ".join(f"week{w}" for w in weeks) + ".")


class NotInTutorYet(UnknownDay):
    """A day or week of the book's plan that no lesson covers yet (week 3, for now)."""

    def __init__(self, text: str, valid, what: str):
        self.what = what
        super().__init__(text, valid)

    def render(self) -> str:
        weeks = sorted({_week(v) for v in self.valid})
        span = f"week {weeks[0]}" if len(weeks) == 1 else f"weeks {weeks[0]}–{weeks[-1]}"
        return (f"{self.what} is not in the tutor yet; the tutor teaches {span} of the book "
                f"so far ({_ranges(self.accepted)}). `tiny-llm-tutor lessons` shows them.")


def book_days_label(covers) -> str:
    """``book day 1.3`` or ``book days 2.2–2.3``: the book's days a lesson covers."""
    return f"book days {covers[0]}–{covers[-1]}" if len(covers) > 1 else f"book day {covers[0]}"


def note_for(book_day: str, lesson) -> str | None:
    """The one line that says which lesson covers a book day, when the numbers differ."""
    if lesson is None or book_day == lesson.id:
        return None
    covers = tuple(getattr(lesson, "covers", None) or (lesson.id,))
    title = f"{lesson.title}, " if getattr(lesson, "title", "") else ""
    return (f"Book day {book_day} is covered by lesson {lesson.id} "
            f"({title}{book_days_label(covers)}).")


def resolve(text: str, valid) -> Route:
    """Where ``text`` leads. ``valid`` is the course (book days are understood) or a plain
    list of lesson ids. Raises :class:`UnknownDay` (or :class:`NotInTutorYet`)."""
    lessons, plan = _catalog(valid)
    t = text.strip()
    m = _DAY.match(t) or _WD.match(t)
    if m:
        week, n = int(m.group(1)), int(m.group(2))
        day = f"{week}.{n}"
        lesson = next((x for x in lessons if x.id == day), None) or next(
            (x for x in lessons if day in x.covers), None)
        if lesson is not None:
            return Route([lesson.id], note_for(day, lesson))
        if plan and 1 <= week <= plan[0] and 1 <= n <= plan[1]:
            has_week = any(_week(x.id) == week for x in lessons)
            raise NotInTutorYet(text, valid, f"Book day {day}" if has_week else
                                f"Book day {day} is in week {week}, which")
        raise UnknownDay(text, valid)
    m = _WEEK.match(t)
    if m:
        week = int(m.group(1))
        days = [x.id for x in lessons if _week(x.id) == week]
        if days:
            return Route(days)
        if plan and 1 <= week <= plan[0]:
            raise NotInTutorYet(text, valid, f"Week {week} of the book (days {week}.1–"
                                             f"{week}.{plan[1]})")
    raise UnknownDay(text, valid)


def parse(text: str, valid) -> list[str]:
    """Lesson ids (``["1.3"]``, or every lesson of a week in order) for what was typed."""
    return resolve(text, valid).days
