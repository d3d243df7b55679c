"""The TUI's way to the coach.

``tutor.coach.chat.Coach`` (offline or LLM, streaming) when it is available; otherwise
the lesson's hint ladder and guiding questions stand in, so the app always works. The
coach is imported and built on first use, inside a worker thread, so an LLM SDK never
slows the start-up.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

from tutor.coach.ladder import HintStep
from tutor.statuses import FAILING


@dataclass(frozen=True)
class Reply:
    kind: str  # "text" | "notice" | "done"
    text: str = ""
    interrupted: bool = False


def _reply(ev) -> Reply:
    return Reply(str(getattr(ev, "kind", "text")), str(getattr(ev, "text", "") or ""),
                 bool(getattr(ev, "interrupted", False)))


class CoachLink:
    def __init__(self, session, factory=None):
        self.session = session
        self._factory = factory
        self._coach = None
        self._tried = False
        self._lock = threading.Lock()
        self.notice: str | None = None  # one line for the learner, once

    # ------------------------------------------------------------------ the coach

    def coach(self):
        """The real coach, or None when it is not installed or failed to start."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    if self._factory is not None:
                        self._coach = self._factory(self.session)
                    else:
                        from tutor.coach.chat import Coach

                        self._coach = Coach(self.session)
                except ImportError:
                    self._coach = None
                except Exception as exc:  # a broken backend must not break the app
                    self._coach = None
                    self.notice = (f"The coach could not start ({type(exc).__name__}: {exc}); "
                                   "the hint ladder stands in.")
            return self._coach

    def take_notice(self) -> str | None:
        n, self.notice = self.notice, None
        return n

    @property
    def name(self) -> str:
        c = self.coach()
        return "coach" if c is not None else "hint ladder"

    # ------------------------------------------------------------------ actions

    def ask(self, text: str) -> Iterator[Reply]:
        """The coach's reply to the learner's question, as a stream of chunks."""
        c = self.coach()
        if c is not None:
            events = None
            try:
                events = c.ask(text)
                for ev in events:
                    yield _reply(ev)
                return
            except Exception as exc:
                yield Reply("notice", f"The coach failed ({type(exc).__name__}: {exc}); "
                                      "the guiding questions stand in.")
                # the coach logs the question before it answers
                yield from self._fallback_ask(text, record=False)
                return
            finally:
                # A stopped reply closes the coach's stream (and its LLM connection) now,
                # not whenever the garbage collector gets to it.
                close = getattr(events, "close", None)
                if close is not None:
                    close()
        yield from self._fallback_ask(text)

    def _fallback_ask(self, text: str, record: bool = True) -> Iterator[Reply]:
        if record:
            self.session.question(text)
        task = self.session.current_task()
        asked = len((self.session.day_record() or {}).get("questions") or [])
        qs = task.guiding_questions
        q = qs[(asked - 1) % len(qs)] if qs else "What does the lesson say this step must do?"
        yield Reply("text", f"Let's think it through together. {q}")
        yield Reply("done")

    def hint(self) -> Reply | None:
        """One rung up the hint ladder (None when the ladder is at the top)."""
        c = self.coach()
        if c is not None:
            before = self._rung()
            try:
                ev = c.hint()
                return None if ev is None else _reply(ev)
            except Exception as exc:
                self.notice = f"The coach failed ({type(exc).__name__}: {exc}); using the ladder."
                task, after = self._rung(with_task=True)
                if after > before:  # the rung was recorded before the coach failed
                    return self._ladder_text(HintStep(task.id, task.title, after,
                                                      len(task.hints), task.hints[after - 1]))
        step = self.session.hint()
        if step is None:
            return None
        return self._ladder_text(step)

    def _rung(self, with_task: bool = False):
        from tutor.coach.ladder import rungs_seen

        with self.session.lock:
            task = self.session.current_task()
            rung = rungs_seen(self.session.day_record(), task.id)
        return (task, rung) if with_task else rung

    @staticmethod
    def _ladder_text(step) -> Reply:
        """A rung as the offline coach words it."""
        body = step.text.strip()
        sep = "\n\n" if "\n" in body else " "
        text = (f"Hint {step.rung} of {step.rungs} for task {step.task} ({step.task_title}):"
                f"{sep}{body}")
        if step.is_last:
            text += "\n\nThat is the last rung: the plan in plain words."
        return Reply("text", text)

    def after_checks(self, result: dict) -> str | None:
        """What the coach says after a check run (a diagnosis turned into a question)."""
        c = self.coach()
        if c is not None:
            try:
                text = c.after_checks(result)
                return text or None
            except Exception as exc:
                self.notice = f"The coach failed ({type(exc).__name__}: {exc})."
        if result.get("status") == "pass":
            return ("Every check passes. Before moving on: how would you explain today's key "
                    "idea to a colleague, in two or three sentences?")
        for c in result.get("checks", []):
            if c.get("status") in FAILING and c.get("diagnosis"):
                return f"About `{c['id']}`: {c['diagnosis']['question']}"
        return None
