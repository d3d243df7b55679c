"""Second runs that name a mistake from how the learner's code fails, not from its output.

A check whose learner call crashes (or is wrong in a way no catalogued output matches) may
re-run the same scenario with one thing changed; if the changed run is right, the change
points at the mistake. The probes run only after a failure, so a passing solution never
pays for them.

    return with_probe(ctx, lambda variant: scenario(variant), probes)

``probes`` is a list of (variant, pitfall, when, note): the scenario is re-run with
``variant`` when ``when(exc)`` holds for the first failure; if that run passes, the first
failure is raised again carrying ``pitfall`` and ``note`` (evidence, never a fix).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..harness import CheckFailed, LearnerError, Skip, _compare, to_np

# The pitfall of an int offset turned into a list holding one slice (the book's own
# attention does this): every batch of more than one row then crashes in RoPE.
INT_OFFSET_PITFALL = "rope-int-offset-one-slice"


def crashed(exc) -> bool:
    return isinstance(exc, LearnerError)


def unnamed(exc) -> bool:
    """A failure of the learner's code that no catalogued mistake explains yet."""
    return exc.pitfall is None and exc.status in ("fail", "error")


def with_probe(scenario: Callable[[Any], Any], probes: list[tuple]) -> Any:
    """``scenario(None)`` is the check as designed; on a failure, each applicable probe
    re-runs ``scenario(variant)``. A probe may carry a fifth element, a few words on what it
    changes: when no probe makes the run right but exactly one such probe moves a crash
    past the point where it crashed (another crash, elsewhere), that probe still names the
    first crash. Two mistakes at once (the book's own model has the int RoPE offset and the
    uncast bfloat16 scales together) otherwise hide each other."""
    try:
        return scenario(None)
    except (CheckFailed, LearnerError) as exc:
        if not unnamed(exc):
            raise
        moved_past = []
        for variant, pitfall, when, note, *change in probes:
            if not when(exc):
                continue
            try:
                scenario(variant)
            except LearnerError as later:
                if change and crashed(exc) and later.message != exc.message:
                    moved_past.append((pitfall, change[0]))
                continue
            except (CheckFailed, Skip, Exception):  # noqa: BLE001 - no diagnosis
                continue
            _name(exc, pitfall, note)
            break
        else:
            if len(moved_past) == 1:
                pitfall, change = moved_past[0]
                _name(exc, pitfall, f"The same run with {change} gets past this error (and "
                                    "then fails elsewhere, on another mistake).")
        raise exc from None


def _name(exc, pitfall: str, note: str) -> None:
    exc.pitfall = pitfall
    exc.message = f"{exc.message} {note}"
    exc.args = (exc.message,)


def int_offset_probe(batch: int) -> list[tuple]:
    """The probe for the int-offset mistake: only a crash, only with more than one row, and
    only if the same calls with one offset per row (a list of ints) are right."""
    if batch < 2:
        return []
    return [("list-offsets", INT_OFFSET_PITFALL, crashed,
             f"The same calls with the offset given as a list of {batch} ints (one per row) "
             "instead of one int run and are right.")]


def offsets_as(variant, offset: int, batch: int):
    """The offset a scenario hands the learner: the int itself, or one int per row."""
    return [offset] * batch if variant == "list-offsets" else offset


def same_values_rearranged(got, want, rtol: float, atol: float) -> bool:
    """``got`` holds the reference's values, but not where they belong: in another shape,
    or in the right shape with axes exchanged (a reshape or transpose mistake). Compared
    as sorted values: random data does not share its values with anything else."""
    if getattr(got, "shape", None) is None or got.size != want.size:
        return False
    g, w = to_np(got).astype(np.float64), to_np(want).astype(np.float64)
    if not np.all(np.isfinite(g)) or not np.all(np.isfinite(w)):
        return False
    if g.shape == w.shape and _compare(g, w, rtol, atol)[0]:
        return False  # not rearranged: right
    return _compare(np.sort(g.reshape(-1)), np.sort(w.reshape(-1)), rtol, atol)[0]


def same_values_other_shape(got, want, rtol: float, atol: float) -> bool:
    """``got`` holds exactly the reference's values, laid out in another shape (a result
    that was not reshaped back, or reshaped with the wrong axes split)."""
    shape = getattr(got, "shape", None)
    if shape is None or tuple(shape) == tuple(want.shape) or got.size != want.size:
        return False
    g = to_np(got).astype(np.float64).reshape(want.shape)
    return _compare(g, to_np(want).astype(np.float64), rtol, atol)[0]


def row_constant_difference(got, want, rtol: float, atol: float) -> bool:
    """``got - want`` is one nonzero vector repeated for every row (the same error added
    to every output of a linear layer: its bias)."""
    if tuple(getattr(got, "shape", ())) != tuple(want.shape) or want.ndim < 2:
        return False
    w = to_np(want).astype(np.float64).reshape(-1, want.shape[-1])
    d = to_np(got).astype(np.float64).reshape(-1, want.shape[-1]) - w
    if d.shape[0] < 2 or not np.all(np.isfinite(d)):
        return False
    spread = np.abs(d - d[:1])
    tol = atol + rtol * np.abs(w)
    return bool(np.all(spread <= 2 * tol) and np.any(np.abs(d[0]) > 10 * tol[0]))
