"""The app's widgets: the lesson tree, concept-question cards and the chat log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Static, Tree

from tutor.tui.render import question_prompt


class LessonTree(Tree[str]):
    """Weeks and days with their status icons; a day node's data is its id."""

    def __init__(self, course, **kwargs) -> None:
        super().__init__("Course", **kwargs)
        self.course = course
        self.show_root = False
        self.guide_depth = 2
        self.day_nodes = {}

    def build(self, icons: dict[str, str]) -> None:
        self.clear()
        self.day_nodes = {}
        for week in self.course.weeks:
            wnode = self.root.add(f"Week {week.number}: {week.title}", expand=True)
            for lesson in week.days:
                self.day_nodes[lesson.id] = wnode.add_leaf(
                    self._label(lesson, icons.get(lesson.id, "⬜")), data=lesson.id)

    @staticmethod
    def _label(lesson, icon: str) -> str:
        covers = getattr(lesson, "covers", None) or (lesson.id,)
        days = lesson.id if len(covers) == 1 else f"{covers[0]}–{covers[-1]}"  # the book's
        return f"{icon} {days} {lesson.title}"

    def update_icons(self, icons: dict[str, str]) -> None:
        for lesson in self.course.lessons:
            node = self.day_nodes.get(lesson.id)
            if node is not None:
                node.set_label(self._label(lesson, icons.get(lesson.id, "⬜")))

    def show_day(self, day: str) -> None:
        node = self.day_nodes.get(day)
        if node is not None:
            self.move_cursor(node)


class KeyBar(Static):
    """The footer of key bindings: the app's shown bindings, with Esc only when it does
    something. One line of text, so redrawing it costs nothing (Textual's Footer rebuilds
    its widgets on every focus change, which is most of a key's response time)."""

    def on_mount(self) -> None:
        self.refresh_keys()

    def refresh_keys(self) -> None:
        app = self.app
        focused = app.focused
        typing = isinstance(focused, Input)
        t = Text(no_wrap=True, overflow="ellipsis")
        items = []
        if typing:
            items.append(("enter", "Send" if focused.id == "chat-input" else "Answer"))
        for b in self.bindings_source():
            if not b.show:
                continue
            if typing and len(b.key_display or b.key) == 1:
                continue  # letters and ? are text while typing
            if b in self.screen.BINDINGS:
                pass  # the screen's own keys always work
            elif not app.check_action(b.action, ()):
                continue
            items.append((b.key_display or b.key, b.description))
        for i, (key, what) in enumerate(items):
            t.append(" " if i == 0 else "  ")
            t.append(key, style="bold yellow")
            t.append(f" {what}")
        self.update(t, layout=False)

    def bindings_source(self):
        from textual.binding import Binding

        out = []
        for b in list(self.screen.BINDINGS) + list(self.app.BINDINGS):
            if isinstance(b, Binding):
                out.append(b)
        return out


class QuestionCard(Vertical):
    """A concept question: the prompt, an answer box, and the graded feedback."""

    class Answered(Message):
        def __init__(self, card: "QuestionCard", text: str) -> None:
            super().__init__()
            self.card = card
            self.text = text

    def __init__(self, question, done: bool = False, blink: bool = True) -> None:
        super().__init__(classes="question")
        self.question = question
        self.done = done
        self.blink = blink

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

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Answered(self, event.value.strip()))

    def show_grade(self, grade) -> None:
        style = "green" if grade.correct else "yellow"
        icon = "✓" if grade.correct else "✗"
        self.query_one(".feedback", Static).update(Text(f"{icon} {grade.feedback}", style=style))
        if grade.correct:
            self.done = True
            box = self.query_one(Input)
            box.disabled = True
            self.add_class("-done")


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
