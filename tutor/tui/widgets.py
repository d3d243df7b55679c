"""The app's widgets: the lesson tree, concept-question cards and the chat log."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tutor.tui.render import question_prompt


class LessonTree(OptionList):
    """Weeks and days with their status icons. A Tree row is one line, which cut the long
    titles; here a day's title wraps under itself, so every title reads whole in a
    narrow column. Week headings are disabled rows: the cursor moves over days only."""

    class DaySelected(Message):
        def __init__(self, day: str) -> None:
            super().__init__()
            self.day = day

    def __init__(self, course, **kwargs) -> None:
        super().__init__(**kwargs)
        self.course = course
        self.day_index: dict[str, int] = {}
        self._icons: dict[str, str] = {}

    def build(self, icons: dict[str, str]) -> None:
        options: list[Option | None] = []
        self.day_index = {}
        for n, week in enumerate(self.course.weeks):
            if n:
                options.append(None)  # a rule between the weeks
            options.append(Option(Text(f"Week {week.number}: {week.title}", style="bold"),
                                  disabled=True))
            for lesson in week.days:
                self.day_index[lesson.id] = len(options) - options.count(None)
                options.append(Option(self._prompt(lesson, icons.get(lesson.id, "⬜")),
                                      id=lesson.id))
        self._icons = dict(icons)
        self.set_options(options)

    @staticmethod
    def _head(lesson, icon: str) -> str:
        covers = getattr(lesson, "covers", None) or (lesson.id,)
        days = lesson.id if len(covers) == 1 else f"{covers[0]}–{covers[-1]}"  # the book's
        return f"{icon} {days}"

    @classmethod
    def _label(cls, lesson, icon: str) -> str:
        return f"{cls._head(lesson, icon)} {lesson.title}"

    @classmethod
    def _prompt(cls, lesson, icon: str) -> Table:
        # Two columns, so a wrapped title hangs under its first word, not under the icon.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(ratio=1)
        grid.add_row(cls._head(lesson, icon), lesson.title)
        return grid

    def update_icons(self, icons: dict[str, str]) -> None:
        for lesson in self.course.lessons:
            icon = icons.get(lesson.id, "⬜")
            if lesson.id in self.day_index and self._icons.get(lesson.id) != icon:
                self._icons[lesson.id] = icon
                self.replace_option_prompt(lesson.id, self._prompt(lesson, icon))

    def show_day(self, day: str) -> None:
        if day in self.day_index:
            self.highlighted = self.day_index[day]

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(self.DaySelected(event.option.id))


class KeyBar(Static):
    """The footer of key bindings: the app's shown bindings, with Esc only when it does
    something. Plain text, so redrawing it costs nothing (Textual's Footer rebuilds its
    widgets on every focus change, which is most of a key's response time). It takes a
    second line rather than cut keys off when the terminal is narrow, and keeps the
    height the command keys need while an input has focus: the tab above must not shift
    by a row when the learner starts typing (an answer card just scrolled into view
    would slide)."""

    def on_mount(self) -> None:
        self.refresh_keys()

    def on_resize(self) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        focused = self.app.focused
        width = self.size.width or self.app.size.width
        t = _key_lines(self._items(focused), width)
        lines = t.plain.count("\n") + 1
        if isinstance(focused, Input):
            lines = max(lines, _key_lines(self._items(None), width).plain.count("\n") + 1)
            t.append("\n" * (lines - 1 - t.plain.count("\n")))
        changed = lines != getattr(self, "_lines", 1)
        self._lines = lines
        self.update(t, layout=changed)  # a re-layout only when the height changes

    def _items(self, focused) -> list[tuple[str, str]]:
        typing = isinstance(focused, Input)
        items = []
        if typing:
            items.append(("enter", "Send" if focused.id == "chat-input" else "Answer"))
        for b in self.bindings_source():
            if not b.show:
                continue
            key = b.key_display or b.key
            if typing and len(key) == 1:
                continue  # letters and ? are text while typing
            if typing and "j/k/" in key:
                key = key.replace("j/k/", "")  # j and k type; the page keys still scroll
            if b in self.screen.BINDINGS:
                pass  # the screen's own keys always work
            elif not self.app.check_action(b.action, ()):
                continue
            items.append((key, b.description))
        return items

    def bindings_source(self):
        from textual.binding import Binding

        out = []
        for b in list(self.screen.BINDINGS) + list(self.app.BINDINGS):
            if isinstance(b, Binding):
                out.append(b)
        return out


def _key_lines(items: list[tuple[str, str]], width: int) -> Text:
    """The key items, never split across lines, on as many lines as the width needs."""
    t = Text(no_wrap=True, overflow="ellipsis")
    col = 0
    for key, what in items:
        n = (1 if col == 0 else 2) + len(key) + 1 + len(what)
        if col and col + n > width:
            t.append("\n")
            col, n = 0, n - 1
        t.append(" " if col == 0 else "  ")
        t.append(key, style="bold yellow")
        t.append(f" {what}")
        col += n
    return t


class QuestionCard(Vertical):
    """A concept question: the prompt, an answer box, and the graded feedback."""

    class Answered(Message):
        def __init__(self, card: "QuestionCard", text: str) -> None:
            super().__init__()
            self.card = card
            self.text = text

    def __init__(self, question, done: bool = False, blink: bool = True,
                 measured: tuple[str, bool] | None = None) -> None:
        super().__init__(classes="question")
        self.question = question
        self.done = done
        self.blink = blink
        # A predict card's last measurement from the records: (line, measured or not).
        self.measured = measured

    def compose(self) -> ComposeResult:
        q = self.question
        yield Static(Text(question_prompt(q)), classes="prompt")
        if self.done:
            yield Static(Text("✓ answered right", style="green"), classes="feedback")
        else:
            box = Input(placeholder="your answer · Enter submits", id=f"answer-{q.id}",
                        classes="answer")
            box.cursor_blink = self.blink
            yield box
            yield Static("", classes="feedback")
        if q.kind == "predict":
            line = Static("", classes="measurement")
            if self.measured is not None:
                line.update(_measurement_text(*self.measured))
                line.add_class("-shown")
            yield line

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Answered(self, event.value.strip()))

    def show_grade(self, grade) -> None:
        """The grade under the answer. A right answer's box is closed by :meth:`close`,
        once the app has moved the focus on (disabling a focused box blurs it, and the
        focus Textual then picks could win over the app's move)."""
        style = "green" if grade.correct else "yellow"
        icon = "✓" if grade.correct else "✗"
        self.query_one(".feedback", Static).update(Text(f"{icon} {grade.feedback}", style=style))

    def close(self) -> None:
        self.done = True
        self.query_one(Input).disabled = True
        self.add_class("-done")

    def show_measuring(self) -> None:
        self._measurement(Text("⟳ measuring on your code…", style="italic yellow"))

    def show_measurement(self, line: str, measured: bool) -> None:
        self.measured = (line, measured)
        self._measurement(_measurement_text(line, measured))

    def _measurement(self, text: Text) -> None:
        w = self.query_one(".measurement", Static)
        w.update(text)
        w.add_class("-shown")


def _measurement_text(line: str, measured: bool) -> Text:
    return Text(("" if measured else "⊘ ") + line, style="bold cyan" if measured else "yellow")


class ChatLog(VerticalScroll):
    """The conversation with the coach: the learner's lines, replies, hints, notices."""

    def add_learner(self, text: str) -> Static:
        w = Static(Text.assemble(("you › ", "bold"), text), classes="learner")
        self.mount(w)
        self.scroll_end(animate=False)
        return w

    def add_notice(self, text: str) -> Static:
        w = Static(Text(text, style="italic"), classes="notice")
        self.mount(w)
        self.scroll_end(animate=False)
        return w

    def add_reply(self, text: str = "", classes: str = "reply"):
        from textual.widgets import Markdown  # imported on the first reply, not at start-up

        w = Markdown(text, classes=classes)
        self.mount(w)
        self.scroll_end(animate=False)
        return w
