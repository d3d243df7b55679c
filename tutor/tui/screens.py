"""Screens over the main view: the insight prompt after a passing day, and progress."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Input, Static

from tutor.tui.render import day_chart, ideas_chart, mastery_text, progress_table


class InsightScreen(ModalScreen[str | None]):
    """The celebration, and the learner's own words for the day's key idea."""

    AUTO_FOCUS = "#insight-input"
    BINDINGS = [Binding("escape", "skip", "Skip")]

    def __init__(self, day: str, title: str, blink: bool = True, passed: bool = True) -> None:
        super().__init__()
        self.day = day
        self.day_title = title
        self.blink = blink
        self.passed = passed  # celebrate only a day whose checks really are all green

    def compose(self) -> ComposeResult:
        with Vertical(id="insight-box"):
            if self.passed:
                yield Static(Text(f"🎉 Day {self.day} passes: every check is green!",
                                  style="bold green"), id="insight-title")
                help_text = (f"{self.day_title}. Before you move on, explain the key idea of "
                             "today in your own words, as if to a colleague. It goes into the "
                             "Key Insights of your session notes.")
            else:
                yield Static(Text(f"Day {self.day}: the key idea, in your own words",
                                  style="bold"), id="insight-title")
                help_text = (f"{self.day_title}. Your checks are not all green yet; write the "
                             "idea as you understand it now (it goes into the Key Insights "
                             "of your session notes), and revisit it once the day passes.")
            yield Static(help_text, id="insight-help")
            box = Input(placeholder="the key idea, in your words", id="insight-input")
            box.cursor_blink = self.blink
            yield box
            yield Static("Enter saves · Esc skips (press i later)", id="insight-keys")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if text:
            self.dismiss(text)

    def action_skip(self) -> None:
        self.dismiss(None)


class ProgressScreen(Screen):
    """The tracker's table, the ideas met (mastery picture), a chart of active time and
    check runs per day and one of the ideas met, date by date. Built once and shown again
    with fresh numbers (a new screen costs a compose and a full style pass)."""

    BINDINGS = [Binding("escape,t", "close", "Back", key_display="esc")]
    AUTO_FOCUS = "#progress"

    def __init__(self, weeks: list[dict], picture: dict | None = None) -> None:
        super().__init__()
        self.weeks = weeks
        self.picture = picture or {}

    def compose(self) -> ComposeResult:
        from tutor.tui.widgets import KeyBar

        rows = [d for w in self.weeks for d in w["days"]]
        with VerticalScroll(id="progress"):
            yield Static(Text("Progress", style="bold"), id="progress-title")
            yield Static(progress_table(self.weeks), id="progress-table")
            yield Static(Text("Ideas", style="bold"), id="ideas-title")
            yield Static(mastery_text(self.picture), id="ideas")
            yield Static(Text("Active time and check runs per day", style="bold"),
                         id="chart-title")
            yield Static(day_chart(rows), id="chart")
            yield Static(Text("Ideas over time", style="bold"), id="ideas-time-title")
            yield Static(self._ideas_chart(), id="ideas-time")
            yield Static(Text("The tracker: progress/tiny-llm-tracker.md", style="dim"),
                         id="tracker-path")
        yield KeyBar(id="progress-keys")

    def show(self, weeks: list[dict], picture: dict | None = None) -> None:
        """Fresh numbers for the next time the screen is shown."""
        self.weeks = weeks
        self.picture = picture or {}
        rows = [d for w in weeks for d in w["days"]]
        self.query_one("#progress-table", Static).update(progress_table(weeks))
        self.query_one("#ideas", Static).update(mastery_text(self.picture))
        self.query_one("#chart", Static).update(day_chart(rows))
        self.query_one("#ideas-time", Static).update(self._ideas_chart())

    def _ideas_chart(self) -> Text:
        """The ideas met date by date, out of the course's vocabulary (the app's course)."""
        course = getattr(getattr(self.app, "session", None), "course", None)
        total = len(getattr(getattr(course, "ideas", None), "ideas", None) or ())
        return ideas_chart(self.picture.get("ideas_over_time") or [], total)

    def action_close(self) -> None:
        self.app.pop_screen()
