"""The schema of ``progress/state.json``: an empty state, a new day, and reading a
document back (validation with repair of wrong fields, parsing, the errors that refuse
one) and writing it (the indented dump). No file is locked or written here: that is
:class:`tutor.records.state.StateStore`.

Layout (schema_version 1)::

    {"schema": "tiny-llm-tutor/state", "schema_version": 1,
     "created": ISO, "updated": ISO, "current_day": "1.3" | null,
     "last_activity": ISO | null,           # latest activity event, any day
     "sessions": [{"start": ISO, "end": ISO | null, "days": ["1.1"], "implicit_end"?: true}],
     "days": {"1.1": DAY, ...},
     "review": {"items": {item_id: {"card": FSRS card, ...}}, "done": {item_id: ISO}}}

    DAY = {"status": "in_progress", "mastery": "learning",   # derived, refreshed on write
           "first_activity": ISO, "last_activity": ISO, "active_seconds": int,
           "attempts_total": int, "fails_before_pass": int, "first_pass": ISO | null,
           "last_result": "pass" | "fail" | null,
           "attempts": [{"time", "status", "duration_s", "summary", "failing", "pitfalls"}],
           "checks": {check_id: {"task", "title", "runs", "fails", "failing", "first_fail",
                                 "last_fail", "fixed_at", "fixed_after", "last_status",
                                 "last_message", "pitfalls": {pitfall: n}}},
           "pitfalls": {pitfall: count},
           "hints": [{"time", "task", "rung", "final"}], "hints_seen": ["task:rung"],
           "final_hint": bool,
           "concept_answers": [{"time", "qid", "answer", "correct"}],
           "concepts": {qid: {"tries", "first_correct", "last_correct", "first_time", "last_time"}},
           "predictions": {qid: {"prediction": number | null, "predicted_at": ISO,
                                 "measured": number | null, "unit": str,
                                 "status": "measured" | "error" | "skipped" | null,
                                 "reason": str, "measured_at": ISO | null}},
           "questions": [{"time", "text"}], "insights": [{"time", "text"}],
           "insight_skipped": ISO | null,   # the after-pass insight prompt was dismissed
           "files_changed": {path: ISO},
           "coach": {"asked": [question id]}}   # the offline coach's questions asked, in order

``review`` is the spaced-review schedule (:mod:`tutor.records.review`, where its rule for
leaving is written); a file from before it loads with an empty schedule, and a malformed
entry is dropped with a note (the schedule rebuilds it from the mistake it came from).

``predictions`` (predict-then-measure questions: the learner's latest prediction and the
latest measurement of their engine) came after version 1 was first written; an older
file without it loads as it is, the key filled in empty.

A coach question id is ``"<task>:gq:<index>"`` (a task's guiding question, 0-based) or
``"pitfall:<id>"`` (a diagnosis question); see :mod:`tutor.coach.offline`.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tutor.records._util import to_iso, utc_now
from tutor.records.mastery import Status
from tutor.records.repair import repair_fields
from tutor.records.review import empty_review, repair_review

SCHEMA = "tiny-llm-tutor/state"
SCHEMA_VERSION = 1


class StateError(Exception):
    """Base class for records errors."""


class CorruptState(StateError):
    """``state.json`` is not valid JSON or not our schema."""


class NewerState(StateError):
    """``state.json`` was written by a newer tutor: left as it is, never set aside."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(
            f"progress/state.json was written by a newer tiny-llm-tutor (records version "
            f"{version}; this one reads up to {SCHEMA_VERSION}); it was left as it is: "
            "upgrade with `pip install -U tiny-llm-tutor`"
        )


def state_path(workspace: Path | str) -> Path:
    return Path(workspace) / "progress" / "state.json"


def empty_state(now: datetime | None = None) -> dict:
    t = to_iso(utc_now(now))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": t,
        "updated": t,
        "current_day": None,
        "last_activity": None,
        "sessions": [],
        "days": {},
        "review": empty_review(),
    }


DAY_TEMPLATE: dict[str, Any] = {
    "status": Status.NOT_STARTED.value,
    "mastery": None,
    "first_activity": None,
    "last_activity": None,
    "active_seconds": 0,
    "attempts_total": 0,
    "fails_before_pass": 0,
    "first_pass": None,
    "last_result": None,
    "attempts": [],
    "checks": {},
    "pitfalls": {},
    "hints": [],
    "hints_seen": [],
    "final_hint": False,
    "concept_answers": [],
    "concepts": {},
    "predictions": {},
    "questions": [],
    "insights": [],
    "insight_skipped": None,
    "files_changed": {},
    "coach": {"asked": []},
}


def new_day() -> dict:
    return copy.deepcopy(DAY_TEMPLATE)


def validate_state(data: Any, repairs: list[str] | None = None) -> dict:
    """Check the document's shape; fill in keys a valid older write may lack, and repair
    wrong fields one by one (a note per repair goes to ``repairs``).

    Returns the (normalised, same object) state. Raises :class:`NewerState` for a newer
    tutor's file and :class:`CorruptState` for one that is not our schema.
    """
    if not isinstance(data, dict):
        raise CorruptState("not a JSON object")
    if data.get("schema") != SCHEMA:
        raise CorruptState(f"unknown schema {data.get('schema')!r}")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CorruptState("schema_version missing")
    if version > SCHEMA_VERSION:
        raise NewerState(version)
    if version < 1:
        raise CorruptState(f"schema_version {version} is not a known version")
    # (future) migrations from older versions go here, one step at a time.
    notes = repair_fields(data, DAY_TEMPLATE) + repair_review(data)
    if repairs is not None:
        repairs.extend(notes)
    data["schema_version"] = SCHEMA_VERSION
    return data


def parse_state(raw: bytes, repairs: list[str] | None = None) -> dict:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptState("not UTF-8 text") from None
    if not text.strip():
        raise CorruptState("the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CorruptState(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    return validate_state(data, repairs)


_INLINE_WIDTH = 200


def dumps_state(state: dict) -> str:
    """Indented JSON, with any object or list that fits in 200 characters on one line
    (one line per attempt, hint, answer...), so the file stays easy to read and diff."""
    return _dump(state, 0) + "\n"


def _dump(obj: Any, level: int) -> str:
    flat = json.dumps(obj, ensure_ascii=False)
    if not isinstance(obj, (dict, list)) or not obj or len(flat) + 2 * level <= _INLINE_WIDTH:
        return flat
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_dump(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    items = [f"{inner}{_dump(v, level + 1)}" for v in obj]
    return "[\n" + ",\n".join(items) + f"\n{pad}]"

