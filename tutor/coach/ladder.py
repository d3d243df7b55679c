"""The hint ladder: which task the learner is on and which rung comes next.

Rungs count from 1; a lesson task has exactly four, the last is plain-language
pseudo-code. The ladder never skips: the next rung is one above the highest rung the
learner has seen for that task, and it stops at the top.
"""

from __future__ import annotations

from dataclasses import dataclass

from tutor.statuses import FAILING


@dataclass(frozen=True)
class HintStep:
    task: int
    task_title: str
    rung: int  # 1-based
    rungs: int
    text: str

    @property
    def is_last(self) -> bool:
        return self.rung >= self.rungs


def hint_text(step: HintStep) -> str:
    """A rung as the learner reads it, wherever it is shown (the coach, the CLI, the app):
    "Hint 2 of 4 for task 1 (title): ...", and what to do with it."""
    body = step.text.strip()
    sep = "\n" if "\n" in body else " "
    text = f"Hint {step.rung} of {step.rungs} for task {step.task} ({step.task_title}):{sep}{body}"
    if step.is_last:
        text += ("\n\nThat is the last rung: the plan in plain words. Write each step "
                 "yourself, then run the checks.")
    else:
        text += "\n\nTry it first; ask for the next hint only if you're still stuck."
    return text


def step_of(task, rung: int) -> HintStep:
    """Rung ``rung`` (1-based) of ``task``'s ladder."""
    return HintStep(task.id, task.title, rung, len(task.hints), task.hints[rung - 1])


def rungs_seen(day_record: dict | None, task_id: int) -> int:
    """The highest rung already shown for a task (0 when none)."""
    best = 0
    for key in (day_record or {}).get("hints_seen", []):
        t, _, r = str(key).partition(":")
        if t == str(task_id) and r.isdigit():
            best = max(best, int(r))
    return best


def current_task(lesson, latest_result: dict | None, day_record: dict | None = None):
    """The task to coach: the first task with a failing check in the latest run, else the
    first task whose checks have not all passed yet, else the last task."""
    tasks = [t for t in lesson.tasks if t.checks] or list(lesson.tasks)
    if latest_result:
        status = {c["id"]: c["status"] for c in latest_result.get("checks", [])}
        for t in tasks:
            if any(status.get(cid) in FAILING for cid in t.checks):
                return t
        for t in tasks:
            if any(status.get(cid) != "pass" for cid in t.checks if cid in status):
                continue
            if not all(cid in status for cid in t.checks):
                return t
    elif day_record:
        checks = day_record.get("checks", {})
        for t in tasks:
            if any(checks.get(cid, {}).get("last_status") != "pass" for cid in t.checks):
                return t
    return tasks[0] if not latest_result else tasks[-1]


def next_hint(lesson, day_record: dict | None, task=None) -> HintStep | None:
    """The next rung for ``task`` (default: the current task), or None at the top."""
    task = task or current_task(lesson, None, day_record)
    seen = rungs_seen(day_record, task.id)
    if seen >= len(task.hints):
        return None
    return step_of(task, seen + 1)
