"""Messages the workers post to the app. Workers never touch widgets: they post one of
these (``post_message`` is thread-safe) and the app's handlers own all UI state."""

from __future__ import annotations

from textual.message import Message


class CheckEvent(Message):
    """A plan/start/result event of a running check (for the live progress view)."""

    def __init__(self, day: str, event: dict) -> None:
        super().__init__()
        self.day = day
        self.event = event


class ChecksDone(Message):
    def __init__(self, day: str, result: dict, cancelled: bool, coach_text: str | None) -> None:
        super().__init__()
        self.day = day
        self.result = result
        self.cancelled = cancelled
        self.coach_text = coach_text


class CoachReply(Message):
    """A piece of the coach's streamed answer (a Reply of kind text, notice or done),
    tagged with the number of the question it answers."""

    def __init__(self, reply, request: int) -> None:
        super().__init__()
        self.reply = reply
        self.request = request


class HintShown(Message):
    def __init__(self, reply) -> None:
        super().__init__()
        self.reply = reply  # None: the ladder is at the top


class Notice(Message):
    def __init__(self, text: str, severity: str = "information") -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class Measured(Message):
    """The measurement of the learner's engine for a predict question (one result of
    TutorSession.measure_questions) is in."""

    def __init__(self, day: str, qid: str, result: dict) -> None:
        super().__init__()
        self.day = day
        self.qid = qid
        self.result = result


class Saved(Message):
    """The session doc and tracker were written (periodic save)."""
