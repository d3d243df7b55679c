"""Qwen2 for serving (week 2): a KV cache per layer (day 2.1), quantized linears (day 2.2),
optional flash attention (day 2.4) and per-row positions for batches (day 2.6)."""

from typing import Any

import mlx.core as mx

from .attention import flash_attention, scaled_dot_product_attention_grouped  # noqa: F401
from .basics import linear, silu  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .kv_cache import TinyKvCache, TinyKvFullCache
from .layer_norm import RMSNorm  # noqa: F401
from .positional_encoding import RoPE  # noqa: F401
from .quantize import QuantizedWeights, dequantize_linear, quantized_linear  # noqa: F401

__all__ = [
    "Qwen2MultiHeadAttention",
    "Qwen2MLP",
    "Qwen2TransformerBlock",
    "Qwen2ModelWeek2",
]


class Qwen2MultiHeadAttention:
    """Qwen2 self-attention over a KV cache.

    Same shapes as week 1 (E = hidden_size, H_q = num_heads, H = num_kv_heads,
    D = E // H_q), but wq, wk, wv, wo are ``QuantizedWeights`` (packed int4 with scales
    and biases). On day 2.1 you may dequantize them and use ``linear``; on day 2.2 every
    projection goes through ``quantized_linear``. With ``use_flash_attention`` the
    attention runs through ``flash_attention`` (day 2.4) instead of the grouped one.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        num_kv_heads: int,
        wq: QuantizedWeights,
        wk: QuantizedWeights,
        wv: QuantizedWeights,
        wo: QuantizedWeights,
        bq: mx.array,
        bk: mx.array,
        bv: mx.array,
        max_seq_len: int = 32768,
        theta: int = 1000000,
        use_flash_attention: bool = False,
    ):
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo
        self.bq, self.bk, self.bv = bq, bk, bv
        self.max_seq_len = max_seq_len
        self.theta = theta
        self.use_flash_attention = use_flash_attention

    def __call__(
        self,
        x: mx.array,
        offsets: int | list[int] | mx.array,
        cache: TinyKvCache,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        """x: (B, L, E) -> (B, L, E).

        offsets: the position of the first of the L new tokens -- one int for the whole
        batch, or one per row (a list or an mx.array of B ints, day 2.6). The new keys and
        values go into ``cache`` with ``update_and_fetch(k, v, mask_length=L, mask=mask)``;
        attend with the keys, values and mask it returns.
        """
        raise NotImplementedError("Qwen2MultiHeadAttention.__call__ is still a stub (lesson day 2.1)")


class Qwen2MLP:
    """Qwen2's SwiGLU feed-forward with ``QuantizedWeights`` w_gate, w_up (I, E), w_down (E, I)."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        w_gate: QuantizedWeights,
        w_up: QuantizedWeights,
        w_down: QuantizedWeights,
    ):
        self.dim = dim
        self.hidden_dim = hidden_dim
        self.w_gate, self.w_up, self.w_down = w_gate, w_up, w_down

    def __call__(self, x: mx.array) -> mx.array:
        """x: (N.., L, E) -> (N.., L, E)."""
        raise NotImplementedError("Qwen2MLP.__call__ is still a stub (lesson day 2.1)")


class Qwen2TransformerBlock:
    """One Qwen2 decoder layer over a KV cache: pre-norm attention and pre-norm MLP,
    each with a residual. Arguments as in week 1, with QuantizedWeights for the linears
    and ``use_flash_attention`` passed on to the attention."""

    def __init__(
        self,
        num_attention_heads: int,
        num_kv_heads: int,
        hidden_size: int,
        intermediate_size: int,
        rms_norm_eps: float,
        wq: QuantizedWeights,
        wk: QuantizedWeights,
        wv: QuantizedWeights,
        wo: QuantizedWeights,
        bq: mx.array,
        bk: mx.array,
        bv: mx.array,
        w_gate: QuantizedWeights,
        w_up: QuantizedWeights,
        w_down: QuantizedWeights,
        w_input_layernorm: mx.array,
        w_post_attention_layernorm: mx.array,
        max_seq_len: int = 32768,
        theta: int = 1000000,
        use_flash_attention: bool = False,
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
        self.use_flash_attention = use_flash_attention

    def __call__(
        self,
        x: mx.array,
        offset: int | list[int] | mx.array,
        cache: TinyKvCache,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        """x: (B, L, E) -> (B, L, E); ``offset`` and ``cache`` go to the attention."""
        raise NotImplementedError("Qwen2TransformerBlock.__call__ is still a stub (lesson day 2.1)")


class Qwen2ModelWeek2:
    """The whole Qwen2 for serving, built from a model loaded by ``mlx_lm.load``.

    Read the configuration and weights as in week 1, but keep every linear layer
    quantized: ``QuantizedWeights.from_mlx_layer(layer)``. Only the embedding table is
    dequantized (to float16). Checkpoints may store scales and biases as bfloat16 while
    the model runs in float16: cast them to float16 when you build the weights. An untied
    output head (``mlx_model.lm_head``) is quantized too.
    """

    def __init__(
        self,
        mlx_model: Any,
        enable_flash_attn: bool = False,
    ):
        self.num_hidden_layers = mlx_model.args.num_hidden_layers
        self.mlx_model = mlx_model
        self.enable_flash_attn = enable_flash_attn

    def create_kv_cache(self) -> list[TinyKvCache]:
        """One empty cache per layer. PROVIDED."""
        return [TinyKvFullCache() for _ in range(self.num_hidden_layers)]

    def __call__(
        self,
        inputs: mx.array,
        offset: int | list[int] | mx.array,
        cache: list[TinyKvCache],
    ) -> mx.array:
        """Token ids (B, L) -> logits (B, L, vocab_size).

        ``offset``: position of the first input token (one int, or one per row);
        ``cache``: one TinyKvCache per layer. Every block gets ``mask="causal"``; a
        batching cache replaces it with its own mask.
        """
        raise NotImplementedError("Qwen2ModelWeek2.__call__ is still a stub (lesson day 2.1)")
