"""Run the measurements of "predict, then measure" questions on the learner's code.

A measurement (``@measure`` in a day's checks module) runs the learner's code on the
configuration a question states and returns a number. It runs exactly like a check: in
the isolated child of :mod:`tutor.checking.child` (``--measure``), with the same
environment allowlist, lifeline, kernels extension and deadline (the day's ``timeout_s``
for all of them together), so an endless loop in the learner's code costs at most that.

Each measurement comes back as ``{"id", "status", "value", "unit", "reason"}``: status
``measured`` (``value`` is the number), ``error`` (a stub, a crash, a timeout: ``reason``
says why in one line, and there is no number) or ``skipped`` (not run; ``reason``).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from tutor import paths
from tutor.checking.isolated import describe_exit, popen_isolated
from tutor.checking.output import ChildOutput
from tutor.checking.procs import reap_group

__all__ = ["run_measures", "MEASURE_STATUSES"]

MEASURE_STATUSES = ("measured", "error", "skipped")


def run_measures(day: str, ids: list[str], impl: Path, timeout_s: float,
                 cancel: threading.Event | None = None, python: str | None = None,
                 kernels: Path | None = None, units: dict[str, str] | None = None) -> list[dict]:
    """Run the measurements ``ids`` of ``day`` on the package at ``impl``, in that order,
    within ``timeout_s`` in all. ``units`` gives the unit to report for a measurement that
    never ran (the lesson's); a crash of the child costs only the measurement running."""
    from tutor.checking.runner import json_events

    impl = Path(impl).resolve()
    units = units or {}
    results: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    remaining = list(dict.fromkeys(ids))

    def gone(mid: str, status: str, reason: str) -> None:
        results[mid] = {"id": mid, "status": status, "value": None,
                        "unit": units.get(mid, ""), "reason": reason}

    while remaining:
        if time.monotonic() >= deadline:
            for mid in remaining:
                gone(mid, "skipped", f"Not run: the day's {timeout_s:g} s budget ran out "
                                     "on an earlier measurement")
            break
        proc, out, events = _spawn(day, remaining, impl, max(deadline - time.monotonic(), 1.0),
                                   python, kernels)
        running: str | None = None
        stop: str | None = None
        try:
            for ev in json_events(events, lambda: deadline, cancel, output=out):
                kind = ev.get("event")
                if kind == "start":
                    running = ev["id"]
                elif kind == "measured":
                    out.drain()
                    mid = ev["id"]
                    results[mid] = {"id": mid, "status": ev.get("status", "error"),
                                    "value": ev.get("value"), "unit": ev.get("unit") or
                                    units.get(mid, ""), "reason": ev.get("reason") or ""}
                    if results[mid]["status"] not in MEASURE_STATUSES:
                        results[mid]["status"] = "error"
                    if mid in remaining:
                        remaining.remove(mid)
                    running = None
                elif kind in ("timeout", "cancelled"):
                    stop = kind
        finally:
            reap_group(proc)
            out.close()
            events.close()
        if stop == "cancelled":
            for mid in remaining:
                gone(mid, "skipped", "Not run: the measurement was cancelled")
            break
        if stop == "timeout":
            if running:
                gone(running, "error", f"Did not finish within the day's {timeout_s:g} s "
                                       "budget: look for a loop that never ends")
                remaining.remove(running)
            elif remaining:  # still importing the package
                gone(remaining.pop(0), "error", f"Importing your package did not finish "
                                                f"within the day's {timeout_s:g} s budget")
            continue  # the rest are reported as skipped: the budget is spent
        if not remaining:
            break
        how = describe_exit(proc.returncode if proc.returncode is not None else -9)
        victim = running or remaining[0]
        gone(victim, "error", f"The measuring process {how} " + (
            "while running your code" if running else
            "before the measurement ran (while loading your package or the checks)"))
        remaining.remove(victim)
    return [results[mid] for mid in dict.fromkeys(ids)]


def _spawn(day: str, ids: list[str], impl: Path, budget: float, python: str | None,
           kernels: Path | None):
    rfd, wfd = os.pipe()
    cmd = [python or sys.executable, "-m", "tutor.checking.child", "--day", day,
           "--impl", str(impl), "--checks", str(paths.checks_dir()), "--fd", str(wfd),
           "--budget", f"{budget:g}", "--measure", ",".join(ids)]
    if kernels is not None:
        cmd += ["--kernels", str(Path(kernels).resolve())]
    proc = popen_isolated(cmd, wfd, impl.parent)
    return proc, ChildOutput(proc.stdout), os.fdopen(rfd, "rb", buffering=0)
