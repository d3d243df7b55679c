"""Mixture of experts as in Qwen2-MoE: a softmax router, top-k experts per token, dispatch
grouped by expert, SwiGLU experts and a shared expert behind a sigmoid gate."""

from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np

from .basics import silu
from .quantize import quantized_linear

__all__ = ["route_topk", "moe_dispatch", "Qwen2MoeExpert", "Qwen2SparseMoeBlock"]


def moe_linear(x: mx.array, w: Any) -> mx.array:
    """x (N.., I) times an (O, I) weight: a plain array, or QuantizedWeights through
    ``quantized_linear`` (the extension's kernel)."""
    if hasattr(w, "scales"):
        return quantized_linear(x, w)
    return x @ w.astype(x.dtype).T


def route_topk(
    router_logits: mx.array, top_k: int, norm_topk_prob: bool = False
) -> tuple[mx.array, mx.array, mx.array]:
    """router_logits (N.., n_experts) -> (weights (N.., k) float32, expert_ids (N.., k),
    probs (N.., n_experts) float32)."""
    probs = mx.softmax(router_logits.astype(mx.float32), axis=-1)
    ids = mx.argsort(-probs, axis=-1)[..., :top_k]
    weights = mx.take_along_axis(probs, ids, axis=-1)
    if norm_topk_prob:
        weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights, ids.astype(mx.int32), probs


def moe_dispatch(
    x: mx.array,
    expert_ids: mx.array,
    weights: mx.array,
    experts: Sequence[Callable[[mx.array], mx.array]],
) -> mx.array:
    """x (N, E), expert_ids and weights (N, k) -> (N, E): the weighted sum of each token's
    experts, each expert run once on all the tokens routed to it."""
    N, E = x.shape
    ids = np.array(expert_ids)
    out = mx.zeros((N, E), dtype=mx.float32)
    for e, expert in enumerate(experts):
        tok, slot = np.nonzero(ids == e)
        if tok.size == 0:
            continue  # an expert nobody chose costs nothing
        rows = mx.array(tok.astype(np.int32))
        y = expert(x[rows]).astype(mx.float32)
        w = weights[rows, mx.array(slot.astype(np.int32))].astype(mx.float32)
        out = out.at[rows].add(y * w[:, None])
    return out.astype(x.dtype)


class Qwen2MoeExpert:
    """One SwiGLU expert: down(silu(gate(x)) * up(x)); weights are arrays or QuantizedWeights."""

    def __init__(self, w_gate: Any, w_up: Any, w_down: Any):
        self.w_gate, self.w_up, self.w_down = w_gate, w_up, w_down

    def __call__(self, x: mx.array) -> mx.array:
        hidden = silu(moe_linear(x, self.w_gate)) * moe_linear(x, self.w_up)
        return moe_linear(hidden, self.w_down)


class Qwen2SparseMoeBlock:
    """Qwen2-MoE's feed-forward: routed experts plus a shared expert scaled by a sigmoid gate.

    x (B, L, E) -> (B, L, E).
    """

    def __init__(
        self,
        w_router: Any,
        experts: Sequence[Callable[[mx.array], mx.array]],
        top_k: int,
        shared_expert: Callable[[mx.array], mx.array],
        w_shared_expert_gate: Any,
        norm_topk_prob: bool = False,
    ):
        self.w_router = w_router
        self.experts = list(experts)
        self.top_k = top_k
        self.shared_expert = shared_expert
        self.w_shared_expert_gate = w_shared_expert_gate
        self.norm_topk_prob = norm_topk_prob

    def __call__(self, x: mx.array) -> mx.array:
        *lead, E = x.shape
        flat = x.reshape(-1, E)
        logits = moe_linear(flat, self.w_router)
        weights, ids, _ = route_topk(logits, self.top_k, self.norm_topk_prob)
        routed = moe_dispatch(flat, ids, weights, self.experts)
        gate = mx.sigmoid(moe_linear(flat, self.w_shared_expert_gate).astype(mx.float32))
        shared = self.shared_expert(flat).astype(mx.float32) * gate
        return (routed.astype(mx.float32) + shared).astype(x.dtype).reshape(*lead, E)
