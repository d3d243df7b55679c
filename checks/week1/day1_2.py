"""Day 1.2 -- rotary positional embeddings, traditional and half-split.

Oracle: mx.fast.rope on the (N, H, L, D) transpose of the learner's (N, L, H, D) input.
The mistakes are modelled with mx.fast.rope too: the other layout, offset 0, another base
(the wrong exponent base**(-i/D) is RoPE with base sqrt(base)), and scale -1 (positions,
hence angles, negated). Mistakes mx.fast.rope cannot express (pairs read in one layout and
written in the other, positions along the head axis or shifted, cos and sin exchanged, other
frequency tables) are modelled by ``rope_general``, a plain float32 re-computation.
"""

from __future__ import annotations

import mlx.core as mx

from ..harness import check, dtype_str

FORBID = ("mx.fast.rope", "nn.RoPE")
F32, F16 = mx.float32, mx.float16






def rope_model(x, dims, traditional, base, offset=0, scale=1.0):
    """mx.fast.rope for (N, L, H, D) inputs."""
    y = mx.fast.rope(x.transpose(0, 2, 1, 3), dims, traditional=traditional, base=base,
                     scale=scale, offset=offset)
    return y.transpose(0, 2, 1, 3)


def inv_freqs(D, base):
    return mx.power(float(base), -mx.arange(D // 2, dtype=F32) / (D // 2))


def rope_general(x, positions, freqs, *, read: bool, write: bool, along_heads=False,
                 swap_cos_sin=False, signs=(1, -1, 1, 1)):
    """RoPE on (N, L, H, D) in float32: pairs read in one layout (True: interleaved) and
    written in another, token j rotated by ``positions[j] * freqs`` (positions indexed
    along the head axis instead if ``along_heads``, which needs H == L). ``signs`` are the
    factors of the four terms of y1 = x1 cos - x2 sin, y2 = x1 sin + x2 cos (0 drops a
    term)."""
    N, L, H, D = x.shape
    h = D // 2
    xf = x.astype(F32)
    pos = mx.array(positions, dtype=F32)
    if along_heads:
        if H != L:
            raise ValueError("positions along the head axis need H == L")
        angles = pos[None, None, :, None] * freqs
    else:
        angles = pos[None, :, None, None] * freqs
    cos, sin = mx.cos(angles), mx.sin(angles)
    if swap_cos_sin:
        cos, sin = sin, cos
    if read:
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
    else:
        x1, x2 = xf[..., :h], xf[..., h:]
    a, b, c, d = signs
    y1, y2 = a * x1 * cos + b * x2 * sin, c * x1 * sin + d * x2 * cos
    if write:
        y = mx.stack([y1, y2], axis=-1).reshape(N, L, H, D)
    else:
        y = mx.concatenate([y1, y2], axis=-1)
    return y.astype(x.dtype)


# One term of the rotation with the wrong sign (in one line only: both lines flipped is
# rope-rotation-reversed), or the sin terms left out.
FORMULA_SLIPS = [(1, 1, 1, 1), (1, -1, -1, 1), (1, 0, 0, 1), (-1, -1, 1, 1), (1, -1, 1, -1)]


def wrong_positions(p: int, L: int, seq_len: int) -> list[list[int]]:
    """Positions a learner plausibly uses for tokens that sit at p .. p + L - 1: the run
    shifted to start anywhere else up to seq_len (start 0 is rope-offset-ignored when p > 0),
    every token at one position, or the run reversed."""
    right = list(range(p, p + L))
    out = [list(range(s, s + L)) for s in range(0, seq_len + 1) if s != p and (s or not p)]
    out += [[c] * L for c in {p, p + L - 1, p + L} if L > 1]
    if L > 1:
        out.append(right[::-1])
    return out


def wrong_freqs(D, base):
    """Frequency tables that are not base ** (-i / (D/2)) and that mx.fast.rope's base cannot
    express: the exponent's sign flipped, or the table in reverse order."""
    f = inv_freqs(D, base)
    return [mx.power(float(base), mx.arange(D // 2, dtype=F32) / (D // 2)), f[::-1]]


# (N, L, H, D, dtype, base, seq_len, start) -- odd L, several heads, D = 8 and 16. Each list
# starts with H == L, where positions broadcast along the head axis still run (and show).
NO_OFFSET = [(2, 4, 4, 8, F32, 10000, 32, None), (1, 7, 3, 8, F32, 10000, 32, None),
             (2, 5, 4, 16, F16, 10000, 16, None), (2, 9, 2, 16, F32, 1000000, 64, None)]
# ... and end with one decode step: a single token far into the sequence.
WITH_OFFSET = [(1, 4, 4, 8, F32, 10000, 32, 6), (1, 7, 3, 8, F32, 10000, 32, 5),
               (2, 5, 4, 16, F16, 10000, 40, 13), (1, 3, 2, 16, F32, 1000000, 64, 61),
               (2, 1, 4, 16, F32, 10000, 64, 37)]


def _run(ctx, traditional: bool, cases, seed: int):
    cls = ctx.symbol("RoPE")
    mx.random.seed(seed)
    evs = []
    for N, L, H, D, dtype, base, seq_len, start in cases:
        x = mx.random.normal((N, L, H, D)).astype(dtype)
        p = start or 0
        want = rope_model(x, D, traditional, base, p)
        layer = ctx.call(cls, D, seq_len, base, traditional)
        offset = None if start is None else slice(start, start + L)
        got = ctx.call(layer, x, offset)
        case = (f"x (N, L, H, D) = {(N, L, H, D)}, {dtype_str(dtype)}, base={base}, seq_len={seq_len}, "
                + ("offset None" if start is None else f"offset slice({start}, {start + L})"))
        pos = list(range(p, p + L))
        t = traditional

        def general(positions=pos, freqs=None, read=t, write=t, **kw):
            f = inv_freqs(D, base) if freqs is None else freqs
            return rope_general(x, positions, f, read=read, write=write, **kw)

        cands = {
            "rope-layout-swapped": lambda: rope_model(x, D, not traditional, base, p),
            "rope-wrong-frequencies": lambda: (
                [rope_model(x, D, traditional, b, p)
                 for b in {base ** 0.5, base ** 2, 10000, 1000000, seq_len, D} - {base}]
                + [general(freqs=f) for f in wrong_freqs(D, base)]),
            "rope-rotation-reversed": lambda: rope_model(x, D, traditional, base, p, scale=-1.0),
            "rope-layout-mixed": lambda: [general(read=t, write=not t),
                                          general(read=not t, write=t)],
            "rope-positions-wrong-axis": lambda: general(along_heads=True),
            "rope-positions-wrong": lambda: [general(positions=q)
                                             for q in wrong_positions(p, L, seq_len)],
            "rope-cos-sin-swapped": lambda: general(swap_cos_sin=True),
            "rope-formula-slip": lambda: [general(signs=sg) for sg in FORMULA_SLIPS],
        }
        if p:
            cands["rope-offset-ignored"] = lambda: rope_model(x, D, traditional, base, 0)
        evs.append(ctx.expect_close(got, want, case=case, candidates=cands,
                                    axes=("batch", "position", "head", "feature"),
                                    map_axes=(1, 3)))  # the map: position by feature
    return {"cases": len(evs), "max_abs_err": max(e["max_abs_err"] for e in evs)}


@check("rope-traditional", 1, "RoPE, traditional (interleaved pairs), positions from 0",
       forbid=FORBID, symbols=("RoPE",))
def rope_traditional(ctx):
    return _run(ctx, True, NO_OFFSET, 201)


@check("rope-traditional-offset", 1, "RoPE, traditional, with an offset slice",
       forbid=FORBID, symbols=("RoPE",))
def rope_traditional_offset(ctx):
    return _run(ctx, True, WITH_OFFSET, 202)


@check("rope-half-split", 2, "RoPE, half-split (Qwen2's layout), positions from 0",
       forbid=FORBID, symbols=("RoPE",))
def rope_half_split(ctx):
    return _run(ctx, False, NO_OFFSET, 203)


@check("rope-half-split-offset", 2, "RoPE, half-split, with an offset slice",
       forbid=FORBID, symbols=("RoPE",))
def rope_half_split_offset(ctx):
    return _run(ctx, False, WITH_OFFSET, 204)
