"""Small helpers shared by the records modules: UTC timestamps and text formatting."""

from __future__ import annotations

import math
import os
from datetime import datetime, timedelta, timezone

UTC = timezone.utc
ISO_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


CLOCK_SHIFT_ENV = "TINY_LLM_TUTOR_CLOCK_SHIFT_DAYS"


def clock_shift() -> timedelta:
    """The records' clock runs this far ahead of the machine's: ``TINY_LLM_TUTOR_CLOCK_SHIFT_DAYS``
    (days, may be fractional), for rehearsing spaced review and recalls on a "later day" in
    a real process; unset or not a number means none."""
    try:
        days = float(os.environ.get(CLOCK_SHIFT_ENV, "") or 0.0)
    except ValueError:
        return timedelta(0)
    return timedelta(days=days) if math.isfinite(days) and abs(days) < 3650 else timedelta(0)


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` as an aware UTC datetime truncated to whole seconds (naive means UTC); the
    machine's clock (plus :func:`clock_shift`) when None."""
    if now is None:
        now = datetime.now(UTC) + clock_shift()
    elif not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(UTC).replace(microsecond=0)


def to_iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime(ISO_FORMAT)


def parse_iso(text: object) -> datetime | None:
    """Parse a stored timestamp (``2025-01-02T10:15:00Z``, or with an offset, or naive
    meaning UTC) to an aware UTC datetime; None for anything unparseable. The one parser
    of stored times: every reader of the records goes through it."""
    if not isinstance(text, str) or not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def fmt_time(text: object, *, date: bool = True) -> str:
    """'2025-01-02 10:15 UTC' (or '10:15 UTC') from a stored timestamp; '—' if unknown."""
    dt = parse_iso(text)
    if dt is None:
        return "—"
    return dt.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def fmt_duration(seconds: float | int | None, *, zero: str = "0m") -> str:
    """Short human duration: '0m', '<1m', '42m', '3h 05m'; ``zero`` for none at all (the
    tables show '-' there, like their other empty cells)."""
    s = int(seconds or 0)
    if s <= 0:
        return zero
    if s < 60:
        return "<1m"
    minutes = s // 60
    if minutes < 60:
        return f"{minutes}m"
    return f"{minutes // 60}h {minutes % 60:02d}m"


def one_line(text: object, limit: int = 200) -> str:
    """Collapse whitespace to one line and cut to ``limit`` characters (with an ellipsis)."""
    s = " ".join(str(text if text is not None else "").split())
    if len(s) > limit:
        s = s[: max(0, limit - 1)].rstrip() + "…"
    return s


def md_safe(text: object, limit: int = 200) -> str:
    """One line of text that cannot open an HTML comment or a tutor block marker."""
    return one_line(text, limit).replace("<!--", "&lt;!--").replace("-->", "--&gt;")


def md_cell(text: object, limit: int = 200) -> str:
    """Like :func:`md_safe`, and safe inside a markdown table cell."""
    return md_safe(text, limit).replace("|", "\\|")


def day_id(day: object) -> str:
    """Normalise a day reference: 'day1.1', ' 1.1 ' and '1.1' all become '1.1'."""
    s = str(day).strip()
    if s.lower().startswith("day"):
        s = s[3:].strip()
    if not s:
        raise ValueError(f"not a day id: {day!r}")
    return s


def day_sort_key(day: str) -> tuple:
    parts = []
    for p in str(day).split("."):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    return tuple(parts)
