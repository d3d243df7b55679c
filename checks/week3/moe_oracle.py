"""Oracle-side pieces for day 3.3: tiny random Qwen2-MoE models built with
``mlx_lm.models.qwen2_moe`` itself, and its MoE block written out from the model's own
modules (router ``gate``, ``switch_mlp``, ``shared_expert``, ``shared_expert_gate``) so that
a catalogued mistake can be modelled by changing one piece.

    oracle, given = tiny_moe(seed=3)        # the same 4-bit model twice (see tiny_w2)
    logits = oracle(ids)                     # mlx_lm's forward: the truth
    logits = moe_forward(oracle, chunks, renorm=True)   # with one mistake, chunk by chunk
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map_with_path

from ..harness import import_mlx_lm
from ..week2.w2_oracle import attention_step

# The tiny MoE model: hidden 128, 4 query heads over 2 kv heads, 8 experts of intermediate
# 64 (one group of 64), top-2, a shared expert of 128. Every input dimension is a multiple
# of the group size. rope_theta 10000 (not 1e6), as in week 2's tiny model.
MOE_CFG = dict(vocab=300, hidden=128, layers=2, heads=4, kv_heads=2, experts=8, top_k=2,
               moe_intermediate=64, shared_intermediate=128, rms_norm_eps=1e-6,
               rope_theta=10000.0, embed_scale=0.7, router_scale=3.0)


def qwen2_moe_module():
    return import_mlx_lm("mlx_lm.models.qwen2_moe")


def build_moe(seed: int, *, vocab, hidden, layers, heads, kv_heads, experts, top_k,
              moe_intermediate, shared_intermediate, rms_norm_eps, rope_theta, embed_scale,
              router_scale, tie_word_embeddings=False):
    """A random float32 ``qwen2_moe.Model``. The router's weights are ``router_scale``
    times mlx's default init, so router logits spread over a few nats and every expert
    gets tokens; norm weights are drawn from [0.5, 1.5) (a skipped norm weight shows)."""
    q = qwen2_moe_module()
    args = q.ModelArgs(
        model_type="qwen2_moe", hidden_size=hidden, num_hidden_layers=layers,
        intermediate_size=2 * moe_intermediate, num_attention_heads=heads,
        num_key_value_heads=kv_heads, num_experts_per_tok=top_k, num_experts=experts,
        moe_intermediate_size=moe_intermediate,
        shared_expert_intermediate_size=shared_intermediate, rms_norm_eps=rms_norm_eps,
        vocab_size=vocab, rope_theta=rope_theta, tie_word_embeddings=tie_word_embeddings)
    mx.random.seed(seed)
    model = q.Model(args)
    inner = model.model
    inner.embed_tokens.weight = embed_scale * mx.random.normal((vocab, hidden))
    for layer in inner.layers:
        layer.input_layernorm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
        layer.post_attention_layernorm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
        layer.mlp.gate.weight = router_scale * layer.mlp.gate.weight
        # a shared gate far from 0: sigmoid(g) well away from 1/2 and from 1, per token
        layer.mlp.shared_expert_gate.weight = 4 * layer.mlp.shared_expert_gate.weight
    inner.norm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
    if not tie_word_embeddings:
        model.lm_head.weight = embed_scale * mx.random.normal((vocab, hidden))
    mx.eval(model.parameters())
    return model


def _is_quant_param(path: str) -> bool:
    return path.endswith(".scales") or path.endswith(".biases")


def tiny_moe(seed: int, *, group_size: int = 64, bits: int = 4, **overrides):
    """(oracle, given): the same random 4-bit Qwen2-MoE twice, as ``tiny_w2`` builds Qwen2:
    ``given`` stores scales and biases in float16, ``oracle`` keeps the same values in
    float32, and every other float parameter holds float16-representable values, so the
    learner's float16 model and the float32 oracle dequantize to the same weights."""
    cfg = {**MOE_CFG, **overrides}

    def make():
        m = build_moe(seed, **cfg)
        nn.quantize(m, group_size=group_size, bits=bits)
        return m

    oracle = make()

    def rounded(p, v):
        if not mx.issubdtype(v.dtype, mx.floating):
            return v
        return v.astype(mx.float16).astype(mx.float32)

    r = tree_map_with_path(rounded, oracle.parameters())
    oracle.update(r)
    given = make()
    given.update(tree_map_with_path(
        lambda p, v: v.astype(mx.float16) if _is_quant_param(p) else v, r))
    mx.eval(oracle.parameters(), given.parameters())
    return oracle, given


# --------------------------------------------------------------------------- the block, written out


def route(logits: mx.array, top_k: int, *, renorm: bool = False, axis: int = -1,
          raw: bool = False):
    """(weights (N, k), ids (N, k), probs) of mlx_lm's router; ``renorm`` divides the top-k
    weights by their sum (equal to a softmax over the k chosen logits); ``axis=0`` takes the
    softmax over the tokens instead of the experts (logits (N, n_experts)); ``raw``
    weights the chosen experts by their logits instead of their probabilities."""
    probs = mx.softmax(logits.astype(mx.float32), axis=axis, precise=True)
    ids = mx.argsort(-probs, axis=-1)[..., :top_k]
    w = mx.take_along_axis(logits.astype(mx.float32) if raw else probs, ids, axis=-1)
    if renorm:
        w = w / w.sum(axis=-1, keepdims=True)
    return w, ids, probs


def combine(y: mx.array, w: mx.array, *, unweighted: bool = False,
            overwrite: str | None = None) -> mx.array:
    """Per-token sum of the k expert outputs y (N, k, E) with weights w (N, k).
    ``unweighted``: every expert output added with weight 1; ``overwrite`` "max" or "min":
    only the expert of the largest (smallest) id survives (a scatter that writes instead
    of adding; ``w`` must then be ordered by id, see ``by_id``)."""
    if unweighted:
        w = mx.ones_like(w)
    yw = y.astype(mx.float32) * w[..., None].astype(mx.float32)
    if overwrite == "max":
        return yw[:, -1]
    if overwrite == "min":
        return yw[:, 0]
    return yw.sum(axis=1)


def by_id(w: mx.array, ids: mx.array):
    """w, ids with each row's k entries ordered by expert id."""
    order = mx.argsort(ids, axis=-1)
    return mx.take_along_axis(w, order, axis=-1), mx.take_along_axis(ids, order, axis=-1)


def switch_glu(sw, x: mx.array, ids: mx.array, swap: bool = False) -> mx.array:
    """mlx_lm's SwitchGLU(x (N, E), ids (N, k)) -> (N, k, E) from its three switch linears;
    ``swap`` exchanges the gate and up projections."""
    xx = mx.expand_dims(x, (-2, -3))
    gate, up = sw.gate_proj(xx, ids), sw.up_proj(xx, ids)
    if swap:
        gate, up = up, gate
    return sw.down_proj(nn.silu(gate) * up, ids).squeeze(-2)


def shared_mlp(se, x: mx.array, swap: bool = False) -> mx.array:
    gate, up = se.gate_proj(x), se.up_proj(x)
    if swap:
        gate, up = up, gate
    return se.down_proj(nn.silu(gate) * up)


def moe_block(mlp, x: mx.array, *, renorm=False, axis=-1, unweighted=False, overwrite=None,
              shared_gate: str = "sigmoid", raw=False, swap: str = "") -> mx.array:
    """mlx_lm's Qwen2MoeSparseMoeBlock on x (B, L, E) from its own modules, with one mistake
    at a time. ``shared_gate``: "sigmoid" (right), "none" (no gate, the same as a softmax
    over its single logit), "raw" (the gate's logit itself as the factor); ``raw``: see
    ``route``; ``swap``: "routed", "shared" or "both" -- those experts built with their gate
    and up projections exchanged."""
    B, L, E = x.shape
    flat = x.reshape(-1, E)
    w, ids, _ = route(mlp.gate(flat), mlp.top_k, renorm=renorm, axis=axis, raw=raw)
    if overwrite:
        w, ids = by_id(w, ids)
    y = switch_glu(mlp.switch_mlp, flat, ids, swap=swap in ("routed", "both"))
    routed = combine(y, w, unweighted=unweighted, overwrite=overwrite)
    g = mlp.shared_expert_gate(flat).astype(mx.float32)
    factor = {"sigmoid": mx.sigmoid(g), "none": mx.ones_like(g), "raw": g}[shared_gate]
    shared = shared_mlp(mlp.shared_expert, flat, swap=swap in ("shared", "both"))
    out = routed + factor * shared.astype(mx.float32)
    return out.astype(x.dtype).reshape(B, L, E)


def forward_chunk(model, ids: mx.array, offset: int, caches: list, **mistake) -> mx.array:
    """One call of the MoE model on ids (B, L) at ``offset`` with per-layer caches
    ([keys, values], as w2_oracle's), the MoE block written out with ``mistake``."""
    inner = model.model
    h = inner.embed_tokens(ids)
    for layer, kv in zip(inner.layers, caches):
        h = h + attention_step(layer.self_attn, layer.input_layernorm(h), offset, kv)
        h = h + moe_block(layer.mlp, layer.post_attention_layernorm(h), **mistake)
    h = inner.norm(h)
    if model.args.tie_word_embeddings:
        return inner.embed_tokens.as_linear(h)
    return model.lm_head(h)


def moe_forward(model, chunks: list[mx.array], **mistake) -> list[mx.array]:
    """The logits of every call when ``model`` runs over consecutive chunks with a cache."""
    caches = [[None, None] for _ in model.model.layers]
    offset, outs = 0, []
    for ids in chunks:
        outs.append(forward_chunk(model, ids, offset, caches, **mistake))
        offset += ids.shape[1]
    mx.eval(outs)
    return outs


def router_margins(model, ids: mx.array) -> float:
    """The smallest gap, in router logits, between a token's k-th and (k+1)-th expert over
    every layer of a forward of ``ids``: how far the inputs are from a routing tie (a tie
    would let float16 rounding pick another expert)."""
    inner = model.model
    h = inner.embed_tokens(ids)
    caches = [[None, None] for _ in inner.layers]
    gaps = []
    for layer, kv in zip(inner.layers, caches):
        h = h + attention_step(layer.self_attn, layer.input_layernorm(h), 0, kv)
        x = layer.post_attention_layernorm(h)
        logits = mx.sort(layer.mlp.gate(x.reshape(-1, x.shape[-1])), axis=-1)[:, ::-1]
        k = layer.mlp.top_k
        gaps.append(mx.min(logits[:, k - 1] - logits[:, k]))
        h = h + layer.mlp(x)
    return float(mx.min(mx.stack(gaps)).item())
