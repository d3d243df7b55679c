"""The coach an app holds (``TutorSession.coach``, tutor/coach/safe.py): whatever part
fails, the offline coach answers, a notice says why, and nothing is recorded twice. Also
the real coach's own fallback when something other than the backend breaks mid-reply."""

from __future__ import annotations

import json

import pytest

from tui_support import make_workspace, open_session, passing_result
from tutor.coach import ladder
from tutor.coach.chat import ChatEvent, Coach, chat_path
from tutor.config import LLMConfig


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")


@pytest.fixture
def session(tmp_path):
    s = open_session(make_workspace(tmp_path), "1.1")
    yield s
    s.close()


def questions(session) -> list[str]:
    return [q["text"] for q in (session.day_record() or {}).get("questions") or []]


class Failing:
    """A coach that breaks midway; ``log_first``: after recording the question."""

    def __init__(self, session, log_first: bool):
        self.session = session
        self.log_first = log_first

    def ask(self, text):
        if self.log_first:
            self.session.question(text)
        yield ChatEvent("text", "So ")
        raise RuntimeError("the coach broke")

    def hint(self):
        raise RuntimeError("no ladder here")

    def after_checks(self, result):
        raise RuntimeError("no words")


@pytest.mark.parametrize("log_first", [True, False])
def test_a_coach_failing_midway_hands_over_to_the_offline_coach(session, log_first):
    coach = session.coach(lambda s: Failing(s, log_first))
    events = list(coach.ask("what is D?"))
    assert [e.kind for e in events] == ["text", "notice", "text", "done"]
    assert "RuntimeError: the coach broke" in events[1].text
    assert "offline coach answers" in events[1].text
    assert "Why divide by √D" in events[2].text
    assert questions(session) == ["what is D?"]  # once, whoever recorded it


def test_the_hint_and_the_after_checks_line_fall_back_too(session):
    coach = session.coach(lambda s: Failing(s, True))
    hint = coach.hint()
    assert hint.text == ladder.hint_text(ladder.step_of(session.current_task(), 1))
    assert "no ladder here" in coach.take_notice() and coach.take_notice() is None
    assert session.day_record()["hints_seen"] == ["1:1"]
    assert "Before you move on" in coach.after_checks(passing_result(session.lesson))
    assert "no words" in coach.take_notice()


def test_closing_the_stream_closes_the_coachs(session):
    closed = []

    class Slow:
        def ask(self, text):
            try:
                yield ChatEvent("text", "one")
                yield ChatEvent("text", "two")
            finally:
                closed.append(text)

    stream = session.coach(lambda s: Slow()).ask("q")
    assert next(stream).text == "one"
    stream.close()
    assert closed == ["q"]


class Backend:
    name = "fake"

    def stream(self, system, messages):
        yield "Think about the shape of the scores. "
        yield "Which axis does the softmax run over?\n"


def test_a_fault_of_the_coach_s_own_mid_reply_gets_the_offline_answer(session, monkeypatch):
    """Not the backend failing (that is a BackendError) but, say, the filter: the reply
    so far stays, marked interrupted, and the offline coach answers."""
    coach = Coach(session, LLMConfig())
    coach.backend = Backend()

    def broken_filter(ctx, allow):
        def check(text):
            raise KeyError("index")
        return check

    monkeypatch.setattr(coach, "_filter", broken_filter)
    events = list(coach.ask("what is D?"))
    notice = next(e for e in events if e.kind == "notice")
    assert notice.text == "The coach failed (KeyError). The offline coach answers."
    assert events[-1].kind == "done" and "Why divide by √D" in events[-1].text
    assert questions(session) == ["what is D?"]
    stored = json.loads(chat_path(session.workspace, "1.1").read_text())["messages"]
    assert [(m["role"], m.get("source")) for m in stored] == [("user", None),
                                                             ("assistant", "offline")]


def test_records_of_one_reply_are_one_state_write(session, monkeypatch):
    store = session.store
    saves, save = [], store.save
    monkeypatch.setattr(store, "save", lambda: (saves.append(1), save()))
    with store.batch():
        store.record_question("1.1", "a")
        store.record_question("1.1", "b")
        assert saves == [] and store.autosave is False
    assert saves == [1] and store.autosave is True
    with store.batch():
        pass
    assert saves == [1]  # nothing changed, nothing written
