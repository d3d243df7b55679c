"""The coach as the CLI and the TUI use it: one question in, a stream of events out.

    coach = Coach(session)                 # session: an open tutor.engine.TutorSession
    for ev in coach.ask("why is my output transposed?"):
        ...                                # ChatEvent(kind="text"|"notice"|"done", text, interrupted)
    coach.hint()                           # the next rung, or None at the top of the ladder
    coach.after_checks(result)             # a line after a check run

With an LLM backend configured, the reply streams through the solution-leak guardrail
(:class:`StreamGuard`): text is released only once the guardrail has seen it in context
-- prose as it arrives, a code block or run of code-looking lines only once it is
complete -- so a leaked implementation is never shown, not even for a moment. Any
backend failure yields a one-line notice, keeps the partial text (marked interrupted)
and lets the offline coach answer.

The conversation of each day lives in ``progress/chats/day<id>.json`` (atomic writes,
capped) and is resumed the next time; each question is also logged in the state, so it
lands in the session doc's Questions section.
"""

from __future__ import annotations

import json
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from tutor.coach.context import CoachContext, build_context
from tutor.coach.intent import is_solution_request  # noqa: F401 - also imported from here
from tutor.coach.llm import BackendError, make_backend
from tutor.coach.offline import OfflineCoach
from tutor.textcode import fences, open_fence
from tutor.textcode import may_be_code as looks_like_code  # also imported from here

MAX_STORED_MESSAGES = 200
MAX_STORED_CHARS = 8000  # per message in the chat file
MAX_SENT_MESSAGES = 20  # history sent to an LLM
MAX_SENT_CHARS = 24000
INTERRUPTED_MARK = "[reply interrupted]"
MIN_RELEASE = 16  # characters: fewer wait for the next delta (the filter runs less often)
CHAT_SCHEMA = "tiny-llm-tutor/chat"


@dataclass(frozen=True)
class ChatEvent:
    kind: str  # "text" (a piece of the reply) | "notice" (one line) | "done"
    text: str = ""
    interrupted: bool = False


# --------------------------------------------------------------------------- solution requests

def solution_allowed(ctx: CoachContext, text: str) -> bool:
    """CLAUDE.md's exception: the whole ladder climbed, the checks tried, and an explicit
    request for the solution."""
    if not ctx.ladder_exhausted or not is_solution_request(text):
        return False
    rec = ctx.day_record or {}
    tried = any(int((rec.get("checks") or {}).get(cid, {}).get("runs") or 0) > 0
                for cid in ctx.task.checks)
    return tried or int(rec.get("attempts_total") or 0) > 0


# --------------------------------------------------------------------------- stream guard

_KEYWORDS = {"def", "class", "import", "from", "return", "for", "while", "if", "elif", "else",
             "try", "except", "finally", "with", "lambda", "yield", "assert", "raise", "pass",
             "global", "nonlocal", "async", "await", "del", "print", "match", "case", "break",
             "continue"}
_LIST_PREFIX = re.compile(r"^ {0,3}(?:[-*+]\s+|\d+[.)]\s+|#{1,6}\s+|>\s*)?")
_PROSE_WORD = re.compile(r"^[^\W\d_][^\W_]*(?:['’-][^\W_]+)*[,.;:!?]?$")
_CODE_CHARS = re.compile(r"[`=(){}\[\]<>@\\;_|]")


def _prose_prefix(line: str) -> int:
    """How much of an unfinished line can be shown now: up to the last whole word before
    anything code-like, and only when the line opens with three plain words."""
    if line.startswith(("    ", "\t")) or line.lstrip().startswith(("`", "~")):
        return 0
    lead = _LIST_PREFIX.match(line).end()
    words = line[lead:].split()
    if len(words) < 4 or words[0].lower().rstrip(":") in _KEYWORDS:
        return 0  # the 4th word shows the first three are complete
    if not all(_PROSE_WORD.match(w) for w in words[:3]):
        return 0
    m = _CODE_CHARS.search(line, lead)
    cut = m.start() if m else len(line)
    space = max(line.rfind(" ", 0, cut), line.rfind("\t", 0, cut))
    return space + 1 if space > lead else 0


def safe_boundary(raw: str) -> int:
    """The end of the longest prefix of ``raw`` that holds no unfinished code: complete
    prose lines, complete fenced blocks and complete runs of code-looking lines (ended by
    a prose or blank line), plus the prose start of an unfinished last line. Fences are
    read as the guardrail reads them (:func:`tutor.textcode.fences`)."""
    pos = safe = 0
    pending = False
    lines = raw.split("\n")
    found = fences("\n".join(lines[:-1]).replace("\r", " "))
    fence_of = {i: f for f in found for i in range(f.start, f.end)}
    for i, line in enumerate(lines[:-1]):
        end = pos + len(line) + 1
        fence = fence_of.get(i)
        if fence is not None:
            if fence.closed and i == fence.end - 1:
                pending, safe = False, end
        elif looks_like_code(line):
            pending = True
        elif pending and not line.strip():
            pass  # a blank line inside code: the run may go on (a function's next paragraph)
        else:
            safe, pending = end, False
        pos = end
    still_open = any(not f.closed and f.end >= len(lines) - 1 for f in found)
    if not pending and lines[-1] and not still_open:
        safe = pos + _prose_prefix(lines[-1])
    return safe


class StreamGuard:
    """Releases a growing reply only through ``check`` (text -> filtered text), applied to
    the whole reply so far up to a safe boundary. What is released is never taken back;
    when the filter's view of earlier text changes, the rest waits for :meth:`finish`."""

    def __init__(self, check: Callable[[str], str]):
        self.check = check
        self.raw = ""
        self.released = ""
        self.committed = 0  # raw characters covered by ``released``
        self.held = False

    def feed(self, delta: str) -> str:
        self.raw += delta
        if self.held:
            return ""
        b = safe_boundary(self.raw)
        if b <= self.committed or (b - self.committed < MIN_RELEASE
                                   and "\n" not in self.raw[self.committed:b]):
            return ""
        cand = self.check(self.raw[:b])
        if not cand.startswith(self.released):
            self.held = True
            return ""
        out = cand[len(self.released):]
        self.released, self.committed = cand, b
        return out

    def finish(self) -> str:
        """The rest of the reply, filtered; an unclosed code fence is closed first."""
        raw = self.raw
        fence = open_fence(raw)
        if fence is not None:
            raw += ("" if raw.endswith("\n") else "\n") + fence
        final = self.check(raw) if raw.strip() else ""
        if final.startswith(self.released):
            out = final[len(self.released):]
        else:  # the filter changed its view of released text: filter the rest on its own
            rest = raw[self.committed:]
            out = self.check(rest) if rest.strip() else ""
            if out and self.released and not self.released.endswith("\n") \
                    and not out.startswith("\n"):
                out = "\n" + out
        self.released += out
        self.committed = len(self.raw)
        return out


# --------------------------------------------------------------------------- the coach


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def chat_path(workspace: Path, day: str) -> Path:
    return Path(workspace) / "progress" / "chats" / f"day{day}.json"


class Coach:
    """The Socratic coach of a :class:`tutor.engine.TutorSession` (already open)."""

    def __init__(self, session, config=None):
        from tutor.config import ConfigError, LLMConfig, load_llm_config

        self.session = session
        self.notice: str | None = None  # shown once, before the next reply
        if config is None:
            try:
                config = load_llm_config(session.workspace)
            except ConfigError as exc:
                config = LLMConfig()
                self.notice = f"{exc}; the offline coach answers."
        self.config = config
        self.backend = make_backend(config)
        self._offline: OfflineCoach | None = None
        self._claude_md: str | None = None
        self._chats: dict[str, list[dict]] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ parts

    @property
    def offline(self) -> OfflineCoach:
        if self._offline is None:
            self._offline = OfflineCoach()
        return self._offline

    @property
    def name(self) -> str:
        return self.config.describe()

    @property
    def day(self) -> str:
        return self.session.lesson.id

    def claude_md(self) -> str:
        if self._claude_md is None:
            from tutor import paths

            for p in (Path(self.session.workspace) / "CLAUDE.md", paths.template("CLAUDE.md")):
                try:
                    self._claude_md = p.read_text(encoding="utf-8")
                    break
                except OSError:
                    continue
            else:
                self._claude_md = ""
        return self._claude_md

    def context(self, task=None) -> CoachContext:
        return build_context(self.session, task=task, history=self.history())

    def _filter(self, ctx: CoachContext, allow_solution: bool) -> Callable[[str], str]:
        from tutor.coach.guardrail import filter_reply

        def check(text: str) -> str:  # the learner's own lines, quoted back, are no leak
            return filter_reply(text, lesson=ctx.lesson, task=ctx.task,
                                allow_solution=allow_solution,
                                learner_code=ctx.learner_code).text
        return check

    # ------------------------------------------------------------------ conversation

    def history(self, day: str | None = None) -> list[dict]:
        """The day's conversation: [{"role", "content", "time", ...}], oldest first."""
        day = day or self.day
        with self._lock:
            if day not in self._chats:
                self._chats[day] = self._load(day)
            return self._chats[day]

    def _load(self, day: str) -> list[dict]:
        path = chat_path(self.session.workspace, day)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            msgs = data.get("messages") if isinstance(data, dict) else None
            if not isinstance(msgs, list):
                raise ValueError("not a chat file")
            return [m for m in msgs if isinstance(m, dict) and m.get("role") in
                    ("user", "assistant") and isinstance(m.get("content"), str)]
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            try:  # keep a broken file for the learner, start afresh
                path.replace(path.with_name(path.name + ".bak"))
            except OSError:
                pass
            return []

    def _append(self, day: str, role: str, content: str, *, save: bool = True, **meta) -> None:
        content = content if len(content) <= MAX_STORED_CHARS else \
            content[:MAX_STORED_CHARS] + " ... (cut)"
        with self._lock:
            msgs = self.history(day)
            msgs.append({"role": role, "content": content, "time": _now(),
                         **{k: v for k, v in meta.items() if v not in (None, False, "")}})
            del msgs[:-MAX_STORED_MESSAGES]
            if save:
                self._save(day)

    def _save(self, day: str) -> None:
        from tutor.records.atomic import atomic_write_text

        with self._lock:
            doc = {"schema": CHAT_SCHEMA, "schema_version": 1, "day": day, "updated": _now(),
                   "messages": self.history(day)}
            try:
                atomic_write_text(chat_path(self.session.workspace, day),
                                  json.dumps(doc, ensure_ascii=False, indent=1) + "\n")
            except OSError:
                self.notice = self.notice or "The conversation could not be saved to progress/chats/."

    @contextmanager
    def _one_state_write(self):
        """Record several events in the state with one atomic write instead of one each."""
        with self.session.lock, self.session.store.batch():
            yield

    def clear(self) -> None:
        """Forget the current day's conversation (the chat file is emptied)."""
        from tutor.records.atomic import atomic_write_text

        with self._lock:
            self._chats[self.day] = []
            atomic_write_text(chat_path(self.session.workspace, self.day),
                              json.dumps({"schema": CHAT_SCHEMA, "schema_version": 1,
                                          "day": self.day, "updated": _now(),
                                          "messages": []}) + "\n")

    def _messages_for_llm(self, history: list[dict], question: str) -> list[dict]:
        msgs = []
        for m in history[-MAX_SENT_MESSAGES:]:
            text = m["content"]
            if m.get("interrupted"):
                text += f"\n{INTERRUPTED_MARK}"
            msgs.append({"role": m["role"], "content": text})
        msgs.append({"role": "user", "content": question})
        while len(msgs) > 1 and sum(len(m["content"]) for m in msgs) > MAX_SENT_CHARS:
            msgs.pop(0)
        return msgs

    # ------------------------------------------------------------------ actions

    def ask(self, text: str, *, record_question: bool = True) -> Iterator[ChatEvent]:
        """Answer one question: text events (pieces of the reply), maybe notices, then a
        final ``done`` event whose text is the whole reply as shown. ``record_question``
        False: the question is in the state already (a coach that failed logged it)."""
        text = (text or "").strip()
        if not text:
            yield ChatEvent("notice", "Ask a question first.")
            yield ChatEvent("done")
            return
        if self.notice:
            yield ChatEvent("notice", self.notice)
            self.notice = None
        day = self.day
        ctx = self.context()
        if self.backend is None:  # answer first, then write the records (two writes)
            yield from self._offline_reply(ctx, text, day,
                                           question=text if record_question else "")
            return
        if record_question:
            self.session.question(text)  # the state -> the session doc's Questions section
        self._append(day, "user", text, save=False)  # saved with the reply

        from tutor.coach.prompt import build_system_prompt

        allow = solution_allowed(ctx, text)
        system = build_system_prompt(ctx, self.claude_md(), allow_solution=allow)
        messages = self._messages_for_llm(ctx.history, text)
        guard = StreamGuard(self._filter(ctx, allow))
        try:
            for delta in self.backend.stream(system, messages):
                out = guard.feed(delta)
                if out:
                    yield ChatEvent("text", out)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the offline coach answers
            if isinstance(exc, BackendError):
                notice, rest = exc.notice, guard.finish()
            else:  # a fault of ours (the filter, say): nothing more goes through it
                notice, rest = f"The coach failed ({type(exc).__name__}).", ""
            if rest:
                yield ChatEvent("text", rest)
            shown = guard.released
            if shown.strip():
                self._append(day, "assistant", shown, source=self.backend.name,
                             interrupted=True, save=False)
            yield ChatEvent("notice", f"{notice} The offline coach answers.",
                            interrupted=bool(shown.strip()))
            yield from self._offline_reply(self.context(), text, day,
                                           interrupted=bool(shown.strip()), shown=shown)
            return
        rest = guard.finish()
        if rest:
            yield ChatEvent("text", rest)
        shown = guard.released
        if not shown.strip():
            yield ChatEvent("notice", f"{self.config.describe()} sent an empty reply. "
                                      "The offline coach answers.")
            yield from self._offline_reply(self.context(), text, day)
            return
        self._append(day, "assistant", shown, source=self.backend.name,
                     filtered=shown != guard.raw)
        yield ChatEvent("done", shown)

    def _offline_reply(self, ctx: CoachContext, text: str, day: str, *, question: str = "",
                       interrupted: bool = False, shown: str = "") -> Iterator[ChatEvent]:
        """The offline coach's answer; ``question`` is recorded too when it has not been
        yet (the offline path records everything after answering, in one write each)."""
        reply = self.offline.reply(ctx, text)
        body, asked = reply.text, reply.asked
        prefix = "\n\n" if shown and not shown.endswith("\n\n") else ""
        yield ChatEvent("text", prefix + body)
        with self._one_state_write():
            if question:
                self.session.question(question)
            self._remember(day, asked)
        if question:
            self._append(day, "user", question, save=False)
        self._append(day, "assistant", body, source="offline", asked=list(asked))
        yield ChatEvent("done", shown + prefix + body, interrupted=interrupted)

    def _remember(self, day: str, asked) -> None:
        """Let the offline coach keep what it asked in the state (so it never asks twice)."""
        if not asked:
            return
        try:
            with self.session.lock:
                self.offline.remember(self.session.store, day, asked)
        except Exception:  # noqa: BLE001 - the chat file keeps the ids as well
            pass

    def hint(self) -> ChatEvent | None:
        """Climb one rung of the current task's ladder (recorded); None at the top."""
        step = self.session.hint()
        if step is None:
            return None
        text = self.offline.hint_text(step)
        self._append(self.day, "assistant", text, source="hint", rung=step.rung)
        return ChatEvent("text", text)

    def after_checks(self, result: dict) -> str:
        """The coach's line after a check run (call it after ``session.run_checks``)."""
        from tutor.coach import ladder

        task = None
        if result is not None:
            task = ladder.current_task(self.session.lesson, result, self.session.day_record())
        ctx = self.context(task)
        if result is not None:
            ctx.latest_result = result
        reply = self.offline.result_reply(ctx)
        text = reply.text
        if text:
            self._remember(self.day, reply.asked)
            self._append(self.day, "assistant", text, source="checks", asked=list(reply.asked))
        return text
