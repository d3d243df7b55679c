"""How the check harness names a mistake, and what it says when it cannot: a candidate names
its pitfall only when it explains the learner's output far better than the reference does,
never when two pitfalls fit alike, and an unexplained mismatch is described (a constant
factor, an offset, the indices that differ, exchanged axes, a wrong shape)."""

from __future__ import annotations

import numpy as np
import pytest

from checks.harness import (CheckFailed, Ctx, _match_candidates, describe_difference,
                            describe_shape_difference)

RTOL, ATOL = 1e-4, 1e-5


@pytest.fixture
def w():
    return np.random.default_rng(0).normal(size=(2, 3, 4))


def test_the_matching_candidate_is_named(w):
    got = 2 * w
    assert _match_candidates(got, {"a": 2 * w, "b": 3 * w}, RTOL, ATOL, want=w) == "a"


def test_a_candidate_equal_to_the_reference_names_nothing(w):
    # The mistake does not show on these inputs: the candidate is the reference itself.
    got = w.copy()
    got[0, 0, 0] += 1e-4  # just outside tolerance, still next to the candidate
    assert _match_candidates(got, {"a": w.copy()}, RTOL, 1e-3, want=w) is None


def test_a_candidate_that_does_not_explain_the_difference_names_nothing(w):
    # The candidate is within tolerance of the learner's output, but hardly any closer to
    # it than the reference is: it explains nothing.
    cand = w + 0.8e-3
    got = w + 1.2e-3
    assert _match_candidates(got, {"a": cand}, 0.0, 1e-3, want=w) is None


def test_two_pitfalls_that_fit_alike_are_not_told_apart_by_guessing(w):
    got = 2 * w
    noise = np.random.default_rng(1).normal(size=w.shape) * 1e-7
    assert _match_candidates(got, {"a": 2 * w + noise, "b": 2 * w - noise}, RTOL, ATOL,
                             want=w) is None
    # One variant of the same pitfall fitting twice is fine.
    assert _match_candidates(got, {"a": [2 * w + noise, 2 * w - noise]}, RTOL, ATOL,
                             want=w) == "a"


def test_nan_positions_must_agree(w):
    got = w.copy()
    got[0, 0, :] = np.nan
    cand = w.copy()
    cand[0, 0, :] = np.nan
    other = w.copy()
    other[0, 1, :] = np.nan
    assert _match_candidates(got, {"a": cand}, RTOL, ATOL, want=w) == "a"
    assert _match_candidates(got, {"b": other}, RTOL, ATOL, want=w) is None


@pytest.mark.parametrize("make, words", [
    (lambda w: 2.5 * w, "2.5 times"),
    (lambda w: -w, "sign flipped"),
    (lambda w: w + 0.3, "shifted by about 0.3"),
    (lambda w: 0 * w, "zero"),
    (lambda w: np.flip(w, axis=1), "reversed along axis 1"),
])
def test_simple_differences_are_described(w, make, words):
    assert words in describe_difference(make(w), w, RTOL, ATOL)


def test_the_indices_that_differ_are_named_with_the_axis(w):
    got = w.copy()
    got[:, 1, :] += 1.0
    text = describe_difference(got, w, RTOL, ATOL, ("batch", "position", "feature"))
    assert "Along position (size 3) only index 1 differs; the other 2 match." in text


def test_a_scale_per_vector_is_described(w):
    factors = np.array([0.5, 2.0, 3.0])[None, :, None]
    text = describe_difference(w * factors, w, RTOL, ATOL, ("batch", "position", "feature"))
    assert "Each vector along feature equals the reference's times a factor of its own" in text


def test_an_offset_shared_along_an_axis_is_described(w):
    bias = np.array([0.5, -1.0, 2.0, 0.25])
    text = describe_difference(w + bias, w, RTOL, ATOL, ("batch", "row", "feature"))
    assert "same at every index along batch" in text


def test_a_reordering_along_an_axis_is_described(w):
    text = describe_difference(w[:, [2, 0, 1], :], w, RTOL, ATOL, ("batch", "head", "feature"))
    assert "indices along head in another order" in text and "[2, 0, 1]" in text


def test_exchanged_axes_are_described():
    w = np.random.default_rng(2).normal(size=(2, 3, 3))
    assert "axis 1 and axis 2 exchanged" in describe_difference(w.swapaxes(1, 2), w, RTOL, ATOL)


def test_shapes_are_compared():
    assert "another order" in describe_shape_difference((2, 4, 3), (2, 3, 4))
    assert "number of elements" in describe_shape_difference((2, 12), (2, 3, 4))
    assert "Axis 2 has size 5 (expected 4)" in describe_shape_difference((2, 3, 5), (2, 3, 4))


def test_expect_close_says_what_differs_when_no_mistake_matches():
    import mlx.core as mx

    ctx = Ctx(impl=None, impl_dir=None, spec=None)
    want = mx.random.normal((2, 3, 4), key=mx.random.key(0))
    with pytest.raises(CheckFailed) as err:
        ctx.expect_close(want * 3, want, candidates={"x": lambda: want * 2})
    assert err.value.pitfall is None
    assert "3 times the reference" in err.value.message
    with pytest.raises(CheckFailed) as err:
        ctx.expect_close(want * 2, want, candidates={"x": lambda: want * 2})
    assert err.value.pitfall == "x"
