"""The lesson engine: the shipped course is valid, and broken files fail with file, line
and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tutor import paths
from tutor.curriculum import CurriculumError, load_course, load_lesson
from tutor.workspace import stub_of

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
    course = course_copy / "course.yaml"
    _edit(course, "week1/day1.2-rope.yaml", "week1/nope.yaml")
    with pytest.raises(CurriculumError) as e:
        load_course.__wrapped__(course_copy)
    msg = str(e.value)
    assert msg.startswith(f"{course}:{_line_of(course, 'week1/nope.yaml')}: weeks[0].days[1]: ")
    assert "no lesson file week1/nope.yaml" in msg and len(msg.splitlines()) == 1


def test_a_duplicate_day_id_names_both_files_and_their_id_lines(course_copy):
    first = course_copy / LESSON
    f = course_copy / "week1/day1.1-copy.yaml"
    f.write_text("# a copy that kept day 1.1's id\n" + first.read_text())
    _edit(course_copy / "course.yaml", "week1/day1.2-rope.yaml", "week1/day1.1-copy.yaml")
    with pytest.raises(CurriculumError) as e:
        load_course.__wrapped__(course_copy)
    assert str(e.value) == (f"{f}:{_line_of(f, 'id: ')}: id: day 1.1 is also the id of "
                            f"{first}:{_line_of(first, 'id: ')}")


# --------------------------------------------------------------------------- references


@pytest.mark.parametrize("old, new, where, words", [
    ("{file: impl/attention.py, symbol: scaled_dot_product_attention_simple}",
     "{file: impl/attentoin.py, symbol: scaled_dot_product_attention_simple}",
     "tasks[0].edit[0].file", "impl/attentoin.py has no shipped stub"),
    ("{file: impl/attention.py, symbol: scaled_dot_product_attention_simple}",
     "{file: impl/attention.py, symbol: sdpa_simple}",
     "tasks[0].edit[0].symbol", "no top-level function or class 'sdpa_simple'"),
    ("checks: [sdpa-simple, ", "checks: [sdpa-simpel, ",
     "tasks[0].checks", "no check 'sdpa-simpel' in checks/week1/day1_1.py (it has: sdpa-simple,"),
])
def test_a_task_naming_a_missing_file_symbol_or_check_is_caught(course_copy, old, new, where,
                                                                words):
    """Issue 10: these loaded, and `reset` (or a check run) died later with a traceback."""
    f = course_copy / LESSON
    _edit(f, old, new)
    with pytest.raises(CurriculumError) as e:
        load_course.__wrapped__(course_copy)
    msg = str(e.value)
    assert msg.startswith(f"{f}:{_line_of(f, new.split(',')[0])}: {where}: "), msg
    assert words in msg and len(msg.splitlines()) == 1


def test_a_lesson_without_a_checks_module_is_caught(course_copy):
    """Issue 11: an error of the lesson itself, not only of a task that lists checks (one
    whose tasks listed none loaded, and its check run said "not available yet")."""
    f = course_copy / LESSON
    _edit(f, 'id: "1.1"', 'id: "1.9"')
    line = _line_of(f, 'id: "1.9"')
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    assert str(e.value).startswith(
        f"{f}:{line}: id: day 1.9 has no checks module "
        "(checks/week1/day1_9.py does not exist"), e.value


def _decl_line(module: Path, cid: str) -> int:
    return _line_of(module, f'@check("{cid}",')


def test_a_check_for_a_task_the_lesson_lacks_is_caught(course_copy):
    """Issue 11: every task number in the checks module is a task of the lesson."""
    f = course_copy / LESSON
    _edit(f, "  - id: 2\n", "  - id: 3\n")
    module = paths.checks_dir() / "week1" / "day1_1.py"
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    assert str(e.value) == (
        f"{f}:{_line_of(f, '  - id: 1')}: tasks: checks/week1/day1_1.py:"
        f"{_decl_line(module, 'linear')} declares check 'linear' for task 2, but lesson 1.1 "
        "has tasks 1, 3")


def test_a_check_its_task_does_not_list_is_caught(course_copy):
    f = course_copy / LESSON
    _edit(f, "checks: [sdpa-simple, sdpa-simple-scale-mask]",
          "checks: [sdpa-simple, sdpa-simple-scale-mask, mha]")
    _edit(f, "checks: [linear, mha]", "checks: [linear]")
    module = paths.checks_dir() / "week1" / "day1_1.py"
    with pytest.raises(CurriculumError) as e:
        load_lesson(f)
    assert str(e.value) == (
        f"{f}:{_line_of(f, '  - id: 2')}: tasks: checks/week1/day1_1.py:"
        f"{_decl_line(module, 'mha')} declares check 'mha' for task 2, whose checks do not "
        "list it")


def test_a_check_declared_in_another_form_is_caught(course_copy, tmp_path, monkeypatch):
    """The lesson is checked against the module's text (importing it would load MLX), so a
    declaration the tutor cannot read is an error, not a check that silently goes unlisted."""
    checks = tmp_path / "checks"
    (checks / "week1").mkdir(parents=True)
    text = (paths.checks_dir() / "week1" / "day1_1.py").read_text()
    assert text.count('@check("linear", 2,') == 1
    (checks / "week1" / "day1_1.py").write_text(
        text.replace('@check("linear", 2,', '@check(id="linear", task=2, title='))
    monkeypatch.setattr(paths, "checks_dir", lambda: checks)
    f = course_copy / LESSON
    with pytest.raises(CurriculumError, match=r"tasks: .*day1_1.py:\d+ declares a check the "
                                              r"tutor cannot read"):
        load_lesson(f)


# --------------------------------------------------------------------------- book days


def test_merged_lessons_name_the_book_days_they_cover():
    course = load_course()
    covers = {x.id: x.covers for x in course.lessons}
    assert covers["2.2"] == ("2.2", "2.3") and covers["2.4"] == ("2.4", "2.5")
    assert covers["2.6"] == ("2.6", "2.7") and covers["1.3"] == ("1.3",)
    # weeks 1 and 2 are complete; week 3 is added day by day
    every = sorted(d for c in covers.values() for d in c if d.split(".")[0] in ("1", "2"))
    assert every == [f"{w}.{n}" for w in (1, 2) for n in range(1, 8)]  # each once
    assert course.lesson("2.4").book_days_label == "book days 2.4–2.5"
    assert course.book_plan == (3, 7)


@pytest.mark.parametrize("days, message", [
    ('["1.1", "2.2"]', "is not a day of week 1"),
    ('["1.2"]', "starts with the lesson's own day"),
    ('["1.1", "1.1"]', "listed twice"),
])
def test_book_days_are_validated(course_copy, days, message):
    f = course_copy / LESSON
    _edit(f, "\nweek: 1\n", f"\nweek: 1\nbook_days: {days}\n")
    with pytest.raises(CurriculumError, match=message):
        load_lesson(f)


def test_a_book_day_covered_twice_is_an_error(course_copy):
    _edit(course_copy / "week1/day1.1-attention.yaml", "\nweek: 1\n",
          '\nweek: 1\nbook_days: ["1.1", "1.2"]\n')
    with pytest.raises(CurriculumError, match="book day 1.2 is already covered by lesson 1.1"):
        load_course.__wrapped__(course_copy)


def test_book_terms_are_filled_in_per_lesson():
    course = load_course()
    terms = dict(course.lesson("2.2").book_terms)
    assert terms["src/tiny_llm/"] == "impl/" and terms["src/extensions/"] == "kernels/"
    assert terms["pdm run test --week 2 --day 2"] == "tiny-llm-tutor check day2.2"
    assert terms["pdm run build-ext"] == "tiny-llm-tutor build-kernels"
    assert dict(course.lesson("1.3").book_terms)["pdm run test --week 1 --day 3"] == \
        "tiny-llm-tutor check day1.3"


# --------------------------------------------------------------------------- task files


def _top_level(path):
    import ast

    return {n.name for n in ast.parse(path.read_text()).body
            if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_every_task_names_real_files_and_symbols():
    """Each (file, symbol) pair of every task exists in the shipped stubs: a Python symbol
    is defined at top level of that very file; a kernel file exists."""
    for lesson in load_course().lessons:
        for task in lesson.tasks:
            assert task.edits, (lesson.id, task.id)
            for e in task.edits:
                f = stub_of(e.path)
                assert f.is_file(), (lesson.id, task.id, e.path)
                if e.in_impl and e.symbol:
                    assert e.symbol in _top_level(f), (lesson.id, task.id, e)


def test_tasks_that_span_files_name_each_of_them():
    course = load_course()
    pairs = lambda d, t: {(e.path, e.symbol) for e in course.lesson(d).task(t).edits}
    assert pairs("1.1", 2) == {("impl/basics.py", "linear"),
                               ("impl/attention.py", "SimpleMultiHeadAttention")}
    assert pairs("1.4", 2) == {("impl/basics.py", "silu"), ("impl/qwen2_week1.py", "Qwen2MLP")}
    assert {p for p, _ in pairs("2.6", 1)} == {"impl/positional_encoding.py",
                                               "impl/qwen2_week2.py", "impl/attention.py"}
    # the week-2 attention lives in qwen2_week2.py, not in week 1's file of the same name
    assert pairs("2.1", 2) == {("impl/qwen2_week2.py", "Qwen2MultiHeadAttention")}
    assert ("kernels/src/tiny_llm_ext.h", "QuantizedMatmul") in pairs("2.2", 2)


def test_the_older_single_file_form_still_loads(course_copy):
    f = course_copy / LESSON
    _edit(f, "    edit:\n      - {file: impl/attention.py, symbol: scaled_dot_product_attention_simple}\n",
          "    file: attention.py\n    symbols: [scaled_dot_product_attention_simple, "
          "SimpleMultiHeadAttention]\n")
    task = load_lesson(f).task(1)
    assert [(e.path, e.symbol) for e in task.edits] == [
        ("impl/attention.py", "scaled_dot_product_attention_simple"),
        ("impl/attention.py", "SimpleMultiHeadAttention")]
    assert task.file == "attention.py"


@pytest.mark.parametrize("edit, message", [
    ("    edit:\n      - {file: attention.py, symbol: x}\n", r"tasks\[0\].edit\[0\].file: a path inside"),
    ("    edit:\n      - {file: impl/../x.py}\n", "a path inside"),
    ("    edit: []\n", "needs at least 1"),
    ("    edit:\n      - {symbol: x}\n", "missing required field 'file'"),
    ("    file: attention.py\n    symbols: [a]\n    edit:\n      - {file: impl/a.py}\n",
     "either `edit` or `file`"),
    ("", "missing required field 'edit'"),
])
def test_task_edits_are_validated(course_copy, edit, message):
    f = course_copy / LESSON
    _edit(f, "    edit:\n      - {file: impl/attention.py, symbol: scaled_dot_product_attention_simple}\n",
          edit)
    with pytest.raises(CurriculumError, match=message):
        load_lesson(f)


def test_readmes_and_kernel_stubs_use_the_same_book_mapping():
    """README.md, kernels/README.md and the kernel stubs' comments say what the course data
    says (book_terms for lesson 2.2, the merged days, the edition)."""
    from tutor.doctor import BOOK_COMMIT, BOOK_TREE, LIVE_SITE

    repo = Path(__file__).resolve().parents[1]
    terms = load_course().lesson("2.2").book_terms
    readme = (repo / "README.md").read_text()
    kernels = (paths.kernels_dir() / "README.md").read_text()
    for book, ours in terms:
        assert f"| `{book}` | `{ours}` |" in readme, book
        assert f"`{book}`" in kernels, book
        assert ours in kernels, ours
    for text in (readme, kernels):
        assert "2.2–2.3" in text and "2.4–2.5" in text
    assert BOOK_COMMIT in readme and BOOK_TREE in readme and LIVE_SITE in readme
    for stub in ("quantized_matmul.cpp", "flash_attention.cpp"):
        src = (paths.kernels_dir() / "src" / stub).read_text()
        for needle in ("src/extensions/", "tiny-llm-tutor build-kernels", "pdm run build-ext",
                       "tiny-llm-tutor check day2."):
            assert needle in src, (stub, needle)


def test_a_mistake_taught_on_another_day_gets_its_question():
    """The week-2 model checks of 2.1 and 2.4 can name the int-offset RoPE mistake that
    lesson 2.6 teaches: the learner must get its question, not a generic one."""
    from tutor.curriculum import load_course

    course = load_course()
    owner = course.lesson("2.6").pitfall_questions
    assert "rope-int-offset-one-slice" in owner
    for day in ("2.1", "2.4"):
        questions = course.pitfall_questions(day)
        assert questions["rope-int-offset-one-slice"] == owner["rope-int-offset-one-slice"]
        for pid, q in course.lesson(day).pitfall_questions.items():
            assert questions[pid] == q  # the day's own questions win
