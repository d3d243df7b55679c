"""The LLM coach's system prompt: CLAUDE.md, the lesson, the latest results and
diagnosis, the learner's code (bounded), the rung and what it allows; never the answer key,
the checks' source or hints the learner has not reached."""

from __future__ import annotations

import ast
import re

import pytest

from tutor import paths
from tutor.coach.context import CODE_LIMIT, CoachContext
from tutor.coach.prompt import RUNG_RULES, SOLUTION_RULE, build_system_prompt
from tutor.curriculum import load_course

COURSE = load_course()
CLAUDE_MD = paths.template("CLAUDE.md").read_text(encoding="utf-8")


def ctx_for(day: str, task_index: int = 0, rung: int = 0, result=None, code: str = "",
            record=None) -> CoachContext:
    lesson = COURSE.lesson(day)
    return CoachContext(lesson=lesson, task=lesson.tasks[task_index], day_record=record,
                        latest_result=result, learner_code=code, rung=rung)


FAILING_RESULT = {
    "day": "1.1", "status": "fail", "duration_s": 0.3,
    "summary": {"pass": 1, "fail": 1, "error": 0, "timeout": 0, "crashed": 0, "skipped": 0},
    "checks": [
        {"id": "sdpa-simple", "task": 1, "title": "t", "status": "pass", "message": "",
         "evidence": {}, "diagnosis": None, "skip_reason": None},
        {"id": "sdpa-simple-scale-mask", "task": 1, "title": "t", "status": "fail",
         "message": "output differs from the reference\nsecond line",
         "evidence": {"shape": "(2, 3, 4)", "max_abs_err": 0.71, "traceback": ["frame"]},
         "diagnosis": {"pitfall": "missing-scale", "question": "What factor did you multiply by?"},
         "skip_reason": None},
    ],
}


def test_prompt_holds_rules_lesson_results_code_and_rung():
    code = "# attention.py\ndef scaled_dot_product_attention_simple(query, key, value):\n    return query\n"
    ctx = ctx_for("1.1", result=FAILING_RESULT, code=code, rung=2)
    p = build_system_prompt(ctx, CLAUDE_MD)
    assert "Ask before you tell" in p  # CLAUDE.md
    lesson = ctx.lesson
    for o in lesson.objectives:
        assert o in p
    for c in lesson.concepts:
        assert c.name in p
    for pit in lesson.pitfalls:
        assert pit.id in p and pit.question.strip() in p
    assert "sdpa-simple-scale-mask" in p and "output differs from the reference" in p
    assert "second line" not in p  # first line of a message only
    assert "max_abs_err=0.71" in p and "frame" not in p
    assert "missing-scale" in p and "What factor did you multiply by?" in p
    assert code.strip() in p
    assert "Rung reached: 2 of 4" in p and RUNG_RULES[2] in p
    # seen rungs are in, the rungs above are not
    assert ctx.task.hints[0] in p and ctx.task.hints[1] in p
    assert ctx.task.hints[2] not in p and ctx.task.hints[3] not in p


@pytest.mark.parametrize("rung", [0, 1, 2, 3, 4])
def test_each_rung_states_what_it_allows(rung):
    p = build_system_prompt(ctx_for("1.2", rung=rung), CLAUDE_MD)
    assert RUNG_RULES[rung] in p
    if rung < 4:
        assert "pseudo-code allowed" not in p.lower()
    assert SOLUTION_RULE not in p


def test_solution_walkthrough_only_after_the_ladder():
    assert SOLUTION_RULE not in build_system_prompt(ctx_for("1.1", rung=2), CLAUDE_MD,
                                                    allow_solution=True)
    p = build_system_prompt(ctx_for("1.1", rung=4), CLAUDE_MD, allow_solution=True)
    assert SOLUTION_RULE in p


def test_learner_code_is_bounded():
    big = "x = 1\n" * 5000
    p = build_system_prompt(ctx_for("1.1", code=big), CLAUDE_MD)
    assert len(p) < len(CLAUDE_MD) + CODE_LIMIT + 12000
    assert "(cut: too long)" in p


def test_results_from_the_records_when_no_run_this_session():
    record = {"checks": {"linear": {"task": 2, "last_status": "fail", "last_message": "wrong shape"}}}
    p = build_system_prompt(ctx_for("1.1", 1, record=record), CLAUDE_MD)
    assert "linear (task 2): fail -- wrong shape" in p


def _key_lines() -> list[str]:
    """Substantive lines of the answer key's function bodies."""
    out = []
    for f in paths.answer_key_dir().rglob("*.py"):
        src = f.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for stmt in node.body:
                    seg = ast.get_source_segment(src, stmt) or ""
                    for line in seg.splitlines():
                        s = line.strip()
                        if len(s) >= 25 and not s.startswith(("#", '"', "'", "def ", "class ")) \
                                and re.search(r"[=(@]", s):
                            out.append(s)
    return out


def test_no_answer_key_or_check_source_in_any_prompt():
    key_lines = _key_lines()
    assert len(key_lines) > 30
    check_lines = [ln.strip() for f in (paths.checks_dir() / "week1").glob("*.py")
                   for ln in f.read_text(encoding="utf-8").splitlines() if len(ln.strip()) >= 30]
    for lesson in COURSE.lessons:
        for i, task in enumerate(lesson.tasks):
            stub = ""
            p = build_system_prompt(ctx_for(lesson.id, i, rung=len(task.hints), code=stub,
                                            result=FAILING_RESULT), CLAUDE_MD)
            leaked = [ln for ln in key_lines if ln in p]
            assert not leaked, (lesson.id, task.id, leaked[:3])
            assert not [ln for ln in check_lines if ln in p][:1], (lesson.id, task.id)
