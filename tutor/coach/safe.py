"""The coach as an app holds it: whatever breaks, the learner still gets an answer.

The coach (:class:`tutor.coach.chat.Coach` unless a factory says otherwise) is built on
first use, in the caller's thread, so an LLM SDK never slows an app's start-up. When it
cannot be built, or one of its actions raises, the offline coach answers in its place and
:meth:`SafeCoach.take_notice` has one line saying why. What the failed coach recorded
first (the question, a rung climbed) is not recorded twice.
"""

from __future__ import annotations

import threading
from typing import Callable, Generator, Protocol

from tutor.coach import ladder
from tutor.coach.chat import ChatEvent, Coach
from tutor.config import LLMConfig


class Coaching(Protocol):
    """What an app needs of a coach (the real one, or a test's stand-in)."""

    def ask(self, text: str) -> Generator[ChatEvent, None, None]: ...

    def hint(self) -> ChatEvent | None: ...

    def after_checks(self, result: dict) -> str: ...


class SafeCoach:
    def __init__(self, session, factory: Callable[[object], Coaching] | None = None):
        self.session = session
        self._factory = factory or Coach
        self._coach: Coaching | None = None
        self._offline: Coach | None = None
        self._tried = False
        self._lock = threading.Lock()
        self._notice: str | None = None

    def coach(self) -> Coaching | None:
        """The coach, or None when it could not start (then the offline coach answers)."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self._coach = self._factory(self.session)
                except ImportError:  # a coach whose parts are not installed: none, quietly
                    pass
                except Exception as exc:  # noqa: BLE001 - a broken coach must not break the app
                    self._notice = (f"The coach could not start ({type(exc).__name__}: "
                                    f"{exc}); the offline coach answers.")
            return self._coach

    def offline(self) -> Coach:
        with self._lock:
            if self._offline is None:
                self._offline = Coach(self.session, config=LLMConfig())
            return self._offline

    def take_notice(self) -> str | None:
        notice, self._notice = self._notice, None
        return notice

    def _failed(self, exc: Exception, then: str) -> str:
        return f"The coach failed ({type(exc).__name__}: {exc}); {then}"

    # ------------------------------------------------------------------ actions

    def ask(self, text: str) -> Generator[ChatEvent, None, None]:
        """The reply to ``text``, streamed. Closing this stream closes the coach's at once
        (and its LLM connection), not whenever the garbage collector gets to it."""
        coach = self.coach()
        if coach is None:
            coach = self.offline()
        asked = self._questions_asked()
        events = None
        try:
            events = coach.ask(text)
            yield from events
        except Exception as exc:  # noqa: BLE001
            if coach is self._offline:  # nothing is left to stand in
                yield ChatEvent("notice", self._failed(exc, "try the hint ladder."))
                yield ChatEvent("done")
                return
            yield ChatEvent("notice", self._failed(exc, "the offline coach answers."))
            again = self._questions_asked() == asked
            yield from self.offline().ask(text, record_question=again)
        finally:
            if events is not None:
                events.close()

    def _questions_asked(self) -> int:
        return len((self.session.day_record() or {}).get("questions") or [])

    def hint(self) -> ChatEvent | None:
        """One rung up the hint ladder (None when the ladder is at the top)."""
        coach = self.coach()
        if coach is None:
            return self.offline().hint()
        task, before = self._rung()
        try:
            return coach.hint()
        except Exception as exc:  # noqa: BLE001
            self._notice = self._failed(exc, "the hint ladder answers.")
        task, after = self._rung()
        if after > before:  # the rung was recorded before the coach failed: show it
            return ChatEvent("text", ladder.hint_text(ladder.step_of(task, after)))
        return self.offline().hint()

    def _rung(self):
        with self.session.lock:
            task = self.session.current_task()
            return task, ladder.rungs_seen(self.session.day_record(), task.id)

    def after_checks(self, result: dict) -> str | None:
        """What the coach says after a check run (a diagnosis turned into a question)."""
        coach = self.coach()
        if coach is not None:
            try:
                return coach.after_checks(result) or None
            except Exception as exc:  # noqa: BLE001
                self._notice = self._failed(exc, "the offline coach answers.")
        return self.offline().after_checks(result) or None
