"""The lesson engine: the shipped course is valid, and broken files fail with file, line
and field."""

from __future__ import annotations

import shutil

import pytest

from tutor import paths
from tutor.curriculum import CurriculumError, load_course, load_lesson

LESSON = "week1/day1.1-attention.yaml"


def test_shipped_course_loads_and_is_complete():
    course = load_course()
    assert [d.id for d in course.week(1).days] == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]
    for lesson in course.lessons:
        assert lesson.chapter.startswith("https://github.com/skyzh/tiny-llm/blob/ea4769d/book/src/")
        assert len(lesson.concept_questions) >= 2
        for task in lesson.tasks:
            assert len(task.guiding_questions) >= 3
            assert len(task.hints) == 4


@pytest.fixture
def course_copy(tmp_path):
    dest = tmp_path / "curriculum"
    shutil.copytree(paths.curriculum_dir(), dest)
    return dest


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def _line_of(path, needle):
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_unknown_key_names_file_line_and_field(course_copy):
    f = course_copy / LESSON
    _edit(f, "\ntitle:", "\ntitel: oops\ntitle:")
    line = _line_of(f, "titel:")
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    msg = str(e.value)
    assert "day1.1-attention.yaml" in msg and f":{line}:" in msg and "titel" in msg


def test_missing_field(course_copy):
    f = course_copy / LESSON
    text = f.read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("timeout_s:")]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(CurriculumError, match="missing required field 'timeout_s'"):
        load_lesson(f)


def test_wrong_type(course_copy):
    f = course_copy / LESSON
    _edit(f, "\nweek: 1", "\nweek: one")
    line = _line_of(f, "week: one")
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    assert f":{line}: week: expected an integer" in str(e.value)


def test_broken_yaml(course_copy):
    f = course_copy / LESSON
    f.write_text(f.read_text() + "\n  - : : [unclosed\n")
    with pytest.raises(CurriculumError, match="not valid YAML"):
        load_lesson(f)


def test_hint_ladder_must_have_four_rungs(course_copy):
    import yaml

    f = course_copy / LESSON
    data = yaml.safe_load(f.read_text())
    data["tasks"][0]["hints"] = data["tasks"][0]["hints"][:3]
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CurriculumError, match=r"tasks\[0\]\.hints: needs at least 4"):
        load_lesson(f)


def test_course_yaml_unknown_lesson_file(course_copy):
    _edit(course_copy / "course.yaml", "week1/day1.2-rope.yaml", "week1/nope.yaml")
    with pytest.raises(CurriculumError, match="nope.yaml: cannot read"):
        load_course.__wrapped__(course_copy)
