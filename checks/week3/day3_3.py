"""Day 3.3 -- mixture of experts as in Qwen2-MoE: the router, expert dispatch grouped by
expert, the sparse MoE block with its gated shared expert, and Qwen2MoeModel.

Oracles: the router's probabilities and top-k written out in numpy (float64); the dispatch's
weighted sum per token written out in numpy over the checks' own experts; mlx_lm's
``qwen2_moe.Qwen2MoeSparseMoeBlock`` and ``qwen2_moe.Model`` on tiny random configs, float
and 4-bit quantized (``nn.quantize``, group sizes 32 and 64), through ``moe_oracle`` (the
block written out from mlx_lm's own modules, so a catalogued mistake is modelled by changing
one piece).

Isolation: moe-dispatch and moe-dispatch-cost hand the learner's ``moe_dispatch`` (and
block) the checks' own experts, callables that record every call, so they test the grouping
and the weighted scatter, not the learner's experts. The model check gives the learner's
model the checks' reference KV cache (w2_oracle.RefCache), so a day-2.1 cache bug does not
show up here.

Cost (moe-dispatch-cost): counted, not timed. The checks' experts count the rows they are
given: a grouped dispatch runs each expert at most once, on exactly the tokens routed to it
(tokens x k rows in all); a loop over tokens calls experts tokens x k times, one row each;
running every expert on every token costs tokens x experts rows. Deterministic.

Routing ties: top-k is discontinuous, so every input is kept away from ties. Router
cases use logits with distinct values per row (a shuffled ladder plus small noise); the
block and model checks pick, from a fixed list of seeds, the first input whose smallest gap
between a token's k-th and (k+1)-th router logit is at least ``MARGIN`` (float32 block:
``MARGIN_F32``), far above float16 rounding of the logits (~1e-2 after two layers). The
order of the k experts a token gets is not checked: ids and weights are compared as
(id, weight) pairs sorted by id.

Tolerances: float16 cases use the harness's float16 tolerances; the model's log-probs use
week 2's (the learner's float16 model against mlx_lm in float32 on the same
float16-representable weights: ~0.03 on the answer key), as day 2.6 does.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map_with_path

from ..harness import CheckFailed, check, dtype_str, measure, merge_evidence, to_np
from ..week2.w2_oracle import RefCache, log_softmax
from . import moe_oracle as mo

F32, F16 = mx.float32, mx.float16
GATHER_FORBID = ("mx.gather_mm", "mx.gather_qmm")
MODEL_FORBID = GATHER_FORBID + ("mx.fast.scaled_dot_product_attention", "mx.fast.rope",
                                "nn.RoPE", "mx.fast.rms_norm", "nn.RMSNorm", "nn.silu",
                                "nn.SiLU")
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}
MARGIN, MARGIN_F32 = 0.05, 1e-3
SEEDS = range(3300, 3364)


# --------------------------------------------------------------------------- task 1


def _np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _ladder_logits(shape, seed: int) -> np.ndarray:
    """Logits whose values in each row are distinct by at least 0.8 of a step: a shuffled
    ladder from -3 to 3 plus noise of +-0.1 step."""
    rng = np.random.default_rng(seed)
    n = shape[-1]
    step = 6.0 / (n - 1)
    rows = int(np.prod(shape[:-1]))
    out = np.stack([rng.permutation(np.linspace(-3, 3, n)) for _ in range(rows)])
    out = out + rng.uniform(-0.1 * step, 0.1 * step, out.shape)
    return out.reshape(shape)


# (logits shape, top_k, dtype, norm_topk_prob)
ROUTER_CASES = [
    ((7, 8), 2, F32, False),
    ((2, 5, 16), 4, F32, False),
    ((6, 4), 1, F32, False),
    ((5, 6), 3, F16, False),
    ((4, 8), 2, F32, True),
]


def _sorted_by_id(ids: np.ndarray, w: np.ndarray):
    order = np.argsort(ids, axis=-1)
    return np.take_along_axis(ids, order, -1), np.take_along_axis(w, order, -1)


def _topk_ids(p: np.ndarray, k: int) -> np.ndarray:
    return np.sort(np.argsort(-p, axis=-1)[..., :k], axis=-1)


@check("moe-router", 1, "The router: probabilities over every expert, each token's top k "
       "experts and their weights", symbols=("moe.route_topk",))
def moe_router(ctx):
    route = ctx.symbol("moe.route_topk")
    evs = []
    for i, (shape, k, dtype, norm) in enumerate(ROUTER_CASES):
        raw = _ladder_logits(shape, 3310 + i)
        logits = mx.array(raw, dtype=dtype)
        x64 = to_np(logits).astype(np.float64)
        want_p = _np_softmax(x64, -1)
        wrong_axes = [_np_softmax(x64, a) for a in range(len(shape) - 1)]
        case = (f"router logits {shape}, {dtype_str(dtype)}, top_k={k}, "
                f"norm_topk_prob={norm}")
        out = ctx.call(route, logits, k, norm)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            ctx.fail(f"[{case}] route_topk returned {type(out).__name__}; expected a tuple "
                     "(weights, expert_ids, probs).", {"case": case})
        weights, ids, probs = out
        ctx.expect_shape(probs, shape, "probs", case)
        cands = {"moe-route-wrong-axis": [mx.array(p) for p in wrong_axes]}
        if dtype != F32:  # the softmax taken in the logits' own dtype, fused or written out
            ex = mx.exp(logits - logits.max(axis=-1, keepdims=True))
            cands["moe-router-half-precision"] = [mx.softmax(logits, axis=-1),
                                                  ex / ex.sum(axis=-1, keepdims=True)]
        evs.append(ctx.expect_close(
            probs, mx.array(want_p, dtype=F32), what="probs", case=case, dtype="float32",
            candidates=cands))
        ctx.expect_shape(ids, (*shape[:-1], k), "expert_ids", case)
        ctx.expect_shape(weights, (*shape[:-1], k), "weights", case)
        got_ids = to_np(ids).astype(np.int64)
        s_ids, s_w = _sorted_by_id(got_ids, to_np(weights).astype(np.float64))
        want_ids = _topk_ids(want_p, k)
        if not np.array_equal(s_ids, want_ids):
            bad = tuple(int(j) for j in np.argwhere((s_ids != want_ids).any(-1))[0])
            pit = ("moe-route-wrong-axis"
                   if any(np.array_equal(s_ids, _topk_ids(p, k)) for p in wrong_axes) else None)
            lowest = np.sort(np.argsort(x64, axis=-1)[..., :k], axis=-1)
            hint = (" They are the k experts with the lowest probabilities."
                    if np.array_equal(s_ids, lowest) else "")
            ctx.fail(f"[{case}] token {bad} is routed to experts {s_ids[bad].tolist()} "
                     f"(sorted); its {k} most probable experts are {want_ids[bad].tolist()}."
                     + hint, {"case": case, "token": list(bad), "got": s_ids[bad].tolist(),
                              "expected": want_ids[bad].tolist()}, pitfall=pit)
        chosen = np.take_along_axis(want_p, s_ids, -1)
        renormed = chosen / chosen.sum(-1, keepdims=True)
        want_w, other = (renormed, chosen) if norm else (chosen, renormed)
        raw = mx.array(np.take_along_axis(x64, s_ids, -1))
        cands = {"moe-weights-not-probabilities": raw}
        if not norm:
            cands["moe-topk-renormalised"] = mx.array(other)
        evs.append(ctx.expect_close(
            mx.array(s_w), mx.array(want_w, dtype=F32), what="weights (ordered by expert id)",
            case=case, dtype="float32", candidates=cands))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


class RecordingExpert:
    """The checks' expert: y = tanh(x A) B in float32, returned in x's dtype. Records the
    number of rows of every call."""

    def __init__(self, e: int, E: int, log: list, rng: np.random.Generator):
        self.e, self.log = e, log
        self.A = rng.normal(0, 1 / np.sqrt(E), (E, 8))
        self.B = rng.normal(0, 1.0, (8, E))
        self.A_mx, self.B_mx = mx.array(self.A, dtype=F32), mx.array(self.B, dtype=F32)

    def __call__(self, x):
        self.log.append((self.e, int(x.size // x.shape[-1]) if x.ndim else 0))  # token rows
        return (mx.tanh(x.astype(F32) @ self.A_mx) @ self.B_mx).astype(x.dtype)

    def np(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ self.A) @ self.B


def _routing(N: int, n_exp: int, k: int, kind: str, rng) -> np.ndarray:
    if kind == "same":  # every token to the same k experts
        return np.tile(np.array([2, 0, 1][:k]), (N, 1))
    # k distinct experts per token among all but the last (an expert with no tokens)
    return np.stack([rng.choice(n_exp - 1, size=k, replace=False) for _ in range(N)])


def _dispatch_truth(x, ids, w, experts, mode="sum"):
    """numpy: per token, the sum over its k slots of weight * expert(x). ``mode``:
    "unweighted" (weight 1), "max"/"min"/"last"/"first" (only one slot survives)."""
    N, k = ids.shape
    ys = np.stack([np.stack([experts[ids[n, j]].np(x[n:n + 1])[0] for j in range(k)])
                   for n in range(N)])  # (N, k, E)
    ww = np.ones_like(w) if mode == "unweighted" else w
    yw = ys * ww[..., None]
    if mode in ("sum", "unweighted"):
        return yw.sum(1)
    pick = {"max": np.argmax(ids, 1), "min": np.argmin(ids, 1),
            "last": np.full(N, k - 1), "first": np.zeros(N, int)}[mode]
    return yw[np.arange(N), pick]


# (N tokens, E, n_experts, k, dtype, routing)
DISPATCH_CASES = [
    (6, 16, 4, 2, F32, "random"),
    (5, 16, 4, 2, F32, "same"),
    (7, 8, 8, 1, F32, "random"),
    (9, 16, 6, 3, F16, "random"),
]


def _dispatch_case(seed, N, E, n_exp, k, dtype, kind):
    rng = np.random.default_rng(seed)
    log: list = []
    experts = [RecordingExpert(e, E, log, rng) for e in range(n_exp)]
    ids = _routing(N, n_exp, k, kind, rng)
    w = rng.uniform(0.05, 0.6, (N, k))
    x = mx.array(rng.normal(0, 1, (N, E)), dtype=dtype)
    return experts, log, ids, w, x


@check("moe-dispatch", 2, "Dispatch: each token gets the weighted sum of its experts' outputs",
       forbid=GATHER_FORBID, symbols=("moe.moe_dispatch",))
def moe_dispatch(ctx):
    dispatch = ctx.symbol("moe.moe_dispatch")
    evs = []
    for i, (N, E, n_exp, k, dtype, kind) in enumerate(DISPATCH_CASES):
        experts, _log, ids, w, x = _dispatch_case(3320 + i, N, E, n_exp, k, dtype, kind)
        x64 = to_np(x).astype(np.float64)
        used = sorted(set(ids.ravel().tolist()))
        case = (f"x ({N}, {E}) {dtype_str(dtype)}, {n_exp} experts, k={k}, "
                + ("every token routed to the same experts " + str(ids[0].tolist())
                   if kind == "same" else f"experts {used} chosen, the others get no token"))
        got = ctx.call(dispatch, x, mx.array(ids, dtype=mx.int32), mx.array(w, dtype=F32),
                       experts)
        ctx.expect_shape(got, (N, E), "output", case)
        want = _dispatch_truth(x64, ids, w, experts)

        def cand(mode, x64=x64, ids=ids, w=w, experts=experts):
            return mx.array(_dispatch_truth(x64, ids, w, experts, mode))

        evs.append(ctx.expect_close(
            got, mx.array(want, dtype=F32), what="output", case=case, dtype=dtype_str(dtype),
            axes=("token", "feature"), candidates={
                "moe-unweighted-sum": lambda c=cand: c("unweighted"),
                "moe-scatter-overwrites": [lambda c=cand, m=m: c(m)
                                           for m in ("max", "min", "last", "first")]}))
    return merge_evidence(evs)


# Many experts, few tokens each: the cost of a grouped dispatch is N x k expert rows.
COST_CASE = (48, 16, 16, 2)  # (N, E, n_experts, k)


def _cost_verdict(log, ids, n_exp, where, per_expert=True):
    """Fail when the experts' calls are not one call per routed expert on its tokens.
    ``per_expert=False`` (the block routes with its own router): only the number of calls
    per expert and the total number of rows are judged."""
    N, k = ids.shape
    routed = np.bincount(ids.ravel(), minlength=n_exp)
    rows = np.zeros(n_exp, int)
    calls = np.zeros(n_exp, int)
    for e, r in log:
        rows[e] += r
        calls[e] += r > 0
    ev = {"case": where, "expert_rows": int(rows.sum()), "routed_pairs": int(N * k),
          "dense_rows": int(N * n_exp), "calls": int(calls.sum()),
          "experts_with_tokens": int((routed > 0).sum())}
    if rows.sum() >= N * n_exp and (rows >= N).all():
        ctx_msg = (f"[{where}] every expert ran on every token: {int(rows.sum())} expert rows "
                   f"for {N} tokens x k={k} = {N * k} routed (token, expert) pairs, so the cost "
                   f"grows with tokens x experts ({N} x {n_exp}).")
        raise CheckFailed(ctx_msg, ev, pitfall="moe-dispatch-dense")
    if (calls > 1).any():
        e = int(np.argmax(calls))
        one_row = all(r == 1 for _, r in log if r > 0)
        raise CheckFailed(
            f"[{where}] expert {e} was called {int(calls[e])} times in one dispatch "
            f"({int(calls.sum())} expert calls for {int((routed > 0).sum())} experts with "
            "tokens); a grouped dispatch runs each expert once, on all its tokens together.",
            ev, pitfall="moe-dispatch-per-token" if one_row else None)
    if not per_expert and rows.sum() != N * k:
        raise CheckFailed(
            f"[{where}] the experts ran on {int(rows.sum())} rows in all; {N} tokens with k={k} "
            f"experts each make {N * k} (token, expert) pairs.", ev)
    extra = np.nonzero(rows != routed)[0] if per_expert else []
    if len(extra):
        e = int(extra[0])
        raise CheckFailed(
            f"[{where}] expert {e} ran on {int(rows[e])} rows; {int(routed[e])} (token, slot) "
            f"pairs are routed to it ({int(rows.sum())} expert rows in all, {N * k} routed).",
            ev, pitfall="moe-dispatch-dense" if rows.sum() >= N * n_exp else None)
    return ev


@check("moe-dispatch-cost", 2, "Dispatch cost follows the tokens routed, not tokens times "
       "experts: each expert runs once, on its own tokens",
       forbid=GATHER_FORBID, symbols=("moe.moe_dispatch", "moe.Qwen2SparseMoeBlock"))
def moe_dispatch_cost(ctx):
    dispatch = ctx.symbol("moe.moe_dispatch")
    Block = ctx.symbol("moe.Qwen2SparseMoeBlock")
    N, E, n_exp, k = COST_CASE
    experts, log, ids, w, x = _dispatch_case(3330, N, E, n_exp, k, F32, "random")
    where = f"moe_dispatch, {N} tokens, {n_exp} experts, k={k}"
    ctx.call(dispatch, x, mx.array(ids, dtype=mx.int32), mx.array(w, dtype=F32), experts)
    ev = _cost_verdict(log, ids, n_exp, where)

    # The block must dispatch the same way: the checks' experts again, routed by its router.
    rng = np.random.default_rng(3331)
    w_router = mx.array(rng.normal(0, 2 / np.sqrt(E), (n_exp, E)), dtype=F32)
    log.clear()
    shared_log: list = []
    shared = RecordingExpert(-1, E, shared_log, rng)
    block = ctx.call(Block, w_router, experts, k, shared,
                     mx.array(rng.normal(0, 0.2, (1, E)), dtype=F32))
    xb = mx.array(rng.normal(0, 1, (2, N // 2, E)), dtype=F32)
    ctx.call(block, xb)
    logits = to_np(xb).reshape(-1, E).astype(np.float64) @ to_np(w_router).astype(np.float64).T
    block_ids = np.argsort(-logits, -1)[:, :k]
    ev_block = _cost_verdict(log, block_ids, n_exp,
                             f"Qwen2SparseMoeBlock, x (2, {N // 2}, {E}), {n_exp} experts, k={k}",
                             per_expert=False)
    return {**ev, "block_expert_rows": ev_block["expert_rows"]}


# --------------------------------------------------------------------------- task 3


def _block_args(n_exp, k, E=64, moe_i=32, shared_i=96):
    q = mo.qwen2_moe_module()
    return q.ModelArgs(
        model_type="qwen2_moe", hidden_size=E, num_hidden_layers=1, intermediate_size=64,
        num_attention_heads=2, num_experts_per_tok=k, num_experts=n_exp,
        moe_intermediate_size=moe_i, shared_expert_intermediate_size=shared_i,
        rms_norm_eps=1e-6, vocab_size=16)


def tiny_block(seed: int, n_exp: int, k: int, group_size: int | None = None):
    """mlx_lm's Qwen2MoeSparseMoeBlock with random weights (router x3, shared gate x4, as
    moe_oracle.build_moe); quantized with ``group_size`` (4 bits), float16-representable
    values throughout (scales and biases too), so the learner's float16 copy matches."""
    q = mo.qwen2_moe_module()
    mx.random.seed(seed)
    block = q.Qwen2MoeSparseMoeBlock(_block_args(n_exp, k))
    block.gate.weight = 3 * block.gate.weight
    block.shared_expert_gate.weight = 4 * block.shared_expert_gate.weight
    if group_size:
        nn.quantize(block, group_size=group_size, bits=4)
        block.update(tree_map_with_path(
            lambda p, v: v.astype(F16).astype(F32) if mx.issubdtype(v.dtype, mx.floating)
            else v, block.parameters()))
    mx.eval(block.parameters())
    return block


def _block_margin(block, x) -> float:
    logits = mx.sort(block.gate(x.reshape(-1, x.shape[-1]).astype(F32)), axis=-1)[:, ::-1]
    k = block.top_k
    return float(mx.min(logits[:, k - 1] - logits[:, k]).item())


def _away_from_ties(block, shape, dtype, margin):
    for s in SEEDS:
        x = mx.random.normal(shape, key=mx.random.key(s)).astype(dtype)
        if _block_margin(block, x) >= margin:
            return x
    raise RuntimeError("no input far enough from a routing tie")  # the checks' own bug


def _learner_weights(ctx, layer, dtype, expert=None):
    """The layer's weight as the learner's block takes it: the learner's QuantizedWeights
    (float16 scales and biases) when quantized, else the array."""
    def pick(a):
        return a if expert is None else a[expert]

    if getattr(layer, "scales", None) is not None:
        QW = ctx.symbol("quantize.QuantizedWeights")
        return ctx.call(QW, pick(layer.scales).astype(dtype), pick(layer.biases).astype(dtype),
                        layer.group_size, layer.bits, pick(layer.weight))
    return pick(layer.weight).astype(dtype)


def _learner_block(ctx, block, dtype):
    Expert = ctx.symbol("moe.Qwen2MoeExpert")
    Block = ctx.symbol("moe.Qwen2SparseMoeBlock")
    sw, se = block.switch_mlp, block.shared_expert
    experts = [ctx.call(Expert, *(_learner_weights(ctx, p, dtype, e)
                                  for p in (sw.gate_proj, sw.up_proj, sw.down_proj)))
               for e in range(block.num_experts)]
    shared = ctx.call(Expert, *(_learner_weights(ctx, p, dtype)
                                for p in (se.gate_proj, se.up_proj, se.down_proj)))
    return ctx.call(Block, _learner_weights(ctx, block.gate, dtype), experts, block.top_k,
                    shared, _learner_weights(ctx, block.shared_expert_gate, dtype))


def _block_candidates(block, x):
    def m(**kw):
        return lambda: mo.moe_block(block, x, **kw)

    return {
        "moe-topk-renormalised": m(renorm=True),
        "moe-route-wrong-axis": m(axis=0),
        "moe-unweighted-sum": m(unweighted=True),
        "moe-scatter-overwrites": [m(overwrite="max"), m(overwrite="min")],
        "moe-shared-gate-missing": [m(shared_gate="none"), m(shared_gate="raw")],
        "moe-weights-not-probabilities": m(raw=True),
        "moe-expert-weights-miswired": [m(swap=w) for w in ("routed", "shared", "both")],
    }


# (seed, experts, k, x shape)
BLOCK_CASES = [
    (3340, 8, 2, (2, 5, 64)),
    (3341, 4, 1, (1, 6, 64)),
    (3342, 6, 4, (3, 2, 64)),
]


def _block_cases(ctx, group_size, dtype, margin, tol):
    evs = []
    for seed, n_exp, k, shape in BLOCK_CASES:
        block = tiny_block(seed, n_exp, k, group_size)
        x = _away_from_ties(block, shape, dtype, margin)
        want = block(x.astype(F32))
        learner = _learner_block(ctx, block, dtype)
        case = (f"Qwen2SparseMoeBlock, x {shape} {dtype_str(dtype)}, {n_exp} experts, top_k={k}, "
                + (f"4-bit weights (group_size {group_size})" if group_size
                   else "float32 weights"))
        got = ctx.call(learner, x)
        ctx.expect_shape(got, shape, "output", case)
        evs.append(ctx.expect_close(got, want, what="output", case=case,
                                    candidates=_block_candidates(block, x.astype(F32)), **tol))
    return evs


@check("moe-block", 3, "The sparse MoE block with float weights: routed experts plus the "
       "gated shared expert", forbid=GATHER_FORBID,
       symbols=("moe.Qwen2MoeExpert", "moe.Qwen2SparseMoeBlock"))
def moe_block(ctx):
    return merge_evidence(_block_cases(ctx, None, F32, MARGIN_F32, {"dtype": "float32"}))


@check("moe-block-quantized", 3, "The sparse MoE block with 4-bit weights through your "
       "quantized linear", forbid=GATHER_FORBID,
       symbols=("moe.Qwen2MoeExpert", "moe.Qwen2SparseMoeBlock"))
def moe_block_quantized(ctx):
    return merge_evidence(_block_cases(ctx, 32, F16, MARGIN, {"dtype": "float16"}))


# --------------------------------------------------------------------------- task 4

# (seed, overrides of moe_oracle.MOE_CFG, group_size, batch, prefill length, decode steps)
MODEL_CASES = [
    (3350, {}, 64, 2, 7, 2),
    (3351, {"experts": 4, "top_k": 1}, 32, 1, 5, 2),
]


def _model_ids(oracle, B, T):
    V = oracle.args.vocab_size
    for s in SEEDS:
        ids = mx.random.randint(0, V, (B, T), key=mx.random.key(s)).astype(mx.int32)
        if mo.router_margins(oracle, ids) >= MARGIN:
            return ids
    raise RuntimeError("no prompt far enough from a routing tie")  # the checks' own bug


MODEL_MISTAKES = {
    "moe-topk-renormalised": [{"renorm": True}],
    "moe-route-wrong-axis": [{"axis": 0}],
    "moe-unweighted-sum": [{"unweighted": True}],
    "moe-scatter-overwrites": [{"overwrite": "max"}, {"overwrite": "min"}],
    "moe-shared-gate-missing": [{"shared_gate": "none"}, {"shared_gate": "raw"}],
    "moe-weights-not-probabilities": [{"raw": True}],
    "moe-expert-weights-miswired": [{"swap": w} for w in ("routed", "shared", "both")],
}


@check("moe-model", 4, "Qwen2MoeModel against mlx_lm's Qwen2-MoE: prefill, then decode with "
       "a cache", forbid=MODEL_FORBID, symbols=("qwen2_moe.Qwen2MoeModel",))
def moe_model(ctx):
    Model = ctx.symbol("qwen2_moe.Qwen2MoeModel")
    evs = []
    for seed, over, gs, B, P, steps in MODEL_CASES:
        oracle, given = mo.tiny_moe(seed, group_size=gs, **over)
        a = oracle.args
        ids = _model_ids(oracle, B, P + steps)
        full = log_softmax(oracle(ids))
        chunks = [ids[:, :P]] + [ids[:, P + i:P + i + 1] for i in range(steps)]
        model = ctx.call(Model, given)
        caches = ctx.call(model.create_kv_cache)
        if len(caches) != a.num_hidden_layers:
            ctx.fail(f"create_kv_cache() returned {len(caches)} caches for a model of "
                     f"{a.num_hidden_layers} layers; one per layer.", {"caches": len(caches)})
        caches = [RefCache() for _ in range(a.num_hidden_layers)]
        modelled: dict = {}

        def cand(pit, i, oracle=oracle, chunks=chunks, modelled=modelled):
            def fn():
                if pit not in modelled:
                    modelled[pit] = [[log_softmax(o) for o in mo.moe_forward(oracle, chunks, **kw)]
                                     for kw in MODEL_MISTAKES[pit]]
                return [v[i] for v in modelled[pit]]
            return fn

        offset = 0
        for i, chunk in enumerate(chunks):
            L = chunk.shape[1]
            case = (f"Qwen2-MoE, {a.num_experts} experts, top_k={a.num_experts_per_tok}, 4-bit "
                    f"(group_size {gs}), batch {B}, "
                    + (f"prefill of {L} tokens" if i == 0 else f"decode step {i} at offset {offset}"))
            got = ctx.call(model, chunk, offset, caches)
            ctx.expect_shape(got, (B, L, a.vocab_size), "logits", case)
            evs.append(ctx.expect_close(
                log_softmax(got), full[:, offset:offset + L], what="log-probs", case=case,
                candidates={p: cand(p, i) for p in MODEL_MISTAKES}, **MODEL_LOGP))
            offset += L
    return merge_evidence(evs)


# --------------------------------------------------------------------------- predict, then measure

# Qwen1.5-MoE-A2.7B's MoE layer: hidden 2048, 60 experts of intermediate 1408, top 4, a
# shared expert of 5632.
ACTIVE_CFG = dict(E=2048, n_exp=60, k=4, moe_i=1408, shared_i=5632)


class _CountingExpert:
    """Stands in for an expert of the stated size without its weights: counts whether it
    was given a token, returns zeros."""

    def __init__(self, n_params: int):
        self.n_params, self.rows = n_params, 0

    def __call__(self, x):
        self.rows += int(x.size // x.shape[-1]) if x.ndim else 0
        return mx.zeros(x.shape, dtype=x.dtype)


@measure("moe-active-params", unit="parameters")
def measure_active_params(ctx):
    """One token through the learner's Qwen2SparseMoeBlock of ACTIVE_CFG's sizes: the
    parameters of the experts it runs on the token, of the shared expert, the router and
    the shared expert's gate."""
    c = ACTIVE_CFG
    Block = ctx.symbol("moe.Qwen2SparseMoeBlock")
    experts = [_CountingExpert(3 * c["E"] * c["moe_i"]) for _ in range(c["n_exp"])]
    shared = _CountingExpert(3 * c["E"] * c["shared_i"])
    w_router = mx.random.normal((c["n_exp"], c["E"]), key=mx.random.key(3360)) / 45
    w_gate = mx.random.normal((1, c["E"]), key=mx.random.key(3361)) / 45
    block = ctx.call(Block, w_router, experts, c["k"], shared, w_gate)
    x = mx.random.normal((1, 1, c["E"]), key=mx.random.key(3362))
    ctx.call(block, x)
    touched = sum(e.n_params for e in experts + [shared] if e.rows > 0)
    return float(touched + w_router.size + w_gate.size)
