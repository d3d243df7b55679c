"""What the coach knows when it answers: the lesson and task, the latest check results,
the rung reached, the learner's code for the task (bounded), and the conversation."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from tutor.coach import ladder
from tutor.statuses import FAILING

CODE_LIMIT = 6000  # characters of learner code sent to an LLM


@dataclass
class CoachContext:
    lesson: object  # tutor.curriculum.Lesson
    task: object  # tutor.curriculum.Task
    day_record: dict | None
    latest_result: dict | None
    learner_code: str
    rung: int  # highest hint rung seen for the task (0 = none)
    history: list[dict] = field(default_factory=list)  # [{"role", "content"}]
    # tutor.coach.recall.Misconception: every one on record, and those this day tests again
    misconceptions: list = field(default_factory=list)
    recalls: list = field(default_factory=list)

    @property
    def ladder_exhausted(self) -> bool:
        return self.rung >= len(self.task.hints)

    def failing_checks(self) -> list[dict]:
        if not self.latest_result:
            return []
        return [c for c in self.latest_result["checks"]
                if c["status"] in FAILING]

    def diagnosis(self) -> dict | None:
        for c in self.failing_checks():
            if c.get("diagnosis"):
                return c["diagnosis"]
        return None


def learner_code(impl: Path, task, limit: int = CODE_LIMIT) -> str:
    """The learner's source of the task's symbols (top-level functions and classes) in
    every file the task names, each headed by its file; the whole file when a symbol
    cannot be found (a C++ or Metal file is always whole)."""
    from tutor.workspace import locate_symbol

    parts = []
    for e in task.edits:
        if e.in_impl:
            rel = e.impl_rel
            if e.symbol and not _has(impl / rel, e.symbol):
                rel = locate_symbol(impl, e.symbol) or rel  # the learner moved it
            path, head = impl / rel, rel
        else:
            path, head = impl.parent / e.path, e.path
        try:
            src = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        seg = _segment(src, e.symbol) if e.symbol and path.suffix == ".py" else None
        parts.append(f"# {head}\n{seg or src}")
    text = "\n\n".join(dict.fromkeys(parts))
    if len(text) > limit:
        text = text[:limit] + "\n# ... (cut: too long)"
    return text


def _has(path: Path, symbol: str) -> bool:
    try:
        return _segment(path.read_text(encoding="utf-8", errors="replace"), symbol) is not None
    except OSError:
        return False


def _segment(src: str, symbol: str) -> str | None:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name == symbol:
            return ast.get_source_segment(src, node)
    return None


def build_context(session, task=None, history: list[dict] | None = None) -> CoachContext:
    """The context of a :class:`tutor.engine.TutorSession`'s current day."""
    task = task or session.current_task()
    rec = session.day_record()
    return CoachContext(
        lesson=session.lesson, task=task, day_record=rec,
        latest_result=session.latest_result(),
        learner_code=learner_code(session.impl, task),
        rung=ladder.rungs_seen(rec, task.id), history=list(history or []),
        misconceptions=_ask(session, "misconceptions"),
        recalls=[m for m, _ in _ask(session, "recalls")])


def _ask(session, what: str) -> list:
    """The session's record of earlier mistakes; none from a stand-in session without it."""
    query = getattr(session, what, None)
    return list(query()) if callable(query) else []
