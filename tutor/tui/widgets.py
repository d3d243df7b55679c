"""The app's widgets: the lesson tree, concept-question cards and the chat log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Input, Markdown, Static, Tree

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
        return f"{icon} {lesson.id} {lesson.title}"

    def update_icons(self, icons: dict[str, str]) -> None:
        for lesson in self.course.lessons:
            node = self.day_nodes.get(lesson.id)
            if node is not None:
                node.set_label(self._label(lesson, icons.get(lesson.id, "⬜")))

    def show_day(self, day: str) -> None:
        node = self.day_nodes.get(day)
        if node is not None:
            self.move_cursor(node)


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

    def add_reply(self, text: str = "", classes: str = "reply") -> Markdown:
        w = Markdown(text, classes=classes)
        self.mount(w)
        self.scroll_end(animate=False)
        return w
