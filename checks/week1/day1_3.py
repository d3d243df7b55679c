"""Day 1.3 -- grouped-query attention, the causal mask, Qwen2 attention.

Oracles: mx.fast.scaled_dot_product_attention (it pairs query head h with kv head
h // (H_q // H), and its "causal" mask is aligned bottom-right like the course's), literal
causal masks built with numpy, and mlx_lm's qwen2.Attention (random init, plain float32
weights or float16 weights quantized to 4 bits, whose dequantized values the learner gets).
The mistakes are modelled by small float32 re-computations with one thing done wrong.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..harness import (CheckFailed, check, dtype_name, dtype_str, import_mlx_lm, merge_evidence,
                       to_np)

SDPA = "mx.fast.scaled_dot_product_attention"
F32, F16, BF16 = mx.float32, mx.float16, mx.bfloat16








# --------------------------------------------------------------------------- models


def mask_model(L, S, kind="ok"):
    """(L, S) additive causal mask as numpy float32: "ok" bottom-right (diagonal offset
    S - L), "top-left" (offset 0), "flipped" (offset L - S: the alignment shifted the wrong
    way, which counts as the same misplaced diagonal), "strict" (the diagonal masked too);
    the inverted ones: "upper" (the future allowed instead of the past, diagonal kept),
    "upper-top-left" (the same from the top-left corner), "values-swapped" (0 and -inf
    exchanged)."""
    if kind in ("upper", "upper-top-left"):
        allowed = np.triu(np.ones((L, S), dtype=bool), k=S - L if kind == "upper" else 0)
    else:
        k = {"ok": S - L, "top-left": 0, "flipped": L - S, "strict": S - L - 1,
             "values-swapped": S - L}[kind]
        allowed = np.tril(np.ones((L, S), dtype=bool), k=k)
        if kind == "values-swapped":
            allowed = ~allowed
    return np.where(allowed, 0.0, -np.inf).astype(np.float32)


INVERTED = ("upper", "upper-top-left", "values-swapped")

# k and v projections wired from the wrong weights (the two have the same shape), as
# (slot, source) pairs: weights and biases each right, exchanged, or one copied over the
# other.
_KV_WAYS = {"right": (), "swapped": (("k", "v"), ("v", "k")), "k<-v": (("k", "v"),),
            "v<-k": (("v", "k"),)}
KV_WIRINGS = [tuple(("w" + a, "w" + b) for a, b in ww) + tuple(("b" + a, "b" + b) for a, b in bb)
              for ww in _KV_WAYS.values() for bb in _KV_WAYS.values() if ww or bb]


def wrong_scales(right, dims, given=None):
    """Scale factors a learner plausibly uses instead of ``right``: none at all (1), 1/sqrt,
    1/x or sqrt of a size of the problem, the default instead of a given scale, or a given
    scale squared, inverted or applied on top of the default. Never the right value."""
    out = [1.0]
    for x in dims:
        if x and x > 0:
            out += [1.0 / math.sqrt(x), 1.0 / x, math.sqrt(x)]
    if given is not None:
        out += [given * given, 1.0 / given] + [given / math.sqrt(x) for x in dims if x]
    keep = []
    for f in out:
        if abs(f - right) > 1e-6 * abs(right) and all(abs(f - k) > 1e-9 for k in keep):
            keep.append(f)
    return keep


def _mask_heads_swapped(mask, batch, Hq, H, L, S):
    """The (…, H_q, L, S) mask with its heads regrouped the other way round: the mask of
    query head h goes to the head that sits at h in (repeat, kv head) order."""
    rep = Hq // H
    m = mx.broadcast_to(mask, (*batch, Hq, L, S))
    m = m.reshape(*batch, rep, H, L, S)
    return mx.swapaxes(m, -3, -4).reshape(*batch, Hq, L, S)


def gqa_model(q, k, v, scale=None, mask=None, *, head_order="div", causal="ok",
              mask_mode="add"):
    """Grouped attention in float32. head_order "div" pairs query head h with kv head
    h // n_repeats; "mod" with h % H (the mistake). mask: None, "causal" or an array;
    mask_mode: "add" (right), "mul" (multiplied into the scores), "after-softmax" (added to
    the weights)."""
    *_, Hq, L, D = q.shape
    H, S = k.shape[-3], k.shape[-2]
    rep = Hq // H
    qf, kf, vf = (t.astype(F32) for t in (q, k, v))
    if head_order == "div":
        kf, vf = mx.repeat(kf, rep, axis=-3), mx.repeat(vf, rep, axis=-3)
    else:
        reps = [1] * (kf.ndim - 3) + [rep, 1, 1]
        kf, vf = mx.tile(kf, reps), mx.tile(vf, reps)
    s = 1.0 / math.sqrt(D) if scale is None else scale
    scores = (qf @ kf.swapaxes(-1, -2)) * s
    m = None
    if isinstance(mask, str):
        m = mx.array(mask_model(L, S, causal))
    elif mask is not None:
        m = mask.astype(F32)
    if m is not None and mask_mode == "add":
        scores = scores + m
    elif m is not None and mask_mode == "mul":
        scores = scores * m
    weights = mx.softmax(scores, axis=-1)
    if m is not None and mask_mode == "after-softmax":
        weights = weights + m
    return (weights @ vf).astype(q.dtype)


def _oracle_gqa(q, k, v, scale, mask):
    *b, Hq, L, D = q.shape
    H, S = k.shape[-3], k.shape[-2]
    m = mask
    if mask is not None and not isinstance(mask, str):
        m = mx.broadcast_to(mask, (*b, Hq, L, S)).reshape(-1, Hq, L, S).astype(q.dtype)
    out = mx.fast.scaled_dot_product_attention(
        q.reshape(-1, Hq, L, D), k.reshape(-1, H, S, D), v.reshape(-1, H, S, D),
        scale=1.0 / math.sqrt(D) if scale is None else scale, mask=m)
    return out.reshape(*b, Hq, L, D)


def _qkv(batch, Hq, H, L, S, D, dtype):
    q = mx.random.normal((*batch, Hq, L, D)).astype(dtype)
    k = mx.random.normal((*batch, H, S, D)).astype(dtype)
    v = mx.random.normal((*batch, H, S, D)).astype(dtype)
    return q, k, v


# Names of an attention output's axes, for saying where a wrong output differs.
AXES = ("batch", "batch", "query head", "query position", "feature")


def _case(batch, Hq, H, L, S, D, dtype, extra=""):
    return f"batch {tuple(batch)}, H_q={Hq}, H={H}, L={L}, S={S}, D={D}, {dtype_str(dtype)}{extra}"


# --------------------------------------------------------------------------- task 1


@check("gqa", 1, "scaled_dot_product_attention_grouped (default scale, no mask)",
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_grouped",))
def gqa(ctx):
    fn = ctx.symbol("scaled_dot_product_attention_grouped")
    mx.random.seed(301)
    evs = []
    # H_q/H of 3 and 2 first (head order shows), then MQA (H=1) and plain MHA (H_q=H).
    cases = [((2,), 6, 2, 3, 7, 5, F32), ((), 4, 2, 4, 4, 8, F16),
             ((2, 3), 4, 1, 3, 5, 5, F32), ((2,), 3, 3, 1, 6, 8, F16)]
    for batch, Hq, H, L, S, D, dtype in cases:
        q, k, v = _qkv(batch, Hq, H, L, S, D, dtype)
        want = _oracle_gqa(q, k, v, None, None)
        got = ctx.call(fn, q, k, v)
        evs.append(ctx.expect_close(got, want, case=_case(batch, Hq, H, L, S, D, dtype),
                                    axes=AXES[-len(want.shape):], candidates={
            "gqa-kv-head-order": lambda: gqa_model(q, k, v, head_order="mod"),
            "gqa-scale-wrong": lambda: [gqa_model(q, k, v, f) for f in
                                        wrong_scales(1.0 / math.sqrt(D), (D, L, S, Hq, H))],
        }))
    return merge_evidence(evs)


@check("gqa-scale-mask", 1,
       "scaled_dot_product_attention_grouped with a given scale and an array mask",
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_grouped",))
def gqa_scale_mask(ctx):
    fn = ctx.symbol("scaled_dot_product_attention_grouped")
    mx.random.seed(302)
    evs = []
    # (batch, H_q, H, L, S, D, dtype, scale, mask shape)
    cases = [((2,), 6, 2, 3, 7, 5, F32, 0.8, "full"), ((), 4, 2, 3, 5, 8, F16, 0.3, "(L, S)"),
             ((2, 3), 6, 3, 2, 5, 5, F32, 0.8, "(1, H_q, L, S)")]
    for batch, Hq, H, L, S, D, dtype, scale, kind in cases:
        q, k, v = _qkv(batch, Hq, H, L, S, D, dtype)
        shape = {"full": (*batch, Hq, L, S), "(L, S)": (L, S), "(1, H_q, L, S)": (1, Hq, L, S)}
        mask = mx.random.uniform(-2.0, 2.0, shape[kind]).astype(dtype)
        want = _oracle_gqa(q, k, v, scale, mask)
        got = ctx.call(fn, q, k, v, scale=scale, mask=mask)
        case = _case(batch, Hq, H, L, S, D, dtype, f", scale={scale}, mask {kind}")
        evs.append(ctx.expect_close(got, want, case=case, axes=AXES[-len(want.shape):],
                                    candidates={
            "gqa-kv-head-order": lambda: gqa_model(q, k, v, scale, mask, head_order="mod"),
            "gqa-scale-wrong": lambda: [gqa_model(q, k, v, f, mask) for f in wrong_scales(
                scale, (D, L, S, Hq, H), given=scale)],
            "gqa-mask-misapplied": lambda: (
                [gqa_model(q, k, v, scale, None)]
                + [gqa_model(q, k, v, scale, mask, mask_mode=mm) for mm in ("mul", "after-softmax")]
                + [gqa_model(q, k, v, scale, _mask_heads_swapped(mask, batch, Hq, H, L, S))]),
        }))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


@check("causal-mask", 2, "causal_mask(L, S, dtype): exact values, shape and dtype",
       symbols=("causal_mask",))
def causal_mask_check(ctx):
    fn = ctx.symbol("causal_mask")
    evs = []
    # L < S first: there the alignment and the diagonal both show.
    for L, S, dtype in [(3, 5, F32), (2, 6, F16), (4, 4, F32), (1, 4, F32), (5, 7, BF16)]:
        case = f"L={L}, S={S}, {dtype_str(dtype)}"
        got = ctx.call(fn, L, S, dtype)
        want = mask_model(L, S)
        if hasattr(got, "shape") and list(got.shape) == [L, S]:
            g = to_np(got).astype(np.float64)
            blocked = np.isinf(want)
            finite_block = blocked & np.isfinite(g) & (g < -1e3)
            if finite_block.any() and np.all(g[~blocked] == 0):
                raise CheckFailed(
                    f"[{case}] masked entries hold {g[finite_block][0]:.4g}, expected -inf: "
                    "a large negative number only approximates it, and behaves differently "
                    "from it once a whole row is blocked or the mask is cast to another dtype.",
                    {"case": case, "got_masked_value": float(g[finite_block][0])},
                    pitfall="causal-mask-not-infinite")
            got_dtype = dtype_name(got)
            right_pattern = (np.array_equal(g, want) if got_dtype != "bool" else
                             np.array_equal(g.astype(bool), ~blocked)
                             or np.array_equal(g.astype(bool), blocked))
            if got_dtype != dtype_str(dtype) and right_pattern:
                raise CheckFailed(
                    f"[{case}] the mask has the right pattern but dtype {got_dtype}, expected "
                    f"{dtype_str(dtype)}.", {"case": case, "dtype": got_dtype,
                                             "expected_dtype": dtype_str(dtype)},
                    pitfall="causal-mask-wrong-dtype")
        evs.append(ctx.expect_close(
            got, mx.array(want).astype(dtype), case=case, rtol=0.0, atol=0.0,
            expect_dtype=dtype_str(dtype), axes=("query position", "key position"),
            candidates={"causal-mask-top-left": [mask_model(L, S, "top-left"),
                                                              mask_model(L, S, "flipped")],
                        "causal-mask-diagonal-masked": mask_model(L, S, "strict"),
                        # rows and columns exchanged: an (S, L) mask, the transpose
                        "causal-mask-inverted": [mask_model(L, S, kd) for kd in INVERTED]
                        + [mask_model(L, S).T]}))
    return {"cases": len(evs)}


@check("gqa-causal", 2, 'scaled_dot_product_attention_grouped with mask="causal"',
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_grouped", "causal_mask"))
def gqa_causal(ctx):
    fn = ctx.symbol("scaled_dot_product_attention_grouped")
    mx.random.seed(303)
    evs = []
    # First, values = the identity (D = S): the output is then the attention weights
    # themselves, so a wrong mask's difference map is drawn over (query, key) positions.
    L, S = 8, 10
    q, k, _ = _qkv((), 2, 1, L, S, S, F32)
    v = mx.broadcast_to(mx.eye(S, dtype=F32), (1, S, S))
    evs.append(ctx.expect_close(
        ctx.call(fn, q, k, v, mask="causal"), _oracle_gqa(q, k, v, None, "causal"),
        case=_case((), 2, 1, L, S, S, F32, ', mask "causal", values = identity (the output '
                   "is the attention weights)"),
        candidates={
            "causal-mask-top-left": [lambda c=c: gqa_model(q, k, v, None, "causal", causal=c)
                                     for c in ("top-left", "flipped")],
            "causal-mask-diagonal-masked": lambda: gqa_model(q, k, v, None, "causal",
                                                             causal="strict"),
            "causal-mask-inverted": lambda: [gqa_model(q, k, v, None, "causal", causal=kd)
                                             for kd in INVERTED],
            "gqa-scale-wrong": lambda: [gqa_model(q, k, v, f, "causal") for f in wrong_scales(
                1.0 / math.sqrt(S), (S, L, S, 2, 1), given=None)],
            "gqa-mask-misapplied": lambda: gqa_model(q, k, v, None, None),
        }, axes=("query head", "query position", "key (its weight)")))
    cases = [((2,), 6, 2, 3, 7, 5, F32, None), ((2, 3), 4, 1, 2, 6, 8, F16, 0.5),
             ((), 4, 2, 5, 5, 8, F32, None)]
    for batch, Hq, H, L, S, D, dtype, scale in cases:
        q, k, v = _qkv(batch, Hq, H, L, S, D, dtype)
        want = _oracle_gqa(q, k, v, scale, "causal")
        got = ctx.call(fn, q, k, v, scale=scale, mask="causal")
        case = _case(batch, Hq, H, L, S, D, dtype, f", scale={scale}, mask \"causal\"")
        evs.append(ctx.expect_close(got, want, case=case, candidates={
            "causal-mask-top-left": [
                lambda c=c: gqa_model(q, k, v, scale, "causal", causal=c)
                for c in ("top-left", "flipped")],
            "causal-mask-diagonal-masked": lambda: gqa_model(q, k, v, scale, "causal",
                                                             causal="strict"),
            "gqa-kv-head-order": lambda: gqa_model(q, k, v, scale, "causal", head_order="mod"),
            "causal-mask-inverted": lambda: [gqa_model(q, k, v, scale, "causal", causal=kd)
                                             for kd in INVERTED],
            "gqa-scale-wrong": lambda: [
                gqa_model(q, k, v, f, "causal") for f in wrong_scales(
                    1.0 / math.sqrt(D) if scale is None else scale, (D, L, S, Hq, H),
                    given=scale)],
            "gqa-mask-misapplied": lambda: gqa_model(q, k, v, scale, None),
        }, axes=AXES[-len(want.shape):]))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 3


def qwen_model(x, w, Hq, H, theta, mask, *, traditional=False, no_bias=(), head_order="div",
               causal="ok", rope_on="qk", scale=None, use_mask=True, wiring=(), out_proj=True):
    """Qwen2 self-attention in float32 from the weights the learner gets. Mistakes: the
    other RoPE layout, biases left out, kv heads paired round-robin, another causal mask,
    RoPE on other tensors than q and k (``rope_on``), another scale, the mask never
    applied, weights taken from the wrong slot (``wiring``: (slot, source) pairs of keys of
    ``w``, all read from the right weights), no output
    projection."""
    B, L, E = x.shape
    D = E // Hq
    xf = x.astype(F32)
    w = {**w, **{dst: w[src] for dst, src in wiring}}

    def proj(name, heads):
        y = xf @ w["w" + name].astype(F32).T
        if name not in no_bias:
            y = y + w["b" + name].astype(F32)
        y = y.reshape(B, L, heads, D).transpose(0, 2, 1, 3)
        return y

    t = {"q": proj("q", Hq), "k": proj("k", H), "v": proj("v", H)}
    for name in rope_on:
        t[name] = mx.fast.rope(t[name], D, traditional=traditional, base=theta, scale=1.0,
                               offset=0)
    s = 1.0 / math.sqrt(D) if scale is None else scale
    out = gqa_model(t["q"], t["k"], t["v"], s, mask if use_mask else None,
                    head_order=head_order, causal=causal)
    out = out.transpose(0, 2, 1, 3).reshape(B, L, Hq * D)
    return out @ w["wo"].astype(F32).T if out_proj else out


@check("qwen2-attention", 3,
       "Qwen2MultiHeadAttention against mlx_lm's qwen2.Attention",
       forbid=(SDPA, "mx.fast.rope", "nn.RoPE"),
       symbols=("qwen2_week1.Qwen2MultiHeadAttention",))
def qwen2_attention(ctx):
    cls = ctx.symbol("qwen2_week1.Qwen2MultiHeadAttention")
    qwen2 = import_mlx_lm("mlx_lm.models.qwen2")
    mx.random.seed(304)
    E, Hq, H = 32, 4, 2
    # (x dtype, weights, mask, B, L, theta, max_seq_len)
    #   "f32": random-init float32 weights with biases (like the book's test);
    #   "q4-f16": float16 weights quantized to 4 bits (group 32), learner gets them dequantized.
    cases = [(F32, "f32", None, 2, 5, 10000, 64), (F32, "f32", "causal", 2, 5, 10000, 64),
             (F16, "f32", "causal", 1, 4, 10000, 64),
             (F16, "q4-f16", "causal", 2, 7, 1000000, 128),
             (F32, "f32", "array", 1, 6, 1000000, 32768)]
    evs = []
    for dtype, wkind, mkind, B, L, theta, max_len in cases:
        args = qwen2.ModelArgs(
            model_type="qwen2", hidden_size=E, num_hidden_layers=1, intermediate_size=64,
            num_attention_heads=Hq, num_key_value_heads=H, rms_norm_eps=1e-6, vocab_size=100,
            rope_theta=theta, rope_traditional=False, max_position_embeddings=max_len)
        attn = qwen2.Attention(args)
        if wkind == "q4-f16":
            attn.set_dtype(F16)
            nn.quantize(attn, group_size=32, bits=4)

        def dense(lin):
            if isinstance(lin, nn.QuantizedLinear):
                return mx.dequantize(lin.weight, lin.scales, lin.biases,
                                     group_size=lin.group_size, bits=lin.bits)
            return lin.weight

        w = {"wq": dense(attn.q_proj), "wk": dense(attn.k_proj), "wv": dense(attn.v_proj),
             "wo": dense(attn.o_proj), "bq": attn.q_proj.bias, "bk": attn.k_proj.bias,
             "bv": attn.v_proj.bias}
        x = mx.random.uniform(-1.0, 1.0, (B, L, E)).astype(dtype)
        mask = mkind
        if mkind == "array":
            mask = mx.random.uniform(-2.0, 2.0, (L, L)).astype(dtype)
        want = attn(x, mask=mask, cache=None)
        layer = ctx.call(cls, hidden_size=E, num_heads=Hq, num_kv_heads=H, **w,
                         max_seq_len=max_len, theta=theta)
        got = ctx.call(layer, x, mask=mask) if mask is not None else ctx.call(layer, x)
        case = (f"B={B}, L={L}, E={E}, H_q={Hq}, H={H}, x {dtype_str(dtype)}, "
                + ("float32 weights" if wkind == "f32" else "4-bit weights dequantized to float16")
                + f", theta={theta}, max_seq_len={max_len}, mask "
                + {None: "None", "causal": '"causal"', "array": "(L, L) array"}[mkind])

        def model(base=theta, **kw):
            return qwen_model(x, w, Hq, H, base, mask, **kw).astype(want.dtype)

        D = E // Hq
        cands = {
            "qwen-attn-traditional-rope": lambda: model(traditional=True),
            "qwen-attn-missing-bias": [
                lambda nb=nb: model(no_bias=nb) for nb in ("qkv", "q", "k", "v", "qk")],
            "gqa-kv-head-order": lambda: model(head_order="mod"),
            "qwen-attn-rope-wrong-tensors": lambda: [
                model(rope_on=r) for r in ("q", "k", "qkv", "")],
            "gqa-scale-wrong": lambda: [
                model(scale=f) for f in wrong_scales(1.0 / math.sqrt(D), (D, E, Hq, H, L))],
            # theta never reaches RoPE (its default is used), or max_seq_len lands there
            "qwen-attn-theta-not-passed": lambda: [
                model(base=b) for b in {10000, 1000000, max_len} if b != theta],
            "qwen-attn-projection-mixup": lambda: [
                model(wiring=wr) for wr in KV_WIRINGS] + [model(out_proj=False)],
        }
        if mkind == "causal":
            cands["causal-mask-diagonal-masked"] = lambda: model(causal="strict")
            cands["causal-mask-inverted"] = lambda: [model(causal=kd) for kd in INVERTED]
        if mkind is not None:
            cands["gqa-mask-misapplied"] = lambda: model(use_mask=False)
        # With float32 weights and float16 x the oracle computes in float32 (the weights
        # promote it), but the input has float16 precision and a learner may well compute in
        # x's dtype: float16 tolerance, as in the book's test.
        evs.append(ctx.expect_close(got, want, case=case, dtype=dtype_str(dtype), candidates=cands,
                                    axes=("batch", "position", "feature")))
    return merge_evidence(evs)
