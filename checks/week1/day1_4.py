"""Day 1.4 -- RMSNorm, SiLU and the Qwen2 MLP.

Oracles: mx.fast.rms_norm, mlx.nn.silu and mlx_lm's qwen2.MLP with the same weights.
Inputs are chosen so that every catalogued mistake of the day shows:
* rmsnorm-eps-outside-sqrt: small magnitudes (mean(x^2) comparable to eps);
* rmsnorm-float16-accumulation: float16 values up to 1000 (squares overflow half's 65504);
* rmsnorm-weight-missing: random weights far from 1;
* mlp-gate-up-swapped: zero-mean weights and inputs (gate and up projections of both signs);
* silu-missing-x: inputs of both signs, several units wide.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..harness import Ctx, check

NORM_FORBID = ("mx.fast.rms_norm", "nn.RMSNorm", "mx.fast.layer_norm")
SILU_FORBID = ("nn.silu", "nn.SiLU")


def _dt(dtype) -> str:
    return "float16" if dtype == mx.float16 else "float32"


def _shape_str(prefix, last_name, last) -> str:
    pre = f"batch {tuple(prefix)}, " if prefix else ""
    return f"{pre}{last_name}={last}"


# --------------------------------------------------------------------------- RMSNorm


def _norm_candidates(x: mx.array, w: mx.array, eps: float) -> dict:
    """The outputs of the catalogued RMSNorm mistakes on these inputs."""

    def eps_outside():
        xf = x.astype(mx.float32)
        rms = mx.sqrt(mx.mean(mx.square(xf), axis=-1, keepdims=True))
        return (xf / (rms + eps) * w.astype(mx.float32)).astype(x.dtype)

    def weight_missing():
        return mx.fast.rms_norm(x, mx.ones(w.shape, dtype=w.dtype), eps)

    cands = {"rmsnorm-eps-outside-sqrt": eps_outside, "rmsnorm-weight-missing": weight_missing}
    cands.update(_more_norm_candidates(x, w, eps))
    if x.dtype == mx.float16:
        def half_accumulation():
            # everything in float16: the squares (and their sum) overflow to inf.
            ms = mx.mean(mx.square(x), axis=-1, keepdims=True)
            return x * mx.rsqrt(ms + mx.array(eps, mx.float16)) * w.astype(mx.float16)

        cands["rmsnorm-float16-accumulation"] = half_accumulation
    return cands


def _more_norm_candidates(x: mx.array, w: mx.array, eps: float) -> dict:
    """Other ways to get RMSNorm wrong, each computed in float32 and cast back: the mean over
    another axis, another statistic than the root mean square, eps elsewhere or nowhere,
    the weight added, applied as (1 + w) or before the normalisation."""
    xf, wf = x.astype(mx.float32), w.astype(mx.float32)

    def norm(stat, weight=lambda y: y * wf):
        return lambda: weight(stat(xf)).astype(x.dtype)

    def by_axes(axes):
        return norm(lambda v: v * mx.rsqrt(mx.mean(mx.square(v), axis=axes, keepdims=True) + eps))

    def ms(v):
        return mx.mean(mx.square(v), axis=-1, keepdims=True)

    def centred(v):
        c = v - mx.mean(v, axis=-1, keepdims=True)
        return c * mx.rsqrt(ms(c) + eps)

    axes = [a for a in ([0], list(range(x.ndim)), [-2]) if x.ndim > 1 and a != [x.ndim - 1]]
    return {
        "rmsnorm-wrong-axis": [by_axes(a) for a in axes if a != [-1]],
        "rmsnorm-wrong-statistic": [
            norm(lambda v: v * mx.rsqrt(mx.sum(mx.square(v), axis=-1, keepdims=True) + eps)),
            norm(lambda v: v / (ms(v) + eps)),
            norm(centred),
            norm(lambda v: v * mx.sqrt(ms(v) + eps)),
            norm(lambda v: v / (mx.mean(mx.abs(v), axis=-1, keepdims=True) + eps)),
            norm(lambda v: v * mx.rsqrt(mx.square(mx.mean(v, axis=-1, keepdims=True)) + eps)),
            norm(lambda v: v * mx.rsqrt(mx.mean(v, axis=-1, keepdims=True) + eps)),
        ],
        "rmsnorm-eps-misplaced": [
            norm(lambda v: v * mx.rsqrt(ms(v))),
            norm(lambda v: v * mx.rsqrt(ms(v) + eps * eps)),
            norm(lambda v: v * (mx.rsqrt(ms(v)) + eps)),
            norm(lambda v: v * mx.rsqrt(ms(v)) + eps),
            norm(lambda v: v * mx.rsqrt(ms(v)), weight=lambda y: y * wf + eps),
        ],
        "rmsnorm-weight-misapplied": [
            norm(lambda v: v * mx.rsqrt(ms(v) + eps), weight=lambda y: y * (1.0 + wf)),
            norm(lambda v: v * mx.rsqrt(ms(v) + eps), weight=lambda y: y + wf),
            norm(lambda v: (v * wf) * mx.rsqrt(ms(v * wf) + eps), weight=lambda y: y),
        ],
    }


def _run_norm_cases(ctx: Ctx, cases) -> dict:
    RMSNorm = ctx.symbol("RMSNorm")
    worst = 0.0
    for i, (prefix, d, dtype, scale, eps, what) in enumerate(cases):
        k1, k2 = mx.random.split(mx.random.key(140 + i))
        shape = (*prefix, d)
        if scale == "range":  # the book's float16 range test: uniform(-1000, 1000)
            x = mx.random.uniform(-1000, 1000, shape, key=k1).astype(dtype)
            w = mx.random.uniform(-1000, 1000, (d,), key=k2).astype(dtype)
        else:
            x = (scale * mx.random.normal(shape, key=k1)).astype(dtype)
            w = mx.random.uniform(-2.0, 2.0, (d,), key=k2).astype(dtype)
        case = f"{_shape_str(prefix, 'D', d)}, {_dt(dtype)}, eps={eps:g}{what}"
        norm = ctx.call(RMSNorm, d, w, eps)
        got = ctx.call(norm, x)
        want = mx.fast.rms_norm(x, w, eps)
        ev = ctx.expect_close(got, want, what="RMSNorm(x)", case=case,
                              candidates=_norm_candidates(x, w, eps),
                              axes=("row",) * (x.ndim - 1) + ("feature",))
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(cases), "max_abs_err": worst}


@check("rmsnorm", 1, "RMSNorm against MLX's fused RMSNorm (float32 and float16)",
       forbid=NORM_FORBID, symbols=("RMSNorm",))
def rmsnorm(ctx: Ctx):
    # (batch prefix, D, dtype, std of x, eps, note)
    return _run_norm_cases(ctx, [
        ((5,), 33, mx.float32, 1.0, 1e-5, ""),
        ((2, 3), 17, mx.float16, 1.5, 1e-6, ""),
        ((), 9, mx.float32, 2.0, 1e-6, ""),
        # mean(x^2) ~ 1e-6, like eps: only sqrt(mean + eps) gets these right.
        ((3, 4), 21, mx.float32, 1e-3, 1e-5, ", tiny values (|x| ~ 1e-3)"),
        # mean(x^2) ~ 1e-3 = eps, still representable in float16.
        ((2, 5), 15, mx.float16, 3e-2, 1e-3, ", small values (|x| ~ 3e-2)"),
    ])


@check("rmsnorm-float16-range", 1,
       "RMSNorm on float16 inputs with values up to 1000",
       forbid=NORM_FORBID, symbols=("RMSNorm",))
def rmsnorm_float16_range(ctx: Ctx):
    return _run_norm_cases(ctx, [
        ((32,), 64, mx.float16, "range", 1e-5, ", x and weight uniform in (-1000, 1000)"),
        ((2, 3), 45, mx.float16, "range", 1e-6, ", x and weight uniform in (-1000, 1000)"),
    ])


# --------------------------------------------------------------------------- SiLU


def silu_flipped(x):
    """x * sigmoid(-x), that is x / (1 + exp(x)): the sign inside the exponential lost."""
    xf = x.astype(mx.float32)
    return (xf * mx.sigmoid(-xf)).astype(x.dtype)


@check("silu", 2, "silu against MLX's own SiLU", forbid=SILU_FORBID, symbols=("silu",))
def silu_check(ctx: Ctx):
    silu = ctx.symbol("silu")
    cases = [((7,), mx.float32), ((2, 3, 5), mx.float32), ((4, 9), mx.float16)]
    worst = 0.0
    for i, (shape, dtype) in enumerate(cases):
        x = (4.0 * mx.random.normal(shape, key=mx.random.key(150 + i))).astype(dtype)
        got = ctx.call(silu, x)
        want = nn.silu(x)
        ev = ctx.expect_close(got, want, what="silu(x)", case=f"shape {shape}, {_dt(dtype)}",
                              candidates={"silu-missing-x": lambda x=x: mx.sigmoid(x),
                                          "silu-sigmoid-sign": lambda x=x: silu_flipped(x)})
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(cases), "max_abs_err": worst}


# --------------------------------------------------------------------------- Qwen2MLP


def _mlp_inputs(prefix, e, i, dtype, seed):
    ks = mx.random.split(mx.random.key(seed), 4)
    x = mx.random.normal((*prefix, e), key=ks[0]).astype(dtype)
    w_gate = (mx.random.normal((i, e), key=ks[1]) / e ** 0.5).astype(dtype)
    w_up = (mx.random.normal((i, e), key=ks[2]) / e ** 0.5).astype(dtype)
    w_down = (mx.random.normal((e, i), key=ks[3]) / i ** 0.5).astype(dtype)
    return x, w_gate, w_up, w_down


def _mlx_mlp(e, i, w_gate, w_up, w_down):
    from .tiny_models import qwen2_module

    mlp = qwen2_module().MLP(e, i)
    mlp.gate_proj.weight = w_gate
    mlp.up_proj.weight = w_up
    mlp.down_proj.weight = w_down
    return mlp


def _misplaced_silu(x, wg, wu, wd):
    """SwiGLU with the activation in the wrong place: on the product, on both projections,
    nowhere, or after the down projection."""
    xf, g, u, d = (t.astype(mx.float32) for t in (x, wg, wu, wd))
    gate, up = xf @ g.T, xf @ u.T
    outs = [nn.silu(gate * up) @ d.T, (nn.silu(gate) * nn.silu(up)) @ d.T, (gate * up) @ d.T,
            nn.silu((gate * up) @ d.T), nn.silu((nn.silu(gate) * up) @ d.T)]
    return [o.astype(x.dtype) for o in outs]


@check("qwen2-mlp", 2, "Qwen2MLP matches mlx_lm's qwen2.MLP",
       forbid=SILU_FORBID, symbols=("qwen2_week1.Qwen2MLP", "silu"))
def qwen2_mlp(ctx: Ctx):
    Qwen2MLP = ctx.symbol("qwen2_week1.Qwen2MLP")
    # (input prefix N.. x L, E, I, dtype)
    cases = [
        ((1, 5), 4, 8, mx.float32),
        ((1, 5), 4, 8, mx.float16),
        ((2, 7), 24, 40, mx.float32),
        ((2, 7), 24, 40, mx.float16),
        ((1, 1), 64, 96, mx.float32),   # a single token
        ((1, 1), 64, 96, mx.float16),
        ((2, 3, 4), 12, 20, mx.float32),  # an extra batch axis
    ]
    worst = 0.0
    for n, (prefix, e, i, dtype) in enumerate(cases):
        x, wg, wu, wd = _mlp_inputs(prefix, e, i, dtype, 160 + n)
        case = f"x {(*prefix, e)}, E={e}, I={i}, {_dt(dtype)}"
        mlp = ctx.call(Qwen2MLP, e, i, wg, wu, wd)
        got = ctx.call(mlp, x)
        want = _mlx_mlp(e, i, wg, wu, wd)(x)
        cands = {
            "mlp-gate-up-swapped": lambda: _mlx_mlp(e, i, wu, wg, wd)(x),
            "silu-missing-x": lambda: (mx.sigmoid(x @ wg.T) * (x @ wu.T)) @ wd.T,
            "silu-sigmoid-sign": lambda: (silu_flipped(x @ wg.T) * (x @ wu.T)) @ wd.T,
            "mlp-silu-misplaced": lambda: _misplaced_silu(x, wg, wu, wd),
        }
        ev = ctx.expect_close(got, want, what="Qwen2MLP(x)", case=case, candidates=cands,
                              axes=("row",) * (x.ndim - 1) + ("feature",))
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(cases), "max_abs_err": worst}
