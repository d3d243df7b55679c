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
