"""The mistake as a picture: the difference map's builder, and `check -v` drawing it for a
top-left causal mask made in the answer key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mutation import apply_mutation, load_mutations
from tutor import paths
from tutor.checking import diffmap
from tutor.checking.diffmap_view import map_text

ROOT = Path(__file__).resolve().parent.parent
TOL = {"rtol": 1e-5, "atol": 1e-6}


def causal(L, S, where="bottom-right"):
    rows, cols = np.arange(L)[:, None], np.arange(S)[None, :]
    allowed = cols <= rows + (S - L if where == "bottom-right" else 0)
    return np.where(allowed, 0.0, -np.inf)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def differs(m) -> list[str]:
    return ["".join("." if c == "0" else "#" for c in row) for row in m["levels"]]


def test_a_top_left_mask_differs_on_the_keys_it_hides():
    L, S = 4, 8
    m = diffmap.build(causal(L, S, "top-left"), causal(L, S), 0.0, 0.0,
                      axes=("query position", "key position"))
    # row r: keys r+1 .. r+S-L hidden by the learner, visible in the reference
    assert differs(m) == [".####...", "..####..", "...####.", "....####"]
    assert (m["rows"], m["cols"], m["size"], m["at"]) == ("query position", "key position",
                                                          [L, S], [])
    assert diffmap.build(causal(L, S), causal(L, S), 0.0, 0.0) is None


def test_a_top_left_mask_s_weights_differ_in_a_triangle():
    L, S = 6, 9
    scores = np.random.default_rng(0).normal(size=(2, 3, L, S))
    got, want = softmax(scores + causal(L, S, "top-left")), softmax(scores + causal(L, S))
    m = diffmap.build(got, want, **TOL)
    # every key a query may see is weighted differently (fewer keys share the weight), the
    # keys neither may see agree: the lower-left triangle up to the shifted diagonal
    assert differs(m) == ["#" * (r + 1 + S - L) + "." * (L - 1 - r) for r in range(L)]
    assert len(m["at"]) == 2 and m["shape"] == [2, 3, L, S]


def test_a_rope_output_is_drawn_position_by_feature():
    # (batch, position, head, feature); head 2 of batch 1 rotates every position but the
    # first wrongly in the features past the first pair
    want = np.zeros((2, 5, 3, 8))
    got = want.copy()
    got[1, 1:, 2, 2:] = 1.0
    names = ("batch", "position", "head", "feature")
    m = diffmap.build(got, want, **TOL, axes=names, plane=(1, 3))
    assert (m["rows"], m["cols"], m["at"], m["at_names"]) == ("position", "feature", [1, 2],
                                                              ["batch", "head"])
    assert differs(m) == ["........"] + ["..######"] * 4 and m["shape"] == [2, 5, 3, 8]
    assert "at batch 1, head 2 of shape (2, 5, 3, 8)" in map_text(m).plain
    # the default plane is the last two axes
    assert diffmap.build(got, want, **TOL, axes=names)["rows"] == "head"


def test_a_wrong_softmax_axis_shows_columns():
    # each row of scores alike: normalising over the queries gives 1/L everywhere, which
    # is right only in the columns whose weight is exactly 1/L
    L = 4
    p = np.array([0.25, 0.05, 0.25, 0.05, 0.25, 0.05, 0.05, 0.05])
    scores = np.tile(np.log(p), (L, 1))
    m = diffmap.build(softmax(scores, axis=-2), softmax(scores, axis=-1), **TOL)
    assert differs(m) == [".#.#.###"] * L


def test_big_outputs_shrink_to_a_few_cells_keeping_the_worst():
    want = np.zeros((3, 64, 100))
    got = want.copy()
    got[1, 40:42, 76:78] = 1.0  # far off, in one cell of the second batch element
    got[0, 5, 5] = 2e-6         # the first element has only one value off
    m = diffmap.build(got, want, **TOL)
    assert m["at"] == [1]  # the element with the most values off
    lv = m["levels"]
    assert len(lv) <= diffmap.MAX_ROWS and all(len(r) <= diffmap.MAX_COLS for r in lv)
    assert m["cell"] == [4, 4]
    hot = [(i, j) for i, r in enumerate(lv) for j, c in enumerate(r) if c != "0"]
    assert hot == [(10, 24)] and lv[10][24] == "4"


def test_no_map_for_what_is_not_a_2d_array_alike():
    assert diffmap.build(np.zeros(5), np.ones(5), **TOL) is None
    assert diffmap.build(np.zeros((2, 3)), np.zeros((3, 2)), **TOL) is None


def test_the_map_holds_only_levels_never_the_reference_s_values():
    want = np.random.default_rng(1).normal(size=(5, 7))
    got = want.copy()
    got[2] += 1.0
    m = diffmap.build(got, want, **TOL)
    assert set(m) == {"rows", "cols", "size", "at", "at_names", "shape", "cell",
                      "row_starts", "col_starts", "levels"}
    assert all(set(r) <= set("01234") for r in m["levels"])
    assert differs(m) == ["......."] * 2 + ["#######"] + ["......."] * 2
    text = map_text(m).plain
    assert "axis 0" in text and "within tolerance" in text
    assert all(len(line) <= 75 for line in text.splitlines())


def test_check_v_draws_the_top_left_mask_s_triangle(tmp_path):
    entry = next(e for e in load_mutations(ROOT / "checks" / "mistakes" / "day1_3.yaml")
                 if e["id"] == "causal-mask-top-left")
    impl = apply_mutation(paths.answer_key_dir(), entry, tmp_path)
    exe = Path(sys.executable).parent / "tiny-llm-tutor"
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    r = subprocess.run([str(exe), "check", "day1.3", "-v", "--impl", str(impl)], cwd=tmp_path,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "where it differs (rows: query position)" in out
    assert "columns: key position" in out
    # L=3, S=5: query r hides keys r+1 .. r+2; two characters per cell
    rows = [line.rstrip() for line in out.splitlines()]
    i = rows.index("     0 ··████····")
    assert rows[i + 1:i + 3] == ["     1 ····████··", "     2 ······████"]
    assert "· within tolerance" in out
    assert max(len(line) for line in rows) <= 80
    # and the attention check's first case (values = the identity, so the output is the
    # weights; L=8, S=10) fills the lower-left triangle up to the shifted diagonal
    j = rows.index(next(r for r in rows if "columns: key (its weight)" in r))
    tri = rows[j + 1:j + 9]
    cells = [line.split()[1] for line in tri]
    assert [int(line.split()[0]) for line in tri] == list(range(8))
    assert [len(c) - c.count("·") for c in cells] == [2 * (r + 3) for r in range(8)]
    assert all(c.endswith("·" * (len(c) - 2 * (r + 3))) for r, c in enumerate(cells))
