"""A question asked while the coach is still replying: the first reply stops (marked in
the chat, its stream closed), the second shows whole, and nothing of the two mixes."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import Markdown, Static

from tui_support import Event, offline, session, settle, wait_until, ws  # noqa: F401
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.widgets import ChatLog

SIZE = (100, 32)


class GatedCoach:
    """Each question's reply: a first chunk, then a wait on that question's gate, then
    the rest. Records which streams were closed before their end."""

    def __init__(self, session):
        self.session = session
        self.gates: dict[str, threading.Event] = {}
        self.closed: list[str] = []
        self.finished: list[str] = []
        self.streams: list = []  # held, so only an explicit close can stop a stream

    def ask(self, text):
        gen = self._reply(text)
        self.streams.append(gen)
        return gen

    def _reply(self, text):
        gate = self.gates.setdefault(text, threading.Event())
        self.session.question(text)
        try:
            yield Event("text", f"{text}-1 ")
            gate.wait(10)
            yield Event("text", f"{text}-2 ")
            yield Event("text", f"{text}-3")
            yield Event("done", f"{text}-1 {text}-2 {text}-3")
            self.finished.append(text)
        except GeneratorExit:
            self.closed.append(text)
            raise

    def hint(self):
        return None

    def after_checks(self, result):
        return ""


pytestmark = pytest.mark.usefixtures("offline")




def chat_items(app) -> list[str]:
    out = []
    for w in app.query_one(ChatLog).children:
        if isinstance(w, Markdown):
            out.append(w.source)
        elif isinstance(w, Static):
            out.append(str(w.render()))
    return out


async def ask(pilot, text: str) -> None:
    pilot.app.action_focus_chat()
    await pilot.pause()
    await pilot.press(*text, "enter")


async def test_a_second_question_stops_the_first_reply_and_never_mixes_them(session):
    coach = GatedCoach(session)
    app = TutorApp(session, coach=CoachLink(session, factory=lambda s: coach), blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "first")
        await wait_until(pilot, lambda: "first-1 " in app._reply_text, 5, "the first chunk")
        await ask(pilot, "second")
        await wait_until(pilot, lambda: "second-1 " in app._reply_text, 5, "the second reply")
        coach.gates["first"].set()  # the slow first stream wakes up while the second runs
        await wait_until(pilot, lambda: "first" in coach.closed, 5, "the first stream closed")
        for _ in range(3):
            await pilot.pause()  # whatever the first stream's thread posted is handled
        coach.gates["second"].set()
        await settle(pilot)
        items = chat_items(app)
    assert coach.closed == ["first"] and coach.finished == ["second"]
    replies = [i for i in items if "-1" in i or "-2" in i or "-3" in i]
    assert replies == ["first-1 ", "second-1 second-2 second-3"], items
    first, second = items.index("first-1 "), items.index("second-1 second-2 second-3")
    between = items[first + 1:second]
    assert any("reply stopped" in i for i in between), items
    assert not any("interrupted" in i or "stopped" in i for i in items[second + 1:]), items


async def test_escape_stops_the_reply_at_once_and_its_stream_is_closed(session):
    coach = GatedCoach(session)
    app = TutorApp(session, coach=CoachLink(session, factory=lambda s: coach), blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await ask(pilot, "slow")
        await wait_until(pilot, lambda: "slow-1 " in app._reply_text, 5, "the first chunk")
        await pilot.press("escape")
        await pilot.pause()
        assert "(reply interrupted)" in chat_items(app)  # without waiting for the stream
        coach.gates["slow"].set()
        await settle(pilot)
        items = chat_items(app)
    assert coach.closed == ["slow"] and not coach.finished
    assert [i for i in items if "slow-" in i] == ["slow-1 "], items
    assert items.count("(reply interrupted)") == 1


def test_closing_the_links_stream_closes_the_coachs_at_once(session):
    coach = GatedCoach(session)
    coach.gates["q"] = threading.Event()
    coach.gates["q"].set()
    link = CoachLink(session, factory=lambda s: coach)
    stream = link.ask("q")
    assert next(stream).text == "q-1 "
    stream.close()
    assert coach.closed == ["q"]  # the coach holds its stream: only a close stops it
