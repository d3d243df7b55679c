"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B) from your week-2 pieces (day 3.3, task 4):
the decoder's MLP becomes your sparse MoE block; attention, norms, embedding and the KV
cache are week 2's."""

from typing import Any

import mlx.core as mx

from .embedding import Embedding  # noqa: F401
from .kv_cache import TinyKvCache, TinyKvFullCache  # noqa: F401
from .layer_norm import RMSNorm  # noqa: F401
from .moe import Qwen2MoeExpert, Qwen2SparseMoeBlock  # noqa: F401
from .quantize import QuantizedWeights, dequantize_linear, quantized_linear  # noqa: F401
from .qwen2_week2 import Qwen2MultiHeadAttention  # noqa: F401

__all__ = ["Qwen2MoeModel"]


class Qwen2MoeModel:
    """Qwen2-MoE from a quantized ``mlx_lm`` qwen2_moe model, with Qwen2ModelWeek2's
    surface: ``model(inputs (B, L), offset, cache)`` -> logits (B, L, vocab) in float16,
    ``create_kv_cache()`` -> one cache per layer.

    In ``mlx_model.model.layers[i].mlp``: ``gate`` (the router, n_experts x E),
    ``switch_mlp.gate_proj/up_proj/down_proj`` (every expert's weights stacked on a first
    axis of size n_experts: weight, scales and biases), ``shared_expert.gate_proj/up_proj/
    down_proj`` and ``shared_expert_gate`` (1 x E). The router count and k are
    ``args.num_experts`` and ``args.num_experts_per_tok``.
    """

    def __init__(self, mlx_model: Any):
        raise NotImplementedError("Qwen2MoeModel (day 3.3, task 4)")

    def create_kv_cache(self) -> list[TinyKvCache]:
        raise NotImplementedError("Qwen2MoeModel.create_kv_cache (day 3.3, task 4)")

    def __call__(self, inputs: mx.array, offset: Any, cache: list[TinyKvCache]) -> mx.array:
        raise NotImplementedError("Qwen2MoeModel (day 3.3, task 4)")
