"""Waiting in tests: poll a condition against a deadline, never sleep and hope.

A sleep either wastes time on a fast machine or is too short on a busy one (two shared
cores); polling returns as soon as the thing happened and fails, saying what it waited
for, only when it did not happen in a generous time. (The Textual tests poll between
message-pump cycles instead: ``tui_support.wait_until``.)"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def poll(condition: Callable[[], T], timeout: float, what: str = "the condition",
         interval: float = 0.02) -> T:
    """The first truthy value of ``condition()``, polled every ``interval`` seconds; an
    AssertionError naming ``what`` if it stays falsy for ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def seconds_until(condition: Callable[[], object], timeout: float,
                  interval: float = 0.02) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout`` (for
    tests that report how long something took)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if condition():
            return time.monotonic() - t0
        time.sleep(interval)
    return None
