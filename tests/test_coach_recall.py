"""Misconception memory: a mistake diagnosed on one day comes back as a question when the
learner opens a later day that tests the same idea (curriculum/ideas.yaml) -- from the
offline coach (the engine, the app's coach and lesson areas) and in the LLM coach's
system prompt."""

from __future__ import annotations

import shutil

import pytest
import yaml
from fixtures.fake_llm import FakeAnthropic

from tutor import paths
from tutor.coach.chat import Coach
from tutor.coach.context import build_context
from tutor.coach.guardrail import filter_reply
from tutor.coach.prompt import build_system_prompt
from tutor.config import LLMConfig
from tutor.engine import TutorSession
from tutor.workspace import init_workspace

KEY = "sk-ant-TEST-RECALL-0000"
SOFTMAX_NAME = "which axis the softmax normalises over"


def _mutation(pitfall: str) -> dict:
    catalogue = yaml.safe_load((paths.checks_dir() / "mistakes" / "day1_1.yaml").read_text())
    return next(m for m in catalogue if m["id"] == pitfall)


def _recorded(day: str, pitfall: str) -> dict:
    """A check run as the records keep it: one failing check carrying a diagnosis."""
    return {"day": day, "status": "fail", "duration_s": 0.1,
            "summary": {"pass": 0, "fail": 1},
            "checks": [{"id": "some-check", "task": 1, "title": "t", "status": "fail",
                        "message": "output differs", "evidence": {},
                        "diagnosis": {"pitfall": pitfall, "question": "?"}}]}


@pytest.fixture
def ws(tmp_path):
    init_workspace(tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture(scope="module")
def softmax_on_queries(tmp_path_factory):
    """A scripted learner whose 1.1 attention normalises over the queries (the catalogued
    mutation of a working attention.py), checked for real on day 1.1."""
    ws = tmp_path_factory.mktemp("learner") / "ws"
    init_workspace(ws)
    m = _mutation("attn-softmax-wrong-axis")
    src = (paths.answer_key_dir() / m["file"]).read_text(encoding="utf-8")
    assert src.count(m["find"]) == 1
    (ws / "impl" / m["file"]).write_text(src.replace(m["find"], m["replace"]), encoding="utf-8")
    with TutorSession(ws).open("1.1") as s:
        result = s.run_checks()
    diagnosed = {(c.get("diagnosis") or {}).get("pitfall") for c in result["checks"]}
    assert "attn-softmax-wrong-axis" in diagnosed, result
    return ws


def _copy(ws, tmp_path):
    """Each test gets its own copy of the learner's workspace (the records change)."""
    out = tmp_path / "copy"
    shutil.copytree(ws, out)
    return out


def test_the_softmax_axis_mistake_of_1_1_is_asked_about_on_opening_2_4(softmax_on_queries,
                                                                        tmp_path):
    with TutorSession(_copy(softmax_on_queries, tmp_path)).open("2.4") as s:
        [(mistake, question)] = [r for r in s.recalls() if r[0].idea.id == "softmax-axis"]
        assert (mistake.day, mistake.pitfall) == ("1.1", "attn-softmax-wrong-axis")
        assert "on day 1.1" in question and "Day 2.4" in question
        # what went wrong there, in the words the 1.1 lesson uses for it
        assert "the weights over the keys do not sum to 1" in question
        assert SOFTMAX_NAME in question
        assert s.course.ideas.get("softmax-axis").question_for("2.4") in question
        assert question.rstrip().endswith("?")
        # a question, not the answer: no code, nothing the guardrail would cut
        assert "axis=-1" not in question and "softmax(" not in question
        lesson = s.course.lesson("2.4")
        for task in lesson.tasks:
            assert filter_reply(question, lesson=lesson, task=task).removed == 0
        # the day where it was made does not ask it back
        s.go_to("1.1")
        assert not [m for m, _ in s.recalls() if m.idea.id == "softmax-axis"]


def test_the_llm_backend_request_for_2_4_carries_the_misconception(softmax_on_queries,
                                                                    tmp_path):
    with FakeAnthropic() as srv, TutorSession(_copy(softmax_on_queries, tmp_path)).open("2.4") as s:
        srv.chunks = ["Which rows does your kernel keep a running maximum for?"]
        coach = Coach(s, LLMConfig("anthropic", "claude-test", srv.base_url, KEY, 256, 5.0))
        events = list(coach.ask("where do I start?"))
        assert events[-1].kind == "done"
        system = srv.requests[0]["body"]["system"]
    assert "What this learner got wrong before" in system
    assert f"{SOFTMAX_NAME} [softmax-axis]: made on day 1.1 (attn-softmax-wrong-axis" in system
    assert "Day 2.4 tests these again" in system
    assert "softmax-axis, from day 1.1" in system


def test_a_learner_without_the_mistake_is_not_asked(ws):
    with TutorSession(ws).open("1.1") as s:
        s.store.record_check("1.1", _recorded("1.1", "attn-missing-scale"))
        s.store.record_check("1.2", _recorded("1.2", "rope-offset-ignored"))
        s.go_to("2.4")
        asked = [m.idea.id for m, _ in s.recalls()]
        # the scale is tested again on 2.4; RoPE offsets and the softmax axis are not asked
        assert asked == ["attention-scale"]
        assert {m.idea.id for m in s.misconceptions()} == {"attention-scale", "rope-positions"}
    init_workspace(ws.parent / "other")
    with TutorSession(ws.parent / "other").open("2.4") as s:
        assert s.recalls() == [] and s.misconceptions() == []
        assert "got wrong before" not in build_system_prompt(build_context(s), "rules")


async def test_the_app_asks_it_on_opening_2_4(ws):
    from tui_support import scripted

    from tutor.tui.app import TutorApp
    from tutor.tui.coachlink import CoachLink
    from tutor.tui.widgets import ChatLog

    s = TutorSession(ws).open("1.1")
    s.store.record_check("1.1", _recorded("1.1", "attn-softmax-wrong-axis"))
    app = TutorApp(s, coach=CoachLink(s, factory=scripted()), blink=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.pause()
        assert not app.query(".recall")  # day 1.1 is where it was made
        s.go_to("2.4")
        await app.show_day()
        await pilot.pause()
        recall = [str(w.content) for w in app.query(".recall")]
        assert len(recall) == 1 and "on day 1.1" in recall[0] and "Day 2.4" in recall[0]
        chat = [w.source for w in app.query_one(ChatLog).query(".coach-note")]
        assert any("on day 1.1" in c and SOFTMAX_NAME in c for c in chat)
    s.close()


def _wrong_on_1_2(s) -> tuple[str, str]:
    """A concept question of 1.2 answered wrong (then right), whose idea 1.3 tests again."""
    course = s.course
    q = next(q for q in course.lesson("1.2").concept_questions if not q.is_predict
             and any(i in course.ideas.of_lesson(course.lesson("1.3"))
                     for i in course.ideas.of_question("1.2", q.id)))
    s.store.record_concept_answer("1.2", q.id, "a wrong answer", False)
    s.store.record_concept_answer("1.2", q.id, "the right one", True)
    return q.id, q.prompt


def test_a_wrong_concept_answer_of_1_2_is_asked_about_on_a_later_day(ws):
    with TutorSession(ws).open("1.2") as s:
        qid, prompt = _wrong_on_1_2(s)
        assert not s.recalls()  # not on the day it was answered
        s.go_to("1.3")
        [(m, question)] = s.recalls()
        assert (m.day, m.question, m.pitfall) == ("1.2", qid, "")
        assert "your first answer to the concept question" in question
        assert " ".join(prompt.split())[:40] in question and question.rstrip().endswith("?")
        # the learner's answers and the key are not in it
        assert "a wrong answer" not in question and "the right one" not in question
        system = build_system_prompt(build_context(s), "rules")
        assert f"concept question {qid} answered wrong first" in system


def test_a_prediction_far_off_is_not_a_misconception(ws):
    with TutorSession(ws).open("1.1") as s:
        preds = [(lesson.id, q) for lesson in s.course.lessons for q in lesson.concept_questions
                 if q.is_predict and s.course.ideas.of_question(lesson.id, q.id)]
        for day, q in preds:
            s.store.record_concept_answer(day, q.id, 1, False)
        assert not any(m.question for m in s.misconceptions())


def test_offline_ask_leads_with_the_recall_once_a_day(ws):
    with TutorSession(ws).open("1.1") as s:
        s.store.record_check("1.1", _recorded("1.1", "attn-softmax-wrong-axis"))
        s.go_to("2.4")
        coach = Coach(s, LLMConfig())
        first = "".join(e.text for e in coach.ask("where do I start?") if e.kind == "text")
        assert first.startswith("From your own history: on day 1.1")
        assert SOFTMAX_NAME in first
        second = "".join(e.text for e in coach.ask("where do I start?") if e.kind == "text")
        assert "From your own history" not in second
        assert s.pending_recalls() == [] and len(s.recalls()) == 1
        # a request for the solution is refused as ever, not led by a recall
        s.store.record_check("1.1", _recorded("1.1", "attn-missing-scale"))
        s.go_to("2.4")
        assert [m.idea.id for m, _ in s.pending_recalls()] == ["attention-scale"]
        refusal = "".join(e.text for e in Coach(s, LLMConfig()).ask("just give me the code")
                          if e.kind == "text")
        assert "From your own history" not in refusal
        assert [m.idea.id for m, _ in s.pending_recalls()] == ["attention-scale"]


async def test_the_app_raises_it_once_a_day_and_keeps_it_in_the_lesson(ws):
    from tui_support import scripted

    from tutor.tui.app import TutorApp
    from tutor.tui.coachlink import CoachLink
    from tutor.tui.widgets import ChatLog

    s = TutorSession(ws).open("1.1")
    s.store.record_check("1.1", _recorded("1.1", "attn-softmax-wrong-axis"))
    app = TutorApp(s, coach=CoachLink(s, factory=scripted()), blink=False)
    async with app.run_test(size=(100, 32)) as pilot:
        for day in ("2.4", "1.1", "2.4"):
            s.go_to(day)
            await app.show_day()
            await pilot.pause()
        notes = [w.source for w in app.query_one(ChatLog).query(".coach-note")
                 if "on day 1.1" in w.source]
        assert len(notes) == 1  # asked when 2.4 first opened, not again
        assert len(app.query(".recall")) == 1  # still in view before the learner codes
        assert "idea:softmax-axis" in s.day_record("2.4")["coach"]["asked"]
    s.close()


def test_the_llm_prompt_says_when_the_app_raised_it_today(ws):
    with TutorSession(ws).open("1.1") as s:
        s.store.record_check("1.1", _recorded("1.1", "attn-softmax-wrong-axis"))
        s.go_to("2.4")
        before = build_system_prompt(build_context(s), "rules")
        assert "softmax-axis, from day 1.1" in before and "already raised today" not in before
        s.recalls_raised([m for m, _ in s.pending_recalls()])
        after = build_system_prompt(build_context(s), "rules")
        assert "softmax-axis, from day 1.1" in after and "already raised today" in after
