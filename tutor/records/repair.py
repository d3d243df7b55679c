"""Field-by-field repair of a ``state.json`` of our schema.

Weeks of history hang on one file, so a single wrong field (edited by hand, written by a
buggy version) costs that field only: it goes back to its empty value and a note says
which. Only a file that is not our schema at all is set aside whole (see state.py).
"""

from __future__ import annotations

import copy
from typing import Any

# Day fields holding events or summaries that renderers read with ``.get``.
_DICT_ITEMS_IN_LIST = ("attempts", "hints", "concept_answers", "questions", "insights")
_DICT_ITEMS_IN_DICT = ("checks", "concepts", "predictions")
# Fields of a prediction entry that hold a number or null (a prediction, a measurement).
_PREDICTION_NUMBERS = ("prediction", "measured")
_NUMBERS = ("active_seconds", "attempts_total", "fails_before_pass")


def _kind(t: type) -> str:
    return {list: "a list", dict: "an object"}.get(t, t.__name__)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def repair_fields(data: dict, day_template: dict) -> list[str]:
    """Fill in missing keys and repair wrong ones in place; returns one short note per
    repair (empty when the document was sound)."""
    notes: list[str] = []
    for key, typ in (("sessions", list), ("days", dict)):
        if key in data and not isinstance(data[key], typ):
            notes.append(f"'{key}' was not {_kind(typ)}")
            data[key] = typ()
    data.setdefault("created", data.get("updated"))
    data.setdefault("updated", data.get("created"))
    data.setdefault("last_activity", None)
    data.setdefault("sessions", [])
    data.setdefault("days", {})
    if data.setdefault("current_day", None) is not None and not isinstance(data["current_day"], str):
        notes.append("'current_day' was not a day id")
        data["current_day"] = None
    sessions = [s for s in data["sessions"] if isinstance(s, dict)]
    if len(sessions) != len(data["sessions"]):
        notes.append(f"{len(data['sessions']) - len(sessions)} session entries were not objects")
        data["sessions"] = sessions
    for s in sessions:
        s.setdefault("end", None)
        if not isinstance(s.setdefault("days", []), list):
            notes.append("a session's 'days' was not a list")
            s["days"] = []
    for day in list(data["days"]):
        rec = data["days"][day]
        if not isinstance(rec, dict):
            notes.append(f"day {day} was not an object")
            del data["days"][day]
            continue
        notes += [f"day {day}: {n}" for n in _repair_day(rec, day_template)]
    return notes


def _repair_day(rec: dict, template: dict) -> list[str]:
    notes = []
    for key, default in template.items():
        if key not in rec:
            rec[key] = copy.deepcopy(default)
        elif isinstance(default, (list, dict)) and not isinstance(rec[key], type(default)):
            notes.append(f"'{key}' was not {_kind(type(default))}")
            rec[key] = copy.deepcopy(default)
        elif key in _NUMBERS and not _is_number(rec[key]):
            notes.append(f"'{key}' was not a number")
            rec[key] = 0
    for key in _DICT_ITEMS_IN_LIST:
        kept = [x for x in rec[key] if isinstance(x, dict)]
        if len(kept) != len(rec[key]):
            notes.append(f"'{key}' held entries that were not objects")
            rec[key] = kept
    for key in _DICT_ITEMS_IN_DICT:
        bad = [k for k, v in rec[key].items() if not isinstance(v, dict)]
        if bad:
            notes.append(f"'{key}' held entries that were not objects")
            for k in bad:
                del rec[key][k]
    for qid, p in rec["predictions"].items():
        for key in _PREDICTION_NUMBERS:
            if p.get(key) is not None and not _is_number(p[key]):
                notes.append(f"prediction '{qid}': '{key}' was not a number")
                p[key] = None
    return notes


def summary(notes: list[str], limit: int = 3) -> str:
    """The notes on one line: the first few, then how many more."""
    shown = "; ".join(notes[:limit])
    return shown + (f" (and {len(notes) - limit} more)" if len(notes) > limit else "")
