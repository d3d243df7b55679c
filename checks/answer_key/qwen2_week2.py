"""Qwen2 for serving: a KV cache per layer, quantized linears, optional flash attention,
and per-row positions so that several requests can be decoded in one batch."""

import math
import numbers
from typing import Any

import mlx.core as mx

from .attention import flash_attention, scaled_dot_product_attention_grouped
from .basics import silu
from .embedding import Embedding
from .kv_cache import TinyKvCache, TinyKvFullCache
from .layer_norm import RMSNorm
from .positional_encoding import RoPE
from .quantize import QuantizedWeights, dequantize_linear, quantized_linear

__all__ = [
    "Qwen2MultiHeadAttention",
    "Qwen2MLP",
    "Qwen2TransformerBlock",
    "Qwen2ModelWeek2",
]


def _rope_offsets(offsets: int | list[int] | mx.array, batch: int, length: int):
    """Positions of the L new tokens: one slice for an int, one slice per row otherwise."""
    if isinstance(offsets, numbers.Integral):
        return slice(int(offsets), int(offsets) + length)
    if isinstance(offsets, mx.array):
        if offsets.ndim == 0:
            start = int(offsets.item())
            return slice(start, start + length)
        offsets = offsets.tolist()
    starts = [int(o) for o in offsets]
    if len(starts) != batch:
        raise ValueError(f"need one offset per batch row: {len(starts)} != {batch}")
    return [slice(s, s + length) for s in starts]


class Qwen2MultiHeadAttention:
    """Qwen2 self-attention over a KV cache, with int4 projection weights.

    x: (B, L, E); offsets: where the L new tokens start, one int for the whole batch or one
    per row; the cache stores the rotated keys and the values and decides the mask.
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
        assert hidden_size % num_heads == 0
        assert num_heads % num_kv_heads == 0
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = hidden_size // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo
        self.bq, self.bk, self.bv = bq, bk, bv
        self.rope = RoPE(self.head_dim, max_seq_len, theta, traditional=False)
        self.use_flash_attention = use_flash_attention

    def __call__(
        self,
        x: mx.array,
        offsets: int | list[int] | mx.array,
        cache: TinyKvCache,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        B, L, _ = x.shape
        q = quantized_linear(x, self.wq, self.bq).reshape(B, L, self.num_heads, self.head_dim)
        k = quantized_linear(x, self.wk, self.bk).reshape(B, L, self.num_kv_heads, self.head_dim)
        v = quantized_linear(x, self.wv, self.bv).reshape(B, L, self.num_kv_heads, self.head_dim)
        positions = _rope_offsets(offsets, B, L)
        q = self.rope(q, offset=positions)
        k = self.rope(k, offset=positions)
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, heads, L, D)
        k, v, _, mask = cache.update_and_fetch(k, v, mask_length=L, mask=mask)
        attend = flash_attention if self.use_flash_attention else scaled_dot_product_attention_grouped
        out = attend(
            q.astype(mx.float32),
            k.astype(mx.float32),
            v.astype(mx.float32),
            scale=self.scale,
            mask=mask,
        ).astype(x.dtype)
        out = out.transpose(0, 2, 1, 3).reshape(B, L, self.num_heads * self.head_dim)
        return quantized_linear(out, self.wo)


class Qwen2MLP:
    """SwiGLU feed-forward with int4 weights: down(silu(gate(x)) * up(x))."""

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
        gate = silu(quantized_linear(x, self.w_gate))
        return quantized_linear(gate * quantized_linear(x, self.w_up), self.w_down)


class Qwen2TransformerBlock:
    """Pre-norm decoder block over a KV cache: x + attn(norm1(x)), then h + mlp(norm2(h))."""

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
        self.self_attn = Qwen2MultiHeadAttention(
            hidden_size,
            num_attention_heads,
            num_kv_heads,
            wq,
            wk,
            wv,
            wo,
            bq,
            bk,
            bv,
            max_seq_len=max_seq_len,
            theta=theta,
            use_flash_attention=use_flash_attention,
        )
        self.mlp = Qwen2MLP(hidden_size, intermediate_size, w_gate, w_up, w_down)
        self.input_layernorm = RMSNorm(hidden_size, w_input_layernorm, eps=rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(
            hidden_size, w_post_attention_layernorm, eps=rms_norm_eps
        )

    def __call__(
        self,
        x: mx.array,
        offset: int | list[int] | mx.array,
        cache: TinyKvCache,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        h = x + self.self_attn(self.input_layernorm(x), offset, cache, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


def _quantized(layer: Any, dtype: mx.Dtype) -> QuantizedWeights:
    """The layer's packed weight, with scales/biases in the activation dtype (checkpoints
    may store them as bfloat16 while the model runs in float16)."""
    w = QuantizedWeights.from_mlx_layer(layer)
    w.scales = w.scales.astype(dtype)
    w.biases = w.biases.astype(dtype)
    return w


class Qwen2ModelWeek2:
    """Qwen2 from an ``mlx_lm`` model whose linear layers are quantized.

    Linears stay int4 and go through ``quantized_linear``; the embedding is dequantized to
    float16. ``model(inputs (B, L), offset, cache)`` -> logits (B, L, vocab) in float16,
    where ``cache`` holds one TinyKvCache per layer (``create_kv_cache()``).
    """

    def __init__(
        self,
        mlx_model: Any,
        enable_flash_attn: bool = False,
    ):
        self.num_hidden_layers = mlx_model.args.num_hidden_layers
        args = mlx_model.args
        inner = mlx_model.model
        dtype = mx.float16
        self.dtype = dtype
        self.hidden_size = args.hidden_size
        self.vocab_size = args.vocab_size
        self.enable_flash_attn = enable_flash_attn
        self.embedding = Embedding(
            args.vocab_size, args.hidden_size, dequantize_linear(inner.embed_tokens).astype(dtype)
        )
        self.layers_inner = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            self.layers_inner.append(
                Qwen2TransformerBlock(
                    num_attention_heads=args.num_attention_heads,
                    num_kv_heads=args.num_key_value_heads,
                    hidden_size=args.hidden_size,
                    intermediate_size=args.intermediate_size,
                    rms_norm_eps=args.rms_norm_eps,
                    wq=_quantized(attn.q_proj, dtype),
                    wk=_quantized(attn.k_proj, dtype),
                    wv=_quantized(attn.v_proj, dtype),
                    wo=_quantized(attn.o_proj, dtype),
                    bq=attn.q_proj.bias.astype(dtype),
                    bk=attn.k_proj.bias.astype(dtype),
                    bv=attn.v_proj.bias.astype(dtype),
                    w_gate=_quantized(mlp.gate_proj, dtype),
                    w_up=_quantized(mlp.up_proj, dtype),
                    w_down=_quantized(mlp.down_proj, dtype),
                    w_input_layernorm=layer.input_layernorm.weight.astype(dtype),
                    w_post_attention_layernorm=layer.post_attention_layernorm.weight.astype(dtype),
                    max_seq_len=args.max_position_embeddings,
                    theta=args.rope_theta,
                    use_flash_attention=enable_flash_attn,
                )
            )
        self.norm = RMSNorm(args.hidden_size, inner.norm.weight.astype(dtype), eps=args.rms_norm_eps)
        if args.tie_word_embeddings:
            self.w_lm_head = None
        else:
            self.w_lm_head = _quantized(mlx_model.lm_head, dtype)

    def create_kv_cache(self) -> list[TinyKvCache]:
        return [TinyKvFullCache() for _ in range(self.num_hidden_layers)]

    def __call__(
        self,
        inputs: mx.array,
        offset: int | list[int] | mx.array,
        cache: list[TinyKvCache],
    ) -> mx.array:
        assert len(cache) == self.num_hidden_layers, "one cache per layer"
        h = self.embedding(inputs)
        for block, layer_cache in zip(self.layers_inner, cache):
            h = block(h, offset, layer_cache, mask="causal")
        h = self.norm(h)
        if self.w_lm_head is None:
            return self.embedding.as_linear(h)
        return quantized_linear(h, self.w_lm_head)
