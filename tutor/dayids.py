"""Day identifiers as a learner types them: ``day1.3``, ``1.3``, ``w1d3``, ``week1``."""

from __future__ import annotations

import difflib
import re

_DAY = re.compile(r"^(?:day|d)?\s*(\d+)\.(\d+)$", re.IGNORECASE)
_WD = re.compile(r"^w(?:eek)?\s*(\d+)\s*d(?:ay)?\s*(\d+)$", re.IGNORECASE)
_WEEK = re.compile(r"^(?:w|week)\s*(\d+)$", re.IGNORECASE)


class UnknownDay(ValueError):
    def __init__(self, text: str, valid: list[str]):
        self.text = text
        self.valid = valid
        forms = [f"day{v}" for v in valid] + valid
        close = difflib.get_close_matches(text.lower(), forms, n=1, cutoff=0.5)
        self.suggestion = close[0] if close else None
        super().__init__(self.render())

    def render(self) -> str:
        msg = f"Unknown day '{self.text}'."
        if self.suggestion:
            msg += f" Did you mean '{self.suggestion}'?"
        weeks = sorted({v.split('.')[0] for v in self.valid}, key=int)
        return (msg + "\nValid ids: " + ", ".join(f"day{v}" for v in self.valid)
                + " (also written 1.3 or w1d3), or a whole week: "
                + ", ".join(f"week{w}" for w in weeks) + ".")


def parse(text: str, valid: list[str]) -> list[str]:
    """Day ids (``["1.3"]``, or every day of a week in order) for what the learner typed."""
    t = text.strip()
    m = _DAY.match(t) or _WD.match(t)
    if m:
        day = f"{int(m.group(1))}.{int(m.group(2))}"
        if day in valid:
            return [day]
    m = _WEEK.match(t)
    if m:
        days = [v for v in valid if v.split(".")[0] == str(int(m.group(1)))]
        if days:
            return days
    raise UnknownDay(text, valid)
