"""tutor.records.mastery: every status and mastery rule, and the printed rules."""

from __future__ import annotations

import pytest
from course_factory import make_lesson

from tutor.records import mastery as mastery_mod
from tutor.records.mastery import (
    COMPETENT_MAX_FAILED_RUNS,
    COMPETENT_MAX_HINTS,
    Mastery,
    Status,
    assess,
    rules_text,
)
from tutor.records.state import new_day


def day(**over) -> dict:
    """A started day that passed cleanly, with no concept answers yet."""
    rec = new_day()
    rec.update(
        first_activity="2025-03-01T09:00:00Z",
        last_activity="2025-03-01T09:30:00Z",
        attempts_total=1,
        last_result="pass",
        first_pass="2025-03-01T09:30:00Z",
    )
    rec.update(over)
    return rec


def answers(**qs) -> dict:
    """qid=(first_correct, last_correct)"""
    return {q: {"tries": 1 if f == l else 2, "first_correct": f, "last_correct": l} for q, (f, l) in qs.items()}


LESSON = make_lesson("1.1", questions=[("before-1", "before"), ("after-1", "after"),
                                       ("after-2", "after")])
INSIGHT = [{"time": "2025-03-01T09:31:00Z", "text": "my words"}]


def test_not_started():
    for rec in (None, {}, new_day()):
        a = assess(rec)
        assert (a.status, a.mastery, a.passing) == (Status.NOT_STARTED, None, False)


def test_learning_when_started_without_checks():
    a = assess(day(attempts_total=0, last_result=None, first_pass=None))
    assert (a.status, a.mastery) == (Status.IN_PROGRESS, Mastery.LEARNING)
    assert "run the day's checks" in a.missing[0]


def test_learning_when_latest_run_fails_even_after_an_earlier_pass():
    rec = day(attempts_total=3, last_result="fail",
              attempts=[{"status": "fail", "failing": ["mha"]}],
              concepts=answers(q=(True, True)), insights=INSIGHT)
    a = assess(rec)
    assert (a.status, a.mastery, a.passing) == (Status.IN_PROGRESS, Mastery.LEARNING, False)
    assert "`mha`" in a.missing[0]


def test_implementing_without_concept_answers_when_lesson_unknown():
    a = assess(day())
    assert (a.status, a.mastery) == (Status.COMPLETED, Mastery.IMPLEMENTING)
    assert a.missing == ("answer the after-coding concept questions",)


def test_competent_with_lesson_unknown_uses_answered_questions():
    assert assess(day(concepts=answers(q=(False, True)))).mastery is Mastery.COMPETENT
    a = assess(day(concepts=answers(q=(True, False))))
    assert a.mastery is Mastery.IMPLEMENTING and "`q`" in a.missing[0]


@pytest.mark.parametrize(
    "over, needle",
    [
        ({"final_hint": True}, "last (pseudo-code) hint"),
        ({"hints_seen": [f"1:{r}" for r in range(1, COMPETENT_MAX_HINTS + 2)]}, f"at most {COMPETENT_MAX_HINTS} hints"),
        ({"fails_before_pass": COMPETENT_MAX_FAILED_RUNS + 1}, f"within {COMPETENT_MAX_FAILED_RUNS} failing"),
        ({"concepts": answers(**{"after-1": (True, True)})}, "`after-2`"),
        ({"concepts": answers(**{"after-1": (True, True), "after-2": (False, False)})}, "right: `after-2`"),
    ],
)
def test_each_competent_condition_keeps_implementing(over, needle):
    base = {"concepts": answers(**{"after-1": (True, True), "after-2": (True, True)})}
    base.update(over)
    a = assess(day(**base), LESSON)
    assert (a.status, a.mastery) == (Status.COMPLETED, Mastery.IMPLEMENTING)
    assert any(needle in m for m in a.missing), a.missing


def test_competent_at_the_limits():
    rec = day(
        hints_seen=[f"1:{r}" for r in range(1, COMPETENT_MAX_HINTS + 1)],
        fails_before_pass=COMPETENT_MAX_FAILED_RUNS,
        concepts=answers(**{"after-1": (True, True), "after-2": (False, True)}),
    )
    a = assess(rec, LESSON)
    assert (a.status, a.mastery) == (Status.COMPLETED, Mastery.COMPETENT)
    # before-coding questions do not gate Competent, but Mastery wants them all
    assert any("`before-1`" in m for m in a.missing)


def test_lesson_without_after_questions_is_vacuous_for_competent():
    lesson = make_lesson("1.1", questions=[("b", "before")])
    assert assess(day(), lesson).mastery is Mastery.COMPETENT
    assert assess(day(insights=INSIGHT), make_lesson("1.1")).mastery is Mastery.MASTERY


def test_mastery_needs_insight_and_all_first_try():
    all_right = answers(**{"before-1": (True, True), "after-1": (True, True), "after-2": (True, True)})
    a = assess(day(concepts=all_right, insights=INSIGHT), LESSON)
    assert (a.status, a.mastery, a.missing) == (Status.MASTERED, Mastery.MASTERY, ())

    a = assess(day(concepts=all_right), LESSON)
    assert (a.status, a.mastery) == (Status.COMPLETED, Mastery.COMPETENT)
    assert a.missing == ("explain the key idea in your own words (record an insight)",)

    second_try = dict(all_right, **answers(**{"before-1": (False, True)}))
    a = assess(day(concepts=second_try, insights=INSIGHT), LESSON)
    assert a.mastery is Mastery.COMPETENT and "`before-1`" in a.missing[0]

    unanswered = answers(**{"after-1": (True, True), "after-2": (True, True)})
    a = assess(day(concepts=unanswered, insights=INSIGHT), LESSON)
    assert a.mastery is Mastery.COMPETENT and "answer every concept question: `before-1`" in a.missing[0]


def test_mastery_with_lesson_unknown():
    a = assess(day(concepts=answers(q=(True, True)), insights=INSIGHT))
    assert a.mastery is Mastery.MASTERY and a.status is Status.MASTERED


def test_icons_and_labels():
    assert [s.icon for s in Status] == ["⬜", "🟡", "✅", "⭐"]
    assert [str(m) for m in Mastery] == ["📖 Learning", "💻 Implementing", "✅ Competent", "⭐ Mastery"]
    assert Status("completed") is Status.COMPLETED and Mastery.MASTERY.rank == 3


def test_rules_are_documented_in_both_places():
    text = rules_text()
    doc = mastery_mod.__doc__
    for needle in ("Learning", "Implementing", "Competent", "Mastery", "insight", "first try",
                   "Not started", "In progress", "Completed", "Mastered", "skipped",
                   f"{COMPETENT_MAX_HINTS}", f"{COMPETENT_MAX_FAILED_RUNS}", "5 minutes"):
        assert needle in text, needle
        assert needle in doc, needle


# --------------------------------------------------------------------------- ideas

from tutor.records.mastery import IdeaLevel, assess_ideas, frequent_mistakes, hint_heavy  # noqa: E402
from tutor.records.picture import idea_evidence  # noqa: E402


@pytest.fixture(scope="module")
def course():
    from tutor.curriculum import load_course

    return load_course()


def idea(course, state, idea_id, queue=()):
    return next((i for i in assess_ideas(course, state, queue) if i["id"] == idea_id), None)


def test_an_idea_is_mastered_only_with_a_passed_check_and_right_concept_answers(course):
    right = answers(**{"softmax-axis": (True, True), "score-shape": (True, True)})
    # checks pass, no answers: not mastered
    assert idea(course, {"days": {"1.1": day()}}, "softmax-axis")["level"] == "learning"
    # one of the two tagged questions answered: not yet
    one = answers(**{"softmax-axis": (True, True)})
    assert idea(course, {"days": {"1.1": day(concepts=one)}}, "softmax-axis")["level"] == "learning"
    # every answer right, but the checks fail now: not mastered
    failing = day(concepts=right, last_result="fail")
    assert idea(course, {"days": {"1.1": failing}}, "softmax-axis")["level"] == "learning"
    got = idea(course, {"days": {"1.1": day(concepts=right)}}, "softmax-axis")
    assert got["level"] == IdeaLevel.MASTERED.value and got["label"] == "⭐ Mastered"
    assert got["passing_days"] == ["1.1"] and sorted(got["right"]) == ["1.1/score-shape",
                                                                      "1.1/softmax-axis"]
    # starting another day of the idea (failing so far, its questions not answered yet)
    # does not take mastery away; once that day passes, its questions are owed too
    state = {"days": {"1.1": day(concepts=right), "2.4": day(last_result="fail")}}
    assert idea(course, state, "softmax-axis")["level"] == "mastered"
    state = {"days": {"1.1": day(concepts=right), "2.4": day()}}
    later = idea(course, state, "softmax-axis")
    assert later["level"] == "learning" and later["passing_days"] == ["1.1", "2.4"]
    assert "concept questions to answer: 2.4/" in idea_evidence(later)
    # a wrong latest answer anywhere is Shaky, not Mastered
    wrong = answers(**{"softmax-axis": (True, False), "score-shape": (True, True)})
    assert idea(course, {"days": {"1.1": day(concepts=wrong)}}, "softmax-axis")["level"] == "shaky"


def test_an_idea_without_a_concept_question_is_never_mastered(course):
    # day 2.1 tests mask-application through a pitfall only; its questions are on 1.1 and 1.5
    got = idea(course, {"days": {"2.1": day()}}, "mask-application")
    assert got["questions"] == [] and got["level"] == "learning"


def test_every_idea_can_be_mastered(course):
    """Every idea of the vocabulary has a concept question, so passing the days that carry
    its questions and answering them right masters it (four ideas once had none)."""
    for each in course.ideas.ideas:
        assert each.questions, f"{each.id} has no concept question: it can never be mastered"
        qdays: dict[str, dict] = {}
        for key in each.questions:
            d, _, qid = key.partition("/")
            qdays.setdefault(d, {})[qid] = (True, True)
        state = {"days": {d: day(concepts=answers(**qs)) for d, qs in qdays.items()}}
        got = idea(course, state, each.id)
        assert got["level"] == "mastered", (each.id, got)
        assert sorted(got["right"]) == sorted(each.questions)


def test_a_hint_heavy_pass_is_shown_and_makes_the_idea_shaky(course):
    right = answers(**{"softmax-axis": (True, True), "score-shape": (True, True)})
    for heavy in (day(concepts=right, final_hint=True),
                  day(concepts=right, hints_seen=[f"t:{i}" for i in range(COMPETENT_MAX_HINTS + 1)])):
        assert hint_heavy(heavy)
        got = idea(course, {"days": {"1.1": heavy}}, "softmax-axis")
        assert got["level"] == "shaky" and got["hint_heavy_days"] == ["1.1"]
    assert not hint_heavy(day(hints_seen=["t:1"])) and not hint_heavy(day(final_hint=True, last_result="fail"))


def test_a_diagnosed_mistake_or_a_wrong_answer_makes_the_idea_shaky(course):
    right = answers(**{"softmax-axis": (True, True), "score-shape": (True, True)})
    state = {"days": {"1.1": day(concepts=right, pitfalls={"attn-softmax-wrong-axis": 2})}}
    got = idea(course, state, "softmax-axis")
    assert got["level"] == "shaky"
    assert got["mistakes"] == [{"pitfall": "attn-softmax-wrong-axis", "day": "1.1", "count": 2}]
    wrong_first = answers(**{"softmax-axis": (False, True), "score-shape": (True, True)})
    got = idea(course, {"days": {"1.1": day(concepts=wrong_first)}}, "softmax-axis")
    assert got["level"] == "shaky" and got["wrong_answers"] == ["1.1/softmax-axis"]
    # a diagnosis alone makes the idea met, even on a day that is not its own
    state = {"days": {"9.9": day(pitfalls={"attn-softmax-wrong-axis": 1})}}
    assert idea(course, state, "softmax-axis")["level"] == "shaky"


def test_due_for_review_comes_from_the_queue(course):
    state = {"days": {"1.1": day()}}
    assert idea(course, state, "softmax-axis", [{"idea": "softmax-axis"}])["level"] == "due"
    assert idea(course, state, "softmax-axis", [{"id": "q:1.1/score-shape"}])["due"]
    assert idea(course, state, "softmax-axis", [{"idea": "attention-scale"}])["level"] == "learning"


def test_ideas_not_met_are_left_out_and_mistakes_are_ranked(course):
    assert assess_ideas(course, {"days": {}}) == []
    state = {"days": {"1.1": day(pitfalls={"attn-missing-scale": 1, "attn-softmax-wrong-axis": 3}),
                      "2.4": day(pitfalls={"flash-no-rescale": 1, "attn-softmax-wrong-axis": 1})}}
    top = frequent_mistakes(course, state)
    assert [(m["pitfall"], m["count"], m["days"]) for m in top] == [
        ("attn-softmax-wrong-axis", 4, ["1.1", "2.4"]), ("attn-missing-scale", 1, ["1.1"]),
        ("flash-no-rescale", 1, ["2.4"])]
    assert "softmax-axis" in top[0]["ideas"]
    assert len(frequent_mistakes(course, state, limit=1)) == 1


def test_a_mistake_spaced_review_retired_no_longer_makes_the_idea_shaky(course):
    right = answers(**{"softmax-axis": (False, True), "score-shape": (True, True)})
    rec = day(concepts=right, pitfalls={"attn-softmax-wrong-axis": 1})
    assert idea(course, {"days": {"1.1": rec}}, "softmax-axis")["level"] == "shaky"
    done = {"idea:softmax-axis", "q:1.1/softmax-axis"}
    got = next(i for i in assess_ideas(course, {"days": {"1.1": rec}}, (), done)
               if i["id"] == "softmax-axis")
    assert got["level"] == "mastered" and got["reviewed"] == sorted(done)
    assert got["mistakes"] and got["wrong_answers"]  # still listed
    only_idea = next(i for i in assess_ideas(course, {"days": {"1.1": rec}}, (), {"idea:softmax-axis"})
                     if i["id"] == "softmax-axis")
    assert only_idea["level"] == "shaky"  # the wrong answer's own item is still open
    heavy = day(concepts=answers(**{"softmax-axis": (True, True), "score-shape": (True, True)}),
                final_hint=True)
    assert next(i for i in assess_ideas(course, {"days": {"1.1": heavy}}, (), done)
                if i["id"] == "softmax-axis")["level"] == "shaky"
