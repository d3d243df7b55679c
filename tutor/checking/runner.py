"""Run one day's checks in a child process and turn what happens into the result contract.

The learner's code never runs in the tutor's process. The child gets its own process group
(so a timeout kills everything it started), an allowlisted environment
(:mod:`tutor.checking.environment`), a lifeline that ends it with the tutor
(:mod:`tutor.checking.lifeline`), and a pipe for its prints that the tutor drains and caps. Results come back as JSON lines on a
separate pipe, so a crash loses only the check that was running; the runner then starts a
new child for the checks that remain.
"""

from __future__ import annotations

import json
import os
import select
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from tutor import paths
from tutor.checking.environment import child_env
from tutor.checking.isolated import describe_exit, popen_isolated
from tutor.checking.output import OUTPUT_CAP, ChildOutput
from tutor.checking.procs import reap_group
from tutor.checking.results import STATUSES, day_result

__all__ = ["run_day", "run_days", "popen_isolated", "reap_group", "child_env", "json_events",
           "OUTPUT_CAP"]


@dataclass
class _Day:
    """What is known of one day while its checks run (possibly over several children)."""

    day: str
    timeout_s: float
    t0: float
    on_event: Callable[[dict], None] | None = None
    plan: list[dict] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)
    remaining: list[str] | None = None  # None until the first plan arrives
    import_error: dict | None = None
    no_checks: str | None = None  # the checks module that is missing
    stop_reason: str | None = None  # "timeout" or "cancelled"

    @property
    def deadline(self) -> float:
        return self.t0 + self.timeout_s

    def notify(self, ev: dict) -> None:
        if self.on_event:
            self.on_event(ev)


def run_day(day: str, impl: Path, timeout_s: float,
            on_event: Callable[[dict], None] | None = None,
            cancel: threading.Event | None = None,
            python: str | None = None, kernels: Path | None = None) -> dict:
    """Run every check of ``day`` against the package at ``impl``; return the day's result
    dict (the ``check --json`` contract). ``kernels`` is the folder holding the built C++
    extension the package may use (the workspace's ``kernels/``). ``on_event`` sees
    plan/start/result events as they happen; setting ``cancel`` kills the child and
    reports the rest as skipped."""
    return next(run_days([(day, timeout_s)], impl, lambda _d: on_event, cancel, python,
                         kernels))


def run_days(days: list[tuple[str, float]], impl: Path,
             on_day: Callable[[str], Callable[[dict], None] | None] | None = None,
             cancel: threading.Event | None = None, python: str | None = None,
             kernels: Path | None = None) -> Iterator[dict]:
    """Run several days' checks, each with its own time budget, and yield each day's result
    as soon as that day is done. One child runs the days in order, so the interpreter, MLX
    and the learner's package are loaded once per run rather than once per day; a crash or
    a timeout ends only that child, and a new one takes up the checks that remain.
    ``on_day(day)`` is called as a day starts and returns its event callback (or None)."""
    impl = Path(impl).resolve()
    queue = list(days)
    only: list[str] | None = None  # the checks left of queue[0] after a crash
    current: _Day | None = None
    while queue:
        spawned = time.monotonic()
        proc, run, events = _spawn(queue, impl, only, python, kernels)
        if current is None:
            current = _start_day(queue[0], spawned, on_day)
        finished_child = False
        running: str | None = None  # the check started and not yet reported
        try:
            for ev in json_events(events, lambda: current.deadline if current else time.monotonic() + 5,
                                  cancel, output=run):
                kind = ev.get("event")
                if kind == "day":
                    running = None
                    if ev["day"] != current.day:  # the next day of this child begins
                        current = _start_day(queue[0], time.monotonic(), on_day)
                elif kind == "plan":
                    if not current.plan:
                        current.plan = ev["checks"]
                        current.notify(ev)
                    if current.remaining is None:
                        current.remaining = [c["id"] for c in current.plan]
                elif kind == "start":
                    running = ev["id"]
                    current.notify(ev)
                elif kind == "result":
                    run.drain()  # up to the check's end mark, so its output is complete
                    cid = ev["id"]
                    current.results[cid] = ev
                    if current.remaining and cid in current.remaining:
                        current.remaining.remove(cid)
                    running = None
                    current.notify(ev)
                elif kind == "import_error":
                    current.import_error = ev
                elif kind == "no_checks":
                    current.no_checks = ev.get("module") or "its checks module"
                elif kind == "day_done":
                    _attach_output(run, current)
                    yield _finish(current, impl)
                    queue.pop(0)
                    only, current = None, None
                    if queue:  # a hang between days is bounded by the next day's budget
                        current = _start_day(queue[0], time.monotonic(), on_day)
                elif kind == "done":
                    finished_child = True
                elif kind in ("timeout", "cancelled"):
                    current.stop_reason = kind
        finally:
            reap_group(proc)
            run.close()
            events.close()
            if current is not None:
                _attach_output(run, current)
        if finished_child or current is None:
            # Days the child skipped over (it should not) are reported, not lost.
            for d in queue:
                yield _finish(_start_day(d, time.monotonic(), None, missing=True), impl)
            return
        # Planned, nothing started: the child was still importing the learner's package.
        importing = (running is None and not current.results and current.remaining is not None
                     and current.import_error is None and not current.no_checks)
        if current.stop_reason == "timeout" and importing:
            current.import_error = {
                "status": "timeout", "frames": [],
                "message": (f"Importing your package did not finish within the day's "
                            f"{current.timeout_s:g} s budget: look for a loop or heavy work "
                            "that runs at import time (module level).")}
        if current.stop_reason is not None:
            if running:
                current.results[running] = (
                    _timed_out(running, current.timeout_s) if current.stop_reason == "timeout"
                    else _skipped(running, "cancelled"))
                _attach_output(run, current, only=running)
            yield _finish(current, impl)
            if current.stop_reason == "cancelled":
                return
            queue.pop(0)
            only, current = None, None
            continue
        # The child died without saying "day_done": a crash.
        how = describe_exit(proc.returncode)
        if current.remaining is None or importing:
            current.import_error = {"message": f"The check process {how} while importing "
                                               "your package.", "frames": [],
                                    "status": "crashed"}
            yield _finish(current, impl)
            queue.pop(0)
            only, current = None, None
            continue
        if running:
            current.results[running] = {
                "id": running, "status": "crashed",
                "message": f"The check process {how} while running this check "
                           "(a crash in native code, os._exit or abort in your code).",
                "evidence": {"exit": proc.returncode}, "pitfall": None}
            _attach_output(run, current, only=running)
            if running in current.remaining:
                current.remaining.remove(running)
        else:
            # Crashed between checks: do not loop forever on the same crash.
            for cid in list(current.remaining):
                current.results[cid] = _skipped(cid, f"not run: the check process {how}")
            current.remaining = []
        if time.monotonic() >= current.deadline:
            current.stop_reason = "timeout"
        if current.stop_reason or not current.remaining:
            yield _finish(current, impl)
            queue.pop(0)
            only, current = None, None
        else:
            only = list(current.remaining)


def _start_day(entry: tuple[str, float], t0: float, on_day, missing: bool = False) -> _Day:
    day, timeout_s = entry
    d = _Day(day, timeout_s, t0, on_event=on_day(day) if on_day else None)
    if missing:
        d.import_error = {"message": "The check process ended before this day's checks "
                                     "ran.", "frames": [], "status": "error"}
    return d


def _timed_out(cid: str, timeout_s: float) -> dict:
    return {"id": cid, "status": "timeout",
            "message": (f"Did not finish within the day's {timeout_s:g} s budget: look for a "
                        "loop that never ends or work that grows too fast."),
            "evidence": {"timeout_s": timeout_s}, "pitfall": None}


def _finish(d: _Day, impl: Path) -> dict:
    checks = _assemble(d.plan, d.results, d.import_error, d.stop_reason, d.timeout_s)
    if d.no_checks:
        # Every lesson has a checks module (the course will not load without one), so this
        # is a broken install or a day no lesson has: an error, never a quiet skip.
        checks = [{"id": "checks", "task": 0, "title": "The day's checks", "status": "error",
                   "message": (f"Day {d.day} has no checks module: {d.no_checks} is missing "
                               "from this tutor, so nothing was checked. That is the tutor's "
                               "fault, not your code's."),
                   "evidence": {"missing_module": d.no_checks}, "pitfall": None,
                   "skip_reason": None}]
    return day_result(d.day, str(impl), checks, time.monotonic() - d.t0)


def _skipped(cid: str, reason: str) -> dict:
    return {"id": cid, "status": "skipped", "message": reason, "evidence": {},
            "pitfall": None, "skip_reason": reason}


def _assemble(plan, results, import_error, stop_reason: str | None,
              timeout_s) -> list[dict]:
    checks = []
    for c in plan:
        r = results.get(c["id"])
        if r is None:
            if import_error is not None:
                r = {"status": import_error.get("status", "error"),
                     "message": import_error["message"],
                     "evidence": {"traceback": import_error.get("frames", [])}}
            elif stop_reason == "cancelled":
                r = _skipped(c["id"], "not run: the check run was cancelled")
            else:
                r = _skipped(c["id"], f"not run: the day's {timeout_s:g} s budget ran out "
                                      "on an earlier check")
        status = r.get("status", "error")
        if status not in STATUSES:
            status = "error"
        checks.append({
            "id": c["id"], "task": c["task"], "title": c["title"], "status": status,
            "message": r.get("message", ""), "evidence": r.get("evidence") or {},
            "pitfall": r.get("pitfall"),
            "skip_reason": r.get("skip_reason") if status == "skipped" else None,
        })
    if not plan and import_error is not None:
        checks.append({"id": "import", "task": 0, "title": "Import the package under test",
                       "status": import_error.get("status", "error"),
                       "message": import_error["message"],
                       "evidence": {"traceback": import_error.get("frames", [])},
                       "pitfall": None, "skip_reason": None})
    return checks


def _attach_output(run: ChildOutput, d: _Day, only: str | None = None) -> None:
    for (day, cid), out in run.outputs.items():
        if day != d.day or (only and cid != only) or cid not in d.results:
            continue
        text = out.text()
        if text.strip():
            ev = d.results[cid]
            if ev.get("evidence") is None:
                ev["evidence"] = {}
            ev.setdefault("evidence", {})["output"] = text


def _spawn(queue: list[tuple[str, float]], impl: Path, only: list[str] | None,
           python: str | None, kernels: Path | None):
    rfd, wfd = os.pipe()
    # No child outlives the days it was given: each day's budget, back to back.
    budget = sum(t for _, t in queue)
    cmd = [python or sys.executable, "-m", "tutor.checking.child",
           "--day", ",".join(d for d, _ in queue), "--impl", str(impl),
           "--checks", str(paths.checks_dir()), "--fd", str(wfd), "--budget", f"{budget:g}"]
    if kernels is not None:
        cmd += ["--kernels", str(Path(kernels).resolve())]
    if only:
        cmd += ["--only", ",".join(only)]
    proc = popen_isolated(cmd, wfd, impl.parent)
    return proc, ChildOutput(proc.stdout), os.fdopen(rfd, "rb", buffering=0)


def json_events(events, deadline: Callable[[], float], cancel: threading.Event | None = None,
                output: ChildOutput | None = None):
    """JSON events from a child's result pipe until it closes, the deadline passes or
    ``cancel`` is set (then a synthetic timeout/cancelled event is the last one). The
    child's ``output`` is drained as it comes, so a full pipe never blocks the child."""
    buf = b""
    fd = events.fileno()
    while True:
        if cancel is not None and cancel.is_set():
            yield {"event": "cancelled"}
            return
        left = deadline() - time.monotonic()
        if left <= 0:
            yield {"event": "timeout"}
            return
        watch = [fd] + ([output.fd] if output is not None and not output.eof else [])
        ready, _, _ = select.select(watch, [], [], min(left, 0.1))
        if output is not None and output.fd in ready:
            output.drain()
        if fd not in ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                yield json.loads(line)
            except ValueError:
                continue
