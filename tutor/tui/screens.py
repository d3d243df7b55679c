"""Screens over the main view: the insight prompt after a passing day, and progress."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from tutor.tui.render import active_time_chart, duration


class InsightScreen(ModalScreen[str | None]):
    """The celebration, and the learner's own words for the day's key idea."""

    AUTO_FOCUS = "#insight-input"
    BINDINGS = [Binding("escape", "skip", "Skip")]

    def __init__(self, day: str, title: str, blink: bool = True) -> None:
        super().__init__()
        self.day = day
        self.day_title = title
        self.blink = blink

    def compose(self) -> ComposeResult:
        with Vertical(id="insight-box"):
            yield Static(Text(f"🎉 Day {self.day} passes: every check is green!",
                              style="bold green"), id="insight-title")
            yield Static(f"{self.day_title}. Before you move on, explain the key idea of "
                         "today in your own words, as if to a colleague. It goes into the "
                         "Key Insights of your session notes.", id="insight-help")
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
    """The tracker's table and a chart of active time per day."""

    BINDINGS = [Binding("escape,t", "close", "Back")]
    AUTO_FOCUS = "#progress-table"

    def __init__(self, summary: dict, notice: str | None = None) -> None:
        super().__init__()
        self.summary = summary
        self.notice = notice

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="progress"):
            yield Static(Text("Progress", style="bold"), id="progress-title")
            if self.notice:
                yield Static(Text(self.notice, style="yellow"))
            yield DataTable(id="progress-table", cursor_type="row", zebra_stripes=False)
            yield Static(Text("Active time per day", style="bold"), id="chart-title")
            yield Static(id="chart")
            yield Static(Text("The tracker: progress/tiny-llm-tracker.md · Esc or t goes back",
                              style="dim"), id="tracker-path")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "Day", "Title", "Active", "Runs", "Hints", "Mastery", "Gaps")
        rows = []
        for week in self.summary["weeks"]:
            for d in week["days"]:
                rows.append(d)
                table.add_row(d["status_icon"], d["id"], d["title"][:28],
                              duration(d["active_seconds"]), str(d["attempts"]),
                              str(d["hints"]), d["mastery"], ", ".join(d["gaps"])[:30] or "-",
                              key=d["id"])
        self.query_one("#chart", Static).update(Text(active_time_chart(rows, 40)))

    def action_close(self) -> None:
        self.dismiss()
