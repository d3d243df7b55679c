"""Day 1.1 -- scaled dot-product attention, linear, multi-head attention.

Oracles: mx.fast.scaled_dot_product_attention, mlx.nn.Linear, mlx.nn.MultiHeadAttention.
Mistake models (the candidates) are small float32 re-computations of the attention with
one thing done wrong; they are never used as the reference.
"""

from __future__ import annotations

import itertools
import math

import mlx.core as mx
import mlx.nn as nn

from ..harness import CheckFailed, check, dtype_str, merge_evidence

SDPA = "mx.fast.scaled_dot_product_attention"
F32, F16 = mx.float32, mx.float16






# --------------------------------------------------------------------------- mistake models


def unstable_softmax(x, axis, mode, dtype):
    """Softmax computed in ``dtype`` without the row's own maximum subtracted: "naive" (no
    shift at all, exp overflows) or "global-max" (one maximum for the whole array, so
    rows far below it underflow to 0)."""
    s = x.astype(dtype)
    e = mx.exp(s - mx.max(s)) if mode == "global-max" else mx.exp(s)
    return (e / mx.sum(e, axis=axis, keepdims=True)).astype(F32)


UNSTABLE = ("naive", "global-max")


def attention_model(q, k, v, scale, mask=None, axis=-1, mask_mode="add", softmax="stable"):
    """softmax(q k^T * scale + mask, axis) v in float32, cast back to q's dtype.

    mask_mode models where the mask meets the scores: "add" (right), "mul" (multiplied in),
    "sub" (subtracted), "before-scale" (added before the scale, so it is scaled too),
    "after-softmax" (added to the weights)."""
    qf, kf, vf = (t.astype(F32) for t in (q, k, v))
    raw = qf @ kf.swapaxes(-1, -2)
    scores = raw * scale
    m = None if mask is None else mask.astype(F32)
    if m is not None:
        if mask_mode == "add":
            scores = scores + m
        elif mask_mode == "mul":
            scores = scores * m
        elif mask_mode == "sub":
            scores = scores - m
        elif mask_mode == "before-scale":
            scores = (raw + m) * scale
    if softmax == "stable":
        weights = mx.softmax(scores, axis=axis)
    else:
        weights = unstable_softmax(scores, axis, softmax, q.dtype)
    if m is not None and mask_mode == "after-softmax":
        weights = weights + m
    return (weights @ vf).astype(q.dtype)


MASK_MISTAKES = ("mul", "sub", "before-scale", "after-softmax")


def wrong_scales(right: float, *, dims=(), given=None, exclude=()) -> list[float]:
    """Scale factors a learner plausibly uses instead of ``right``: 1/sqrt, 1/x or sqrt of
    a size of the problem (``dims``: head dim, query and key lengths, hidden size, heads),
    and for a given scale its square, inverse or root, or a default applied on top of it.
    Never 1 (attn-missing-scale), nothing in ``exclude`` (named by another mistake), and
    never a value equal to the right one on these shapes."""
    out = []
    for x in dims:
        if x and x > 0:
            out += [1.0 / math.sqrt(x), 1.0 / x, math.sqrt(x)]
    if given is not None:
        out += [given * given, 1.0 / given, math.sqrt(given)]
        out += [given / math.sqrt(x) for x in dims if x]
    keep = []
    for f in out:
        if any(abs(f - t) <= 1e-6 * abs(t) for t in (1.0, right, *exclude)):
            continue
        if all(abs(f - k) > 1e-9 * abs(k) for k in keep):
            keep.append(f)
    return keep


def naive_softmax_failed(exc: CheckFailed, large: bool) -> CheckFailed:
    """NaN or inf in the output where the reference is finite, on inputs that differ from the
    passing ones only by their magnitude: exp overflowed (or underflowed to 0/0)."""
    if exc.pitfall is None and large and exc.evidence.get("nan"):
        exc.pitfall = "softmax-not-stable"
    return exc


def softmax_axis_models(x, axis):
    """Softmax that does not honour ``axis``: all over the last axis, the max taken over one
    axis and the sum over the other, or the sum taken over the whole array."""
    xf = x.astype(F32)
    e0 = mx.exp(xf - mx.max(xf, axis=axis, keepdims=True))
    eg = mx.exp(xf - mx.max(xf))
    out = [e0 / mx.sum(e0), eg / mx.sum(eg)]
    if axis not in (-1, x.ndim - 1):
        e2 = mx.exp(xf - mx.max(xf, axis=-1, keepdims=True))
        out += [mx.softmax(xf, axis=-1), e0 / mx.sum(e0, axis=-1, keepdims=True),
                e2 / mx.sum(e2, axis=axis, keepdims=True)]
    return [o.astype(x.dtype) for o in out]


def attention_weights(q, k, scale):
    """softmax(q k^T * scale) in float32: the weights, never applied to the values."""
    scores = (q.astype(F32) @ k.astype(F32).swapaxes(-1, -2)) * scale
    return mx.softmax(scores, axis=-1).astype(q.dtype)


def _oracle_sdpa(q, k, v, scale, mask=None):
    """mx.fast SDPA on (1, batch, L, D) views of N.. x L x D inputs."""
    *b, L, D = q.shape
    S = k.shape[-2]
    m = None
    if mask is not None:
        m = mx.broadcast_to(mask, (*b, L, S)).reshape(1, -1, L, S).astype(q.dtype)
    out = mx.fast.scaled_dot_product_attention(
        q.reshape(1, -1, L, D), k.reshape(1, -1, S, D), v.reshape(1, -1, S, D),
        scale=scale, mask=m)
    return out.reshape(*b, L, D)


def _qkv(batch, L, S, D, dtype):
    q = mx.random.normal((*batch, L, D)).astype(dtype)
    k = mx.random.normal((*batch, S, D)).astype(dtype)
    v = mx.random.normal((*batch, S, D)).astype(dtype)
    return q, k, v


def _case(batch, L, S, D, dtype, extra=""):
    return f"batch {tuple(batch)}, L={L}, S={S}, D={D}, {dtype_str(dtype)}{extra}"


# Names of an attention output's axes, for saying where a wrong output differs.
AXES = ("batch", "batch", "batch", "query position", "feature")




# --------------------------------------------------------------------------- task 1


@check("sdpa-simple", 1,
       "scaled_dot_product_attention_simple (default scale, no mask) and basics.softmax",
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_simple", "softmax"))
def sdpa_simple(ctx):
    fn = ctx.symbol("scaled_dot_product_attention_simple")
    mx.random.seed(101)
    evs = []
    # (batch, L, S, D, dtype, input magnitude). The last case has scores up to about 30:
    # exp overflows float16 above 11, so a softmax without the max-subtraction gives NaN.
    attn_cases = []
    for batch, L, S, D, dtype, mag in [((2,), 3, 5, 5, F32, 1), ((), 4, 4, 8, F32, 1),
                                       ((2, 3), 3, 7, 5, F16, 1), ((2, 3, 2), 1, 4, 8, F32, 1),
                                       ((2,), 4, 6, 8, F16, 3)]:
        q, k, v = _qkv(batch, L, S, D, dtype)
        attn_cases.append((batch, L, S, D, dtype, mag, q * mag, k * mag, v))
    # softmax is provided, but a learner may write their own: it must honour any axis and
    # survive large inputs. It is tried first, so that a broken softmax is named as such
    # rather than as the attention built on it (the inputs are drawn in the same order as
    # ever: the float16 cases were chosen for these values).
    sm = ctx.symbol("softmax")
    sm_cases = [((3, 4, 5), -1, F32, 1), ((3, 4, 5), 0, F32, 1), ((3, 4, 5), 1, F16, 1),
                ((4, 6), -1, F16, 20)]
    sm_inputs = [(mx.random.normal(shape) * mag).astype(dtype)
                 for shape, axis, dtype, mag in sm_cases]
    for (shape, axis, dtype, mag), x in zip(sm_cases, sm_inputs):
        got = ctx.call(sm, x, axis)
        try:
            evs.append(ctx.expect_close(
                got, mx.softmax(x.astype(F32), axis=axis).astype(dtype), what="softmax output",
                case=f"softmax(x, axis={axis}), x {shape} {dtype_str(dtype)}"
                     + (f", values up to about {4 * mag}" if mag > 1 else ""),
                candidates={"softmax-ignores-axis": lambda x=x, axis=axis:
                            softmax_axis_models(x, axis),
                            "softmax-not-stable": lambda x=x, axis=axis: [
                                unstable_softmax(x, axis, mode, x.dtype).astype(x.dtype)
                                for mode in UNSTABLE]}))
        except CheckFailed as exc:
            raise naive_softmax_failed(exc, mag > 1) from None
    for batch, L, S, D, dtype, mag, q, k, v in attn_cases:
        scale = 1.0 / math.sqrt(D)
        want = _oracle_sdpa(q, k, v, scale)
        got = ctx.call(fn, q, k, v)
        case = _case(batch, L, S, D, dtype, ", large scores" if mag > 1 else "")
        # Scores near 30 in float16 are rounded to 1/64, so correct code written in another
        # order lands up to 3x outside the usual float16 tolerance on some inputs (measured
        # over 300 seeds); the mistake this case is for gives NaN, caught at any tolerance.
        loose = dict(rtol=5e-2, atol=1e-2) if mag > 1 else {}
        try:
            evs.append(ctx.expect_close(got, want, case=case, axes=AXES[-len(want.shape):],
                                        **loose, candidates={
                "attn-missing-scale": lambda: attention_model(q, k, v, 1.0),
                "attn-softmax-wrong-axis": lambda: [
                    attention_model(q, k, v, scale, axis=a) for a in range(-q.ndim, -1)],
                "attn-scale-wrong-value": lambda: [
                    attention_model(q, k, v, f) for f in wrong_scales(scale, dims=(D, L, S))],
                "softmax-not-stable": lambda: [
                    attention_model(q, k, v, scale, softmax=mode) for mode in UNSTABLE],
                "attn-weights-returned": lambda: attention_weights(q, k, scale),
            }))
        except CheckFailed as exc:
            raise naive_softmax_failed(exc, mag > 1) from None
    return merge_evidence(evs)


@check("sdpa-simple-scale-mask", 1,
       "scaled_dot_product_attention_simple with a given scale and an additive mask",
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_simple",))
def sdpa_simple_scale_mask(ctx):
    fn = ctx.symbol("scaled_dot_product_attention_simple")
    mx.random.seed(102)
    evs = []
    # (batch, L, S, D, dtype, scale, mask shape kind)
    cases = [((2,), 3, 5, 5, F32, 0.7, "full"), ((2, 3), 4, 6, 8, F16, 0.2, "(L, S)"),
             ((), 3, 7, 5, F32, 1.3, "-inf")]
    for batch, L, S, D, dtype, scale, kind in cases:
        q, k, v = _qkv(batch, L, S, D, dtype)
        if kind == "full":
            mask = mx.random.uniform(-2.0, 2.0, (*batch, L, S)).astype(dtype)
        elif kind == "(L, S)":
            mask = mx.random.uniform(-2.0, 2.0, (L, S)).astype(dtype)
        else:  # some keys hidden from each query (never a whole row)
            hide = (mx.random.uniform(shape=(L, S)) < 0.4) & (mx.arange(S)[None, :] > 0)
            mask = mx.where(hide, -mx.inf, 0.0).astype(dtype)
        want = _oracle_sdpa(q, k, v, scale, mask)
        got = ctx.call(fn, q, k, v, scale=scale, mask=mask)
        case = _case(batch, L, S, D, dtype, f", scale={scale}, mask {kind}")
        evs.append(ctx.expect_close(got, want, case=case, axes=AXES[-len(want.shape):],
                                    candidates={
            "attn-missing-scale": [
                lambda: attention_model(q, k, v, 1.0, mask),
                lambda: attention_model(q, k, v, 1.0 / math.sqrt(D), mask)],
            "attn-softmax-wrong-axis": lambda: [
                attention_model(q, k, v, scale, mask, axis=a) for a in range(-q.ndim, -1)],
            "attn-mask-ignored": lambda: attention_model(q, k, v, scale),
            "attn-scale-wrong-value": lambda: [
                attention_model(q, k, v, f, mask) for f in wrong_scales(
                    scale, dims=(D, L, S), given=scale, exclude=(1.0 / math.sqrt(D),))],
            "attn-mask-misapplied": lambda: [
                attention_model(q, k, v, scale, mask, mask_mode=mm) for mm in MASK_MISTAKES],
        }))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


@check("linear", 2, "linear, with and without a bias", symbols=("linear",))
def linear_check(ctx):
    fn = ctx.symbol("linear")
    mx.random.seed(103)
    evs = []
    # Square weights first: there x @ w runs and its output names the mistake.
    cases = [((2, 3), 6, 6, False, F32), ((4,), 6, 6, True, F32), ((2, 3), 6, 5, True, F32),
             ((10,), 12, 10, True, F16), ((3,), 7, 4, False, F16)]
    for lead, I, O, with_bias, dtype in cases:
        x = mx.random.normal((*lead, I)).astype(dtype)
        w = (mx.random.normal((O, I)) / math.sqrt(I)).astype(dtype)
        b = mx.random.normal((O,)).astype(dtype) if with_bias else None
        layer = nn.Linear(I, O, bias=with_bias)
        layer.weight = w
        if with_bias:
            layer.bias = b
        want = layer(x)
        got = ctx.call(fn, x, w, b) if with_bias else ctx.call(fn, x, w)
        case = f"x {(*lead, I)}, w {(O, I)}, {'with' if with_bias else 'no'} bias, {dtype_str(dtype)}"
        cands = {}
        if I == O:
            cands["linear-weight-not-transposed"] = (
                lambda x=x, w=w, b=b: x @ w + (b if b is not None else 0))
        if with_bias:
            cands["linear-bias-ignored"] = lambda x=x, w=w: x.astype(F32) @ w.astype(F32).T
        evs.append(ctx.expect_close(got, want, case=case, candidates=cands or None))
    return merge_evidence(evs)


def mha_model(xq, xk, xv, ws, H, mask=None, *, w_t=False, heads="ok", back=True, scale=None,
              axis=-1, use_mask=True, wiring=(0, 1, 2), inputs=(0, 1, 2), out_proj=True,
              mask_mode="add"):
    """Multi-head attention in float32 with one thing optionally done wrong.

    heads: "ok" (reshape to (N,L,H,D), transpose), "reshape" ((N,L,H*D) viewed straight as
    (N,H,L,D)) or "none" (never transposed); back: whether the (N,H,L,D)-shaped output is
    transposed before the reshape to (N,L,H*D). wiring / inputs: which of (wq, wk, wv) and
    of (query, key, value) make q, k and v; out_proj: whether wo is applied at all."""
    wq, wk, wv, wo = (w.astype(F32) for w in ws)
    if w_t:
        wq, wk, wv, wo = wq.T, wk.T, wv.T, wo.T
    w3, x3 = (wq, wk, wv), (xq, xk, xv)
    q, k, v = (x3[i].astype(F32) @ w3[j].T for i, j in zip(inputs, wiring))
    N, L, E = q.shape
    D = E // H

    def split(t):
        n, l, _ = t.shape
        if heads == "reshape":
            return t.reshape(n, H, l, D)
        if heads == "none":
            return t.reshape(n, l, H, D)
        return t.reshape(n, l, H, D).transpose(0, 2, 1, 3)

    qh, kh, vh = split(q), split(k), split(v)
    s = 1.0 / math.sqrt(D) if scale is None else scale
    out = attention_model(qh, kh, vh, s, mask if use_mask else None, axis=axis,
                          mask_mode=mask_mode)
    if back:
        out = out.transpose(0, 2, 1, 3)
    out = out.reshape(N, L, E)
    return (out @ wo.T if out_proj else out).astype(xq.dtype)


# Projections wired wrongly: a weight used for another projection (each of q, k, v made
# with some weight of the three, not the right one), or an input used for another one.
_WIRINGS = [w for w in itertools.product(range(3), repeat=3) if w != (0, 1, 2)]
_INPUTS = [i for i in itertools.product(range(3), repeat=3) if i != (0, 1, 2)]


@check("mha", 2, "SimpleMultiHeadAttention against MLX's own multi-head attention",
       forbid=(SDPA, "nn.MultiHeadAttention"),
       symbols=("SimpleMultiHeadAttention", "linear", "scaled_dot_product_attention_simple"))
def mha(ctx):
    cls = ctx.symbol("SimpleMultiHeadAttention")
    mx.random.seed(104)
    evs = []
    # (N, L, E, H, dtype, mask). The course defines this layer for self-attention: query,
    # key and value share one shape (L == S), and its reference asserts so. Cross-attention
    # shapes are never asked of it.
    cases = [(2, 5, 12, 3, F32, False), (2, 5, 12, 3, F32, True),
             (3, 6, 15, 3, F32, True), (2, 7, 16, 4, F16, True)]
    for N, L, E, H, dtype, with_mask in cases:
        S = L
        xq = mx.random.normal((N, L, E)).astype(dtype)
        xk = mx.random.normal((N, S, E)).astype(dtype)
        xv = mx.random.normal((N, S, E)).astype(dtype)
        ws = [(mx.random.normal((E, E)) / math.sqrt(E)).astype(dtype) for _ in range(4)]
        mask = mx.random.uniform(-2.0, 2.0, (L, S)).astype(dtype) if with_mask else None
        oracle = nn.MultiHeadAttention(E, H, bias=False)
        oracle.query_proj.weight, oracle.key_proj.weight = ws[0], ws[1]
        oracle.value_proj.weight, oracle.out_proj.weight = ws[2], ws[3]
        want = oracle(xq, xk, xv, mask=mask)
        layer = ctx.call(cls, E, H, *ws)
        got = ctx.call(layer, xq, xk, xv, mask=mask) if with_mask else ctx.call(layer, xq, xk, xv)
        case = (f"N={N}, L={L}, S={S}, E={E}, H={H}, {dtype_str(dtype)}, "
                + ("mask (L, S)" if with_mask else "no mask"))
        m = dict(mask=mask)
        cands = {
            "attn-missing-scale": lambda: mha_model(xq, xk, xv, ws, H, scale=1.0, **m),
            "attn-softmax-wrong-axis": lambda: [
                mha_model(xq, xk, xv, ws, H, axis=a, **m) for a in (-2, -3, -4)],
            "mha-heads-not-transposed": [
                lambda h=h, b=b: mha_model(xq, xk, xv, ws, H, heads=h, back=b, **m)
                for h, b in (("reshape", True), ("reshape", False), ("none", False),
                             ("none", True), ("ok", False))],
            "linear-weight-not-transposed": lambda: mha_model(xq, xk, xv, ws, H, w_t=True, **m),
            "attn-scale-wrong-value": lambda: [
                mha_model(xq, xk, xv, ws, H, scale=f, **m)
                for f in wrong_scales(1.0 / math.sqrt(E // H), dims=(E // H, L, E, H))],
            "mha-projection-mixup": lambda: (
                [mha_model(xq, xk, xv, ws, H, wiring=w, **m) for w in _WIRINGS]
                + [mha_model(xq, xk, xv, ws, H, inputs=i, **m) for i in _INPUTS]
                + [mha_model(xq, xk, xv, ws, H, out_proj=False, **m)]),
        }
        if with_mask:
            cands["attn-mask-ignored"] = lambda: mha_model(xq, xk, xv, ws, H, use_mask=False,
                                                           **m)
            cands["attn-mask-misapplied"] = lambda: [
                mha_model(xq, xk, xv, ws, H, mask_mode=mm, **m) for mm in MASK_MISTAKES]
        evs.append(ctx.expect_close(got, want, case=case, candidates=cands,
                                    axes=("batch", "position", "feature")))
    return merge_evidence(evs)
