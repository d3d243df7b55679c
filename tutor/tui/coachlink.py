"""The TUI's line to the session's coach (``TutorSession.coach``).

What the coach says, and what stands in when it fails, is the engine's business: this
runs the coach's actions in the app's worker threads and posts what comes back as
messages for the app, whose handlers own every widget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

from textual.message import Message

from tutor.tui.messages import CoachReply, HintShown, Notice

Post = Callable[[Message], object]


@dataclass(frozen=True)
class Reply:
    """The end of a reply whose stream stopped without saying so."""
    kind: str = "done"
    text: str = ""
    interrupted: bool = False


class CoachLink:
    def __init__(self, session, factory=None):
        self._coach = session.coach(factory)  # built on first use, in a worker

    def coach(self):
        """The coach behind the link, or None when it could not start."""
        return self._coach.coach()

    def take_notice(self) -> str | None:
        return self._coach.take_notice()

    def ask(self, text: str) -> Iterator:
        """The reply to ``text`` as a stream of events; closing it closes the coach's."""
        return self._coach.ask(text)

    def hint(self):
        return self._coach.hint()

    def after_checks(self, result: dict) -> str | None:
        return self._coach.after_checks(result)

    # ------------------------------------------------------------------ in a worker

    def post_reply(self, text: str, request: int, post: Post,
                   cancelled: Callable[[], bool]) -> None:
        """Post the reply to question number ``request``, piece by piece, ended by a done
        event. Once ``cancelled()`` nothing more is posted and the coach's stream is
        closed now (with its LLM connection), not by the garbage collector."""
        ended = False
        replies = self.ask(text)
        try:
            for reply in replies:
                if cancelled():
                    return
                post(CoachReply(reply, request))
                ended = ended or reply.kind == "done"
        finally:
            replies.close()
        if not ended:
            post(CoachReply(Reply(), request))
        self.post_notice(post)

    def post_hint(self, post: Post) -> None:
        post(HintShown(self.hint()))
        self.post_notice(post)

    def post_notice(self, post: Post) -> None:
        notice = self.take_notice()
        if notice:
            post(Notice(notice, "warning"))
