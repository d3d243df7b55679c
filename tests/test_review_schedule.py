"""Spaced review (issue 14): a wrong concept answer or a diagnosed mistake comes back on
later days on an FSRS schedule (tutor.records.review) and leaves it once it has stuck.
Time is a fixed clock throughout: "a later day" is a later ``now``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from tutor.engine import TutorSession
from tutor.records import review
from tutor.records.state import StateStore, state_path
from tutor.workspace import init_workspace

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
ITEM = "q:1.2/first-frequency"


@pytest.fixture
def ws(tmp_path):
    init_workspace(tmp_path / "ws")
    return tmp_path / "ws"


def _ids(items) -> list[str]:
    return [it.id for it in items]


def _right_answer(item) -> str:
    return str(item.question.answer)


def test_a_wrong_answer_on_1_2_comes_back_on_later_days_until_it_sticks(ws):
    with TutorSession(ws).open("1.2") as s:
        g = s.answer("first-frequency", "0.5", now=T0)
        assert not g.correct
        # Not the same day: the point is to bring it back later.
        assert ITEM not in _ids(s.review_queue(now=T0 + timedelta(hours=2)))

    day, reviews = T0 + timedelta(days=1), []
    for _ in range(10):  # a learner who comes back on each due day and answers right
        with TutorSession(ws).open("1.5") as s:  # any later day's session
            due = s.review_queue(now=day)
            assert _ids(due) == [ITEM], (day, _ids(due))
            item = due[0]
            assert item.source_day == "1.2" and item.question.id == "first-frequency"
            g, res = s.review_answer(item, _right_answer(item), now=day)
            assert g.correct
            reviews.append(res)
            if res["left"]:
                assert s.review_queue(now=day + timedelta(days=400)) == []
                assert s.next_review(now=day) is None
                break
            nxt = datetime.fromisoformat(res["due"].replace("Z", "+00:00"))
            # Not due the day before it is due: no item comes back early.
            assert ITEM not in _ids(s.review_queue(now=nxt - timedelta(days=1)))
            day = nxt
    assert reviews and reviews[-1]["left"], reviews
    # The documented rule: right answers with growing intervals, out at 21 days' stability.
    assert len(reviews) == 4
    assert [r["stability"] >= review.GRADUATE_DAYS for r in reviews] == [False] * 3 + [True]
    state = json.loads(state_path(ws).read_text())
    assert ITEM not in state["review"]["items"] and ITEM in state["review"]["done"]


def test_a_wrong_review_answer_keeps_the_item_and_brings_it_back_sooner(ws):
    with TutorSession(ws).open("1.2") as s:
        s.answer("first-frequency", "2", now=T0)
    with TutorSession(ws).open("1.2") as s:
        day = T0 + timedelta(days=1)
        item = s.review_queue(now=day)[0]
        _, right = s.review_answer(item, "1", now=day)
        day = datetime.fromisoformat(right["due"].replace("Z", "+00:00"))
        item = s.review_queue(now=day)[0]
        g, wrong = s.review_answer(item, "3", now=day)
        assert not g.correct and not wrong["left"]
        assert wrong["due"] < (day + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert ITEM in _ids(s.review_queue(now=day + timedelta(days=1)))


def _diagnosed(pitfall: str) -> dict:
    return {"status": "fail", "duration_s": 0.1, "summary": {"fail": 1},
            "checks": [{"id": "c", "task": 1, "title": "t", "status": "fail", "message": "m",
                        "diagnosis": {"pitfall": pitfall, "question": "?"}}]}


def test_a_diagnosed_mistake_puts_its_idea_on_the_schedule(ws):
    with TutorSession(ws).open("1.1") as s:
        s.store.record_check("1.1", _diagnosed("attn-softmax-wrong-axis"), now=T0)
    with TutorSession(ws).open("1.3") as s:
        due = s.review_queue(now=T0 + timedelta(days=1))
        ideas = [it for it in due if it.kind == "idea"]
        assert ideas, _ids(due)
        idea = s.course.ideas.of_pitfall("attn-softmax-wrong-axis")[0]
        assert ideas[0].id == f"idea:{idea.id}" and ideas[0].source_day == "1.1"
        it = ideas[0]
        if it.question is not None:  # asked with one of the idea's own concept questions
            assert f"{it.day}/{it.question.id}" in idea.questions
            g, res = s.review_answer(it, _right_answer(it), now=T0 + timedelta(days=1))
            assert g.correct
        else:  # the idea's own question, self-graded
            assert it.prompt
            g, res = s.review_answer(it, correct=True, now=T0 + timedelta(days=1))
            assert g is None
        assert not res["left"]


def test_an_idea_without_a_gradable_question_is_self_graded(ws):
    """Every idea of the course has a concept question now; the rule for one without is
    tried on a copy of the course whose first idea lost its questions."""
    import dataclasses

    with TutorSession(ws).open("1.1") as s:
        real = s.course
    first = next(i for i in real.ideas.ideas if i.pitfalls)
    bare = dataclasses.replace(first, questions=())
    course = dataclasses.replace(real, ideas=dataclasses.replace(real.ideas, ideas=tuple(
        bare if i is first else i for i in real.ideas.ideas)))
    day = next(l.id for l in course.lessons if l.pitfall(bare.pitfalls[0]))
    with TutorSession(ws).open(day) as s:
        s.course = course
        s.store.record_check(day, _diagnosed(bare.pitfalls[0]), now=T0)
        it = next(i for i in s.review_queue(limit=10, now=T0 + timedelta(days=1))
                  if i.id == f"idea:{bare.id}")
        assert it.question is None and bare.name in it.prompt
        with pytest.raises(ValueError):
            s.review_answer(it, "anything", now=T0 + timedelta(days=1))
        _, res = s.review_answer(it, correct=False, now=T0 + timedelta(days=1))
        assert not res["left"]


def test_at_most_three_come_back_at_a_session_start(ws):
    with TutorSession(ws).open("1.2") as s:
        for qid in ("first-frequency", "half-split-partner", "qwen2-layout",
                    "offset-last-position"):
            s.answer(qid, "nonsense", now=T0)
        later = T0 + timedelta(days=3)
        assert len(s.review_queue(now=later)) == review.SESSION_LIMIT == 3
        assert len(s.review_queue(limit=10, now=later)) == 4


def test_an_old_state_file_gains_an_empty_schedule_and_a_corrupt_entry_is_repaired(ws):
    with TutorSession(ws).open("1.2") as s:
        s.answer("first-frequency", "0.5", now=T0)
        s.answer("half-split-partner", "4", now=T0)
        s.review_queue(now=T0)
    path = state_path(ws)
    data = json.loads(path.read_text())
    assert set(data["review"]["items"]) == {ITEM, "q:1.2/half-split-partner"}
    data["review"]["items"][ITEM]["card"] = {"due": "tomorrow", "state": "?"}
    path.write_text(json.dumps(data))
    with StateStore(ws) as store:
        assert store.notice and "review item 'q:1.2/first-frequency' was malformed" in store.notice
        assert ITEM not in store.state["review"]["items"]
        assert "q:1.2/half-split-partner" in store.state["review"]["items"]
    # Rebuilt from the wrong answer it came from, due the day after it.
    with TutorSession(ws).open("1.2") as s:
        assert ITEM in _ids(s.review_queue(limit=10, now=T0 + timedelta(days=1)))

    del data["review"]  # a file written before spaced review
    path.write_text(json.dumps(data))
    with StateStore(ws) as store:
        assert store.notice is None
        assert store.state["review"] == {"items": {}, "done": {}}


def test_the_review_entry_itself_not_an_object_is_repaired(ws):
    with StateStore(ws) as store:
        store.state["review"] = ["oops"]
        store.save()
    with StateStore(ws) as store:
        assert "'review' was not an object" in store.notice
        assert store.state["review"] == {"items": {}, "done": {}}


def test_an_item_that_left_comes_back_only_with_a_new_mistake(ws):
    with TutorSession(ws).open("1.2") as s:
        s.answer("first-frequency", "0.5", now=T0)
        day = T0 + timedelta(days=1)
        while True:
            item = s.review_queue(now=day)[0]
            _, res = s.review_answer(item, "1", now=day)
            if res["left"]:
                break
            day = datetime.fromisoformat(res["due"].replace("Z", "+00:00"))
        assert s.review_queue(limit=10, now=day + timedelta(days=60)) == []
        s.answer("first-frequency", "3", now=day + timedelta(days=61))
        assert _ids(s.review_queue(now=day + timedelta(days=62))) == [ITEM]


# ----------------------------------------------------------------------------- the CLI

def _learner_with_an_old_wrong_answer(ws, days_ago: int = 3):
    """A real-clock learner who got 1.2's first question wrong ``days_ago`` days ago (the
    CLI reads the real clock, so the mistake is placed in the past instead)."""
    when = datetime.now(timezone.utc) - timedelta(days=days_ago)
    with TutorSession(ws).open("1.2") as s:
        s.answer("first-frequency", "0.5", now=when)


def test_cli_review_json_lists_the_due_queue(ws):
    from test_cli import tutor

    r = tutor("review", "--json", cwd=ws)
    assert r.returncode == 0, r.stderr
    empty = json.loads(r.stdout)
    assert empty["due"] == [] and empty["next_due"] is None and "21" in empty["rule"]
    _learner_with_an_old_wrong_answer(ws)
    r = tutor("review", "--json", cwd=ws)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [d["id"] for d in out["due"]] == [ITEM]
    assert out["due"][0]["source_day"] == "1.2" and out["due"][0]["graded"] is True
    assert "radians" in out["due"][0]["prompt"] and out["scheduled"] == 1
    # --json asks nothing and changes nothing
    assert "review" not in json.loads(state_path(ws).read_text()) or ITEM not in \
        json.loads(state_path(ws).read_text())["review"]["items"]


def test_cli_review_asks_grades_and_reschedules(ws):
    from test_cli import tutor

    r = tutor("review", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "Nothing to review today" in r.stdout and "Nothing is scheduled" in r.stdout
    _learner_with_an_old_wrong_answer(ws)
    r = tutor("review", cwd=ws, input="1\n")
    assert r.returncode == 0, r.stderr
    assert "1 item to review" in r.stdout and "radians" in r.stdout
    assert "Right." in r.stdout and "Next review:" in r.stdout
    entry = json.loads(state_path(ws).read_text())["review"]["items"][ITEM]
    assert entry["reviews"] == 1 and entry["right"] == 1
    r = tutor("review", cwd=ws)
    assert "Nothing to review today. The next item is due on" in r.stdout
    r = tutor("review", "--limit", "0", cwd=ws)
    assert r.returncode == 2


def test_a_wrong_answer_today_is_due_on_a_later_day_in_a_real_process(ws):
    """The installed script on the machine's clock, then with the records' clock shifted
    (TINY_LLM_TUTOR_CLOCK_SHIFT_DAYS, the rehearsal hook) to two days later."""
    from test_cli import tutor

    with TutorSession(ws).open("1.2") as s:
        s.store.record_concept_answer("1.2", "first-frequency", "1000", False)
    today = json.loads(tutor("review", "--json", cwd=ws).stdout)
    assert today["due"] == [] and today["scheduled"] == 1 and today["next_due"]
    later = tutor("review", "--json", cwd=ws, env={"TINY_LLM_TUTOR_CLOCK_SHIFT_DAYS": "2"})
    assert [d["id"] for d in json.loads(later.stdout)["due"]] == [ITEM]
    # a value that is not a number is no shift at all
    odd = tutor("review", "--json", cwd=ws, env={"TINY_LLM_TUTOR_CLOCK_SHIFT_DAYS": "soon"})
    assert odd.returncode == 0 and json.loads(odd.stdout)["due"] == []
