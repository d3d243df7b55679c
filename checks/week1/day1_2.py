"""Day 1.2 -- rotary positional embeddings, traditional and half-split.

Oracle: mx.fast.rope on the (N, H, L, D) transpose of the learner's (N, L, H, D) input.
The mistakes are modelled with mx.fast.rope too: the other layout, offset 0, another base
(the wrong exponent base**(-i/D) is RoPE with base sqrt(base)), and scale -1 (positions,
hence angles, negated).
"""

from __future__ import annotations

import mlx.core as mx

from ..harness import check, dtype_str

DAY = "1.2"
FORBID = ("mx.fast.rope", "nn.RoPE")
F32, F16 = mx.float32, mx.float16






def rope_model(x, dims, traditional, base, offset=0, scale=1.0):
    """mx.fast.rope for (N, L, H, D) inputs."""
    y = mx.fast.rope(x.transpose(0, 2, 1, 3), dims, traditional=traditional, base=base,
                     scale=scale, offset=offset)
    return y.transpose(0, 2, 1, 3)


# (N, L, H, D, dtype, base, seq_len, start) -- odd L, several heads, D = 8 and 16.
NO_OFFSET = [(1, 7, 3, 8, F32, 10000, 32, None), (2, 5, 4, 16, F16, 10000, 16, None),
             (2, 9, 2, 16, F32, 1000000, 64, None)]
WITH_OFFSET = [(1, 7, 3, 8, F32, 10000, 32, 5), (2, 5, 4, 16, F16, 10000, 40, 13),
               (1, 3, 2, 16, F32, 1000000, 64, 61)]


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
        cands = {
            "rope-layout-swapped": lambda: rope_model(x, D, not traditional, base, p),
            "rope-wrong-frequencies": [
                lambda b=b: rope_model(x, D, traditional, b, p) for b in (base ** 0.5, base ** 2)],
            "rope-rotation-reversed": lambda: rope_model(x, D, traditional, base, p, scale=-1.0),
        }
        if p:
            cands["rope-offset-ignored"] = lambda: rope_model(x, D, traditional, base, 0)
        evs.append(ctx.expect_close(got, want, case=case, candidates=cands))
    return {"cases": len(evs), "max_abs_err": max(e["max_abs_err"] for e in evs)}


@check(DAY, "rope-traditional", 1, "RoPE, traditional (interleaved pairs), positions from 0",
       forbid=FORBID, symbols=("RoPE",))
def rope_traditional(ctx):
    return _run(ctx, True, NO_OFFSET, 201)


@check(DAY, "rope-traditional-offset", 1, "RoPE, traditional, with an offset slice",
       forbid=FORBID, symbols=("RoPE",))
def rope_traditional_offset(ctx):
    return _run(ctx, True, WITH_OFFSET, 202)


@check(DAY, "rope-half-split", 2, "RoPE, half-split (Qwen2's layout), positions from 0",
       forbid=FORBID, symbols=("RoPE",))
def rope_half_split(ctx):
    return _run(ctx, False, NO_OFFSET, 203)


@check(DAY, "rope-half-split-offset", 2, "RoPE, half-split, with an offset slice",
       forbid=FORBID, symbols=("RoPE",))
def rope_half_split_offset(ctx):
    return _run(ctx, False, WITH_OFFSET, 204)
