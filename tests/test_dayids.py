import pytest

from tutor.dayids import UnknownDay, parse

VALID = ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7"]


@pytest.mark.parametrize("text", ["day1.3", "1.3", "w1d3", "W1D3", "week1day3", "Day1.3"])
def test_forms_of_a_day(text):
    assert parse(text, VALID) == ["1.3"]


def test_week_runs_every_day_in_order():
    assert parse("week1", VALID) == VALID
    assert parse("w1", VALID) == VALID


@pytest.mark.parametrize("text, suggestion", [("day1.8", None), ("dya1.3", "day1.3"),
                                              ("1.33", None), ("week9", None)])
def test_unknown_day_suggests_and_lists(text, suggestion):
    with pytest.raises(UnknownDay) as e:
        parse(text, VALID)
    msg = e.value.render()
    assert "Valid ids: day1.1" in msg and "week1" in msg
    if suggestion:
        assert f"Did you mean '{suggestion}'" in msg


# --------------------------------------------------------------------------- the book's numbers
# The book numbers week 2 as days 2.1-2.7; the tutor merges 2.2+2.3, 2.4+2.5, 2.6+2.7.

from course_factory import make_course, make_lesson  # noqa: E402

from tutor.curriculum import load_course  # noqa: E402
from tutor.dayids import NotInTutorYet, resolve  # noqa: E402


@pytest.fixture(scope="module")
def course():
    return load_course()


@pytest.mark.parametrize("text, lesson, title, span", [
    ("day2.3", "2.2", "Quantized Matmul", "2.2–2.3"),
    ("2.3", "2.2", "Quantized Matmul", "2.2–2.3"),
    ("2.5", "2.4", "Flash Attention", "2.4–2.5"),
    ("w2d7", "2.6", "Chunked Prefill and Continuous Batching", "2.6–2.7"),
    ("W2D5", "2.4", "Flash Attention", "2.4–2.5"),
])
def test_a_merged_book_day_opens_its_lesson_and_says_so(course, text, lesson, title, span):
    route = resolve(text, course)
    assert route.days == [lesson]
    book_day = route.note.split()[2]
    assert route.note == (f"Book day {book_day} is covered by lesson {lesson} "
                          f"({title}, book days {span}).")


@pytest.mark.parametrize("text", ["day2.2", "2.4", "w2d6", "day1.3", "2.1"])
def test_a_lesson_s_own_number_needs_no_note(course, text):
    route = resolve(text, course)
    assert route.days == [text.replace("day", "").replace("w2d", "2.")] and route.note is None


def test_every_book_day_of_weeks_1_and_2_is_accepted(course):
    for week in (1, 2):
        for n in range(1, 8):
            assert len(resolve(f"{week}.{n}", course).days) == 1, f"{week}.{n}"


# Every day of week 3 is written: the "not in the tutor yet" rule is tested on a course of
# its own (test_not_yet_comes_from_the_curriculum).
W3_LESSONS = [d.id for d in load_course().week(3).days]


@pytest.mark.parametrize("day", W3_LESSONS)
def test_every_written_day_of_week_3_is_accepted(course, day):
    assert resolve(f"w3d{day.split('.')[1]}", course).days == [day]


def test_not_yet_comes_from_the_curriculum():
    """Once a week-3 lesson exists, its days resolve; days of it no lesson covers yet are
    still 'not in the tutor yet' (no hard-coded week)."""
    course = make_course((2, "W2", [make_lesson("2.1")]),
                         (3, "W3", [make_lesson("3.1", book_days=("3.1", "3.2"))]),
                         book_plan=(3, 7))
    assert resolve("3.2", course).days == ["3.1"]
    assert resolve("week3", course).days == ["3.1"]
    with pytest.raises(NotInTutorYet, match="Book day 3.5 is not in the tutor yet"):
        resolve("3.5", course)


@pytest.mark.parametrize("text", ["3.8", "2.8", "week4", "4.1"])
def test_days_outside_the_book_are_unknown(course, text):
    with pytest.raises(UnknownDay) as e:
        resolve(text, course)
    assert not isinstance(e.value, NotInTutorYet)
    assert "Valid ids: day1.1–day1.7, day2.1–day2.7" in e.value.render()


def test_a_typo_of_a_book_day_is_suggested(course):
    with pytest.raises(UnknownDay) as e:
        resolve("dya2.3", course)
    assert "Did you mean 'day2.3'" in e.value.render()


def test_a_long_unknown_id_is_echoed_cut_short():
    from tutor.dayids import UnknownDay

    text = str(UnknownDay("x" * 5000, ["1.1", "1.2"]))
    assert "x" * 25 not in text and "..." in text
    assert len(text.splitlines()[0]) < 60
