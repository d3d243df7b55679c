"""Second runs that name a crash by what makes it go away (checks/week2/probes.py)."""

from __future__ import annotations

import pytest

from checks.harness import LearnerError
from checks.week2.probes import with_probe


def _scenario(errors: dict):
    """A scenario whose run for each variant raises the given message (None: it passes)."""
    def run(variant):
        msg = errors[variant]
        if msg is not None:
            raise LearnerError(msg, [])
        return "ok"
    return run


def _always(exc) -> bool:
    return True


def test_a_probe_that_makes_the_run_right_names_the_crash():
    run = _scenario({None: "dtype mismatch", "f16": None})
    with pytest.raises(LearnerError) as info:
        with_probe(run, [("f16", "p-f16", _always, "Cast, it is right.", "a cast")])
    assert info.value.pitfall == "p-f16"
    assert "Cast, it is right." in info.value.message


def test_two_mistakes_at_once_the_one_that_moves_the_crash_is_named():
    # Cast scales: the crash moves on (to the RoPE offset); list offsets: the same crash.
    run = _scenario({None: "dtype mismatch", "f16": "offsets length", "list": "dtype mismatch"})
    probes = [("f16", "p-f16", _always, "right with a cast", "a cast"),
              ("list", "p-list", _always, "right with lists")]
    with pytest.raises(LearnerError) as info:
        with_probe(run, probes)
    assert info.value.pitfall == "p-f16"
    assert "gets past this error" in info.value.message


def test_a_probe_without_a_change_never_names_a_moved_crash():
    run = _scenario({None: "dtype mismatch", "list": "offsets length"})
    with pytest.raises(LearnerError) as info:
        with_probe(run, [("list", "p-list", _always, "right with lists")])
    assert info.value.pitfall is None


def test_two_probes_that_both_move_the_crash_name_nothing():
    run = _scenario({None: "x", "a": "y", "b": "z"})
    probes = [("a", "p-a", _always, "n", "change a"), ("b", "p-b", _always, "n", "change b")]
    with pytest.raises(LearnerError) as info:
        with_probe(run, probes)
    assert info.value.pitfall is None
