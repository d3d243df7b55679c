"""A tutoring session: the current lesson, its check runs, hints, concept answers and
insights, and the records they leave. The TUI and the CLI's coach commands sit on top
of it; it never imports a UI.

Thread-safe: the TUI runs checks in a worker thread while the learner keeps using the
app, so every records operation takes the session's lock.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from tutor import dayids
from tutor.coach import ladder
from tutor.grading import Grade, grade, read_number
from tutor.records import review
from tutor.records.insights import insight_due, insight_to_ask
from tutor.records.mastery import Status, assess
from tutor.records.recorder import record_changed_files, refresh_documents
from tutor.records.state import StateError, StateStore
from tutor.records.trouble import records_trouble


def measure_lesson(lesson, qids: list[str] | None, impl: Path, kernels: Path | None,
                   timeout_s: float | None = None,
                   cancel: threading.Event | None = None) -> list[dict]:
    """Run the measurements of ``lesson``'s predict questions ``qids`` (default: all) on
    the package at ``impl``, in one isolated child within the lesson's time budget; no
    records. Each result is ``{"qid", "measure", "status", "value", "unit", "reason"}``.
    An id that is no predict question of the lesson is a KeyError naming the ones it has."""
    from tutor.checking.measuring import run_measures

    by_id = {q.id: q for q in lesson.concept_questions if q.kind == "predict"}
    qids = list(by_id) if qids is None else list(qids)
    missing = [qid for qid in qids if qid not in by_id]
    if missing:
        raise KeyError(f"day {lesson.id} has no predict question {missing[0]!r} "
                       f"(it has: {', '.join(by_id) or 'none'})")
    if not qids:
        return []
    questions = [by_id[qid] for qid in qids]
    runs = run_measures(lesson.id, [q.measure for q in questions], impl,
                        timeout_s or lesson.timeout_s, cancel=cancel, kernels=kernels,
                        units={q.measure: q.unit for q in questions})
    by_measure = {r["id"]: r for r in runs}
    return [{"qid": q.id, "measure": q.measure, "status": by_measure[q.measure]["status"],
             "value": by_measure[q.measure]["value"],
             "unit": q.unit or by_measure[q.measure]["unit"],
             "reason": by_measure[q.measure]["reason"]} for q in questions]


class TutorSession:
    def __init__(self, workspace: Path, course=None, impl: Path | None = None):
        if course is None:
            from tutor.curriculum import load_course

            course = load_course()
        self.workspace = Path(workspace)
        self.course = course
        self.impl = Path(impl) if impl else self.workspace / "impl"
        self.store = StateStore(self.workspace, course=course)
        self.lock = threading.RLock()
        self.lesson = course.lessons[0]
        self.latest: dict[str, dict] = {}  # day -> latest check result of this session
        self.notice: str | None = None  # one line for the learner; see take_notice
        self._save_trouble: str | None = None
        self.in_session = False  # whether open() started a tutoring session to end
        self.route_note: str | None = None  # "Book day 2.3 is covered by lesson 2.2 (...)"

    # ------------------------------------------------------------------ lifecycle

    def open(self, target: str | None = None, *, session: bool = True) -> "TutorSession":
        """Take the records (raises StateLocked if another tutor has them) and go to
        ``target`` (a week or day id) or where the learner left off. ``session=False``
        for one command (a CLI hint or question): its work is recorded, but it is not a
        tutoring session of its own."""
        self.store.open()
        self.notice = self.store.notice
        self.in_session = session
        if session:
            self.store.start_session()
        self.go_to(self.resolve(target))
        return self

    def close(self) -> None:
        with self.lock:
            if not self.store.is_open:
                return
            self.save_documents()
            if self.in_session:
                self.store.end_session()
            refresh_documents(self.workspace, self.store, self.course, self.lesson)
            self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ navigation

    def resolve(self, target: str | None) -> str:
        """``week1`` -> its first unfinished day; ``day1.3`` -> that day; nothing -> the
        day the learner was last on (or the first unfinished one)."""
        ids = self.course.day_ids
        if target:
            route = dayids.resolve(target, self.course)  # the book's day numbers too
            self.route_note = route.note
            if len(route.days) == 1:
                return route.days[0]
            return self._first_unfinished(route.days)
        current = self.store.current_day
        if current in ids:
            return current
        return self._first_unfinished(ids)

    def _first_unfinished(self, days: list[str]) -> str:
        for d in days:
            if self.status(d) not in (Status.COMPLETED, Status.MASTERED):
                return d
        return days[-1]

    def go_to(self, day: str) -> None:
        with self.lock:
            self.lesson = self.course.lesson(day)
            self.store.look(day)

    def worked(self) -> None:
        """Work on the current day (an editor session): the files it changed, if any."""
        with self.lock:
            if not record_changed_files(self.workspace, self.store, self.lesson):
                self.store.touch(self.lesson.id)

    def step(self, delta: int) -> bool:
        ids = self.course.day_ids
        i = ids.index(self.lesson.id) + delta
        if 0 <= i < len(ids):
            self.go_to(ids[i])
            return True
        return False

    # ------------------------------------------------------------------ queries

    # Queries take the lock too: a check worker may be writing the same records.

    def day_record(self, day: str | None = None) -> dict | None:
        with self.lock:
            return self.store.day_record(day or self.lesson.id)

    def status(self, day: str | None = None) -> Status:
        return self.assessment(day).status

    def assessment(self, day: str | None = None):
        with self.lock:
            day = day or self.lesson.id
            return assess(self.store.day_record(day), self.course.lesson(day))

    def misconceptions(self) -> list:
        """Every idea behind a mistake a check diagnosed or a concept question first
        answered wrong, with its day (:class:`tutor.coach.recall.Misconception`), in
        course order."""
        from tutor.coach import recall

        with self.lock:
            return recall.misconceptions(self.course, self.store.state.get("days"))

    def recalls(self, day: str | None = None) -> list[tuple[object, str]]:
        """The earlier mistakes that ``day`` (default: the current one) tests again, each
        with the offline coach's question that brings it back before the learner codes."""
        from tutor.coach import recall

        lesson = self.course.lesson(day) if day else self.lesson
        with self.lock:
            raised = recall.to_raise(self.course, self.store.state.get("days"), lesson)
        return [(m, recall.recall_text(lesson, m)) for m in raised]

    def pending_recalls(self) -> list[tuple[object, str]]:
        """The current day's recalls the coach has not raised yet on this day."""
        from tutor.coach.offline import asked_ids

        recalls = self.recalls()
        with self.lock:
            asked = set(asked_ids(self.store.day_record(self.lesson.id)))
        return [(m, q) for m, q in recalls if m.asked_id not in asked]

    def recalls_raised(self, mistakes) -> None:
        """Record that the coach raised these recalls on the current day (once per day)."""
        ids = [m.asked_id for m in mistakes]
        if ids:
            with self.lock:
                self.store.record_coach_asked(self.lesson.id, ids)

    # ------------------------------------------------------------------ spaced review

    def review_queue(self, limit: int = review.SESSION_LIMIT, now=None) -> list:
        """The review items due today (:mod:`tutor.records.review`), the most overdue
        first, at most ``limit`` (default: the few asked at a session's start). New
        mistakes are scheduled first."""
        with self.lock:
            self.store.sync_review(now)
            return review.due_items(self.store.state, self.course, now, limit)

    def next_review(self, now=None):
        """When the next item not due today is due (None: nothing scheduled)."""
        with self.lock:
            return review.next_due(self.store.state, self.course, now)

    def review_answer(self, item, text: str | None = None, correct: bool | None = None,
                      now=None) -> tuple[Grade | None, dict]:
        """Grade a review item's answer as a concept answer is graded (``text``), or take
        the learner's own verdict (``correct``) for an idea asked without a gradable
        question, and reschedule it. Returns ``(grade or None, reschedule result)``."""
        g = None
        if item.question is not None:
            g = grade(item.question, text or "")
            correct = g.correct
        elif correct is None:
            raise ValueError(f"review item {item.id} has no question to grade: say whether "
                             "the learner got it right")
        with self.lock:
            return g, self.store.record_review(item.id, bool(correct), now)

    def latest_result(self) -> dict | None:
        with self.lock:
            return self.latest.get(self.lesson.id)

    def current_task(self):
        return ladder.current_task(self.lesson, self.latest_result(), self.day_record())

    # ------------------------------------------------------------------ actions

    def run_checks(self, on_event: Callable[[dict], None] | None = None,
                   cancel: threading.Event | None = None, timeout_s: float | None = None) -> dict:
        """Run the current day's checks in a child process and record the attempt.
        Records that cannot be written (a read-only folder, a full disk) never cost the
        results: the result is returned and ``take_notice`` says what was not saved."""
        from tutor.checking.results import with_questions
        from tutor.checking.runner import run_day

        with self.lock:
            lesson = self.lesson  # the day of this run, whatever the learner opens meanwhile
        kernels = self.workspace / "kernels"
        result = run_day(lesson.id, self.impl, timeout_s or lesson.timeout_s,
                         on_event=on_event, cancel=cancel,
                         kernels=kernels if kernels.is_dir() else None)
        with_questions(result, self.course.pitfall_questions(lesson.id))
        if cancel is not None and cancel.is_set():
            return result  # a cancelled run is not an attempt
        with self.lock:
            self.latest[lesson.id] = result
            try:
                record_changed_files(self.workspace, self.store, lesson)
                self.store.record_check(lesson.id, result)
                refresh_documents(self.workspace, self.store, self.course, lesson)
            except (OSError, StateError) as exc:
                why = records_trouble(exc, self.workspace)
                self.notice = f"Day {lesson.id}'s results are shown, but {why}"
        return result

    def take_notice(self) -> str | None:
        """A line for the learner left by the last action (records not written), once."""
        with self.lock:
            notice, self.notice = self.notice, None
            return notice

    def hint(self, task=None) -> ladder.HintStep | None:
        """Climb one rung of the current task's ladder (None at the top)."""
        with self.lock:
            task = task or self.current_task()
            step = ladder.next_hint(self.lesson, self.day_record(), task)
            if step is not None:
                self.store.record_hint(self.lesson.id, step.task, step.rung, rungs=step.rungs)
            return step

    def concept_questions(self, when: str | None = None, unanswered: bool = False):
        rec = self.day_record() or {}
        answered = set((rec.get("concepts") or {}))
        return [q for q in self.lesson.concept_questions
                if (when is None or q.when == when) and not (unanswered and q.id in answered)]

    def answer(self, qid: str, text: str, now=None) -> Grade:
        q = next(q for q in self.lesson.concept_questions if q.id == qid)
        g = grade(q, text)
        with self.lock:
            self.store.record_concept_answer(self.lesson.id, qid, text, g.correct, now)
            if q.kind == "predict":  # kept beside the measurement that follows
                self.store.record_prediction(self.lesson.id, qid, read_number(text, q.unit), now)
        return g

    def predict_questions(self, day: str | None = None) -> list:
        lesson = self.course.lesson(day) if day else self.lesson
        return [q for q in lesson.concept_questions if q.kind == "predict"]

    def prediction(self, qid: str, day: str | None = None) -> dict | None:
        """The recorded prediction and measurement of a predict question, if any."""
        rec = self.day_record(day) or {}
        p = (rec.get("predictions") or {}).get(qid)
        return dict(p) if isinstance(p, dict) else None

    def measure(self, qid: str, cancel: threading.Event | None = None) -> dict:
        """Measure the learner's engine for the current day's predict question ``qid``
        (synchronous: the app runs it in a worker). See :meth:`measure_questions`."""
        return self.measure_questions([qid], cancel=cancel)[0]

    def measure_questions(self, qids: list[str] | None = None, day: str | None = None,
                          cancel: threading.Event | None = None,
                          timeout_s: float | None = None) -> list[dict]:
        """Run the measurements of predict questions ``qids`` (default: all of the day's)
        on the learner's code, in one isolated child within the day's time budget, and
        record each beside the learner's prediction. Each result is ``{"qid", "measure",
        "status", "value", "unit", "reason", "prediction"}``; ``prediction`` is the
        learner's recorded number (None if they gave none). Records that cannot be
        written never cost the results (``take_notice`` says so)."""
        with self.lock:
            lesson = self.course.lesson(day) if day else self.lesson
        kernels = self.workspace / "kernels"
        out = measure_lesson(lesson, qids, self.impl, kernels if kernels.is_dir() else None,
                             timeout_s=timeout_s, cancel=cancel)
        for r in out:
            r["prediction"] = (self.prediction(r["qid"], lesson.id) or {}).get("prediction")
        if not out:
            return out
        if cancel is not None and cancel.is_set():
            return out  # a cancelled measurement is not one
        with self.lock:
            try:
                for r in out:
                    self.store.record_measurement(lesson.id, r["qid"], r)
                refresh_documents(self.workspace, self.store, self.course, lesson)
            except (OSError, StateError) as exc:
                why = records_trouble(exc, self.workspace)
                self.notice = f"Day {lesson.id}'s measurements are shown, but {why}"
        return out

    def insight_due(self, day: str | None = None) -> bool:
        """Ask for the day's key idea now? (once, after the day first passes)"""
        with self.lock:
            return insight_due(self.day_record(day))

    def insight_to_ask(self) -> str | None:
        """The day whose key idea to ask for as the tutor opens, if any."""
        with self.lock:
            return insight_to_ask(self.store.state, self.lesson.id)

    def insight(self, text: str, day: str | None = None) -> None:
        lesson = self.course.lesson(day) if day else self.lesson
        with self.lock:
            self.store.record_insight(lesson.id, text)
            if lesson is not self.lesson:  # an idea about another day is no move to it
                self.store.look(self.lesson.id)
            refresh_documents(self.workspace, self.store, self.course, lesson)

    def skip_insight(self, day: str | None = None) -> None:
        """The learner dismissed the prompt on a passing day: do not ask again."""
        with self.lock:
            self.store.record_insight_skipped(day or self.lesson.id)

    def question(self, text: str) -> None:
        with self.lock:
            self.store.record_question(self.lesson.id, text)

    def coach(self, factory=None):
        """This session's coach for an app: a :class:`tutor.coach.safe.SafeCoach`, built
        on first use, whose failures fall back to the offline coach. ``factory(session)``
        makes another coach in its place (tests)."""
        from tutor.coach.safe import SafeCoach

        return SafeCoach(self, factory)

    def save_documents(self) -> None:
        """Rewrite the tracker and the session doc (also done periodically by the TUI,
        so a killed terminal loses at most a minute)."""
        with self.lock:
            if not self.store.is_open:
                return
            try:
                refresh_documents(self.workspace, self.store, self.course, self.lesson)
            except OSError as exc:  # said once per kind of trouble, not on every autosave
                why = f"Your notes were not saved: {records_trouble(exc, self.workspace)}"
                if why != self._save_trouble:
                    self.notice = why
                self._save_trouble = why
            else:
                self._save_trouble = None

