"""The TUI's Textual-free parts: rendering, the watch-mode poller, the coach link."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from tui_support import (failing_result, make_workspace, open_session, passing_result,
                         scripted)
from tutor.curriculum import load_course
from tutor.tui import render
from tutor.tui.coachlink import CoachLink
from tutor.tui.watch import FileWatcher, snapshot


def plain(renderable, width: int = 100) -> str:
    console = Console(width=width, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "offline")


@pytest.fixture
def lesson():
    return load_course().lesson("1.1")


# --------------------------------------------------------------------------- render


def test_lesson_view_names_files_symbols_and_the_chapter(lesson):
    text = render.lesson_plain(lesson)
    assert text.startswith("Day 1.1 · Attention and Multi-Head Attention")
    assert "https://github.com/skyzh/tiny-llm/blob/ea4769d/book/src/week1-01-attention.md" in text
    assert "Edit impl/attention.py: scaled_dot_product_attention_simple" in text
    assert "• Compute scaled dot-product attention" in text
    assert "key axis (the last one)" in text  # **bold** markers are gone
    assert "`" not in text and "**" not in text


def test_lesson_view_names_every_file_of_a_task():
    text = render.lesson_plain(load_course().lesson("1.1"))
    i = text.index("2. Implement linear and SimpleMultiHeadAttention")
    assert text[i:].splitlines()[1:3] == [
        "Edit impl/basics.py: linear",
        "     impl/attention.py: SimpleMultiHeadAttention · checks: linear, mha"]


def test_lesson_view_says_which_book_days_a_merged_lesson_covers():
    course = load_course()
    text = render.lesson_plain(course.lesson("2.4"))
    assert text.splitlines()[1].startswith("Week 2 · book days 2.4–2.5 · chapter: ")
    assert "Week 1 · book day 1.1 · chapter:" in render.lesson_plain(course.lesson("1.1"))


def test_lesson_view_maps_the_book_s_paths_and_commands():
    text = render.lesson_plain(load_course().lesson("2.2"))
    for line in ("src/tiny_llm/ → impl/", "src/extensions/ → kernels/",
                 "pdm run test --week 2 --day 2 → tiny-llm-tutor check day2.2",
                 "pdm run build-ext → tiny-llm-tutor build-kernels"):
        assert f"\n  {line}\n" in text, line


def test_the_tree_shows_a_merged_lesson_s_book_days():
    from tutor.tui.widgets import LessonTree

    course = load_course()
    assert LessonTree._label(course.lesson("2.6"), "⬜") == \
        "⬜ 2.6–2.7 Chunked Prefill and Continuous Batching"
    assert LessonTree._label(course.lesson("2.1"), "✅") == "✅ 2.1 Key-Value Cache"


def test_inline_markdown_subset():
    t = render.inline("use `softmax` on the **key axis**, see [the book](https://x.y)")
    assert t.plain == "use softmax on the key axis, see the book"
    styles = {t.plain[s.start:s.end]: str(s.style) for s in t.spans}
    assert "bold" in styles["key axis"] and "cyan" in styles["softmax"]


def test_blocks_join_wrapped_list_items():
    out = plain(render.Group(*render.blocks("Intro line\ncontinues.\n\n- one\n  more\n2. two")))
    assert "Intro line continues." in out
    import re

    assert re.search(r"•\s+one more", out) and "2. two" in out


def test_a_failing_check_shows_evidence_and_the_diagnosis_as_a_question(lesson):
    result = failing_result(lesson)
    out = plain(render.results_renderable(result))
    assert "Day 1.1: 0 passed · 1 failed · 1 timed out · 1 crashed · 1 skipped" in out
    for icon in ("✗", "⏱", "💥", "⊘"):
        assert icon in out
    assert "? How does the spread of a dot product grow" in out
    assert "shape (2, 3, 5) · expected (2, 3, 5) · float32" in out
    assert "max abs error 0.5508 · max rel error 11.92 · 30 of 30 values differ" in out
    assert "first mismatch at [0, 0, 0]: got 0.6859, expected 0.4098" in out
    assert "skipped: not run: the check run was cancelled" in out
    assert "time budget: 20 s" in out


def test_passing_checks_are_one_line_each(lesson):
    out = plain(render.results_renderable(passing_result(lesson)))
    lines = [x for x in out.splitlines() if x.strip()]
    assert lines[0].startswith("Day 1.1: 4 passed")
    assert all(x.startswith("✓") for x in lines[1:]) and len(lines) == 5


def test_live_progress_shows_done_running_and_waiting(lesson):
    plan = [{"id": c, "task": 1, "title": c} for c in ("a", "b", "c")]
    done = {"a": {"id": "a", "status": "pass", "message": "", "evidence": {}}}
    out = plain(render.results_renderable(None, plan, done, running="b"))
    assert "Running 1/3" in out and "Esc cancels" in out
    assert "✓" in out and "⟳ b" in out and "· c" in out


def test_evidence_lines_cover_traceback_and_output():
    lines = render.evidence_lines({"traceback": ["impl/attention.py:12 in f", "  x = y"],
                                   "output": "\n".join(f"line {i}" for i in range(12)),
                                   "forbidden_calls": ["mx.fast.rope"]})
    assert "impl/attention.py:12 in f" in lines and "calls: mx.fast.rope" in lines
    assert "your code printed:" in lines and "  ... (4 more lines)" in lines


def test_day_chart_shows_time_and_check_runs_each_scaled_to_its_busiest_day():
    chart = render.day_chart([{"id": "1.1", "active_seconds": 720, "attempts": 2},
                              {"id": "1.2", "active_seconds": 180, "attempts": 4},
                              {"id": "1.3", "active_seconds": 0, "attempts": 0}],
                             time_width=20, runs_width=8).plain.splitlines()
    assert "active time" in chart[0] and "check runs" in chart[0]
    assert chart[1] == "  1.1 " + "█" * 20 + "    12m  " + "█" * 4 + " " * 4 + " 2"
    assert chart[2].startswith("  1.2 " + "█" * 5 + " ") and chart[2].endswith("█" * 8 + " 4")
    assert "█" not in chart[3] and chart[3].endswith(" -")
    assert max(len(x) for x in chart) <= 80


def test_mastery_text_lists_what_needs_a_look_and_the_rest_in_one_line():
    from rich.console import Console

    picture = {"ideas": [
        {"id": "rope-layout", "level": "learning", "label": "📖 Learning", "started_days": ["1.2"],
         "passing_days": [], "questions": [], "right": []},
        {"id": "softmax-axis", "level": "shaky", "label": "❗ Shaky", "mistakes": [
            {"pitfall": "attn-softmax-wrong-axis", "day": "1.1", "count": 2}],
         "started_days": ["1.1"], "passing_days": ["1.1"], "questions": [], "right": []}],
        "frequent_mistakes": [{"pitfall": "attn-softmax-wrong-axis", "count": 2, "days": ["1.1"],
                               "ideas": ["softmax-axis"]}],
        "review_queue": []}
    console = Console(width=80, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(render.mastery_text(picture))
    text = console.export_text()
    assert "2 met · ⭐ 0 mastered · ❗ 1 shaky" in text
    assert "attn-softmax-wrong-axis diagnosed on 1.1 ×2" in text
    assert "📖 Learning: rope-layout" in text
    assert "attn-softmax-wrong-axis ×2 (day 1.1)" in text and "nothing due" in text


def test_bar_uses_eighth_blocks():
    assert render.bar(2.5, 4) == "██▌ "
    assert render.bar(0, 3) == "   "
    assert render.bar(9, 3) == "███"


@pytest.mark.parametrize("editor, argv", [
    ("vim", ["vim", "+12", "/w/impl/a.py"]),
    ("nvim -p", ["nvim", "-p", "+12", "/w/impl/a.py"]),
    ("emacs -nw", ["emacs", "-nw", "+12", "/w/impl/a.py"]),
    ("nano", ["nano", "+12", "/w/impl/a.py"]),
    ("code --wait", ["code", "--wait", "-g", "/w/impl/a.py:12"]),
    ("subl -w", ["subl", "-w", "/w/impl/a.py:12"]),
])
def test_editor_command_opens_the_file_at_the_line(editor, argv):
    assert render.editor_command(Path("/w/impl/a.py"), 12, editor) == argv


def test_symbol_line(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import x\n\n\nclass A:\n    pass\n\n\ndef f():\n    pass\n")
    assert render.symbol_line(f, "f") == 8 and render.symbol_line(f, "A") == 4
    assert render.symbol_line(f, "missing") == 1


# --------------------------------------------------------------------------- watch


def test_watcher_reports_a_save_once_it_has_settled(tmp_path):
    impl, kernels = tmp_path / "impl", tmp_path / "kernels"
    impl.mkdir()
    (kernels / "build").mkdir(parents=True)
    f = impl / "attention.py"
    f.write_text("a")
    w = FileWatcher([impl, kernels], debounce_s=0.4)
    assert w.poll(100.0) is False  # nothing changed
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert w.poll(100.5) is False and w.pending  # seen, not settled
    f.write_text("ab")
    os.utime(f, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert w.poll(100.6) is False  # a second save restarts the debounce
    assert w.poll(100.8) is False
    assert w.poll(101.0) is True and not w.pending
    assert w.changed == {str(f)}
    assert w.poll(101.5) is False


def test_watcher_sees_new_kernel_files_and_ignores_build_and_bytecode(tmp_path):
    impl, kernels = tmp_path / "impl", tmp_path / "kernels"
    (impl / "__pycache__").mkdir(parents=True)
    (kernels / "build").mkdir(parents=True)
    w = FileWatcher([impl, kernels], debounce_s=0.0)
    (impl / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    (kernels / "build" / "ext.so").write_bytes(b"x")
    (kernels / "build" / "foo.cpp").write_text("x")
    (impl / ".attention.py.swp").write_text("x")
    assert w.poll(1.0) is False and not w.pending
    (kernels / "axpby.metal").write_text("kernel")
    assert w.poll(2.0) is False and w.pending
    assert w.poll(2.1) is True
    assert {Path(p).name for p in w.changed} == {"axpby.metal"}


def test_snapshot_of_missing_roots_is_empty(tmp_path):
    assert snapshot([tmp_path / "nope"]) == {}


# --------------------------------------------------------------------------- coach link


def test_without_the_coach_the_offline_coach_answers(tmp_path):
    """The link has no fallback of its own: the engine's offline coach stands in, with the
    one wording of the ladder."""
    from tutor.coach import ladder

    s = open_session(make_workspace(tmp_path))
    try:
        link = CoachLink(s, factory=lambda _s: (_ for _ in ()).throw(ImportError("none")))
        assert link.coach() is None and link.take_notice() is None
        r = link.hint()
        task = s.current_task()
        assert r.kind == "text" and r.text == ladder.hint_text(ladder.step_of(task, 1))
        assert "Try it first" in r.text  # the link's own copy of the ladder text lacked it
        replies = list(link.ask("what is D?"))
        assert [r.kind for r in replies] == ["text", "done"]
        assert "Why divide by √D" in replies[0].text  # the concept, not a stock question
        assert s.day_record()["questions"][-1]["text"] == "what is D?"
        passing = passing_result(s.lesson)
        assert "Before you move on" in link.after_checks(passing)
    finally:
        s.close()


def test_a_coach_that_fails_after_recording_a_hint_does_not_climb_twice(tmp_path):
    s = open_session(make_workspace(tmp_path))

    class Broken:
        def __init__(self, session):
            self.session = session

        def hint(self):
            self.session.hint()  # recorded, then the coach breaks
            raise RuntimeError("offline coach missing")

    try:
        link = CoachLink(s, factory=Broken)
        r = link.hint()
        assert "Hint 1 of 4" in r.text
        assert s.day_record()["hints_seen"] == ["1:1"]
        assert "offline coach missing" in link.take_notice()
    finally:
        s.close()


def test_a_coach_that_cannot_start_leaves_a_notice(tmp_path):
    s = open_session(make_workspace(tmp_path))
    try:
        def boom(_s):
            raise ValueError("bad config")

        link = CoachLink(s, factory=boom)
        assert link.coach() is None
        assert "bad config" in link.take_notice() and link.take_notice() is None
    finally:
        s.close()


def test_the_coach_stream_passes_through(tmp_path):
    s = open_session(make_workspace(tmp_path))
    try:
        link = CoachLink(s, factory=scripted(chunks=("a", "b")))
        replies = list(link.ask("q"))
        assert [(r.kind, r.text) for r in replies] == [("text", "a"), ("text", "b"), ("done", "ab")]
        assert not any(r.interrupted for r in replies) and link.take_notice() is None
    finally:
        s.close()


def test_the_core_never_imports_the_ui():
    import subprocess
    import sys

    code = ("import sys, tutor.engine, tutor.cli, tutor.checking.runner, tutor.records.recorder;"
            "print(sorted(m for m in sys.modules if m.startswith(('textual', 'tutor.tui'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
