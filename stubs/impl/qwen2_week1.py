"""Qwen2 assembled from the week-1 pieces, with every weight dequantized to float16."""

from typing import Any

import mlx.core as mx

from .attention import scaled_dot_product_attention_grouped  # noqa: F401
from .basics import linear, silu  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .layer_norm import RMSNorm  # noqa: F401
from .positional_encoding import RoPE  # noqa: F401
from .quantize import dequantize_linear  # noqa: F401

__all__ = [
    "Qwen2MultiHeadAttention",
    "Qwen2MLP",
    "Qwen2TransformerBlock",
    "Qwen2ModelWeek1",
]


class Qwen2MultiHeadAttention:
    """Qwen2 self-attention.

    E = hidden_size, H_q = num_heads, H = num_kv_heads, D = E // H_q.
    wq: (H_q*D, E), bq: (H_q*D,); wk, wv: (H*D, E), bk, bv: (H*D,); wo: (E, H_q*D), no bias.
    Queries and keys get Qwen2's (non-traditional) RoPE with base ``theta`` for
    positions up to ``max_seq_len``; the attention itself is grouped-query and is
    computed in float32.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        wq: mx.array,
        wk: mx.array,
        wv: mx.array,
        wo: mx.array,
        bq: mx.array,
        bk: mx.array,
        bv: mx.array,
        max_seq_len: int = 32768,
        theta: int = 1000000,
    ):
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo
        self.bq, self.bk, self.bv = bq, bk, bv
        self.max_seq_len = max_seq_len
        self.theta = theta

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        """x: (B, L, E) -> (B, L, E). mask: None, "causal" or an additive array."""
        raise NotImplementedError("Qwen2MultiHeadAttention.__call__ is still a stub (lesson day 1.3)")


class Qwen2MLP:
    """Qwen2's gated feed-forward network (SwiGLU), no biases.

    E = dim, I = hidden_dim. w_gate, w_up: (I, E); w_down: (E, I).
    The activated gate projection multiplies the up projection elementwise,
    and the down projection maps the product back to E.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        w_gate: mx.array,
        w_up: mx.array,
        w_down: mx.array,
    ):
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.w_gate, self.w_up, self.w_down = w_gate, w_up, w_down

    def __call__(self, x: mx.array) -> mx.array:
        """x: (N.., L, E) -> (N.., L, E)."""
        raise NotImplementedError("Qwen2MLP.__call__ is still a stub (lesson day 1.4)")


class Qwen2TransformerBlock:
    """One Qwen2 decoder layer: pre-norm attention and pre-norm MLP, each with a residual.

    The attention arguments are those of Qwen2MultiHeadAttention, the MLP ones
    those of Qwen2MLP; w_input_layernorm / w_post_attention_layernorm: (E,) are
    the RMSNorm weights used before attention and before the MLP.
    """

    def __init__(
        self,
        num_attention_heads: int,
        num_kv_heads: int,
        hidden_size: int,
        intermediate_size: int,
        rms_norm_eps: float,
        wq: mx.array,
        wk: mx.array,
        wv: mx.array,
        wo: mx.array,
        bq: mx.array,
        bk: mx.array,
        bv: mx.array,
        w_gate: mx.array,
        w_up: mx.array,
        w_down: mx.array,
        w_input_layernorm: mx.array,
        w_post_attention_layernorm: mx.array,
        max_seq_len: int = 32768,
        theta: int = 1000000,
    ):
        self.num_attention_heads = num_attention_heads
        self.num_kv_heads = num_kv_heads
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.rms_norm_eps = rms_norm_eps
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo
        self.bq, self.bk, self.bv = bq, bk, bv
        self.w_gate, self.w_up, self.w_down = w_gate, w_up, w_down
        self.w_input_layernorm = w_input_layernorm
        self.w_post_attention_layernorm = w_post_attention_layernorm
        self.max_seq_len = max_seq_len
        self.theta = theta

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        """x: (B, L, E) -> (B, L, E)."""
        raise NotImplementedError("Qwen2TransformerBlock.__call__ is still a stub (lesson day 1.5)")


class Qwen2ModelWeek1:
    """The whole Qwen2 model, built from a model object loaded by ``mlx_lm.load``.

    Read the configuration from ``mlx_model.args`` and the weights from
    ``mlx_model.model`` (embed_tokens, layers[i].self_attn / .mlp / norms, norm)
    and, when the embeddings are not tied, ``mlx_model.lm_head``. Quantized
    layers become plain matrices with the provided ``dequantize_linear``; use
    float16 for every weight.
    """

    def __init__(self, mlx_model: Any):
        self.mlx_model = mlx_model

    def __call__(
        self,
        inputs: mx.array,
    ) -> mx.array:
        """Token ids (B, L) -> logits (B, L, vocab_size), with causal attention."""
        raise NotImplementedError("Qwen2ModelWeek1.__call__ is still a stub (lesson day 1.5)")
