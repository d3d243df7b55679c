"""The mistake as a picture: where a learner's array differs from the oracle, on one 2-D
slice, shrunk to a few cells, as plain levels in the check's evidence.

A map is built only when ``ctx.expect_close`` has already failed (``watch``), so passing
checks pay nothing. It carries how far off each cell is relative to the tolerance, never
a value of the oracle: a hidden reference stays hidden.

Map (JSON): ``rows``/``cols`` name the slice's two axes, ``size`` is the slice's full
(rows, cols), ``at`` the indices of the other axes that pick the slice (``[]`` for a
2-D output) and ``at_names`` their names, ``shape`` the whole output's, ``cell`` how many values one cell covers at
most, and ``levels`` one string per row of cells, one digit per cell (see ``LEVELS``).
"""

from __future__ import annotations

import math

import numpy as np

MAX_ROWS, MAX_COLS = 16, 32
# A cell's level is the worst |learner - oracle| in it, in tolerances: 0 within, then up
# to 10x, 100x, 1000x the tolerance, then beyond (or inf/NaN where the oracle is finite,
# or any difference at all where the tolerance is exact).
LEVELS = (1.0, 10.0, 100.0, 1000.0)


def _axis(axes, i: int, ndim: int) -> str:
    if axes and len(axes) == ndim and axes[i]:
        return str(axes[i])
    return f"axis {i}"


def off_by(g: np.ndarray, w: np.ndarray, rtol: float, atol: float) -> np.ndarray:
    """|g - w| in tolerances, element by element: 0 where within (an inf or NaN matching the
    oracle's own counts as within), inf where a non-finite value stands for a finite one or
    the tolerance is zero and they differ."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        same = (g == w) | (np.isnan(g) & np.isnan(w))
        diff = np.abs(g - w)
        bound = atol + rtol * np.abs(w)
        ratio = np.where(bound > 0, diff / np.where(bound > 0, bound, 1.0), np.inf)
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    return np.where(same, 0.0, ratio)


def _level(x: np.ndarray) -> np.ndarray:
    lv = np.zeros(x.shape, dtype=int)
    for i, t in enumerate(LEVELS):
        lv[x > t] = i + 1
    return lv


def _blocks(n: int, most: int) -> np.ndarray:
    """Start of each of at most ``most`` nearly equal blocks covering range(n)."""
    k = min(n, most)
    return np.array([i * n // k for i in range(k)], dtype=int)


def build(g, w, rtol: float, atol: float, axes=None, plane=None) -> dict | None:
    """The map of where ``g`` (learner) differs from ``w`` (oracle), or None when there is
    nothing 2-D to draw (fewer than two axes, shapes that differ, nothing outside tolerance).
    The slice is the two axes ``plane`` (default: the last two; e.g. position and feature of
    a (batch, position, head, feature) output) at the index of the other axes with the most
    values off (so a mistake in one head is not hidden behind a right first head)."""
    g = np.asarray(g, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if g.shape != w.shape or g.ndim < 2 or g.size == 0:
        return None
    full_shape = [int(n) for n in g.shape]
    if plane is not None:
        i, j = (int(a) % g.ndim for a in plane)
        if i != j and (i, j) != (g.ndim - 2, g.ndim - 1):
            g, w = (np.moveaxis(x, (i, j), (-2, -1)) for x in (g, w))
            if axes and len(axes) == g.ndim:
                rest = [a for k, a in enumerate(axes) if k not in (i, j)]
                axes = (*rest, axes[i], axes[j])
    ratio = off_by(g, w, rtol, atol)
    R, C = g.shape[-2:]
    flat = ratio.reshape(-1, R, C)
    bad = (flat > LEVELS[0]).sum(axis=(1, 2))
    if not bad.any():
        return None
    k = int(np.argmax(bad))
    at = [int(i) for i in np.unravel_index(k, g.shape[:-2])] if g.ndim > 2 else []
    sl = flat[k]
    rs, cs = _blocks(R, MAX_ROWS), _blocks(C, MAX_COLS)
    cells = np.maximum.reduceat(np.maximum.reduceat(sl, rs, axis=0), cs, axis=1)
    lv = _level(cells)
    return {
        "rows": _axis(axes, g.ndim - 2, g.ndim), "cols": _axis(axes, g.ndim - 1, g.ndim),
        "size": [int(R), int(C)], "at": at, "shape": full_shape,
        "at_names": [_axis(axes, i, g.ndim) for i in range(g.ndim - 2)],
        "cell": [math.ceil(R / len(rs)), math.ceil(C / len(cs))],
        "row_starts": [int(r) for r in rs], "col_starts": [int(c) for c in cs],
        "levels": ["".join(str(int(v)) for v in row) for row in lv],
    }


def watch(ctx, harness) -> None:
    """Make ``ctx.expect_close`` add a map to the evidence of a value mismatch it raises.
    The harness's comparison is untouched; this only reads its failure on the way out."""
    inner = ctx.expect_close

    def expect_close(got, want, **kw):
        try:
            return inner(got, want, **kw)
        except harness.CheckFailed as f:
            ev = f.evidence
            if isinstance(ev, dict) and ev.get("mismatched") and "map" not in ev:
                try:
                    tol = ev.get("tolerance") or {}
                    m = build(harness.to_np(got), harness.to_np(want),
                              float(tol.get("rtol", 0.0)), float(tol.get("atol", 0.0)),
                              kw.get("axes"), kw.get("map_axes"))
                except Exception:  # noqa: BLE001 - a picture never costs the verdict
                    m = None
                if m:
                    ev["map"] = m
            raise

    ctx.expect_close = expect_close
