"""The review screen (``r``): today's due spaced-review items, one card at a time, graded
as concept answers are and rescheduled by the engine (tutor.records.review)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from tutor.records._util import parse_iso
from tutor.tui.render import question_prompt

SELF_GRADED = ("y", "yes", "n", "no")


def _date(iso: str | None) -> str:
    when = parse_iso(iso)
    return when.strftime("%a %d %b %Y") if when else ""


class ReviewScreen(ModalScreen[int]):
    """Asks ``items`` (:class:`tutor.records.review.ReviewItem`) in order; dismissed with
    the number answered. Enter submits an answer, then moves on; Esc stops (the rest stay
    due)."""

    DEFAULT_CSS = """
    ReviewScreen { align: center middle; }
    #review-box { width: 90%; max-width: 100; height: auto; max-height: 90%;
                  border: round $accent; padding: 0 1; background: $surface; }
    #review-title, #review-prompt, #review-feedback { height: auto; }
    #review-prompt { margin: 1 0; }
    #review-keys { color: $text-muted; }
    """
    AUTO_FOCUS = "#review-input"
    BINDINGS = [Binding("escape", "stop", "Stop")]

    def __init__(self, session, items: list, blink: bool = True) -> None:
        super().__init__()
        self.session = session
        self.items = list(items)
        self.blink = blink
        self.index = 0
        self.answered = 0
        self.results: list[dict] = []  # the engine's reschedule results, in order (tests)
        self._shown_feedback = False

    def compose(self) -> ComposeResult:
        with Vertical(id="review-box"):
            yield Static(id="review-title")
            yield Static(id="review-prompt")
            box = Input(id="review-input")
            box.cursor_blink = self.blink
            yield box
            yield Static("", id="review-feedback")
            yield Static("Enter answers, then moves on · Esc stops (the rest stay due)",
                         id="review-keys")

    def on_mount(self) -> None:
        self._show()

    @property
    def item(self):
        return self.items[self.index]

    def _show(self) -> None:
        item = self.item
        where = (f"from day {item.source_day}" if item.idea is None else
                 f"{item.idea.name} · a mistake on day {item.source_day}")
        self.query_one("#review-title", Static).update(
            Text(f"Review {self.index + 1}/{len(self.items)} · {where}", style="bold"))
        if item.question is not None:
            prompt, hint = question_prompt(item.question), "your answer · Enter submits"
        else:  # an idea with no gradable question: the learner says how it went
            prompt = item.prompt + "\n\nThink it through, then say honestly whether you had it."
            hint = "y (I had it) or n (not yet) · Enter"
        self.query_one("#review-prompt", Static).update(Text(prompt))
        box = self.query_one("#review-input", Input)
        box.value, box.placeholder, box.disabled = "", hint, False
        box.focus()
        self.query_one("#review-feedback", Static).update("")
        self._shown_feedback = False

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._shown_feedback:
            self._next()
            return
        text = event.value.strip()
        item = self.item
        if item.question is None:
            if text.lower() not in SELF_GRADED:
                self.query_one("#review-feedback", Static).update(
                    Text("Type y or n.", style="yellow"))
                return
            g, res = self.session.review_answer(item, correct=text.lower().startswith("y"))
            feedback = Text("Noted.", style="green" if res["correct"] else "yellow")
        else:
            if not text:
                return
            g, res = self.session.review_answer(item, text)
            feedback = Text(g.feedback, style="green" if g.correct else "yellow")
        self.answered += 1
        self.results.append(res)
        feedback.append("\n")
        feedback.append("It has stuck: it leaves your review schedule." if res["left"] else
                        f"Next review: {_date(res['due'])}.", style="bold")
        feedback.append("\nEnter: " + ("next item" if self.index + 1 < len(self.items)
                                       else "done"), style="dim")
        self.query_one("#review-feedback", Static).update(feedback)
        self._shown_feedback = True

    def _next(self) -> None:
        self.index += 1
        if self.index >= len(self.items):
            self.dismiss(self.answered)
        else:
            self._show()

    def action_stop(self) -> None:
        self.dismiss(self.answered)
