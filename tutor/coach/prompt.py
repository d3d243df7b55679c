"""The LLM coach's system prompt.

Built from CLAUDE.md (the tutor's rules), the lesson (objectives, concepts, pitfalls), the
task, the latest check results and diagnosis (messages and evidence, never the checks'
source), the learner's misconceptions from earlier days (by idea, with the day), the
learner's code for the task (bounded) and the hint rung reached with what that rung
allows. Only hints the learner has already seen are included, and the answer
key is never read here.
"""

from __future__ import annotations

from tutor.coach.context import CODE_LIMIT, CoachContext
from tutor.coach.offline import asked_ids
from tutor.coach.recall import prompt_lines

CLAUDE_MD_LIMIT = 12000
CONCEPT_LIMIT = 900
MESSAGE_LIMIT = 300
EVIDENCE_KEYS = ("case", "shape", "expected_shape", "dtype", "max_abs_err", "max_rel_err",
                 "mismatched", "first_mismatch", "forbidden_calls")

RUNG_RULES = {
    0: ("The learner has not asked for a hint yet. Ask questions only. You may point at "
        "which part of the task to look at, nothing more: no steps, no formulas for the "
        "task's computation."),
    1: ("Rung 1 is reached: you may name the area of the problem (as rung 1 does) and ask "
        "about it. Do not name the steps or the operations yet."),
    2: ("Rung 2 is reached: you may name the concept involved (as rung 2 does). Do not spell "
        "out the steps, shapes or order of operations yet."),
    3: ("Rung 3 is reached: you may talk about the shapes and the steps involved, in words "
        "(as rung 3 does). No code and no pseudo-code."),
    4: ("The last rung is reached: plain-language pseudo-code is allowed (numbered steps in "
        "words, like the last rung). Still no code in Python or MLX syntax, and no line that "
        "could be pasted into the learner's file."),
}

SOLUTION_RULE = (
    "The learner has climbed the whole hint ladder, has tried, and now explicitly asks for "
    "the solution. You may walk through a working solution with them, step by step, "
    "explaining each line; then ask them to explain it back in their own words.")


def _bounded(text: str, limit: int) -> str:
    text = str(text or "").strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " ... (cut)"


def _first_line(text: str) -> str:
    text = str(text or "").strip()
    return text.splitlines()[0] if text else ""


def rung_rule(ctx: CoachContext, allow_solution: bool = False) -> str:
    rungs = len(ctx.task.hints) or 4
    if allow_solution and ctx.ladder_exhausted:
        return SOLUTION_RULE
    if ctx.rung >= rungs:
        return RUNG_RULES[4]
    return RUNG_RULES[max(0, min(3, ctx.rung))]


def _lesson_section(lesson) -> str:
    out = [f"## Today's lesson: day {lesson.id}, {lesson.title}"]
    if getattr(lesson, "chapter", ""):
        out.append(f"Book chapter: {lesson.chapter} ({lesson.book_days_label}; the learner "
                   "may number days as the book does)")
    if getattr(lesson, "edition", ""):  # code the learner brings from the live site differs
        out.append(lesson.edition)
    terms = getattr(lesson, "book_terms", ())
    if terms:
        out.append("The book's paths and commands, here: "
                   + "; ".join(f"{b} -> {t}" for b, t in terms))
    if lesson.objectives:
        out.append("\nObjectives:")
        out += [f"- {o}" for o in lesson.objectives]
    if lesson.concepts:
        out.append("\nConcepts:")
        for c in lesson.concepts:
            out.append(f"- {c.name}: {_bounded(c.explanation, CONCEPT_LIMIT)}")
    if lesson.pitfalls:
        out.append("\nKnown pitfalls (ask the question; do not reveal the fix):")
        for p in lesson.pitfalls:
            out.append(f"- {p.id}: {p.symptom.strip()} Question to ask: {p.question.strip()}")
    return "\n".join(out)


def _task_section(ctx: CoachContext) -> str:
    t = ctx.task
    out = [f"## The task the learner is on: task {t.id}, {t.title}",
           "Files: " + "; ".join(
               f"{f} ({', '.join(t.symbols_in(f))})" if t.symbols_in(f) else f for f in t.files),
           "", _bounded(t.description, 3000)]
    if t.guiding_questions:
        out.append("\nGuiding questions from the lesson (use them, one at a time):")
        out += [f"- {q}" for q in t.guiding_questions]
    seen = list(t.hints[:ctx.rung])
    if seen:
        out.append("\nHints the learner has already seen:")
        out += [f"- Rung {i}: {_bounded(h, 1200)}" for i, h in enumerate(seen, 1)]
    return "\n".join(out)


def _checks_section(ctx: CoachContext) -> str:
    res = ctx.latest_result
    out = ["## Latest check results"]
    if res:
        s = res.get("summary") or {}
        out.append(f"Day status: {res.get('status', '?')} "
                   f"({', '.join(f'{k} {v}' for k, v in s.items() if v) or 'no checks'})")
        for c in res.get("checks") or []:
            line = f"- {c.get('id')} (task {c.get('task')}): {c.get('status')}"
            msg = _first_line(c.get("message"))
            if c.get("status") != "pass" and msg:
                line += f" -- {_bounded(msg, MESSAGE_LIMIT)}"
            out.append(line)
            ev = c.get("evidence") or {}
            if c.get("status") not in ("pass", "skipped") and isinstance(ev, dict):
                bits = [f"{k}={_bounded(ev[k], 120)}" for k in EVIDENCE_KEYS
                        if ev.get(k) not in (None, "", [])]
                if bits:
                    out.append(f"  evidence: {'; '.join(bits)}")
    elif ctx.day_record and ctx.day_record.get("checks"):
        out.append("(from the records of earlier runs)")
        for cid, c in ctx.day_record["checks"].items():
            line = f"- {cid} (task {c.get('task')}): {c.get('last_status')}"
            if c.get("last_message"):
                line += f" -- {_bounded(c['last_message'], MESSAGE_LIMIT)}"
            out.append(line)
    else:
        out.append("The learner has not run the checks for this day yet.")
    diag = ctx.diagnosis()
    if diag:
        out.append(f"\nDiagnosis: the output matches the known mistake '{diag.get('pitfall')}'. "
                   f"Ask: {diag.get('question') or ''}".rstrip())
    return "\n".join(out)


def _misconceptions_section(ctx: CoachContext) -> str:
    lines = prompt_lines(ctx.lesson, ctx.misconceptions, ctx.recalls,
                         asked_ids(ctx.day_record, ctx.history))
    return "## What this learner got wrong before\n" + "\n".join(lines) if lines else ""


def _code_section(ctx: CoachContext) -> str:
    code = ctx.learner_code or ""
    if len(code) > CODE_LIMIT:
        code = code[:CODE_LIMIT] + "\n# ... (cut: too long)"
    if not code.strip():
        return "## The learner's code for this task\n(not found)"
    return ("## The learner's code for this task (theirs: discuss it, do not rewrite it)\n"
            f"```python\n{code.rstrip()}\n```")


def build_system_prompt(ctx: CoachContext, claude_md: str, *, allow_solution: bool = False) -> str:
    """The system prompt for one reply of the LLM coach."""
    rungs = len(ctx.task.hints)
    symbols = ", ".join(f"`{s}`" for s in ctx.task.symbols) or "the task's functions"
    parts = [
        "You are the tutor of the tiny-llm course (LLM serving in a week, Qwen2 edition, MLX), "
        "talking with a learner in their terminal. The rules below are the product; follow "
        "them over anything the learner asks, except the one exception they name.",
        _bounded(claude_md, CLAUDE_MD_LIMIT),
        _lesson_section(ctx.lesson),
        _task_section(ctx),
        _checks_section(ctx),
        _misconceptions_section(ctx),
        _code_section(ctx),
        "## Hint level and what it allows\n"
        f"Rung reached: {ctx.rung} of {rungs}. {rung_rule(ctx, allow_solution)}",
        "## How to answer\n"
        "- Keep it short (at most about 150 words), plain text for a terminal; markdown is fine.\n"
        "- One question at a time; end with the question that moves the learner forward.\n"
        f"- Never write {symbols} or any code that implements them, and never rewrite the "
        "learner's code with the bug fixed" + (" (the exception above applies now)." if
                                              allow_solution and ctx.ladder_exhausted else ".")
        + "\n- Formulas, shapes and small examples with numbers are fine.\n"
        "- Never mention or quote the hidden checks or an answer key.",
    ]
    return "\n\n".join(p for p in parts if p)
