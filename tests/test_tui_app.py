"""Pilot tests of the TUI's flows, in temp workspaces made by ``init_workspace``.

Waiting is always on workers (``wait_for_complete``) or a predicate with a deadline,
never a fixed sleep.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Markdown, Static

from tui_support import (FakeRunner, copy_answer_key, failing_result, key_latency, no_coach,
                         open_session, scripted, settle, wait_until, write_no_scale_attention,
                         write_slow_attention)
from tui_support import offline, session, ws  # noqa: F401  (fixtures)
from tutor.tui.app import TutorApp
from tutor.tui.coachlink import CoachLink
from tutor.tui.screens import InsightScreen, ProgressScreen
from tutor.tui.widgets import ChatLog, LessonTree, QuestionCard

SIZE = (100, 32)
EXE = Path(sys.executable).parent / "tiny-llm-tutor"


pytestmark = pytest.mark.usefixtures("offline")


def make_app(session, coach=None, **kw) -> TutorApp:
    link = CoachLink(session, factory=coach or scripted())
    return TutorApp(session, coach=link, blink=False, **kw)


def plain(content) -> str:
    """The plain text of a Static's content (str, Rich Text or any Rich renderable)."""
    from rich.console import Console

    if isinstance(content, str):
        return content
    console = Console(width=200, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(content)
    return console.export_text()


def text_of(app, selector: str) -> str:
    return plain(app.query_one(selector, Static).content)


def results_text(app) -> str:
    return text_of(app, "#results-body")


def status_text(app) -> str:
    return text_of(app, "#status")


def chat_text(app) -> str:
    parts = []
    for w in app.query_one(ChatLog).children:
        if isinstance(w, Markdown):
            parts.append(w.source)
        else:
            parts.append(plain(w.content))
    return "\n".join(parts)


# --------------------------------------------------------------------------- opening


async def test_start_week1_opens_the_first_unfinished_day(session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert session.lesson.id == "1.1"
        assert isinstance(app.focused, LessonTree)  # keys work at once: no input has focus
        assert "Day 1.1" in status_text(app)
        md = text_of(app, "#lesson-md")
        assert "Attention and Multi-Head Attention" in md and "impl/attention.py" in md
        assert "skyzh/tiny-llm/blob/ea4769d/book/src/week1-01-attention.md" in md
        cards = list(app.query("#before-questions QuestionCard").results(QuestionCard))
        assert [c.question.id for c in cards] == ["scale-value", "score-shape", "masked-weight"]
        assert app.theme == "textual-dark"


async def test_start_day_and_resume_where_left_off(ws):
    s = open_session(ws, "day1.3")
    try:
        app = make_app(s)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            assert "Day 1.3" in status_text(app)
            await pilot.press("q")
    finally:
        s.close()
    s2 = open_session(ws, None)  # `start` alone
    try:
        assert s2.lesson.id == "1.3"
    finally:
        s2.close()


# --------------------------------------------------------------------------- checks


async def test_checks_on_a_mistake_show_failures_and_the_diagnosis_question(ws, session):
    write_no_scale_attention(ws)
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        assert app.query_one("#tabs").active == "checks-tab"
        await settle(pilot)
        out = results_text(app)
        assert "Day 1.1: 0 passed · 4 failed" in out
        assert "✗" in out and "sdpa-simple" in out
        assert "? How does the spread of a dot product grow with the head dimension" in out
        assert "shape (2, 3, 5) · expected (2, 3, 5)" in out  # evidence
        assert "max abs error" in out
        assert "Let's look at the first failing check together." in chat_text(app)
        assert "🟡 In progress" in status_text(app)
        rec = session.day_record("1.1")
        assert rec["attempts_total"] == 1 and "attn-missing-scale" in rec["pitfalls"]
    doc = ws / "sessions" / "week1" / "day1.1-attention.md"
    assert "sdpa-simple" in doc.read_text()


async def test_results_show_every_status_icon_and_the_skip_reason(session, monkeypatch):
    runner = FakeRunner(failing_result)
    monkeypatch.setattr("tutor.checking.runner.run_day", runner)
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await settle(pilot)
        out = results_text(app)
        for icon in ("✗", "⏱", "💥", "⊘"):
            assert icon in out
        assert "skipped: not run: the check run was cancelled" in out
        assert "first mismatch at [0, 0, 0]: got 0.6859, expected 0.4098" in out


async def test_keys_answer_while_a_check_runs_and_esc_kills_it(ws, session, tmp_path):
    """The UI is never frozen by a check: every key is handled while the learner's code
    busy-loops in the check process. (How fast -- the 100 ms bar -- is measured by
    benchmarks/tui_key_latency.py; key_latency only fails a key that is never answered.)"""
    pidfile = tmp_path / "child.pid"
    write_slow_attention(ws, 15, pidfile)
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_until(pilot, pidfile.exists, 15, "the check to start running learner code")
        assert app.checking
        latencies = []

        async def timed(key, check):
            latencies.append(await key_latency(pilot, key, check))
            await pilot.pause()

        tabs = app.query_one("#tabs")
        for _ in range(3):
            await timed("t", lambda: isinstance(app.screen, ProgressScreen))
            await timed("escape", lambda: not isinstance(app.screen, ProgressScreen))
            await timed("w", lambda: app.watching)
            await timed("w", lambda: not app.watching)
            await timed("l", lambda: tabs.active == "lesson-tab")
            await timed("c", lambda: tabs.active == "checks-tab")  # a notice, no second run
            await timed("?", lambda: isinstance(app.focused, Input))
            await timed("x", lambda: app.focused.value.endswith("x"))
            app.query_one(LessonTree).focus()
            await pilot.pause()
        assert app.checking, "the check finished before the test could cancel it"
        ms = sorted(x * 1000 for x in latencies)
        print(f"\nkey latency during a check (key to repainted screen): median "
              f"{statistics.median(ms):.0f} ms, p90 {ms[int(0.9 * len(ms))]:.0f} ms, "
              f"max {ms[-1]:.0f} ms over {len(ms)} keys")
        assert len(ms) == 24
        pid = int(pidfile.read_text())
        t0 = time.perf_counter()
        await pilot.press("escape")
        await settle(pilot)
        cancel_s = time.perf_counter() - t0
        assert not app.checking
        assert cancel_s < 2.0
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # the check process (which ran the learner's loop) is gone
        out = results_text(app)
        assert "cancelled" in out
        assert (session.day_record("1.1") or {}).get("attempts_total", 0) == 0  # not an attempt


async def test_a_second_c_during_a_run_does_not_start_another(session, monkeypatch):
    runner = FakeRunner(failing_result, hold=True)
    monkeypatch.setattr("tutor.checking.runner.run_day", runner)
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await wait_until(pilot, lambda: app._live and app._live["done"], 5, "first result")
        assert "Running 1/4" in results_text(app)
        assert "checking day 1.1 1/4" in status_text(app)
        await pilot.press("c")
        runner.release()
        await settle(pilot)
        assert runner.calls == 1 and app.check_runs == 1


async def test_a_worker_error_becomes_a_visible_notice(session, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("the runner broke")

    monkeypatch.setattr("tutor.checking.runner.run_day", boom)
    app = make_app(session)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("c")
        await settle(pilot)
        assert not app.checking
        assert any("the runner broke" in e for e in app.errors)
        assert "the runner broke" in chat_text(app)
        await pilot.press("t")  # still alive and answering keys
        assert isinstance(app.screen, ProgressScreen)


# --------------------------------------------------------------------------- the bar


async def test_bar_a_new_learner_goes_from_start_week1_to_a_passing_day(ws, session):
    copy_answer_key(ws, "attention.py", "basics.py")
    app = make_app(session, coach=no_coach)  # the hint ladder stands in for the coach
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await settle(pilot)
        out = results_text(app)
        assert "Day 1.1: 4 passed" in out
        assert isinstance(app.screen, InsightScreen)  # the celebration asks for an insight
        insight = "Attention weighs the values by softmax of scaled query-key scores."
        await pilot.press(*insight, "enter")
        await pilot.pause()
        assert not isinstance(app.screen, InsightScreen)
        assert "🎉 Day 1.1 passes." in text_of(app, "#standing")
        # the after-coding questions appear once the checks pass
        after = list(app.query("#after-questions QuestionCard").results(QuestionCard))
        assert [c.question.id for c in after] == ["softmax-axis", "head-dim"]
        await pilot.press("a")
        assert isinstance(app.focused, Input) and app.focused.id == "answer-softmax-axis"
        await pilot.press("b", "enter")
        await pilot.press("6", "4", "enter")
        assert "✅ Competent" in status_text(app)
        assert session.status("1.1").value == "completed"
        await pilot.press("q")
    assert not session.store.is_open
    doc = (ws / "sessions" / "week1" / "day1.1-attention.md").read_text()
    insights = doc.split("## Key Insights", 1)[1].split("## Questions", 1)[0]
    assert insight in insights
    tracker = (ws / "progress" / "tiny-llm-tracker.md").read_text()
    assert "| ✅ | 1.1 |" in tracker


# --------------------------------------------------------------------------- learning loop


async def test_concept_questions_are_graded_inline_and_recorded(session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        assert app.focused.id == "answer-scale-value"
        await pilot.press(*"0.5", "enter")
        card = app.query_one("#answer-scale-value").parent
        fb = plain(card.query_one(".feedback", Static).content)
        assert "Not quite" in fb and "0.125" in fb
        app.query_one("#answer-scale-value", Input).value = ""
        await pilot.press(*"1/8", "enter")
        fb = plain(card.query_one(".feedback", Static).content)
        assert fb.startswith("✓ Right.")
        assert app.query_one("#answer-scale-value", Input).disabled
        assert app.focused.id == "answer-score-shape"  # on to the next question
        c = session.day_record("1.1")["concepts"]["scale-value"]
        assert c["tries"] == 2 and c["first_correct"] is False and c["last_correct"] is True


async def test_insight_key_records_an_insight(ws, session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        assert isinstance(app.screen, InsightScreen)
        await pilot.press(*"Scale keeps softmax soft.", "enter")
        await pilot.pause()
    assert session.day_record("1.1")["insights"][-1]["text"] == "Scale keeps softmax soft."
    doc = (ws / "sessions" / "week1" / "day1.1-attention.md").read_text()
    assert "Scale keeps softmax soft." in doc


async def test_looking_at_a_day_does_not_start_it_but_editing_does(ws, session, monkeypatch):
    app = make_app(session)
    monkeypatch.setattr(type(app), "open_in_editor", lambda self, argv, path, line: None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await pilot.pause()
        assert session.lesson.id == "1.2"
        assert session.day_record("1.2") is None  # looked at: not started
        assert "Not started" in status_text(app)
        await pilot.press("e")
        await pilot.pause()
        assert session.day_record("1.2")["status"] == "in_progress"
        assert "In progress" in status_text(app)
    assert session.store.current_day == "1.2"  # still the day to resume at


async def test_insight_key_on_a_failing_day_does_not_celebrate(ws, session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        assert isinstance(app.screen, InsightScreen)
        title = str(app.screen.query_one("#insight-title").render())
        assert "passes" not in title and "🎉" not in title
        await pilot.press("escape")


# --------------------------------------------------------------------------- coach


async def test_hint_climbs_one_rung_at_a_time(session):
    app = make_app(session, coach=no_coach)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("h")
        await settle(pilot)
        assert app.query_one("#tabs").active == "coach-tab"
        assert "Hint 1 of 4 for task 1" in chat_text(app)
        await pilot.press("h")
        await settle(pilot)
        assert "Hint 2 of 4 for task 1" in chat_text(app)
        assert session.day_record("1.1")["hints_seen"] == ["1:1", "1:2"]
        await pilot.press("h", "h")
        await settle(pilot)
        await pilot.press("h")
        await settle(pilot)
        assert "last rung of the hint ladder" in chat_text(app)
        assert len(session.day_record("1.1")["hints_seen"]) == 4


async def test_chat_focus_streams_the_reply_and_typing_never_fires_bindings(session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("/")
        assert app.focused.id == "chat-input"
        await pilot.press(*"can q be checked?", "enter")  # c, q, h, e, ... are text here
        await settle(pilot)
        assert app.is_running and app.check_runs == 0
        assert "you › can q be checked?" in chat_text(app)
        assert "What shape do the scores have?" in chat_text(app)
        assert app.coach.coach().asked == ["can q be checked?"]
        assert session.day_record("1.1")["questions"][-1]["text"] == "can q be checked?"
        await pilot.press("escape")
        assert isinstance(app.focused, LessonTree)


async def test_escape_interrupts_a_streaming_reply(session):
    import threading

    gate = threading.Event()
    app = make_app(session, coach=scripted(gate=gate))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("?", *"why", "enter")
        await wait_until(pilot, lambda: "What shape" in app._reply_text, 5, "the first chunk")
        await pilot.press("escape")
        gate.set()
        await settle(pilot)
        assert "(reply interrupted)" in chat_text(app)


async def test_the_real_coach_or_its_fallback_answers(session):
    app = TutorApp(session, blink=False)  # whatever tutor.coach.chat provides today
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("?", *"what does the scale do?", "enter")
        await settle(pilot)
        await pilot.press("escape", "h")  # leave the input first: there, h is a letter
        await settle(pilot)
        replies = [w for w in app.query_one(ChatLog).children if isinstance(w, Markdown)]
        assert len(replies) >= 2 and all(r.source.strip() for r in replies)
        assert not app.errors
        assert len(session.day_record("1.1")["hints_seen"]) == 1  # exactly one rung


# --------------------------------------------------------------------------- watch mode


async def test_watch_mode_reruns_the_checks_on_save(ws, session, monkeypatch):
    runner = FakeRunner(failing_result)
    monkeypatch.setattr("tutor.checking.runner.run_day", runner)
    app = make_app(session, poll_s=0.05, debounce_s=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("w")
        assert app.watching and "◉ watch" in status_text(app)
        target = ws / "impl" / "attention.py"
        target.write_text(target.read_text() + "\n# saved\n")
        os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
        await wait_until(pilot, lambda: app.check_runs == 1, 10, "a check run after the save")
        await settle(pilot)
        assert runner.calls == 1
        assert app.query_one("#tabs").active == "checks-tab"
        kernel = ws / "kernels" / "watch_probe.cpp"
        kernel.write_text("// a kernel save\n")
        await wait_until(pilot, lambda: app.check_runs == 2, 10, "a run after a kernels/ save")
        await settle(pilot)
        await pilot.press("w")
        assert not app.watching and "◉ watch" not in status_text(app)


# --------------------------------------------------------------------------- editor


async def test_e_opens_the_task_file_at_the_symbol_in_the_editor(ws, session, monkeypatch):
    monkeypatch.setenv("EDITOR", "vim")
    monkeypatch.delenv("VISUAL", raising=False)
    app = make_app(session)
    calls = []
    monkeypatch.setattr(app, "open_in_editor", lambda argv, path, line: calls.append(argv))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
    path = ws / "impl" / "attention.py"
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1)
                if l.startswith("def scaled_dot_product_attention_simple"))
    assert calls == [["vim", f"+{line}", str(path)]]


async def test_starting_at_a_book_day_opens_its_lesson_and_says_so(ws):
    s = open_session(ws, "day2.7")
    try:
        assert s.lesson.id == "2.6"
        app = make_app(s)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await pilot.pause()
            notes = [n.message for n in app._notifications]
    finally:
        s.close()
    assert any(n.startswith("Book day 2.7 is covered by lesson 2.6") for n in notes), notes


async def test_e_opens_the_file_the_task_names_not_a_namesake(ws, monkeypatch):
    """Day 2.1 task 2 is the week-2 attention: `e` opens qwen2_week2.py, although week 1's
    file defines a class of the same name (and sorts first)."""
    monkeypatch.setenv("EDITOR", "vim")
    monkeypatch.delenv("VISUAL", raising=False)
    s = open_session(ws, "day2.1")
    try:
        lesson = s.lesson
        s.latest[lesson.id] = {"checks": [{"id": "kv-full-cache", "status": "pass"}]}
        assert s.current_task().id == 2
        app = make_app(s)
        calls = []
        monkeypatch.setattr(app, "open_in_editor", lambda argv, path, line: calls.append(argv))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("e")
    finally:
        s.close()
    path = ws / "impl" / "qwen2_week2.py"
    line = next(i for i, l in enumerate(path.read_text().splitlines(), 1)
                if l.startswith("class Qwen2MultiHeadAttention"))
    assert calls == [["vim", f"+{line}", str(path)]]


async def test_e_without_a_suspendable_terminal_says_where_to_look(session):
    app = make_app(session)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert app.is_running
        assert any("attention.py:" in n.message for n in app._notifications)


# --------------------------------------------------------------------------- navigation


async def test_n_p_and_the_tree_move_between_days(session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        assert session.lesson.id == "1.2" and "Day 1.2" in status_text(app)
        assert "Positional" in text_of(app, "#lesson-md")
        await pilot.press("p", "p")
        assert session.lesson.id == "1.1"
        tree = app.query_one(LessonTree)
        tree.focus()
        tree.show_day("1.4")
        await pilot.press("enter")
        await pilot.pause()
        assert session.lesson.id == "1.4" and "Day 1.4" in status_text(app)


async def test_progress_screen_shows_the_table_and_the_active_time_chart(ws, session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        assert isinstance(app.screen, ProgressScreen)
        table = plain(app.screen.query_one("#progress-table", Static).content)
        assert "Week 1: From Matmul to Text" in table
        assert all(f"  1.{i}  " in table for i in range(1, 8))
        assert "Active" in table and "Mastery" in table and "Gaps" in table
        chart = plain(app.screen.query_one("#chart", Static).content)
        assert "1.1" in chart and "1.7" in chart
        assert "active time" in chart and "check runs" in chart
        ideas = plain(app.screen.query_one("#ideas", Static).content)
        assert "No idea met yet" in ideas and "Review queue (0 due)" in ideas
        await pilot.press("c")  # app keys other than q do nothing over this screen
        assert isinstance(app.screen, ProgressScreen) and app.check_runs == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, ProgressScreen)
        await pilot.press("h")
        await settle(pilot)
        await pilot.press("t")  # shown again with fresh numbers
        table = plain(app.screen.query_one("#progress-table", Static).content)
        row = next(x for x in table.splitlines() if "  1.1  " in x)
        assert row.split()[-4] == "1"  # …, Runs, Hints, Mastery icon and label, Gaps
        ideas = plain(app.screen.query_one("#ideas", Static).content)  # day 1.1 started
        assert "met ·" in ideas and "📖 Learning:" in ideas and "softmax-axis" in ideas
        assert "Most frequent mistakes" in ideas and "none diagnosed" in ideas


# --------------------------------------------------------------------------- saving / quitting


async def test_q_writes_the_session_doc_and_tracker_and_releases_the_lock(ws, session):
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
    assert app.return_value == 0
    assert not session.store.is_open
    assert (ws / "sessions" / "week1" / "day1.1-attention.md").is_file()
    assert (ws / "progress" / "tiny-llm-tracker.md").is_file()
    from tutor.records.state import read_state

    state, _ = read_state(ws)
    # the one session the app held was ended and written as it was held
    assert len(state["sessions"]) == 1 and state["sessions"][-1]["end"] is not None
    assert state["sessions"] == session.store.sessions


async def test_documents_are_saved_periodically(ws, session):
    doc = ws / "sessions" / "week1" / "day1.1-attention.md"
    app = make_app(session, autosave_s=0.05)
    async with app.run_test(size=SIZE) as pilot:
        if doc.exists():
            doc.unlink()
        # a save may be under way as the doc goes: the one after it began after the unlink
        before = app.saves
        await wait_until(pilot, lambda: app.saves >= before + 2, 5, "a periodic save")
        assert doc.is_file()


# --------------------------------------------------------------------------- start-up


def test_state_locked_at_start_is_one_line_and_exit_2(ws):
    """A second tutor on the same workspace: one clear line, exit 2, no traceback (run in
    a pseudo-terminal, as `start` refuses to run without one)."""
    import pty

    from tutor.records.state import StateStore

    master, slave = pty.openpty()
    try:
        with StateStore(ws):
            r = subprocess.run([str(EXE), "start", "week1"], cwd=ws, stdin=slave, stdout=slave,
                               stderr=subprocess.PIPE, text=True, timeout=60,
                               env={**os.environ, "TINY_LLM_TUTOR_LLM": "offline"})
    finally:
        os.close(slave)
        os.close(master)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "already using these progress records" in lines[0], r.stderr


def test_start_without_a_terminal_refuses_instead_of_hanging(ws):
    r = subprocess.run([str(EXE), "start", "week1"], cwd=ws, capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "needs a terminal" in r.stderr


def test_the_app_never_imports_mlx_or_llm_sdks(ws):
    code = f"""
import asyncio, sys
from pathlib import Path
from tutor.engine import TutorSession
from tutor.tui.app import TutorApp

async def main():
    s = TutorSession(Path({str(ws)!r})).open("week1")
    app = TutorApp(s, blink=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("c")
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("q")
asyncio.run(main())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in
               ("mlx", "mlx_lm", "anthropic", "transformers", "numpy", "torch"))
print("HEAVY", heavy)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TINY_LLM_TUTOR_LLM": "offline"})
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout
