"""The learner's machine state: ``progress/state.json``.

One JSON document, schema-versioned, rewritten atomically (temp file in the same
directory, fsync, ``os.replace``) on every recorded event. A second tutor on the same
workspace is refused: :class:`StateStore` takes a non-blocking ``fcntl.flock`` on
``progress/.lock`` (which holds the owner's PID) and raises :class:`StateLocked`.

A file that is not valid JSON or not our schema is moved aside to
``progress/state.json.bak`` (``state.json.<UTC stamp>.bak`` when that exists), fresh
records are started, and :attr:`StateStore.notice` holds one line for the learner. A
wrong field inside an otherwise sound file is repaired alone (:mod:`tutor.records.repair`,
the file as it was copied to the same backup name). A newer tutor's file is never touched:
opening raises :class:`NewerState`, which asks the learner to upgrade.

The document's layout, and reading and checking it: :mod:`tutor.records.schema`; the
lock: :mod:`tutor.records.lock`.

Event lists are append-only and capped (oldest dropped, see ``MAX_*``); the counters and
summaries next to them are never capped, so status and mastery do not drift.

Active time: consecutive activity events (across all days) are paired; the gap between
them is credited to the later event's day if it is at most 5 minutes (``ACTIVITY_GAP_S``),
otherwise it is a break and counts nothing. All times are UTC; every recorder takes
``now`` for tests.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Iterator

from tutor.records._util import day_id, parse_iso, to_iso, utc_now
from tutor.records.atomic import atomic_write_bytes, atomic_write_text, temp_files_for
from tutor.records import review
from tutor.records.lock import StateLocked, release_lock, take_lock
from tutor.records.mastery import (
    ACTIVITY_GAP_S,
    DEFAULT_LADDER_RUNGS,
    Assessment,
    Mastery,
    Status,
    assess,
    rules_text,
)
from tutor.records.repair import summary as repair_summary
from tutor.records.schema import (
    SCHEMA,
    SCHEMA_VERSION,
    CorruptState,
    NewerState,
    StateError,
    dumps_state,
    empty_state,
    new_day,
    parse_state,
    state_path,
    validate_state,
)
from tutor.statuses import FAILING

__all__ = [
    "StateStore",
    "StateError",
    "StateLocked",
    "CorruptState",
    "NewerState",
    "SCHEMA",
    "SCHEMA_VERSION",
    "empty_state",
    "new_day",
    "validate_state",
    "read_state",
    "state_path",
    "rules_text",
    "Status",
    "Mastery",
    "Assessment",
]

MAX_ATTEMPTS = 200
MAX_HINT_EVENTS = 200
MAX_ANSWERS = 200
MAX_QUESTIONS = 200
MAX_INSIGHTS = 50
MAX_FILES = 200
MAX_SESSIONS = 500
MAX_TEXT = 4000
MAX_MESSAGE = 300
MAX_COACH_ASKED = 500


def read_state(workspace: Path | str) -> tuple[dict, str | None]:
    """Read the state without the lock and without changing anything on disk.

    For read-only views (``progress``) that may run while a tutor is open. Returns
    ``(state, notice)``; a missing file gives an empty state, an unreadable or newer one an
    empty state and a notice (the file is left where it is -- only :class:`StateStore`
    moves a corrupt one), so a notice means the state is not the learner's records.
    """
    path = state_path(workspace)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return empty_state(), None
    try:
        return parse_state(raw), None
    except NewerState as e:
        return empty_state(), f"{str(e)[:1].upper()}{str(e)[1:]}."
    except CorruptState as e:
        return empty_state(), f"progress/state.json is unreadable ({e}); showing empty records"



def _trim(items: list, cap: int) -> None:
    if len(items) > cap:
        del items[: len(items) - cap]


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    s = str(value if value is not None else "").strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _new_prediction() -> dict:
    return {"prediction": None, "predicted_at": None, "measured": None, "unit": "",
            "status": None, "reason": "", "measured_at": None}


def _number_or_none(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value in (float("inf"), float("-inf")):  # JSON has no NaN
        return None
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value)
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return _text(value)
    return value


# --------------------------------------------------------------------------- the store


class StateStore:
    """The locked, atomically saved state of one workspace.

    Use as a context manager (or ``open()`` / ``close()``)::

        with StateStore(workspace, course=course) as store:
            if store.notice:
                show(store.notice)
            store.start_session()
            store.record_check("1.1", result)

    Recorders save immediately (``autosave=True``, the default); with
    ``autosave=False`` call :meth:`save` yourself (``close`` saves pending changes).
    ``course`` (optional, see tutor.curriculum) lets mastery use each lesson's concept
    questions and hint ladders.
    """

    def __init__(self, workspace: Path | str, *, course: Any = None, autosave: bool = True):
        self.workspace = Path(workspace)
        self.progress_dir = self.workspace / "progress"
        self.path = self.progress_dir / "state.json"
        self.lock_path = self.progress_dir / ".lock"
        self.course = course
        self.autosave = autosave
        self.state: dict = {}
        self.notice: str | None = None
        self._lock_fd: int | None = None
        self._dirty = False

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._lock_fd is not None

    def open(self, now: datetime | None = None) -> "StateStore":
        """Take the lock and load (or create, or rebuild) the state."""
        if self.is_open:
            return self
        self.progress_dir.mkdir(parents=True, exist_ok=True)
        self._acquire_lock()
        try:
            for tmp in temp_files_for(self.path):  # left by a writer killed mid-write
                try:
                    tmp.unlink()
                except OSError:
                    pass
            self._load(now)
        except BaseException:
            self._release_lock()
            raise
        return self

    def close(self) -> None:
        """Save pending changes and release the lock."""
        if not self.is_open:
            return
        try:
            if self._dirty:
                self.save()
        finally:
            self._release_lock()

    def __enter__(self) -> "StateStore":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self) -> None:
        """Write the state atomically."""
        self._require_open()
        atomic_write_text(self.path, dumps_state(self.state))
        self._dirty = False

    @contextmanager
    def batch(self) -> Iterator["StateStore"]:
        """Several records, one atomic write: autosave waits until the block ends, then
        saves once if anything changed (the caller holds whatever lock guards the store)."""
        before, self.autosave = self.autosave, False
        try:
            yield self
        finally:
            self.autosave = before
            if before and self._dirty and self.is_open:
                self.save()

    # -- lock ---------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        self._lock_fd = take_lock(self.lock_path)

    def _release_lock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            release_lock(fd)

    # -- load / corrupt -----------------------------------------------------------------
    def _load(self, now: datetime | None) -> None:
        self.notice = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            self.state = empty_state(now)
            self._dirty = False
            return
        repairs: list[str] = []
        try:
            self.state = parse_state(raw, repairs)  # NewerState goes up: the file stays as it is
            self._dirty = False
        except CorruptState as e:
            backup = self._move_aside(now)
            self.state = empty_state(now)
            self.save()
            rel = f"progress/{backup.name}"
            self.notice = (
                f"Your progress file progress/state.json was unreadable ({e}); "
                f"it was kept as {rel} and fresh records were started."
            )
            return
        if repairs:
            backup = self._backup_path(now)
            atomic_write_bytes(backup, raw)
            self.save()
            self.notice = (
                f"Your progress file progress/state.json had wrong fields, repaired: "
                f"{repair_summary(repairs)}; the rest of your records are kept (the file as "
                f"it was is in progress/{backup.name})."
            )

    def _move_aside(self, now: datetime | None) -> Path:
        backup = self._backup_path(now)
        os.replace(self.path, backup)
        return backup

    def _backup_path(self, now: datetime | None) -> Path:
        backup = self.progress_dir / "state.json.bak"
        if backup.exists():
            stamp = utc_now(now).strftime("%Y%m%dT%H%M%SZ")
            backup = self.progress_dir / f"state.json.{stamp}.bak"
            n = 1
            while backup.exists():
                backup = self.progress_dir / f"state.json.{stamp}-{n}.bak"
                n += 1
        return backup

    # -- helpers ------------------------------------------------------------------------
    def _require_open(self) -> None:
        if not self.is_open:
            raise StateError("the state store is not open; use `with StateStore(ws) as store:`")

    def _lesson(self, day: str) -> Any:
        if self.course is None:
            return None
        try:
            return self.course.lesson(day)
        except Exception:
            return None

    def day_record(self, day: str) -> dict | None:
        """The stored record of a day (live dict; treat as read-only), or None."""
        return self.state.get("days", {}).get(day_id(day))

    def _day(self, day: str) -> dict:
        return self.state["days"].setdefault(day, new_day())

    def _activity(self, day: str, now: datetime) -> dict:
        """Register an activity event for ``day`` at ``now`` and return the day record."""
        self._require_open()
        rec = self._day(day)
        t = to_iso(now)
        last = parse_iso(self.state.get("last_activity"))
        if last is not None:
            gap = (now - last).total_seconds()
            if 0 < gap <= ACTIVITY_GAP_S:
                rec["active_seconds"] = int(rec.get("active_seconds") or 0) + int(gap)
        if last is None or now > last:
            self.state["last_activity"] = t
        first_day = parse_iso(rec.get("first_activity"))
        if first_day is None or now < first_day:
            rec["first_activity"] = t
        last_day = parse_iso(rec.get("last_activity"))
        if last_day is None or now > last_day:
            rec["last_activity"] = t
        self.state["current_day"] = day
        session = self._open_session()
        if session is not None and day not in session["days"]:
            session["days"].append(day)
        return rec

    def _changed(self, day: str | None, now: datetime) -> None:
        if day is not None:
            rec = self.state["days"][day]
            a = assess(rec, self._lesson(day))
            rec["status"] = a.status.value
            rec["mastery"] = a.mastery.value if a.mastery else None
        self.state["updated"] = to_iso(now)
        self._dirty = True
        if self.autosave:
            self.save()

    def _open_session(self) -> dict | None:
        sessions = self.state.get("sessions") or []
        if sessions and sessions[-1].get("end") is None:
            return sessions[-1]
        return None

    def _ladder_rungs(self, day: str, task: Any) -> int | None:
        lesson = self._lesson(day)
        for t in getattr(lesson, "tasks", None) or []:
            if str(getattr(t, "id", None)) == str(task):
                hints = getattr(t, "hints", None)
                return len(hints) if hints else None
        return None

    # -- recorders ----------------------------------------------------------------------
    def look(self, day: str, now: datetime | None = None) -> None:
        """The learner opened ``day``: it becomes the day to resume at, but looking is not
        working on it (no activity, no change of status)."""
        self._require_open()
        day, now = day_id(day), utc_now(now)
        if self.state.get("current_day") != day:
            self.state["current_day"] = day
            self._changed(None, now)

    def touch(self, day: str, now: datetime | None = None) -> None:
        """Plain activity on ``day`` (the learner is working on it)."""
        day, now = day_id(day), utc_now(now)
        self._activity(day, now)
        self._changed(day, now)

    def record_check(self, day: str, result: dict, now: datetime | None = None) -> dict:
        """Log one check run (the check result contract dict); returns the stored attempt."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        t = to_iso(now)
        checks = [c for c in (result.get("checks") or []) if isinstance(c, dict)]
        passed = result.get("status") == "pass"
        failing: list[str] = []
        pitfalls: list[str] = []
        for c in checks:
            cid = str(c.get("id") or "?")
            status = str(c.get("status") or "")
            diag = c.get("diagnosis") if isinstance(c.get("diagnosis"), dict) else None
            pitfall = str(diag["pitfall"]) if diag and diag.get("pitfall") else None
            if status in FAILING:
                failing.append(cid)
            if pitfall and pitfall not in pitfalls:
                pitfalls.append(pitfall)
            cr = rec["checks"].setdefault(
                cid,
                {
                    "task": None, "title": "", "runs": 0, "fails": 0, "failing": False,
                    "first_fail": None, "last_fail": None, "fixed_at": None,
                    "fixed_after": None, "last_status": None, "last_message": "",
                    "pitfalls": {},
                },
            )
            cr["task"] = _jsonable(c.get("task", cr.get("task")))
            cr["title"] = _text(c.get("title") or cr.get("title") or "", 200)
            cr["runs"] = int(cr.get("runs") or 0) + 1
            if status in FAILING:
                cr["fails"] = int(cr.get("fails") or 0) + 1
                cr["first_fail"] = cr.get("first_fail") or t
                cr["last_fail"] = t
                cr["failing"] = True
                cr["fixed_at"] = None
                cr["fixed_after"] = None
                cr["last_message"] = _text(c.get("message") or "", MAX_MESSAGE)
                if pitfall:
                    cp = cr.setdefault("pitfalls", {})
                    cp[pitfall] = int(cp.get(pitfall) or 0) + 1
            elif status == "pass":
                if cr.get("failing"):
                    cr["fixed_at"] = t
                    cr["fixed_after"] = cr["fails"]
                cr["failing"] = False
                cr["last_message"] = ""
            cr["last_status"] = status or None
        summary = {
            str(k): int(v)
            for k, v in (result.get("summary") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        try:
            duration = round(float(result.get("duration_s") or 0.0), 3)
        except (TypeError, ValueError):
            duration = 0.0
        attempt = {
            "time": t,
            "status": "pass" if passed else "fail",
            "duration_s": duration,
            "summary": summary,
            "failing": failing,
            "pitfalls": pitfalls,
        }
        rec["attempts"].append(attempt)
        _trim(rec["attempts"], MAX_ATTEMPTS)
        rec["attempts_total"] = int(rec.get("attempts_total") or 0) + 1
        if rec.get("first_pass") is None:
            if passed:
                rec["first_pass"] = t
            else:
                rec["fails_before_pass"] = int(rec.get("fails_before_pass") or 0) + 1
        rec["last_result"] = attempt["status"]
        for p in pitfalls:
            rec["pitfalls"][p] = int(rec["pitfalls"].get(p) or 0) + 1
        self._changed(day, now)
        return attempt

    def record_hint(
        self,
        day: str,
        task: Any,
        rung: int,
        now: datetime | None = None,
        *,
        rungs: int | None = None,
    ) -> dict:
        """Log a hint shown: ``rung`` is 1-based; ``rungs`` is the ladder length (default:
        the lesson's, else 4). Reaching the last rung is remembered for mastery."""
        day, now = day_id(day), utc_now(now)
        rung = int(rung)
        if rung < 1:
            raise ValueError(f"hint rungs count from 1, got {rung}")
        ladder = rungs or self._ladder_rungs(day, task) or DEFAULT_LADDER_RUNGS
        rec = self._activity(day, now)
        entry = {"time": to_iso(now), "task": _jsonable(task), "rung": rung, "final": rung >= ladder}
        rec["hints"].append(entry)
        _trim(rec["hints"], MAX_HINT_EVENTS)
        key = f"{task}:{rung}"
        if key not in rec["hints_seen"]:
            rec["hints_seen"].append(key)
        if entry["final"]:
            rec["final_hint"] = True
        self._changed(day, now)
        return entry

    def record_question(self, day: str, text: str, now: datetime | None = None) -> None:
        """Log a question the learner asked the coach."""
        self._log_text(day, "questions", text, MAX_QUESTIONS, now)

    def _log_text(self, day: str, field: str, text: str, cap: int, now: datetime | None) -> None:
        """Append the learner's words to one of the day's capped lists (empty text is no
        entry, but still activity)."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        text = _text(text)
        if text:
            rec[field].append({"time": to_iso(now), "text": text})
            _trim(rec[field], cap)
        self._changed(day, now)

    def record_coach_asked(self, day: str, items: Iterable[Any], now: datetime | None = None) -> list[str]:
        """Remember the coach questions asked on ``day`` (ids such as ``"1:gq:2"`` or
        ``"pitfall:attn-missing-scale"``): appended in order, without duplicates, capped at
        ``MAX_COACH_ASKED`` (oldest dropped). Not an activity event: the question that
        prompted them is logged by :meth:`record_question`. Returns the stored list."""
        day, now = day_id(day), utc_now(now)
        self._require_open()
        rec = self._day(day)
        coach = rec.get("coach")
        if not isinstance(coach, dict):
            coach = rec["coach"] = {"asked": []}
        asked = coach.get("asked")
        if not isinstance(asked, list):
            asked = coach["asked"] = []
        if isinstance(items, (str, int)):
            items = [items]
        added = False
        for item in items or ():
            key = _text(item, 200)
            if key and key not in asked:
                asked.append(key)
                added = True
        _trim(asked, MAX_COACH_ASKED)
        if added:
            self._changed(day, now)
        return list(asked)

    def record_concept_answer(
        self, day: str, qid: str, answer: Any, correct: bool, now: datetime | None = None
    ) -> None:
        """Log an answer to a concept question (graded by the caller)."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        t, qid, correct = to_iso(now), str(qid), bool(correct)
        rec["concept_answers"].append(
            {"time": t, "qid": qid, "answer": _jsonable(answer), "correct": correct}
        )
        _trim(rec["concept_answers"], MAX_ANSWERS)
        c = rec["concepts"].get(qid)
        if c is None:
            c = rec["concepts"][qid] = {"tries": 0, "first_correct": correct, "first_time": t}
        c["tries"] = int(c.get("tries") or 0) + 1
        c["last_correct"] = correct
        c["last_time"] = t
        self._changed(day, now)

    def record_prediction(self, day: str, qid: str, value: float | None,
                          now: datetime | None = None) -> None:
        """Keep the learner's prediction for a predict-then-measure question (the number
        read from their answer, None if it held none); an older measurement of the same
        question is kept until the next one replaces it. The answer itself is logged by
        :meth:`record_concept_answer`."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        p = rec["predictions"].setdefault(str(qid), _new_prediction())
        p["prediction"] = _number_or_none(value)
        p["predicted_at"] = to_iso(now)
        self._changed(day, now)

    def record_measurement(self, day: str, qid: str, result: dict,
                           now: datetime | None = None) -> None:
        """Keep the measurement of the learner's engine for a predict question:
        ``result`` is one entry of :func:`tutor.checking.measuring.run_measures`."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        p = rec["predictions"].setdefault(str(qid), _new_prediction())
        status = str(result.get("status") or "error")
        p.update(measured=_number_or_none(result.get("value")) if status == "measured" else None,
                 unit=_text(result.get("unit") or "", 40), status=status,
                 reason=_text(result.get("reason") or ""), measured_at=to_iso(now))
        self._changed(day, now)

    def record_insight(self, day: str, text: str, now: datetime | None = None) -> None:
        """Log the learner's own explanation of the day's key idea."""
        self._log_text(day, "insights", text, MAX_INSIGHTS, now)

    def record_insight_skipped(self, day: str, now: datetime | None = None) -> None:
        """The learner dismissed the insight prompt after the day passed: remembered so the
        tutor never asks again, even in a later session. Not an activity event."""
        self._require_open()
        day, now = day_id(day), utc_now(now)
        self._day(day)["insight_skipped"] = to_iso(now)
        self._changed(None, now)

    def record_files_changed(
        self, day: str, paths: Iterable[Path | str], now: datetime | None = None
    ) -> None:
        """Log files the learner changed (paths as the caller names them, e.g. impl/x.py)."""
        day, now = day_id(day), utc_now(now)
        rec = self._activity(day, now)
        t = to_iso(now)
        files = rec["files_changed"]
        for p in paths:
            key = Path(p).as_posix() if isinstance(p, Path) else str(p)
            files.pop(key, None)  # re-insert: dict order = least recently changed first
            files[key] = t
        while len(files) > MAX_FILES:
            files.pop(next(iter(files)))
        self._changed(day, now)

    def start_session(self, now: datetime | None = None) -> dict:
        """Open a tutoring session; a session left open (a crash) is closed first."""
        self._require_open()
        now = utc_now(now)
        open_s = self._open_session()
        if open_s is not None:
            start = parse_iso(open_s.get("start"))
            last = parse_iso(self.state.get("last_activity"))
            end = last if (last and start and start <= last <= now) else (start or now)
            open_s["end"] = to_iso(end)
            open_s["implicit_end"] = True
        session = {"start": to_iso(now), "end": None, "days": []}
        self.state["sessions"].append(session)
        _trim(self.state["sessions"], MAX_SESSIONS)
        self._changed(None, now)
        return session

    def end_session(self, now: datetime | None = None) -> dict | None:
        """Close the open session (None if there is none)."""
        self._require_open()
        now = utc_now(now)
        session = self._open_session()
        if session is None:
            return None
        session["end"] = to_iso(now)
        self._changed(None, now)
        return session

    def sync_review(self, now: datetime | None = None) -> list[str]:
        """Schedule for spaced review every wrong answer and diagnosis not yet scheduled
        (:func:`tutor.records.review.sync`); saved only when something was added."""
        self._require_open()
        now = utc_now(now)
        added = review.sync(self.state, self.course, now) if self.course is not None else []
        if added:
            self._changed(None, now)
        return added

    def record_review(self, item_id: str, correct: bool, now: datetime | None = None) -> dict:
        """Reschedule a reviewed item (:func:`tutor.records.review.record_review`)."""
        self._require_open()
        now = utc_now(now)
        out = review.record_review(self.state, item_id, correct, now)
        self._changed(None, now)
        return out

    # -- queries ------------------------------------------------------------------------
    @property
    def current_day(self) -> str | None:
        return self.state.get("current_day")

    @property
    def sessions(self) -> list[dict]:
        return self.state.get("sessions", [])

    def assess(self, day: str) -> Assessment:
        day = day_id(day)
        return assess(self.day_record(day), self._lesson(day))

    def day_status(self, day: str) -> Status:
        return self.assess(day).status

    def mastery(self, day: str) -> Mastery | None:
        return self.assess(day).mastery

    def active_seconds(self, day: str) -> int:
        rec = self.day_record(day)
        return int(rec.get("active_seconds") or 0) if rec else 0

    def total_active_seconds(self) -> int:
        return sum(int(r.get("active_seconds") or 0) for r in self.state.get("days", {}).values())
