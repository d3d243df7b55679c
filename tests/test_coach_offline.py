"""tutor.coach.offline: the scripted Socratic coach, its memory in the state, and the
hint ladder it formats."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from tutor.coach import ladder
from tutor.coach.context import CoachContext
from tutor.coach.guardrail import filter_reply
from tutor.coach.offline import (FAIL_STREAK, OfflineCoach, OfflineReply, asked_ids,
                                 should_offer_hint)
from tutor.curriculum import load_course
from tutor.engine import TutorSession
from tutor.records.state import MAX_COACH_ASKED, StateError, StateStore, validate_state

T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def course():
    return load_course()


@pytest.fixture
def coach():
    return OfflineCoach()


def ctx_for(lesson, task=None, *, rec=None, result=None, rung=0, history=None):
    return CoachContext(lesson=lesson, task=task or lesson.tasks[0], day_record=rec,
                        latest_result=result, learner_code="", rung=rung,
                        history=list(history or []))


def check(cid, status, *, pitfall=None, message="", task=1, title=None, skip=None):
    return {"id": cid, "task": task, "title": title or f"title of {cid}", "status": status,
            "message": message, "evidence": {},
            "diagnosis": {"pitfall": pitfall, "question": "?"} if pitfall else None,
            "skip_reason": skip}


def result(*checks):
    bad = any(c["status"] in ("fail", "error", "timeout", "crashed") for c in checks)
    ok = not bad and any(c["status"] == "pass" for c in checks)
    return {"day": "1.1", "impl": "impl", "status": "pass" if ok else "fail",
            "duration_s": 1.0, "checks": list(checks), "summary": {}}


# --------------------------------------------------------------------------- the ladder


def test_the_ladder_climbs_one_rung_at_a_time_and_stops_at_the_top(tmp_path, course, coach):
    with TutorSession(tmp_path, course=course).open("day1.1") as s:
        task = s.current_task()
        seen = []
        for _ in range(len(task.hints) + 3):
            step = s.hint()
            if step is None:
                break
            seen.append(step.rung)
            text = coach.hint_text(step)
            assert text.startswith(f"Hint {step.rung} of {len(task.hints)} for task {task.id} ")
            assert task.hints[step.rung - 1].strip() in text
            assert ("last rung" in text) == step.is_last
        assert seen == list(range(1, len(task.hints) + 1))
        assert s.hint() is None  # still at the top
        ctx = ctx_for(s.lesson, task, rec=s.day_record(), rung=ladder.rungs_seen(s.day_record(), task.id))
        assert ctx.ladder_exhausted


def test_hint_text_for_every_rung_of_every_task(course, coach):
    for lesson in course.lessons:
        for t in lesson.tasks:
            rec = {"hints_seen": []}
            for rung in range(1, len(t.hints) + 1):
                step = ladder.next_hint(lesson, rec, t)
                assert step is not None and step.rung == rung  # never skips
                text = coach.hint_text(step)
                assert f"Hint {rung} of {len(t.hints)} for task {t.id} ({t.title}):" in text
                assert filter_reply(text, lesson=lesson, task=t).removed == 0
                rec["hints_seen"].append(f"{t.id}:{rung}")
            assert ladder.next_hint(lesson, rec, t) is None


def test_should_offer_hint_after_repeated_failures_of_the_same_check(course):
    def rec_with(*failings):
        return {"attempts": [{"failing": list(f)} for f in failings], "hints_seen": []}

    lesson = course.lesson("1.1")
    assert not should_offer_hint(rec_with(["sdpa-simple"]), "sdpa-simple")
    assert not should_offer_hint(rec_with(["sdpa-simple"], ["sdpa-simple"]), "sdpa-simple")
    three = rec_with(["linear"], ["sdpa-simple"], ["sdpa-simple", "mha"], ["sdpa-simple"])
    assert FAIL_STREAK == 3 and should_offer_hint(three, "sdpa-simple")
    assert not should_offer_hint(three, "mha")
    four = rec_with(*[["sdpa-simple"]] * 4)
    assert not should_offer_hint(four, "sdpa-simple")  # not after every run
    assert should_offer_hint(rec_with(*[["sdpa-simple"]] * 6), "sdpa-simple")
    broken = rec_with(["sdpa-simple"], ["sdpa-simple"], [], ["sdpa-simple"], ["sdpa-simple"])
    assert not should_offer_hint(broken, "sdpa-simple")
    assert not should_offer_hint(None, "sdpa-simple") and not should_offer_hint({}, "x")
    # with the lesson: no offer once the check's task has no rung left
    top = dict(three, hints_seen=["1:1", "1:2", "1:3", "1:4"])
    assert should_offer_hint(three, "sdpa-simple", lesson=lesson)
    assert not should_offer_hint(top, "sdpa-simple", lesson=lesson)
    assert OfflineCoach.should_offer_hint(three, "sdpa-simple")


# --------------------------------------------------------------------------- replies


def test_a_diagnosis_question_comes_first(course, coach):
    lesson = course.lesson("1.1")
    res = result(check("sdpa-simple", "fail", pitfall="attn-missing-scale", message="max error 0.3"),
                 check("linear", "fail", task=2))
    pitfall_q = lesson.pitfall("attn-missing-scale").question
    for msg in ("hello", "I'm stuck", "what is a mask?", "hmm", "why?"):
        r = coach.reply(ctx_for(lesson, result=res), msg)
        assert r.kind == "diagnosis" and pitfall_q in r.text, msg
        assert r.asked == ["pitfall:attn-missing-scale"]
        assert "`sdpa-simple`" in r.text
    # once asked, the coach moves on to the message itself
    rec = {"coach": {"asked": ["pitfall:attn-missing-scale"]}}
    r = coach.reply(ctx_for(lesson, rec=rec, result=res), "I'm stuck")
    assert r.kind == "stuck" and pitfall_q not in r.text
    # the conversation's stored `asked` counts too
    hist = [{"role": "assistant", "content": "...", "asked": ["pitfall:attn-missing-scale"]}]
    assert coach.reply(ctx_for(lesson, result=res, history=hist), "I'm stuck").kind == "stuck"
    # and on_result asks it as well
    text = coach.on_result(ctx_for(lesson, result=res))
    assert pitfall_q in text and "2 checks fail" in text


@pytest.mark.parametrize("msg", [
    "just give me the code", "Can you write the function for me?", "show me the solution",
    "what's the answer", "please just write it", "give me the full implementation",
    "I want the solution", "paste the working code",
])
def test_solution_requests_are_refused_until_the_ladder_is_exhausted(course, coach, msg):
    lesson = course.lesson("1.3")
    task = lesson.task(2)
    for rung in range(len(task.hints)):
        r = coach.reply(ctx_for(lesson, task, rung=rung), msg)
        assert r.kind == "refusal", (msg, rung)
        assert "won't write" in r.text and f"hint day{lesson.id}" in r.text
        assert task.hints[-1].strip() not in r.text  # no pseudo-code before the top
        assert r.asked and r.asked[0].startswith(f"{task.id}:gq:")
        assert filter_reply(r.text, lesson=lesson, task=task).removed == 0
    r = coach.reply(ctx_for(lesson, task, rung=len(task.hints)), msg)
    assert r.kind == "ladder-top"
    assert task.hints[-1].strip() in r.text and "own words" in r.text
    assert filter_reply(r.text, lesson=lesson, task=task).removed == 0


def test_a_refusal_with_a_diagnosis_asks_the_pitfall_question(course, coach):
    lesson = course.lesson("1.2")
    res = result(check("rope-traditional", "fail", pitfall="rope-rotation-reversed"))
    r = coach.reply(ctx_for(lesson, result=res, rung=1), "just show me the code")
    assert r.kind == "refusal" and "hint 1 of 4" in r.text
    assert lesson.pitfall("rope-rotation-reversed").question in r.text
    assert r.asked == ["pitfall:rope-rotation-reversed"]


def test_stuck_walks_the_guiding_questions_then_points_at_the_ladder(course, coach):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    asked: list[str] = []
    seen = []
    for _ in task.guiding_questions:
        r = coach.reply(ctx_for(lesson, task, rec={"coach": {"asked": list(asked)}}), "I'm stuck")
        assert r.kind == "stuck" and len(r.asked) == 1
        assert r.asked[0] not in asked
        seen.append(r.asked[0])
        asked += r.asked
    assert sorted(seen) == sorted(f"1:gq:{i}" for i in range(len(task.guiding_questions)))
    assert seen[0] == "1:gq:0"  # "I'm stuck" alone starts at the beginning
    r = coach.reply(ctx_for(lesson, task, rec={"coach": {"asked": asked}}), "hint please")
    assert r.kind == "ladder" and "hint 1 of 4" in r.text
    rec = {"coach": {"asked": asked}, "hints_seen": ["1:1", "1:2", "1:3", "1:4"]}
    r = coach.reply(ctx_for(lesson, task, rec=rec, rung=4), "still stuck")
    assert r.kind == "ladder" and "every hint" in r.text


def test_topic_and_concept_questions(course, coach):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    r = coach.reply(ctx_for(lesson, task), "why do we divide by sqrt(D)?")
    assert r.kind == "concept" and r.text.startswith("Why divide by √D:")
    assert "question back" in r.text and r.asked == ["1:gq:2"]
    r = coach.reply(ctx_for(lesson, task), "how does the mask work?")
    assert r.kind == "concept" and "Additive masks" in r.text
    assert r.asked == ["1:gq:3"]  # the mask question
    r = coach.reply(ctx_for(lesson, task), "which axis for the softmax")
    assert r.asked == ["1:gq:1"]
    gqa = course.lesson("1.3")
    r = coach.reply(ctx_for(gqa, gqa.task(2)), "my first row is all NaN")
    assert "itself" in r.text  # the diagonal-masked trap
    r = coach.reply(ctx_for(lesson, task), "hello there")
    assert r.kind == "open" and "what do you actually see" in r.text


SCALE_QUESTIONS = {"1:gq:2", "pitfall:attn-missing-scale", "pitfall:attn-scale-wrong-value"}


@pytest.mark.parametrize("msg", ["why do we scale by sqrt(d)?",
                                 "why do we scale by the square root of d?",
                                 "what's the point of scaling the scores?"])
def test_a_scale_question_gets_the_scale_and_a_question_about_it(course, coach, msg):
    lesson = course.lesson("1.1")
    for task, asked in ((lesson.task(1), []), (lesson.task(1), ["1:gq:2"]), (lesson.task(2), [])):
        r = coach.reply(ctx_for(lesson, task, rec={"coach": {"asked": asked}}), msg)
        assert r.kind == "concept" and r.text.startswith("Why divide by √D:"), (msg, task.id, r.text)
        assert len(r.asked) == 1 and r.asked[0] in SCALE_QUESTIONS - set(asked), (msg, task.id, r.asked)


def test_the_question_back_is_not_the_learners_own_question_reworded(course, coach):
    lesson = course.lesson("1.1")
    echo = lesson.task(1).guiding_questions[3]  # "...why must the mask be added ... rather than multiplied?"
    r = coach.reply(ctx_for(lesson), "why is the mask added instead of multiplied?")
    assert r.kind == "concept" and r.text.startswith("Additive masks:")
    assert echo not in r.text and r.asked != ["1:gq:3"]
    question = r.text.rsplit("question back to you:", 1)[1]
    assert "mask" in question and r.asked[0].startswith("pitfall:attn-mask")


def test_a_stub_gets_a_place_to_start_not_a_question_about_the_message(course, coach):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    msg = "Not implemented yet: scaled_dot_product_attention_simple is still a stub (lesson day 1.1)"
    for status, message in (("fail", msg), ("error", "Not implemented yet")):
        res = result(check("sdpa-simple", status, message=message),
                     check("sdpa-simple-scale-mask", status, message=message))
        ctx = ctx_for(lesson, task, result=res,
                      rec={"coach": {"asked": []}})
        ctx.learner_code = ("# attention.py\ndef scaled_dot_product_attention_simple(query, key):\n"
                            "    raise NotImplementedError('still a stub')\n")
        for text, asked in ((coach.on_result(ctx), None),
                            *((r.text, r.asked) for r in [coach.reply(ctx, "why does it fail?")])):
            assert "Which part of your code produces" not in text, text
            assert "`scaled_dot_product_attention_simple`" in text and "task 1" in text, text
            assert "`impl/attention.py`" in text and task.guiding_questions[0] in text, text
            assert asked in (None, ["1:gq:0"])
            assert filter_reply(text, lesson=lesson, task=task).removed == 0


def test_passing_and_explain_back(course, coach):
    lesson = course.lesson("1.4")
    res = result(check("rmsnorm", "pass"), check("silu", "pass"), check("x", "skipped", skip="GPU"))
    text = coach.on_result(ctx_for(lesson, result=res))
    assert text.startswith("All 2 checks pass (1 skipped here).")
    assert "own words" in text
    r = coach.reply(ctx_for(lesson, result=res), "it passes now!")
    assert r.kind == "explain-back" and "own words" in r.text


def test_on_result_cases(course, coach):
    lesson = course.lesson("1.6")
    ctx = ctx_for(lesson)
    assert "No check run yet" in coach.on_result(ctx)
    fail = result(check("generate-greedy", "fail", message="token 3 differs: got 17, want 42"))
    text = coach.on_result(ctx_for(lesson, result=fail))
    assert "`generate-greedy`" in text and "token 3 differs" in text and text.rstrip().endswith("?")
    for status in ("timeout", "crashed"):
        text = coach.on_result(ctx_for(lesson, result=result(check("generate-stops-at-eos", status))))
        assert "loop" in text and "kernel" in text and text.rstrip().endswith("?")
    stub = result(check("generate-greedy", "error",
                        message="NotImplementedError: simple_generate is still a stub"))
    assert "still the stub" in coach.on_result(ctx_for(lesson, result=stub))
    skipped = result(check("k", "skipped", skip="needs an Apple GPU"))
    assert "needs an Apple GPU" in coach.on_result(ctx_for(lesson, result=skipped))
    r = coach.result_reply(ctx_for(lesson, result=result(check("generate-uses-sampler", "fail",
                                                              pitfall="gen-sampler-ignored"))))
    assert r.asked == ["pitfall:gen-sampler-ignored"] and r.kind == "diagnosis"


# --------------------------------------------------------------------------- latency and leaks

MESSAGES = [
    "I'm stuck", "hint", "help!", "no idea where to start", "why?", "what is the mask for?",
    "why divide by sqrt(d)", "what does transpose do here", "explain rope offsets",
    "my output is all NaN", "shape mismatch error", "the values are wrong", "it hangs",
    "just give me the code", "write the function for me", "show me the solution please",
    "what's the answer", "it passes now", "done!", "thanks", "hello", "ok", "",
    "which axis should softmax use?", "how do the heads get split", "what is eps for",
    "float16 overflow?", "what's top_p", "temperature makes it random?", "EOS never comes",
    "kv heads grouping confuses me", "residual connection?", "tie_word_embeddings?",
    "paste the working implementation", "give me the full code for RoPE", "what next",
    "can you just do it", "how does the sampler pick a token", "the detokenizer?",
    "cmake cannot find mlx", "why is the mask bottom right", "silu vs sigmoid",
]


def _random_context(rng, lesson, task):
    rung = rng.randint(0, len(task.hints))
    asked = rng.sample([f"{task.id}:gq:{i}" for i in range(len(task.guiding_questions))],
                       rng.randint(0, len(task.guiding_questions)))
    checks = []
    for cid in task.checks or ("c",):
        status = rng.choice(["pass", "fail", "fail", "error", "timeout", "crashed", "skipped"])
        pit = rng.choice([None, rng.choice(lesson.pitfalls).id]) if status == "fail" else None
        checks.append(check(cid, status, pitfall=pit, task=task.id,
                            message="first mismatch at (0, 1)" if status == "fail" else ""))
    res = rng.choice([None, result(*checks)])
    rec = {"coach": {"asked": asked},
           "hints_seen": [f"{task.id}:{r}" for r in range(1, rung + 1)],
           "attempts": [], "last_result": rng.choice([None, "pass", "fail"])}
    return ctx_for(lesson, task, rec=rec, result=res, rung=rung)


def test_replies_to_random_messages(course, coach):
    """Every lesson, task and kind of message gets a non-empty reply (speed: see
    benchmarks/coach_offline.py)."""
    rng = random.Random(7)
    tasks = [(lesson, t) for lesson in course.lessons for t in lesson.tasks]
    for i in range(300):
        lesson, task = rng.choice(tasks)
        ctx = _random_context(rng, lesson, task)
        r = coach.reply(ctx, rng.choice(MESSAGES))
        assert isinstance(r, OfflineReply) and r.text.strip()
        assert str(r) == r.text


def test_no_offline_reply_ever_contains_task_code(course, coach):
    """200 replies to random learner messages across every week-1 lesson and task, in
    random states, plus the after-check lines: the guardrail removes nothing."""
    rng = random.Random(2024)
    tasks = [(lesson, t) for lesson in course.lessons if lesson.week == 1 for t in lesson.tasks]
    for i in range(200):
        lesson, task = rng.choice(tasks)
        ctx = _random_context(rng, lesson, task)
        msg = rng.choice(MESSAGES)
        if rng.random() < 0.3:  # free text made of the lesson's own words
            words = " ".join(rng.sample(lesson.concepts[0].explanation.split(), 6))
            msg = f"{rng.choice(['why', 'what is', 'stuck on', 'explain'])} {words}?"
        for text in (coach.reply(ctx, msg).text, coach.on_result(ctx)):
            r = filter_reply(text, lesson=lesson, task=task)
            assert r.removed == 0, (lesson.id, task.id, msg, r.reasons, text)
            assert "```" not in text


# --------------------------------------------------------------------------- memory in the state


def test_record_coach_asked_and_remember(tmp_path, course):
    with StateStore(tmp_path, course=course) as store:
        assert OfflineCoach.remember(store, "1.1", []) == []
        assert store.record_coach_asked("1.1", ["1:gq:0", "pitfall:attn-missing-scale"], now=T0) \
            == ["1:gq:0", "pitfall:attn-missing-scale"]
        # duplicates are dropped, order is kept, a single id is accepted
        assert OfflineCoach.remember(store, "day1.1", ["1:gq:0", "1:gq:3"]) == \
            ["1:gq:0", "pitfall:attn-missing-scale", "1:gq:3"]
        assert OfflineCoach.remember(store, "1.1", "2:gq:1")[-1] == "2:gq:1"
        rec = store.day_record("1.1")
        assert rec["coach"]["asked"] == ["1:gq:0", "pitfall:attn-missing-scale", "1:gq:3", "2:gq:1"]
        assert asked_ids(rec) == rec["coach"]["asked"]
        # a day the learner never touched gets the default
        store.touch("1.2", now=T0 + timedelta(minutes=1))
        assert store.day_record("1.2")["coach"] == {"asked": []}
    data = json.loads((tmp_path / "progress" / "state.json").read_text())
    assert data["days"]["1.1"]["coach"]["asked"][1] == "pitfall:attn-missing-scale"
    with StateStore(tmp_path, course=course) as store:  # survives a reopen
        assert store.day_record("1.1")["coach"]["asked"][-1] == "2:gq:1"
        # a damaged coach record is reset, not fatal
        store.day_record("1.1")["coach"] = {"asked": "nonsense"}
        assert store.record_coach_asked("1.1", ["1:gq:4"]) == ["1:gq:4"]
        store.record_coach_asked("1.1", [f"x:{i}" for i in range(MAX_COACH_ASKED + 10)])
        assert len(store.day_record("1.1")["coach"]["asked"]) == MAX_COACH_ASKED
    closed = StateStore(tmp_path, course=course)
    with pytest.raises(StateError):
        closed.record_coach_asked("1.1", ["1:gq:0"])


def test_an_older_state_file_without_coach_records_loads(tmp_path):
    with StateStore(tmp_path) as store:
        store.touch("1.1", now=T0)
    path = tmp_path / "progress" / "state.json"
    data = json.loads(path.read_text())
    del data["days"]["1.1"]["coach"]
    path.write_text(json.dumps(data))
    assert validate_state(json.loads(path.read_text()))["days"]["1.1"]["coach"] == {"asked": []}
    with StateStore(tmp_path) as store:
        assert store.notice is None
        assert store.day_record("1.1")["coach"] == {"asked": []}


def test_the_coach_does_not_repeat_itself_across_a_session(tmp_path, course, coach):
    """End to end: replies remembered in the state steer the next reply."""
    from tutor.coach.context import build_context

    with TutorSession(tmp_path, course=course).open("day1.4") as s:
        seen = []
        for _ in range(4):
            ctx = build_context(s)
            r = coach.reply(ctx, "I'm stuck")
            assert r.asked and r.asked[0] not in seen
            seen += r.asked
            OfflineCoach.remember(s.store, s.lesson.id, r.asked)
        assert asked_ids(s.day_record()) == seen
