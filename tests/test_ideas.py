"""The vocabulary of ideas (curriculum/ideas.yaml): every pitfall and concept question of
every lesson carries one, and a vocabulary naming something the course lacks is refused
with file and line."""

from __future__ import annotations

import pytest

from tutor.curriculum import CurriculumError, load_course
from tutor.curriculum.ideas import load_ideas


@pytest.fixture(scope="module")
def course():
    return load_course()


def test_every_pitfall_and_concept_question_carries_an_idea(course):
    ideas = course.ideas
    assert ideas.ideas, "curriculum/ideas.yaml is missing or empty"
    untagged = [f"{lesson.id} pitfall {p.id}" for lesson in course.lessons
                for p in lesson.pitfalls if not ideas.of_pitfall(p.id)]
    untagged += [f"{lesson.id} question {q.id}" for lesson in course.lessons
                 for q in lesson.concept_questions if not ideas.of_question(lesson.id, q.id)]
    assert not untagged, "tag these in curriculum/ideas.yaml: " + ", ".join(untagged)


def test_every_idea_is_tested_somewhere_and_has_its_own_question(course):
    asks = [i.ask for i in course.ideas.ideas]
    assert len(set(asks)) == len(asks)
    for idea in course.ideas.ideas:
        assert idea.pitfalls or idea.questions, idea.id


def test_softmax_axis_links_day_1_1_to_day_2_4(course):
    softmax = course.ideas.get("softmax-axis")
    assert softmax in course.ideas.of_pitfall("attn-softmax-wrong-axis")
    assert softmax in course.ideas.of_lesson(course.lesson("2.4"))
    assert softmax.question_for("2.4") != softmax.ask  # 2.4 has its own wording


def _write(tmp_path, body: str):
    path = tmp_path / "ideas.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """\
ideas:
  - id: softmax-axis
    name: which axis the softmax normalises over
    ask: Along which axis must each distribution sum to 1?
    pitfalls: [attn-softmax-wrong-axis]
    questions: ["1.1/softmax-axis"]
"""


def test_a_good_vocabulary_loads(course, tmp_path):
    ideas = load_ideas(_write(tmp_path, GOOD), course.lessons, "ideas.yaml")
    assert [i.id for i in ideas.of_pitfall("attn-softmax-wrong-axis")] == ["softmax-axis"]


@pytest.mark.parametrize("old, new, line, words", [
    ("[attn-softmax-wrong-axis]", "[attn-softmax-wrong-axis, attn-softmax-on-queries]", 5,
     "no pitfall 'attn-softmax-on-queries'"),
    ('["1.1/softmax-axis"]', '["softmax-axis"]', 6, "'<day>/<question id>'"),
    ('["1.1/softmax-axis"]', '["2.4/softmax-axis"]', 6, "no concept question '2.4/softmax-axis'"),
    ("    pitfalls:", '    ask_on: {"9.9": Which axis?}\n    pitfalls:', 5, "no day '9.9'"),
    ("    name:", "    nmae: typo\n    name:", 3, "unknown key 'nmae'"),
])
def test_a_vocabulary_naming_what_the_course_lacks_is_refused(course, tmp_path, old, new,
                                                               line, words):
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CurriculumError) as err:
        load_ideas(path, course.lessons, "ideas.yaml")
    assert f"ideas.yaml:{line}:" in str(err.value) and words in str(err.value), str(err.value)


def test_an_idea_defined_twice_is_refused(course, tmp_path):
    path = _write(tmp_path, GOOD + GOOD[len("ideas:\n"):])
    with pytest.raises(CurriculumError, match=r"ideas.yaml:7: .*defined twice"):
        load_ideas(path, course.lessons, "ideas.yaml")


def test_a_course_without_a_vocabulary_has_no_ideas(course, tmp_path):
    assert load_ideas(tmp_path / "ideas.yaml", course.lessons, "ideas.yaml").ideas == ()


def test_each_question_passes_the_guardrail_where_it_is_asked(course):
    """The offline coach asks an idea's question on every day that tests it: nothing in it
    may be code the solution-leak filter would cut for that day's tasks."""
    from tutor.coach.guardrail import filter_reply

    for lesson in course.lessons:
        for idea in course.ideas.of_lesson(lesson):
            text = idea.question_for(lesson.id)
            assert text.endswith("?"), (idea.id, lesson.id)
            for task in lesson.tasks:
                assert filter_reply(text, lesson=lesson, task=task).removed == 0, (idea.id,
                                                                                  lesson.id)
