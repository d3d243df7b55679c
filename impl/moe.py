"""Mixture of experts as in Qwen2-MoE (day 3.3): a softmax router over every expert, the
top k experts of each token, dispatch grouped by expert, SwiGLU experts, and a shared
expert scaled by a sigmoid gate.

Shapes: N tokens (the batch and sequence axes flattened), E hidden size, n_experts
experts, k = top_k experts per token.
"""

from typing import Any, Callable, Sequence

import mlx.core as mx
import numpy as np  # noqa: F401

from .basics import silu  # noqa: F401
from .quantize import quantized_linear

__all__ = ["route_topk", "moe_dispatch", "Qwen2MoeExpert", "Qwen2SparseMoeBlock"]


def moe_linear(x: mx.array, w: Any) -> mx.array:
    """Provided. x (N.., I) times an (O, I) weight: a plain array, or ``QuantizedWeights``
    through your ``quantized_linear`` (day 2.2)."""
    if hasattr(w, "scales"):
        return quantized_linear(x, w)
    return x @ w.astype(x.dtype).T


def route_topk(
    router_logits: mx.array, top_k: int, norm_topk_prob: bool = False
) -> tuple[mx.array, mx.array, mx.array]:
    """Task 1. router_logits (N.., n_experts) -> (weights, expert_ids, probs):

    - probs (N.., n_experts), float32: each token's probabilities over every expert;
    - expert_ids (N.., k), integers: the k most probable experts of each token (in any
      order);
    - weights (N.., k), float32: their probabilities, in the same order as expert_ids,
      divided by their sum only when ``norm_topk_prob`` is true (Qwen2-MoE: false).
    """
    raise NotImplementedError("route_topk (day 3.3, task 1)")


def moe_dispatch(
    x: mx.array,
    expert_ids: mx.array,
    weights: mx.array,
    experts: Sequence[Callable[[mx.array], mx.array]],
) -> mx.array:
    """Task 2. x (N, E), expert_ids and weights (N, k), experts: n_experts callables that
    map (n, E) -> (n, E). Returns (N, E): for every token, the sum over its k experts of
    weight * expert(token).

    Group by expert: call each expert once, on all the tokens routed to it (and not at all
    when none is), then add its weighted outputs back into those tokens' rows.
    """
    raise NotImplementedError("moe_dispatch (day 3.3, task 2)")


class Qwen2MoeExpert:
    """Task 3. One SwiGLU expert, like Qwen2's MLP: down(silu(gate(x)) * up(x)). The
    weights are (O, I) arrays or ``QuantizedWeights`` (use ``moe_linear``)."""

    def __init__(self, w_gate: Any, w_up: Any, w_down: Any):
        self.w_gate, self.w_up, self.w_down = w_gate, w_up, w_down

    def __call__(self, x: mx.array) -> mx.array:
        raise NotImplementedError("Qwen2MoeExpert (day 3.3, task 3)")


class Qwen2SparseMoeBlock:
    """Task 3. Qwen2-MoE's feed-forward block, x (B, L, E) -> (B, L, E).

    w_router: (n_experts, E) router weight; experts: one callable per expert;
    shared_expert: a callable every token goes through; w_shared_expert_gate: (1, E), the
    weight of the shared expert's gate. Weights may be arrays or ``QuantizedWeights``.
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
        raise NotImplementedError("Qwen2SparseMoeBlock (day 3.3, task 3)")
