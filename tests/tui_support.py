"""Helpers shared by the TUI tests: temp workspaces, a scripted coach, fixed check results
and a fake check runner (for deterministic snapshots), and poll-with-deadline waits."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tutor import paths
from tutor.checking.results import day_result, with_questions
from tutor.engine import TutorSession
from tutor.workspace import init_workspace

NO_SCALE_ATTENTION = '''
def scaled_dot_product_attention_simple(query, key, value, scale=None, mask=None):
    scores = query @ key.swapaxes(-1, -2)
    if mask is not None:
        scores = scores + mask
    return softmax(scores, axis=-1) @ value
'''


def make_workspace(root: Path) -> Path:
    ws = root / "ws"
    init_workspace(ws)
    return ws


def open_session(ws: Path, target: str | None = "week1") -> TutorSession:
    return TutorSession(ws).open(target)


def replace_function(path: Path, name: str, new_src: str) -> None:
    """Swap one top-level function of a learner file for ``new_src``."""
    import ast

    src = path.read_text(encoding="utf-8")
    lines = src.splitlines(keepends=True)
    node = next(n for n in ast.parse(src).body
                if isinstance(n, ast.FunctionDef) and n.name == name)
    lines[node.lineno - 1:node.end_lineno] = [new_src.strip("\n") + "\n"]
    path.write_text("".join(lines), encoding="utf-8")


def write_no_scale_attention(ws: Path) -> None:
    """A classic mistake: attention without the 1/sqrt(D) scale."""
    replace_function(ws / "impl" / "attention.py", "scaled_dot_product_attention_simple",
                     NO_SCALE_ATTENTION)


def write_slow_attention(ws: Path, seconds: float, pidfile: Path) -> None:
    replace_function(ws / "impl" / "attention.py", "scaled_dot_product_attention_simple", f'''
def scaled_dot_product_attention_simple(query, key, value, scale=None, mask=None):
    import os, time
    with open({str(pidfile)!r}, "w") as f:
        f.write(str(os.getpid()))
    t = time.time()
    while time.time() - t < {seconds}:
        pass
    raise NotImplementedError("slow stub")
''')


def copy_answer_key(ws: Path, *names: str) -> None:
    for name in names:
        shutil.copyfile(paths.answer_key_dir() / name, ws / "impl" / name)


# --------------------------------------------------------------------------- a coach


@dataclass(frozen=True)
class Event:
    kind: str
    text: str = ""
    interrupted: bool = False


class ScriptedCoach:
    """Stands in for tutor.coach.chat.Coach: a fixed streamed reply, the real ladder."""

    def __init__(self, session, chunks=("What shape ", "do the scores ", "have?"),
                 gate: threading.Event | None = None):
        self.session = session
        self.chunks = list(chunks)
        self.gate = gate
        self.asked: list[str] = []

    def ask(self, text):
        self.asked.append(text)
        self.session.question(text)
        for i, c in enumerate(self.chunks):
            if i == 1 and self.gate is not None:
                self.gate.wait(10)
            yield Event("text", c)
        yield Event("done", "".join(self.chunks))

    def hint(self):
        step = self.session.hint()
        if step is None:
            return None
        return Event("text", f"**Hint {step.rung}/{step.rungs}** · {step.task_title}\n\n{step.text}")

    def after_checks(self, result):
        if result["status"] == "pass":
            return "Every check passes."
        return "Let's look at the first failing check together."


def scripted(**kw):
    return lambda session: ScriptedCoach(session, **kw)


def no_coach(session):
    raise ImportError("no coach in this test")


# --------------------------------------------------------------------------- fixed results


def _check(lesson, cid, status, message="", evidence=None, pitfall=None, skip_reason=None):
    task = lesson.task_of_check(cid)
    return {"id": cid, "task": task.id if task else 0, "title": cid.replace("-", " "),
            "status": status, "message": message, "evidence": evidence or {},
            "pitfall": pitfall, "skip_reason": skip_reason}


def failing_result(lesson) -> dict:
    """Day 1.1 with every icon: a diagnosed failure, a timeout, a crash, a skip."""
    checks = [
        _check(lesson, "sdpa-simple", "fail",
               "[batch (2,), L=3, S=5, D=5, float32] output differs from the reference: "
               "max abs error 0.551, 30 of 30 values outside tolerance.",
               {"case": "batch (2,), L=3, S=5, D=5, float32", "dtype": "float32",
                "shape": [2, 3, 5], "expected_shape": [2, 3, 5], "max_abs_err": 0.5507849,
                "max_rel_err": 11.922, "mismatched": 30, "of": 30,
                "first_mismatch": {"index": [0, 0, 0], "got": 0.6859, "expected": 0.4098}},
               pitfall="attn-missing-scale"),
        _check(lesson, "sdpa-simple-scale-mask", "timeout",
               "Did not finish within the day's 20 s budget: look for a loop that never ends.",
               {"timeout_s": 20}),
        _check(lesson, "linear", "crashed",
               "The check process was killed by SIGSEGV (signal 11) while running this check.",
               {"exit": -11}),
        _check(lesson, "mha", "skipped", "not run: the check run was cancelled",
               skip_reason="not run: the check run was cancelled"),
    ]
    return with_questions(day_result(lesson.id, "/impl", checks, 1.0), lesson.pitfall_questions)


def passing_result(lesson) -> dict:
    checks = [_check(lesson, cid, "pass") for t in lesson.tasks for cid in t.checks]
    return with_questions(day_result(lesson.id, "/impl", checks, 1.0), lesson.pitfall_questions)


class FakeRunner:
    """Replaces tutor.checking.runner.run_day: emits plan/start/result events and returns
    a fixed result; ``hold`` pauses it after the first result until released."""

    def __init__(self, result_for, hold: bool = False, hold_max_s: float = 30.0):
        self.result_for = result_for
        self.hold = threading.Event() if hold else None
        self.hold_max_s = hold_max_s
        self.calls = 0

    def release(self):
        if self.hold is not None:
            self.hold.set()

    def __call__(self, day, impl, timeout_s, on_event=None, cancel=None, **_kw):
        from tutor.curriculum import load_course

        self.calls += 1
        lesson = load_course().lesson(day)
        result = self.result_for(lesson)
        raw = [{k: v for k, v in c.items() if k not in ("diagnosis",)} for c in result["checks"]]
        for c, full in zip(raw, result["checks"]):
            c["pitfall"] = (full.get("diagnosis") or {}).get("pitfall")
        if on_event:
            on_event({"event": "plan", "checks": [{"id": c["id"], "task": c["task"],
                                                    "title": c["title"]} for c in raw]})
        for i, c in enumerate(raw):
            if on_event:
                on_event({"event": "start", "id": c["id"]})
                on_event({"event": "result", **c})
            if i == 0 and self.hold is not None:
                until = time.monotonic() + self.hold_max_s
                while not self.hold.wait(0.05):
                    if (cancel is not None and cancel.is_set()) or time.monotonic() > until:
                        break
        out = {**result, "day": day, "checks": raw}
        return out


# --------------------------------------------------------------------------- state with fixed times


def seed_history(ws: Path) -> None:
    """Records with fixed times: day 1.1 passed after a hint, day 1.2 started."""
    from tutor.curriculum import load_course
    from tutor.records.state import StateStore

    course = load_course()
    l1 = course.lesson("1.1")
    t0 = datetime(2025, 3, 1, 10, 0, tzinfo=timezone.utc)
    m = lambda minutes: t0 + timedelta(minutes=minutes)  # noqa: E731
    with StateStore(ws, course=course) as st:
        st.start_session(now=m(0))
        st.touch("1.1", now=m(0))
        st.record_check("1.1", failing_result(l1), now=m(4))
        st.record_hint("1.1", 1, 1, now=m(8))
        st.record_check("1.1", passing_result(l1), now=m(12))
        st.touch("1.2", now=m(20))
        st.record_check("1.2", {"status": "fail", "checks": [], "summary": {}}, now=m(23))
        st.end_session(now=m(24))


# --------------------------------------------------------------------------- waiting


async def settle(pilot) -> None:
    """Workers done, the question cards mounted (after the first paint), messages drained."""
    await pilot.app.workers.wait_for_complete()
    await wait_until(pilot, lambda: getattr(pilot.app, "questions_ready", True), 10,
                     "the question cards")
    await pilot.pause()


async def wait_until(pilot, predicate, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` between message-pump cycles until it holds (deadline, no bets)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def key_latency(pilot, key: str, predicate, timeout: float = 2.0) -> float:
    """Seconds from a key reaching the app (as Pilot sends it) until ``predicate`` holds
    and the screen has been refreshed after it: the time the UI takes to answer."""
    import asyncio

    from textual import events
    from textual.keys import _character_to_key

    app = pilot.app
    char = key if len(key) == 1 else None
    name = _character_to_key(key) if len(key) == 1 and not key.isalnum() else key
    event = events.Key(name, char)
    event.set_sender(app)
    t0 = time.perf_counter()
    app._driver.send_message(event)
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            raise AssertionError(f"the UI did not answer {key!r} within {timeout} s")
        await asyncio.sleep(0.001)
    # ...and until the change is on screen: the next refresh after the handler ran
    painted = asyncio.Event()
    app.screen.call_after_refresh(painted.set)
    await asyncio.wait_for(painted.wait(), timeout)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- what is on screen


def screen_text(app) -> str:
    """The terminal as plain text, as the learner sees it (only what is scrolled into view),
    not the widgets' contents."""
    import io

    from rich.console import Console

    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True,
                      color_system=None, force_terminal=True, legacy_windows=False,
                      safe_box=False)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens))
    return console.export_text()


def flat(text: str) -> str:
    """Whitespace collapsed, so a wrapped sentence can be looked for whole."""
    return " ".join(text.split())


# ------------------------------------------------------------------ fixtures the app's tests share
# (a test module imports the ones it uses; `offline` goes in its pytestmark)


@pytest.fixture
def offline(monkeypatch):
    """The offline coach and no workspace from the environment, whatever the shell has."""
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")
    monkeypatch.delenv("TINY_LLM_TUTOR_WORKSPACE", raising=False)


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path)


@pytest.fixture
def session(ws):
    s = open_session(ws, "week1")
    yield s
    s.close()
