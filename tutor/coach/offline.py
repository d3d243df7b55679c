"""The offline coach: Socratic replies built from the lesson YAML, with no LLM and no
network, in a few milliseconds.

    coach = OfflineCoach()
    r = coach.reply(ctx, "why do we divide by sqrt(D)?")   # -> OfflineReply(text, asked, kind)
    OfflineCoach.remember(store, day, r.asked)              # persist what it asked
    coach.on_result(ctx)                                    # one line after a check run
    coach.hint_text(step)                                   # "Hint 2 of 4 for task 1 (...): ..."
    should_offer_hint(day_record, "sdpa-simple")            # same check failed 3 runs in a row?

Which concept, guiding question or pitfall a message is about comes from a BM25 ranking
of the lesson's items (:mod:`tutor.coach.match`; accuracy measured by
tests/test_coach_matching.py).

What it says, in order of precedence (``reply``):

1. An explicit request for the solution: a refusal that points at the hint ladder (the
   rung reached and how to climb), plus a question. Once the ladder is exhausted
   (``ctx.ladder_exhausted``) it points at rung 4's pseudo-code instead and asks the
   learner to turn it into code themselves. Never code, in either case.
2. The latest check run carries a diagnosis whose question has not been asked yet: that
   pitfall's question first.
3. "I'm stuck", "hint", "help", "no idea"...: the next guiding question of the task not
   asked yet (the best match for the message's words, else the next in order); when all
   were asked, a pointer to the next rung of the ladder.
4. "Why does it fail?" while a failing check reached a stub: where the task starts (the
   symbol and its file) and the task's first question.
5. "why", "what is", "explain"... about a concept of the lesson: the concept's short
   explanation, then a question back about that concept (see :meth:`_follow_up`): never
   the learner's own question reworded, never one about another topic while a relevant
   one is left.
6. A message naming something of the lesson ("mask", "NaN", "transpose"...): a described
   symptom gets its pitfall's question, anything else the best-matching question.
7. "It passes", "done": the explain-back prompt. A message about an error while checks
   fail: the latest result's nudge. Anything else: "what did you expect, what did you
   see?" and the next question.

Any reply but a refusal is led by the earlier mistakes this day tests again that were
not raised yet today (``ctx.recalls``; ids ``"idea:<id>"``): the app raises them when the
day opens, so this is how ``ask`` on the command line brings them back.

**Remembering.** Each reply lists the question ids it used in ``OfflineReply.asked``:
``"<task>:gq:<i>"`` for guiding question ``i`` (0-based) of a task, ``"pitfall:<id>"``
for a diagnosis question. The caller persists them with :meth:`OfflineCoach.remember`
(``StateStore.record_coach_asked``), which keeps them in
``day_record["coach"]["asked"]``; the coach also honours ``asked`` ids found in
``ctx.history`` messages (the chat file), so nothing is asked twice either way. The rung
reached is the ladder's own record (``hints_seen``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tutor.coach import ladder, match, recall
from tutor.coach.intent import is_solution_request
from tutor.statuses import FAILING

__all__ = ["OfflineCoach", "OfflineReply", "should_offer_hint", "asked_ids", "FAIL_STREAK"]

FAIL_STREAK = 3  # the same check failing this many runs in a row offers a hint


@dataclass
class OfflineReply:
    """A reply of the offline coach.

    ``text``: what the learner sees (plain text with `code spans` for identifiers only).
    ``asked``: ids of the questions this reply asked, for the caller to persist.
    ``kind``: "refusal", "ladder-top", "diagnosis", "stuck", "ladder", "concept", "topic",
    "results", "explain-back" or "open".
    """
    text: str
    asked: list[str] = field(default_factory=list)
    kind: str = "open"

    def __str__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- state


def asked_ids(day_record: dict | None, history: list[dict] | None = None) -> list[str]:
    """The question ids already asked on a day: the state's ``coach.asked`` plus any
    ``asked`` stored with the conversation's messages."""
    out: list[str] = []
    coach = (day_record or {}).get("coach")
    items = coach.get("asked") if isinstance(coach, dict) else None
    for x in items if isinstance(items, list) else ():
        if str(x) not in out:
            out.append(str(x))
    for m in history or ():
        a = m.get("asked") if isinstance(m, dict) else None
        for x in ([a] if isinstance(a, (str, int)) else a if isinstance(a, list) else ()):
            if str(x) not in out:
                out.append(str(x))
    return out


def fail_streak(day_record: dict | None, check_id: str) -> int:
    """How many of the latest recorded runs in a row had ``check_id`` failing."""
    n = 0
    for attempt in reversed((day_record or {}).get("attempts") or []):
        failing = attempt.get("failing") if isinstance(attempt, dict) else None
        if isinstance(failing, list) and check_id in failing:
            n += 1
        else:
            break
    return n


def should_offer_hint(day_record: dict | None, check_id: str, *, lesson=None,
                      streak: int = FAIL_STREAK) -> bool:
    """True when ``check_id`` has just failed ``streak`` runs in a row (and again at
    2×, 3×... so the offer is not repeated after every run), unless ``lesson`` is given
    and the ladder of the check's task is already exhausted."""
    n = fail_streak(day_record, check_id)
    if streak < 1 or n < streak or n % streak:
        return False
    if lesson is not None:
        task = lesson.task_of_check(check_id)
        if task is not None and ladder.next_hint(lesson, day_record, task) is None:
            return False
    return True


# --------------------------------------------------------------------------- matching

# A follow-up question counts as relevant when it scores at least this share of the best
# one: below it, the words it shares with the message are incidental ("the", "shape").
RELEVANT = 0.45
# A concept is what a message is about when it scores at least this share of the best
# item: a "why" about a pitfall's topic still gets the idea behind it explained.
CONCEPT_NEAR = 0.5
# Guiding questions of the task the learner is on win a near tie with other tasks' ones.
CURRENT_TASK = 1.2
# As a question back, a guiding question beats a pitfall's on the same topic: it leads
# towards the idea, while a pitfall question presumes a mistake the learner may not have.
PITFALL_FOLLOW_UP = 0.85


def _is_echo(message: str, question: str) -> bool:
    """True when ``question`` asks what the learner just asked: the message is a question
    and nearly every word of it (three or more) is in ``question``. Asking that back
    would be a reworded echo. (A described symptom sharing the words of the pitfall's
    question is a match, not an echo.)"""
    if not message.rstrip().endswith("?") and match.intent(message) not in ("concept", "question"):
        return False
    mine = set(match.tokens(message, expand=False))
    if len(mine) < 3:
        return False
    return len(mine & set(match.tokens(question, expand=False))) >= 0.75 * len(mine)


def _is_stub(check: dict) -> bool:
    """The check reached learner code that still raises NotImplementedError."""
    msg = str(check.get("message") or "").lower()
    return "not implemented" in msg or "notimplementederror" in msg or "still a stub" in msg


def _still_stub(code: str, symbol: str) -> bool:
    """``symbol``'s source in ``code`` (CoachContext.learner_code) still raises
    NotImplementedError: cut from its ``def``/``class`` line to the next top-level one."""
    m = re.search(rf"^(def|class) {re.escape(symbol)}\b.*?(?=^\S|\Z)", code or "", re.M | re.S)
    return bool(m) and "NotImplementedError" in m.group(0)


def _concept(lesson, key: str):
    return next((c for c in lesson.concepts if f"concept:{match.slug(c.name)}" == key), None)


# --------------------------------------------------------------------------- intents

_STUCK_RE = re.compile(
    r"\b(stuck|hint|hints|help|clue|lost|confused|no idea|don'?t know|dont understand|"
    r"don'?t get|where (do|should) i (start|begin)|what now|what next|next step|"
    r"how do i (start|begin|proceed)|give up|nudge)\b", re.I)
_CONCEPT_RE = re.compile(
    r"\b(why|what is|what are|what's|whats|what does|what do|explain|meaning|means|"
    r"how does|how do|how is|difference|purpose|point of|understand)\b", re.I)
_DONE_RE = re.compile(r"\b(it passes|passes now|all (checks )?pass|passed|all green|done|"
                      r"solved|it works|works now|got it|finished)\b", re.I)
_ERROR_RE = re.compile(r"\b(error|exception|traceback|fails?|failing|failed|mismatch|"
                       r"crash\w*|timeout|timed out|hangs?|nan|inf|wrong|broken)\b", re.I)


def _first_sentences(text: str, limit: int = 420) -> str:
    """The explanation's first paragraph, cut at a sentence end near ``limit``."""
    para = re.split(r"\n\s*\n", text.strip())[0]
    flat = " ".join(para.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind(": "))
    return (cut[:end + 1] if end > 80 else cut.rstrip() + " ...").strip()


def _check_label(c: dict) -> str:
    title = (c.get("title") or "").strip()
    cid = c.get("id") or "?"
    return f"`{cid}` ({title})" if title and title != cid else f"`{cid}`"


# --------------------------------------------------------------------------- the coach


class OfflineCoach:
    """Scripted Socratic coaching from the lesson; stateless (all state is in the
    context and the records), so one instance serves every day."""

    # -- state -------------------------------------------------------------------------
    @staticmethod
    def remember(store, day: str, asked) -> list[str]:
        """Persist question ids a reply used (``OfflineReply.asked``) in the day's state,
        ``day_record["coach"]["asked"]``. Returns the stored list."""
        if not asked:
            rec = store.day_record(day) or {}
            return asked_ids(rec)
        return store.record_coach_asked(day, list(asked) if not isinstance(asked, str) else [asked])

    should_offer_hint = staticmethod(should_offer_hint)

    # -- replies -----------------------------------------------------------------------
    def reply(self, ctx, message: str) -> OfflineReply:
        """A Socratic answer to ``message`` in the context ``ctx`` (a CoachContext), led by
        any earlier mistake this day tests again that was not raised yet today
        (misconception memory, :mod:`tutor.coach.recall`)."""
        r = self._reply(ctx, message)
        lead = recall.pending(ctx.recalls,
                              asked_ids(ctx.day_record, ctx.history))
        if lead and r.kind != "refusal":
            r.text = "\n\n".join([recall.recall_text(ctx.lesson, m) for m in lead] + [r.text])
            r.asked = [m.asked_id for m in lead] + list(r.asked)
        return r

    def _reply(self, ctx, message: str) -> OfflineReply:
        message = (message or "").strip()
        lesson, task = ctx.lesson, ctx.task
        asked = asked_ids(ctx.day_record, ctx.history)
        diag = ctx.diagnosis()
        pit_key = f"pitfall:{diag.get('pitfall')}" if diag and diag.get("pitfall") else None

        if not message:
            q, ids = self._next_question(lesson, task, asked, "")
            return OfflineReply(f"What would you like to look at? Here's a place to start: {q}",
                                ids, "open")

        if is_solution_request(message):
            return self._refusal(ctx, asked, message, diag, pit_key)

        if diag and pit_key and pit_key not in asked:
            return self._diagnosis_reply(ctx, diag, pit_key)

        if _STUCK_RE.search(message):
            return self._stuck(ctx, asked, message)

        if _DONE_RE.search(message) and self._all_pass(ctx):
            return OfflineReply(self._explain_back(lesson), [], "explain-back")

        errorish = _ERROR_RE.search(message) and ctx.failing_checks()
        if errorish and any(_is_stub(c) for c in ctx.failing_checks()):
            # "why does it fail?" on code not written yet has one answer: where to start
            r = self.result_reply(ctx, asked=asked)
            return OfflineReply(r.text, r.asked, "results")

        ranked = match.rank(lesson, message)
        top = ranked[0] if ranked else None
        concept = next(((it, s) for it, s in ranked if it.kind == "concept"), None)
        # An idea asked about ("why", "what is"): its explanation, when a concept is close
        # to the best match (a concept-shaped question about a pitfall's topic still is).
        if concept is not None and concept[1] >= CONCEPT_NEAR * top[1] and (
                _CONCEPT_RE.search(message) or match.intent(message) == "concept"):
            c = _concept(lesson, concept[0].key)
            # the explanation's words steer the question back to the idea just explained
            q, ids = self._follow_up(ctx, message, asked, about=f"{c.name} {c.explanation}")
            text = (f"{c.name}: {_first_sentences(c.explanation)}\n\n"
                    f"Now a question back to you: {q}")
            return OfflineReply(text, ids, "concept")

        if errorish:
            r = self.result_reply(ctx, asked=asked)
            return OfflineReply(r.text, r.asked, "results")

        if top is not None:
            it, how = top[0], match.intent(message) == "question"
            # a described symptom meets its pitfall; "how do I"/"which" gets a guiding
            # question, the lesson's own way of walking through a step
            if it.kind == "pitfall" and it.key not in asked and not how \
                    and not _is_echo(message, it.text):
                return OfflineReply(f"That sounds like a classic trap of this lesson. {it.text}",
                                    [it.key], "topic")
            q, ids = self._follow_up(ctx, message, asked,
                                     kinds=("question",) if how else ("question", "pitfall"))
            lead = f"That's about {_concept(lesson, concept[0].key).name.lower()}. " \
                if concept is not None and concept[1] >= CONCEPT_NEAR * top[1] else ""
            return OfflineReply(f"{lead}Let's reason it out together. {q}", ids, "topic")

        q, ids = self._next_question(lesson, task, asked, message)
        return OfflineReply("Start from what you expect: what should your code produce here, "
                            "and what do you actually see (a shape, a value, an error)? "
                            f"While you check, think about this: {q}", ids, "open")

    def _refusal(self, ctx, asked, message, diag, pit_key) -> OfflineReply:
        task, lesson = ctx.task, ctx.lesson
        n = len(task.hints)
        if ctx.ladder_exhausted:
            text = (f"You've climbed the whole hint ladder for task {task.id}, so let's walk "
                    "through it -- in words, not code; writing the lines is the part that "
                    f"makes it yours. Here is rung {n} again:\n\n{task.hints[-1].strip()}\n\n"
                    "Turn each numbered step into one line of your own, run the checks, and "
                    "tell me which step does not behave as you expect. Afterwards, explain "
                    "the solution back to me in your own words.")
            return OfflineReply(text, [], "ladder-top")
        rung = min(ctx.rung, n)
        where = (f"you've seen hint {rung} of {n}" if rung else f"you haven't opened any of the {n} hints yet")
        text = (f"I won't write the solution for you -- finding it yourself is what makes it "
                f"stick. For task {task.id} {where}: ask for the next one "
                f"(`tiny-llm-tutor hint day{lesson.id}`, or `h` in the tutor) and we'll climb one "
                "rung at a time; the last rung is the whole plan in plain-language pseudo-code.")
        if diag and pit_key:
            question, ids = self._pitfall_question(lesson, diag), [pit_key]
        else:
            question, ids = self._next_question(lesson, task, asked, message)
        return OfflineReply(f"{text}\n\nMeanwhile: {question}", ids, "refusal")

    def _diagnosis_reply(self, ctx, diag, pit_key) -> OfflineReply:
        c = next((c for c in ctx.failing_checks() if c.get("diagnosis")), {})
        q = self._pitfall_question(ctx.lesson, diag)
        lead = (f"Before anything else: {_check_label(c)} failed, and its output matches a "
                "mistake I know.") if c else "Your last check run matches a mistake I know."
        return OfflineReply(f"{lead} {q}", [pit_key], "diagnosis")

    def _stuck(self, ctx, asked, message) -> OfflineReply:
        lesson, task = ctx.lesson, ctx.task
        q, ids = self._next_question(lesson, task, asked, message, only_unasked=True)
        if q is not None:
            return OfflineReply(f"Being stuck is part of it -- let's take one small step. {q}",
                                ids, "stuck")
        step = ladder.next_hint(lesson, ctx.day_record, task)
        if step is not None:
            text = (f"We've been through all my questions for task {task.id}. Time for the "
                    f"hint ladder: hint {step.rung} of {step.rungs} is waiting "
                    f"(`tiny-llm-tutor hint day{lesson.id}`, or `h` in the tutor). After "
                    "reading it, tell me what you'd try first.")
            return OfflineReply(text, [], "ladder")
        text = (f"You've seen every hint for task {task.id}, including the pseudo-code. Take "
                "its steps one at a time: write the first step, print its shape on a tiny "
                "input, and compare it with the shape the pseudo-code names. Which step is the "
                "first one whose shape surprises you?")
        return OfflineReply(text, [], "ladder")

    # -- after a check run -------------------------------------------------------------
    def on_result(self, ctx) -> str:
        """What the coach says after a check run (the text of :meth:`result_reply`)."""
        return self.result_reply(ctx).text

    def result_reply(self, ctx, *, asked: list[str] | None = None) -> OfflineReply:
        """The diagnosis question when a check carries one; a nudge naming the failing
        check's message otherwise; a question about loops and kernels on a timeout or a
        crash; encouragement and an explain-back prompt when everything passes."""
        lesson, task = ctx.lesson, ctx.task
        result = ctx.latest_result
        asked = asked if asked is not None else asked_ids(ctx.day_record, ctx.history)
        if not result:
            return OfflineReply(f"No check run yet for day {lesson.id}. Run the checks "
                                f"(`tiny-llm-tutor check day{lesson.id}`) and we'll look at "
                                "what they say together.", [], "results")
        checks = [c for c in result.get("checks") or [] if isinstance(c, dict)]
        failing = [c for c in checks if c.get("status") in FAILING]
        if not failing:
            if any(c.get("status") == "pass" for c in checks):
                return OfflineReply(self._praise(ctx, checks) + " " + self._explain_back(lesson),
                                    [], "explain-back")
            reasons = {c.get("skip_reason") for c in checks if c.get("skip_reason")}
            why = f" ({'; '.join(sorted(r for r in reasons if r))})" if reasons else ""
            return OfflineReply(f"Nothing could run on this machine{why}. A skipped check never "
                                "counts as passed, so this day isn't done here yet.", [], "results")
        more = f" ({len(failing)} checks fail; let's take them one at a time.)" if len(failing) > 1 else ""
        diag_c = next((c for c in failing if isinstance(c.get("diagnosis"), dict)
                       and c["diagnosis"].get("pitfall")), None)
        if diag_c is not None:
            d = diag_c["diagnosis"]
            return OfflineReply(f"{_check_label(diag_c)} failed, and the output matches a "
                                f"mistake I know.{more} {self._pitfall_question(lesson, d)}",
                                [f"pitfall:{d['pitfall']}"], "diagnosis")
        c = failing[0]
        status, msg = c.get("status"), " ".join(str(c.get("message") or "").split())
        if len(msg) > 240:
            msg = msg[:239] + "…"
        check_task = lesson.task_of_check(c.get("id") or "") or task
        if status in ("timeout", "crashed"):
            what = "ran out of time" if status == "timeout" else "crashed the check process"
            text = (f"{_check_label(c)} {what}.{more} That usually means a loop that never "
                    "stops, a computation far larger than intended, or (in a kernel) an index "
                    "that runs past the end of a buffer. Which loop or kernel in your code "
                    "decides when to stop, and what tells it to stop?")
            return OfflineReply(text, [], "results")
        if _is_stub(c):
            return self._stub_reply(ctx, c, check_task, asked, more)
        q, ids = self._next_question(lesson, check_task, asked, f"{c.get('title', '')} {msg}")
        if msg and msg[-1] not in ".!?…":
            msg += "."
        said = f" It says: {msg}" if msg else ""
        verb = "could not run your code" if status == "error" else "failed"
        return OfflineReply(f"{_check_label(c)} {verb}.{said}{more} Which part of your code "
                            f"produces what that message talks about? {q}", ids, "results")

    def _praise(self, ctx, checks) -> str:
        n = sum(1 for c in checks if c.get("status") == "pass")
        skipped = sum(1 for c in checks if c.get("status") == "skipped")
        rec = ctx.day_record or {}
        fails = int(rec.get("fails_before_pass") or 0)
        s = (f"All {n} checks pass" if n > 1 else "The check passes") + \
            (f" ({skipped} skipped here)" if skipped else "") + "."
        if fails >= 3:
            s += f" That took {fails} failing runs first -- sticking with it is exactly how this gets learned."
        else:
            s += " Well done."
        return s

    def _explain_back(self, lesson) -> str:
        obj = next((o for o in lesson.objectives if o.lower().startswith("explain")), None)
        if obj:
            idea = obj[0].lower() + obj[1:]
            return f"Before you move on, put the key idea in your own words: {idea}"
        cq = next((q for q in lesson.concept_questions if q.when == "after"), None)
        if cq:
            return f"Before you move on, one question to check the idea behind it: {cq.prompt}"
        return "Before you move on, explain in your own words what today's code does and why."

    # -- hints -------------------------------------------------------------------------
    def hint_text(self, step: ladder.HintStep) -> str:
        """A rung, formatted: "Hint 2 of 4 for task 1 (title): ..."."""
        return ladder.hint_text(step)

    # -- helpers -----------------------------------------------------------------------
    def _pitfall_question(self, lesson, diag: dict) -> str:
        pid = diag.get("pitfall")
        p = lesson.pitfall(pid) if pid else None
        return (p.question if p else None) or diag.get("question") or \
            "Which assumption in your code does this output contradict?"

    def _stub_reply(self, ctx, c: dict, task, asked, more: str) -> OfflineReply:
        """A check that reached a stub says nothing about the learner's ideas yet, so
        the reply names where the task starts (symbol and file) and its first question."""
        msg = str(c.get("message") or "")
        symbols = task.symbols
        symbol = next((s for s in symbols if s in msg), None) or \
            next((s for s in symbols if _still_stub(ctx.learner_code, s)), None) or \
            (symbols[0] if symbols else None)
        path = next((e.path for e in task.edits if e.symbol == symbol), None)
        where = f"`{symbol}` in `{path}` is" if symbol and path else "your code is"
        questions = list(task.guiding_questions)
        i = next((i for i in range(len(questions)) if f"{task.id}:gq:{i}" not in asked), 0)
        q = questions[i] if questions else "What should this step produce for a tiny input?"
        text = (f"{_check_label(c)} can't check anything yet: {where} still the stub it "
                f"started as.{more} That's where task {task.id} ({task.title}) begins. "
                f"Before you write a line, think about this: {q}")
        return OfflineReply(text, [f"{task.id}:gq:{i}"] if questions else [], "results")

    def _follow_up(self, ctx, message: str, asked, *, about: str = "",
                   kinds=("question", "pitfall")):
        """The question to ask back after a topical message: the most relevant guiding
        question (of any task; the current task's win near ties) or pitfall question
        that was not asked yet and does not just repeat the message. When every relevant
        one was asked, the most relevant again; with nothing relevant, the task's next."""
        lesson, task = ctx.lesson, ctx.task
        weight = {"pitfall": PITFALL_FOLLOW_UP}
        scored = sorted(((it, s * weight.get(it.kind, 1.0)
                          * (CURRENT_TASK if it.task == task.id else 1.0))
                         for it, s in match.rank(lesson, message, kinds=kinds, extra=about)
                         if not _is_echo(message, it.text)), key=lambda x: -x[1])
        if not scored:
            return self._next_question(lesson, task, asked, "")
        relevant = [it for it, s in scored if s >= RELEVANT * scored[0][1]]
        pick = next((it for it in relevant if it.key not in asked), relevant[0])
        return pick.text, [pick.key]

    def _next_question(self, lesson, task, asked, message: str, *, only_unasked: bool = False):
        """The task's guiding question best matching ``message`` among those not asked
        yet (the next in order when none matches). When all were asked: None if
        ``only_unasked``, else the best match among all of them (a reminder)."""
        questions = list(task.guiding_questions)
        if not questions:
            return ("What do you expect this step to produce?", []) if not only_unasked else (None, [])
        keys = [f"{task.id}:gq:{i}" for i in range(len(questions))]
        ranked = [it for it, _ in match.rank(lesson, message, kinds=("question",))
                  if it.task == task.id]
        open_ = [i for i, k in enumerate(keys) if k not in asked]
        if not open_:
            if only_unasked:
                return None, []
            i = keys.index(ranked[0].key) if ranked else 0
            return questions[i], [keys[i]]
        best = next((it for it in ranked if it.key not in asked), None)
        i = keys.index(best.key) if best is not None else open_[0]
        return questions[i], [keys[i]]

    @staticmethod
    def _all_pass(ctx) -> bool:
        r = ctx.latest_result
        if r:
            return r.get("status") == "pass"
        return (ctx.day_record or {}).get("last_result") == "pass"
