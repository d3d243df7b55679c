"""The tutor's home: a Textual app over a :class:`tutor.engine.TutorSession`.

Structure (after Harlequin and oterm): blocking work (check runs, the coach, saving the
records) runs in thread workers that only ``post_message``; the handlers below own all
UI state; one ``Worker.StateChanged`` handler turns a worker's error into a visible
notice. Checks run in a child process (the app never imports mlx); the coach is built
lazily in a worker, so no LLM SDK sits on the start-up path.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from functools import partial
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, SuspendNotSupported
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState, get_current_worker

from tutor.tui.coachlink import CoachLink
from tutor.tui.messages import (CheckEvent, ChecksDone, CoachReply, HintShown, Measured,
                                Notice, Saved)
from tutor.tui.render import (editor_command, lesson_renderable, results_renderable,
                              summary_text)
from tutor.tui.watch import DEBOUNCE_S, POLL_S, FileWatcher
from tutor.tui.widgets import ChatLog, KeyBar, LessonTree, QuestionCard

AUTOSAVE_S = 60.0
THEME = "textual-dark"
SCROLL_KEYS = "j/k/PgUp/PgDn"
TAB_SCROLLERS = {"lesson-tab": "#lesson", "checks-tab": "#results", "coach-tab": "#chat-log"}


class TutorApp(App[int]):
    CSS_PATH = "tutor.tcss"
    TITLE = "tiny-llm-tutor"
    AUTO_FOCUS = "#tree"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("c", "check", "Check"),
        Binding("w", "watch", "Watch"),
        Binding("h", "hint", "Hint"),
        Binding("question_mark", "focus_chat", "Chat", key_display="?"),
        Binding("slash", "focus_chat", "Chat", key_display="/", show=False),
        Binding("a", "answer", "Answer"),
        Binding("i", "insight", "Insight"),
        Binding("e", "edit", "Edit"),
        Binding("l", "lesson", "Lesson"),
        Binding("n", "next", "Next"),
        Binding("p", "prev", "Prev"),
        Binding("t", "progress", "Progress"),
        # Spaced review: on the key bar, so a learner finds it without the README.
        Binding("r", "review", "Review"),
        # Priority: the active tab scrolls whatever has focus (the tree, an answer box);
        # check_action hands j, k, Home and End back to an input being typed in.
        Binding("pagedown", "scroll_tab('page_down')", "Scroll", key_display=SCROLL_KEYS,
                priority=True),
        Binding("pageup", "scroll_tab('page_up')", "Scroll", show=False, priority=True),
        Binding("home", "scroll_tab('home')", "Top", show=False, priority=True),
        Binding("end", "scroll_tab('end')", "Bottom", show=False, priority=True),
        Binding("j", "scroll_tab('down')", "Down", show=False, priority=True),
        Binding("k", "scroll_tab('up')", "Up", show=False, priority=True),
        Binding("q", "quit", "Quit"),
        Binding("escape", "cancel", "Cancel", key_display="esc"),
    ]

    def __init__(self, session, *, coach: CoachLink | None = None, blink: bool = True,
                 watch_roots: list[Path] | None = None, autosave_s: float = AUTOSAVE_S,
                 poll_s: float = POLL_S, debounce_s: float = DEBOUNCE_S) -> None:
        super().__init__()
        # No sliding tab underlines: keys answer faster on a busy machine, and screenshots
        # do not depend on an animation's timing.
        self.animation_level = "none"
        # The theme is the app's, not the environment's (TEXTUAL_THEME would change every
        # colour of the snapshots); set before the first style pass, so it costs nothing.
        self.theme = THEME
        self.session = session
        self.coach = coach or CoachLink(session)
        self.blink = blink
        ws = Path(session.workspace)
        self.watch_roots = watch_roots or [ws / "impl", ws / "kernels"]
        self.autosave_s = autosave_s
        self.poll_s = poll_s
        self.debounce_s = debounce_s
        self.watcher: FileWatcher | None = None
        self.watching = False
        self.checking = False
        self.check_runs = 0  # started by this app (for tests and the status line)
        self.saves = 0  # periodic saves done
        self.reveals = 0  # question cards scrolled into view (tests wait on it)
        self.questions_ready = False  # the day's question cards are mounted
        self._cards_lock = asyncio.Lock()
        self._cancel: threading.Event | None = None
        self._live: dict | None = None  # the running check: day, plan, done, running
        self._cancelled: dict | None = None  # the last cancelled run (shown until the next)
        self._rerun = False  # watch saw a save while a check was running
        self._after_shown: tuple[str, bool] | None = None
        self._reply_md = None  # the coach's reply being streamed (a Markdown widget)
        self._reply_text = ""
        self._stream = None
        # Each question is a numbered request; the chat shows only the one in flight, so
        # a stopped reply's late chunks (already posted by its thread) cannot mix in.
        self._ask_seq = 0
        self._asking: int | None = None  # the request whose reply is being shown
        self._ask_job: Worker | None = None
        self.errors: list[str] = []  # worker errors shown to the learner
        self.measurements = 0  # measurements shown on predict cards (tests wait on it)
        self.reviews_done = 0  # review items answered in the review screen (tests)
        self._measure_jobs: dict[Worker, tuple[str, str]] = {}  # worker -> (day, qid)
        self._measure_cancel = threading.Event()  # set on quit: no child outlives the app

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="body"):
            yield LessonTree(self.session.course, id="tree")
            with TabbedContent(id="tabs", initial="lesson-tab"):
                with TabPane("Lesson", id="lesson-tab"):
                    with VerticalScroll(id="lesson"):
                        yield Static(id="lesson-md")
                        yield Static(id="before-title", classes="section-title")
                        yield Vertical(id="before-questions")
                with TabPane("Checks", id="checks-tab"):
                    with VerticalScroll(id="results"):
                        yield Static(id="results-body")
                        yield Static(id="standing")
                        yield Static(id="after-title", classes="section-title")
                        yield Vertical(id="after-questions")
                with TabPane("Coach", id="coach-tab"):
                    yield ChatLog(id="chat-log")
        yield Input(placeholder="Ask the coach… (? or / here · Enter sends · Esc leaves)",
                    id="chat-input")
        yield KeyBar(id="keys")

    async def on_mount(self) -> None:
        self._q("#chat-input", Input).cursor_blink = self.blink
        tree = self._q(LessonTree)
        tree.build(self._icons())
        await self.show_day(first_paint=True)
        self._q(ChatLog).add_notice(
            "Ask the coach anything about today's lesson below, or press h to climb the "
            "hint ladder one rung.")
        self._raise_recalls()
        self.set_interval(self.autosave_s, self._autosave)
        self._watch_timer = self.set_interval(self.poll_s, self._watch_tick, pause=True)
        if self.session.notice:
            self.notify(self.session.notice, severity="warning", timeout=10)
        if self.session.route_note:  # `start day2.3`: which lesson covers the book's day
            self.notify(self.session.route_note, timeout=10)
        self._announce_review()
        pending = self.session.insight_to_ask()  # e.g. the day passed with `check` meanwhile
        if pending:
            self.call_after_refresh(self.ask_insight, pending)

    # ------------------------------------------------------------------ rendering

    @property
    def _main(self):
        """The main screen (handlers update it even while another screen is on top)."""
        return self.screen_stack[0]

    def _q(self, selector, expect_type=None):
        if expect_type is None:
            return self._main.query_one(selector)
        return self._main.query_one(selector, expect_type)

    def _icons(self) -> dict[str, str]:
        with self.session.lock:
            return {d: self.session.status(d).icon for d in self.session.course.day_ids}

    def refresh_status(self) -> None:
        s = self.session
        with s.lock:
            a = s.assessment()
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" Day {s.lesson.id} ", style="bold reverse")
        t.append(f" {a.status.icon} {a.status.label}")
        if a.mastery:
            t.append(f" · {a.mastery.icon} {a.mastery.label}")
        if self.watching:
            pending = self.watcher is not None and self.watcher.pending
            t.append("  ◉ watch" + (": change seen" if pending else ""), style="bold green")
        if self.checking:
            live = self._live or {}
            plan = live.get("plan") or []
            n = len(live.get("done") or {})
            what = f" {n}/{len(plan)}" if plan else ""
            t.append(f"  ⟳ checking day {live.get('day', '?')}{what} · Esc cancels",
                     style="bold yellow")
        t.append(f"  {s.lesson.title}", style="dim")
        self._q("#status", Static).update(t, layout=False)  # one line: no re-layout
        self.refresh_keys()

    def refresh_keys(self) -> None:
        for bar in self.screen.query(KeyBar):
            bar.refresh_keys()


    def on_descendant_focus(self, event) -> None:
        self.refresh_keys()

    def on_descendant_blur(self, event) -> None:
        self.refresh_keys()

    def refresh_tree(self) -> None:
        self._q(LessonTree).update_icons(self._icons())

    async def show_day(self, first_paint: bool = False) -> None:
        """Render the current day: lesson, before-questions, results, after-questions."""
        lesson = self.session.lesson
        self.questions_ready = False
        if getattr(self, "_shown_day", None) not in (None, lesson.id):
            self._q(ChatLog).add_notice(f"— Day {lesson.id}: {lesson.title} —")
            self._raise_recalls()
        self._shown_day = lesson.id
        self._cancelled = None
        self._q("#lesson-md", Static).update(lesson_renderable(lesson))
        self._q("#lesson", VerticalScroll).scroll_home(animate=False)
        self._after_shown = None
        self.render_results()
        tree = self._q(LessonTree)
        tree.update_icons(self._icons())
        tree.show_day(lesson.id)
        self.refresh_status()
        if first_paint:  # the questions sit below the lesson: mount them after the paint
            self.call_after_refresh(self._show_questions)
        else:
            await self._show_questions()

    def _raise_recalls(self) -> None:
        """An earlier day's diagnosed mistake that this day tests again: the coach asks
        about it before the learner codes (misconception memory, tutor.coach.recall)."""
        recalls = self.session.pending_recalls()
        for _mistake, question in recalls:
            self._q(ChatLog).add_reply(question, classes="reply coach-note")
        try:  # once a day: the lesson's "Before you code" keeps them in view after that
            self.session.recalls_raised([m for m, _ in recalls])
        except Exception as e:  # noqa: BLE001 - a note not kept must not stop the day
            self.notify(f"Could not record the coach's question: {e}", severity="warning")

    async def _show_questions(self) -> None:
        async with self._cards_lock:  # a key during the first frame must not mount twice
            if not self.questions_ready:  # else an early `a` has mounted them already
                await self._show_questions_now()

    async def _show_questions_now(self) -> None:
        with self.session.lock:
            rec = self.session.day_record() or {}
            before = self.session.concept_questions("before")
        concepts = rec.get("concepts") or {}
        title = self._q("#before-title", Static)
        box = self._q("#before-questions", Vertical)
        recalls = [Static(Text("↺ " + question), classes="recall")
                   for _mistake, question in self.session.recalls()]
        await box.remove_children()
        if before or recalls:
            title.update(Text("Before you code: check your understanding", style="bold"))
            title.display = True
            await box.mount_all(recalls + [self._card(q, concepts) for q in before])
        else:
            title.display = False
        await self.render_after_questions()
        self.questions_ready = True

    def _card(self, q, concepts: dict) -> QuestionCard:
        measured = None
        if q.kind == "predict":  # the last measurement, as the records keep it
            p = self.session.prediction(q.id) or {}
            # only once they have answered: a number measured first (`measure` in a shell)
            # would give the answer away on a card still waiting for its prediction
            if p.get("measured_at") and p.get("predicted_at"):
                measured = (_measurement_line(p, q.unit), p.get("status") == "measured")
        return QuestionCard(q, done=bool((concepts.get(q.id) or {}).get("last_correct")),
                            blink=self.blink, measured=measured)

    def render_results(self) -> None:
        s = self.session
        day = s.lesson.id
        body = self._q("#results-body", Static)
        standing = self._q("#standing", Static)
        if self._live is not None and self._live["day"] == day:
            body.update(results_renderable(None, self._live["plan"], self._live["done"],
                                           self._live["running"]))
            standing.update("")
            return
        with s.lock:
            result = s.latest_result()
            rec = s.day_record() or {}
            a = s.assessment()
        if self._cancelled is not None and self._cancelled.get("day") == day:
            body.update(_cancelled_view(self._cancelled))
        elif result is not None:
            body.update(results_renderable(result))
        else:
            body.update(_no_run_yet(rec))
        lines = Text()
        if a.passing:
            lines.append(f"🎉 Day {day} passes.", style="bold green")
            lines.append("\n")
        if a.mastery:
            lines.append(f"Mastery: {a.mastery.icon} {a.mastery.label}", style="bold")
            if a.missing:
                lines.append(" · next: " + "; ".join(m.replace("`", "") for m in a.missing))
        standing.update(lines)

    async def render_after_questions(self) -> None:
        s = self.session
        with s.lock:
            passing = s.assessment().passing
            rec = s.day_record() or {}
            after = s.concept_questions("after")
        key = (s.lesson.id, passing)
        if self._after_shown == key:
            return
        self._after_shown = key
        box = self._q("#after-questions", Vertical)
        title = self._q("#after-title", Static)
        await box.remove_children()
        if passing and after:
            concepts = rec.get("concepts") or {}
            title.update(Text("Now that it works: check your understanding", style="bold"))
            title.display = True
            await box.mount_all([self._card(q, concepts) for q in after])
        else:
            title.display = False

    # ------------------------------------------------------------------ checks

    def action_check(self) -> None:
        self._q(TabbedContent).active = "checks-tab"
        if self.checking:
            self.notify("A check run is already going (Esc cancels it).")
            return
        self.start_checks()

    def start_checks(self) -> None:
        day = self.session.lesson.id
        self.checking = True
        self.check_runs += 1
        self._cancelled = None
        self._cancel = threading.Event()
        self._live = {"day": day, "plan": None, "done": {}, "running": None}
        self.render_results()
        self.refresh_status()
        self._checks_worker(day, self._cancel)

    @work(thread=True, group="checks", exit_on_error=False, description="the check run")
    def _checks_worker(self, day: str, cancel: threading.Event) -> None:
        def on_event(ev: dict) -> None:
            self.post_message(CheckEvent(day, ev))

        result = self.session.run_checks(on_event=on_event, cancel=cancel)
        cancelled = cancel.is_set()
        text = None if cancelled else self.coach.after_checks(result)
        self.post_message(ChecksDone(result.get("day", day), result, cancelled, text))
        for notice in (self.session.take_notice(), self.coach.take_notice()):
            if notice:
                self.post_message(Notice(notice, "warning"))

    def on_check_event(self, msg: CheckEvent) -> None:
        live = self._live
        if live is None or live["day"] != msg.day:
            return
        ev = msg.event
        kind = ev.get("event")
        if kind == "plan":
            live["plan"] = ev.get("checks") or []
        elif kind == "start":
            live["running"] = ev.get("id")
        elif kind == "result":
            live["done"][ev.get("id")] = ev
            live["running"] = None
        if msg.day == self.session.lesson.id:
            self.render_results()
        self.refresh_status()

    async def on_checks_done(self, msg: ChecksDone) -> None:
        self.checking = False
        self._live = None
        self._cancel = None
        result = msg.result
        here = msg.day == self.session.lesson.id
        if msg.cancelled:
            self._cancelled = result
            self.notify("Check run cancelled: the check process was stopped.")
        else:
            self._cancelled = None
            if not here:
                self.notify(f"Day {msg.day}: {summary_text(result).plain}")
            if msg.coach_text:
                self._q(ChatLog).add_reply(msg.coach_text, classes="reply coach-note")
        self.render_results()
        self.refresh_tree()
        self.refresh_status()
        if here:
            async with self._cards_lock:
                await self.render_after_questions()
        passed = not msg.cancelled and result.get("status") == "pass"
        if passed and here and self.session.insight_due(msg.day):
            self.ask_insight(msg.day)
        if self._rerun and self.watching:
            self._rerun = False
            self.start_checks()

    def ask_insight(self, day: str) -> None:
        """The celebration and the key-idea prompt (the engine says when it is due)."""
        from tutor.tui.screens import InsightScreen

        lesson = self.session.course.lesson(day)
        self.bell()
        self.push_screen(InsightScreen(lesson.id, lesson.title, blink=self.blink),
                         callback=partial(self._insight_given, lesson.id, True))

    def _insight_given(self, day: str, passed: bool, text: str | None) -> None:
        if not text:
            if passed:  # dismissing the after-pass prompt is an answer too: never ask again
                self.session.skip_insight(day)
            self.notify("No insight recorded. Press i when you are ready to write one.")
            return
        self.session.insight(text, day)
        self._q(ChatLog).add_notice(f"Your insight is in the session notes: “{text}”")
        self.notify("Saved to Key Insights in your session notes.")
        self.render_results()
        self.refresh_tree()
        self.refresh_status()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Over the progress screen or the insight prompt only quitting works; Esc shows
        in the footer only when it does something."""
        if len(self.screen_stack) > 1 and action not in ("quit",):
            return False
        if action == "cancel":
            return bool(self.checking or isinstance(self.focused, Input)
                        or self._asking is not None)
        if action == "scroll_tab" and isinstance(self.focused, Input):
            return parameters[:1] in (("page_down",), ("page_up",))  # the rest edit text
        return True

    def action_scroll_tab(self, how: str) -> None:
        w = self._q(TAB_SCROLLERS[self._q(TabbedContent).active])
        {"page_down": w.scroll_page_down, "page_up": w.scroll_page_up,
         "home": w.scroll_home, "end": w.scroll_end,
         "down": w.scroll_down, "up": w.scroll_up}[how](animate=False)

    async def action_cancel(self) -> None:
        if self.checking and self._cancel is not None:
            self._cancel.set()
            self.notify("Cancelling the check run…")
            return
        if self._asking is not None:
            await self._stop_reply("(reply interrupted)")
            return
        if isinstance(self.focused, Input):
            self._main.set_focus(self._q(LessonTree))  # now, not after the next refresh

    # ------------------------------------------------------------------ watch mode

    def action_watch(self) -> None:
        self.watching = not self.watching
        if self.watching:
            self.watcher = FileWatcher(self.watch_roots, self.debounce_s)
            self._watch_timer.resume()
            self.notify("Watch mode on: saving a file in impl/ or kernels/ runs the checks.")
        else:
            self._watch_timer.pause()
            self._rerun = False
            self.notify("Watch mode off.")
        self.refresh_status()

    def _watch_tick(self) -> None:
        if not self.watching or self.watcher is None:
            return
        was_pending = self.watcher.pending
        fire = self.watcher.poll(time.monotonic())
        if fire:
            names = sorted(Path(p).name for p in self.watcher.changed)
            if self.checking:
                self._rerun = True
            else:
                self.notify(f"Saved: {', '.join(names[:3])} · running the checks")
                self._q(TabbedContent).active = "checks-tab"
                self.start_checks()
        if fire or was_pending != self.watcher.pending:
            self.refresh_status()

    # ------------------------------------------------------------------ coach

    def action_hint(self) -> None:
        self._q(TabbedContent).active = "coach-tab"
        self._hint_worker()

    @work(thread=True, group="hint", exit_on_error=False, description="the hint")
    def _hint_worker(self) -> None:
        self.coach.post_hint(self.post_message)

    def on_hint_shown(self, msg: HintShown) -> None:
        log = self._q(ChatLog)
        if msg.reply is None:
            log.add_notice("That was the last rung of the hint ladder for this task. Ask the "
                           "coach a question (?), or re-read the task in the Lesson tab.")
        elif msg.reply.kind == "notice":
            log.add_notice(msg.reply.text)
        else:
            log.add_reply(msg.reply.text, classes="reply hint")
        self.refresh_tree()
        self.refresh_status()

    def action_focus_chat(self) -> None:
        # Focus at once (Widget.focus waits for the next refresh), then show the chat.
        self._main.set_focus(self._q("#chat-input", Input))
        self._q(TabbedContent).active = "coach-tab"

    @on(Input.Submitted, "#chat-input")
    async def _chat_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text:
            return
        event.input.clear()
        # Back to the keys: the next c or t is a command, not the start of another question.
        self._main.set_focus(self._q(LessonTree))
        self._q(TabbedContent).active = "coach-tab"
        if self._asking is not None:
            await self._stop_reply("(reply stopped: you asked another question)")
        self._q(ChatLog).add_learner(text)
        self._reply_md = None
        self._reply_text = ""
        self._ask_seq += 1
        self._asking = self._ask_seq
        self._ask_job = self._ask_worker(text, self._ask_seq)

    async def _stop_reply(self, note: str) -> None:
        """Stop the reply in flight: its worker is cancelled (it closes the coach's stream
        at its next chunk) and anything it still posts is dropped as stale."""
        job, self._ask_job, self._asking = self._ask_job, None, None
        if job is not None:
            job.cancel()
        await self._finish_reply(interrupted=True, note=note)

    @work(thread=True, exclusive=True, group="coach", exit_on_error=False,
          description="the coach's reply")
    def _ask_worker(self, text: str, request: int) -> None:
        worker = get_current_worker()
        self.coach.post_reply(text, request, self.post_message, lambda: worker.is_cancelled)

    async def on_coach_reply(self, msg: CoachReply) -> None:
        if msg.request != self._asking:
            return  # from a reply already stopped (or finished)
        r = msg.reply
        log = self._q(ChatLog)
        if r.kind == "notice":
            log.add_notice(r.text)
        elif r.kind == "text" and r.text:
            if self._reply_md is None:
                self._reply_md = log.add_reply("", classes="reply")
                from textual.widgets import Markdown

                self._stream = Markdown.get_stream(self._reply_md)
            self._reply_text += r.text
            await self._stream.write(r.text)
            log.scroll_end(animate=False)
        if r.kind == "done":
            self._asking = self._ask_job = None
            await self._finish_reply(interrupted=r.interrupted, final=r.text)

    async def _finish_reply(self, interrupted: bool = False, final: str = "",
                            note: str = "(reply interrupted)") -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        text = final or self._reply_text
        if self._reply_md is None and text:
            self._reply_md = self._q(ChatLog).add_reply("", classes="reply")
        if self._reply_md is not None:
            await self._reply_md.update(text)
        if interrupted:
            self._q(ChatLog).add_notice(note)
        self._reply_md = None
        self._reply_text = ""
        self.refresh_keys()  # Esc stops a reply only while one is coming

    # ------------------------------------------------------------------ questions

    @on(QuestionCard.Answered)
    def _answered(self, msg: QuestionCard.Answered) -> None:
        card, q = msg.card, msg.card.question
        g = self.session.answer(q.id, msg.text)
        card.show_grade(g)
        self._reveal(card)  # the feedback grows the card: keep it on screen
        if g.correct:
            # Focus moves first, at once; only then is the answered box disabled. Disabling
            # a focused box blurs it, and the focus Textual then picks on its own used to
            # land after a later Esc, so the next `c` was typed into an answer box.
            self._focus_next_question(skip=card)
            card.close()
        if q.kind == "predict":
            self._measure(card)
        self.render_results()
        self.refresh_tree()
        self.refresh_status()

    def _open_questions(self) -> list[Input]:
        return [i for i in self._main.query(".answer").results(Input) if not i.disabled]

    def _focus_next_question(self, skip=None) -> None:
        tabs = self._q(TabbedContent)
        for box in self._open_questions():
            pane = "checks-tab" if _in_after(box) else "lesson-tab"
            if pane == tabs.active and box.parent is not skip:
                # _reveal scrolls, to the whole card; set_focus acts now (Widget.focus
                # waits for the next refresh, and a key could come first).
                self._main.set_focus(box, scroll_visible=False)
                self._reveal(box.parent)
                return
        self._main.set_focus(self._q(LessonTree))

    # ------------------------------------------------------------------ predict, then measure

    def _measure(self, card: QuestionCard) -> None:
        """Measure the learner's engine for a predict card, in a worker (a child process
        runs their code); the card says so until the number comes back."""
        day, qid = self.session.lesson.id, card.question.id
        if (day, qid) in self._measure_jobs.values():
            return  # one measurement of a question at a time; it shows the latest answer
        card.show_measuring()
        job = self._measure_worker(day, qid)
        self._measure_jobs[job] = (day, qid)

    @work(thread=True, group="measure", exit_on_error=False,
          description="measuring your engine")
    def _measure_worker(self, day: str, qid: str) -> None:
        (result,) = self.session.measure_questions([qid], day=day, cancel=self._measure_cancel)
        self.post_message(Measured(day, qid, result))
        notice = self.session.take_notice()
        if notice:
            self.post_message(Notice(notice, "warning"))

    def on_measured(self, msg: Measured) -> None:
        for job, key in list(self._measure_jobs.items()):
            if key == (msg.day, msg.qid):
                del self._measure_jobs[job]
        r = msg.result
        line = _measurement_line({"prediction": r.get("prediction"), "measured": r.get("value"),
                                  "status": r.get("status"), "reason": r.get("reason")},
                                 r.get("unit") or "")
        self._show_measurement(msg.day, msg.qid, line, r.get("status") == "measured")

    def _show_measurement(self, day: str, qid: str, line: str, measured: bool) -> None:
        if day != self.session.lesson.id:  # the learner moved on: the records have it
            self.notify(f"Day {day}, {qid}: {line}", timeout=10)
        for card in self._main.query(QuestionCard):
            if card.question.id == qid and day == self.session.lesson.id:
                card.show_measurement(line, measured)
                self._reveal(card)
        self.measurements += 1

    async def action_answer(self) -> None:
        if not self.questions_ready:  # `a` before the cards' first mount: mount them now
            await self._show_questions()
        boxes = self._open_questions()
        if not boxes:
            self.notify("No open concept questions here right now.")
            return
        active = self._q(TabbedContent).active
        here = [b for b in boxes if (_in_after(b) == (active == "checks-tab"))]
        box = (here or boxes)[0]
        in_after = _in_after(box)
        self._q(TabbedContent).active = "checks-tab" if in_after else "lesson-tab"
        box.focus(scroll_visible=False)  # _reveal scrolls, to the whole card
        self._reveal(box.parent)

    def _reveal(self, card, tries: int = 5) -> None:
        """Scroll the whole card (question, answer box, feedback) into view once the
        layout has caught up: focusing the box alone would show just its one line, and a
        card mounted by this very key has no place on screen until a refresh or two."""
        def scroll() -> None:
            scroller = next((a for a in card.ancestors if isinstance(a, VerticalScroll)), None)
            if scroller is None:
                return
            if not card.region and tries:
                self._reveal(card, tries - 1)
                return
            scroller.scroll_to_widget(card, animate=False)
            self.reveals += 1
        self.call_after_refresh(scroll)

    def action_insight(self) -> None:
        from tutor.tui.screens import InsightScreen

        lesson = self.session.lesson
        with self.session.lock:
            rec = self.session.day_record(lesson.id) or {}
        attempts = rec.get("attempts") or []
        passed = bool(attempts) and attempts[-1].get("status") == "pass"  # the latest run
        self.push_screen(InsightScreen(lesson.id, lesson.title, blink=self.blink,
                                       passed=passed),
                         callback=partial(self._insight_given, lesson.id, passed))

    # ------------------------------------------------------------------ navigation

    async def action_next(self) -> None:
        await self._step(1)

    async def action_prev(self) -> None:
        await self._step(-1)

    async def _step(self, delta: int) -> None:
        with self.session.lock:
            moved = self.session.step(delta)
        if not moved:
            self.notify("This is the last day." if delta > 0 else "This is the first day.")
            return
        self._q(TabbedContent).active = "lesson-tab"
        await self.show_day()

    @on(LessonTree.DaySelected)
    async def _day_selected(self, event: LessonTree.DaySelected) -> None:
        day = event.day
        if not day or day == self.session.lesson.id:
            return
        with self.session.lock:
            self.session.go_to(day)
        self._q(TabbedContent).active = "lesson-tab"
        await self.show_day()

    def action_lesson(self) -> None:
        self._q(TabbedContent).active = "lesson-tab"

    def action_progress(self) -> None:
        from tutor.records.picture import mastery_picture
        from tutor.records.recorder import progress_rows
        from tutor.tui.screens import ProgressScreen

        with self.session.lock:  # from the records in memory: no disk on a key press
            weeks = progress_rows(self.session.course, self.session.store.state)
            picture = mastery_picture(self.session.course, self.session.store.state)
        if not self.is_screen_installed("progress"):
            self.install_screen(ProgressScreen(weeks, picture), "progress")
        else:
            self.get_screen("progress").show(weeks, picture)
        self.push_screen("progress")

    # ------------------------------------------------------------------ spaced review

    def _announce_review(self) -> None:
        """At the session's start: how many earlier mistakes are due for review today."""
        try:
            n = len(self.session.review_queue())
        except Exception as exc:  # noqa: BLE001 - a review problem never stops the tutor
            self.notify(f"Spaced review is unavailable: {exc}", severity="warning")
            return
        if n:  # a note in the coach's log, beside the recalls, not a toast over the lesson
            self._q(ChatLog).add_notice(
                f"{n} earlier mistake{'s' if n != 1 else ''} (spaced review) "
                f"{'are' if n != 1 else 'is'} due today: press r to review.")

    def action_review(self) -> None:
        from tutor.tui.review_screen import ReviewScreen

        items = self.session.review_queue()
        if not items:
            nxt = self.session.next_review()
            self.notify("Nothing to review today." + (
                f" The next item is due on {nxt:%a %d %b %Y}." if nxt else
                " Wrong concept answers and diagnosed mistakes come back here on later days."))
            return
        self.push_screen(ReviewScreen(self.session, items, blink=self.blink),
                         callback=self._reviewed)

    def _reviewed(self, answered: int | None) -> None:
        self.reviews_done += answered or 0
        left = len(self.session.review_queue())
        self.notify(f"Reviewed {answered or 0}." + (f" {left} more due today: press r again."
                                                    if left else ""))

    # ------------------------------------------------------------------ editor

    def action_edit(self) -> None:
        from tutor.workspace import edit_target

        s = self.session
        with s.lock:
            task = s.current_task()
        # The task's first (file, symbol) still as shipped, at the symbol; else its first.
        path, line = edit_target(s.workspace, task, impl=s.impl)
        self.open_in_editor(editor_command(path, line), path, line)
        s.worked()  # editing is working on the day; only looking at it is not
        self.refresh_tree()
        self.refresh_status()

    def open_in_editor(self, argv: list[str], path: Path, line: int) -> None:
        """Suspend the app, run the editor, resume (a seam for tests)."""
        try:
            with self.suspend():
                subprocess.run(argv, check=False)
        except SuspendNotSupported:
            self.notify(f"Open {path}:{line} in your editor (this terminal cannot suspend).")
        except OSError as exc:
            self.notify(f"Could not start the editor {argv[0]!r}: {exc.strerror or exc}. "
                        "Set $EDITOR.", severity="error")

    # ------------------------------------------------------------------ saving / quitting

    def _autosave(self) -> None:
        self._save_worker()

    @work(thread=True, group="save", exclusive=True, exit_on_error=False,
          description="saving your notes")
    def _save_worker(self) -> None:
        self.session.save_documents()
        self.post_message(Saved())
        notice = self.session.take_notice()
        if notice:
            self.post_message(Notice(notice, "warning"))

    def on_saved(self, msg: Saved) -> None:
        self.saves += 1

    async def action_quit(self) -> None:
        self._measure_cancel.set()
        if self._cancel is not None:
            self._cancel.set()
        try:
            self.session.close()
        except Exception as exc:  # never trap the learner in the app
            self.errors.append(f"saving on quit: {exc}")
        self.exit(0)

    # ------------------------------------------------------------------ errors

    def on_notice(self, msg: Notice) -> None:
        self.notify(msg.text, severity=msg.severity, timeout=8)
        self._q(ChatLog).add_notice(msg.text)

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a worker's failure becomes something the learner sees."""
        if event.state != WorkerState.ERROR:
            return
        worker = event.worker
        err = worker.error
        what = worker.description or worker.name or "a background task"
        text = f"Something went wrong in {what}: {type(err).__name__}: {err}"
        self.errors.append(text)
        if worker.group == "checks":
            self.checking = False
            self._live = None
            self._cancel = None
            self.render_results()
            self.refresh_status()
        elif worker.group == "coach" and worker is self._ask_job:
            self._asking = self._ask_job = None
            await self._finish_reply(interrupted=True)
        elif worker.group == "measure" and worker in self._measure_jobs:
            day, qid = self._measure_jobs.pop(worker)
            self._show_measurement(day, qid, f"could not measure: {type(err).__name__}: {err}",
                                   False)
        self.notify(text, severity="error", timeout=15)
        self._q(ChatLog).add_notice(text)


def _measurement_line(p: dict, unit: str) -> str:
    """A prediction beside its measurement (a records entry or a measurement result)."""
    from tutor.grading import measurement_line

    return measurement_line(p.get("prediction"), p.get("status") or "error", p.get("measured"),
                            unit, p.get("reason") or "")


def _in_after(widget) -> bool:
    return any(a.id == "after-questions" for a in widget.ancestors)


def _no_run_yet(rec: dict) -> Text:
    t = Text()
    t.append("No check run yet in this session. Press c to run the day's checks.", style="bold")
    attempts = rec.get("attempts") or []
    if attempts:
        last = attempts[-1]
        s = last.get("summary") or {}
        t.append(f"\n\nThe last recorded run: {s.get('pass', 0)} passed", style="dim")
        failing = last.get("failing") or []
        if failing:
            t.append(f", failing: {', '.join(failing)}", style="dim")
    return t


def _cancelled_view(result: dict):
    from rich.console import Group

    head = Text("⊘ The check run was cancelled (Esc); the check process was stopped. "
                "Press c to run again.", style="bold yellow")
    return Group(head, Text(""), results_renderable(result))
