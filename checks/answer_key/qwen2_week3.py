"""Qwen2 over paged KV storage (week 3): the week-2 model with one page pool per model and
a paged cache per layer. The attention asks the cache for paged metadata and reads the
pages with paged_attention (day 3.2; day 3.1's version attended the gathered dense K/V)."""

import numbers
from typing import Any

import mlx.core as mx

from . import attention as _attention
from .embedding import Embedding
from .kv_cache import TinyKvCache
from .layer_norm import RMSNorm
from .paged_kv_cache import TinyKvPagedCache, TinyKvPagedPool
from .quantize import dequantize_linear, quantized_linear
from .qwen2_week2 import Qwen2MultiHeadAttention as _Week2Attention
from .qwen2_week2 import Qwen2TransformerBlock as _Week2Block
from .qwen2_week2 import _quantized

__all__ = ["Qwen2MultiHeadAttention", "Qwen2TransformerBlock", "Qwen2ModelWeek3"]


def _positions(offsets: int | list[int] | mx.array, batch: int, length: int):
    """RoPE positions of the L new tokens: one slice for one int (any batch), one slice per
    row for a list or an array of B offsets."""
    if isinstance(offsets, numbers.Integral):
        return slice(int(offsets), int(offsets) + length)
    if isinstance(offsets, mx.array) and offsets.ndim == 0:
        return slice(int(offsets.item()), int(offsets.item()) + length)
    starts = [int(o) for o in (offsets.tolist() if isinstance(offsets, mx.array) else offsets)]
    if len(starts) != batch:
        raise ValueError(f"need one offset per batch row: {len(starts)} != {batch}")
    return [slice(s, s + length) for s in starts]


class Qwen2MultiHeadAttention(_Week2Attention):
    """The week-2 attention; the cache it is given decides where K/V live."""

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
        positions = _positions(offsets, B, L)
        q = self.rope(q, offset=positions)
        k = self.rope(k, offset=positions)
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))  # (B, heads, L, D)
        # Day 3.2: the cache writes k/v into its pages and hands back where they are (block
        # table, context lengths); the kernel reads the pages, nothing is gathered dense. A
        # dense cache has no pages: its update_and_fetch_paged raises, and that error is the
        # answer (no quiet fallback to week-2 attention).
        k32, v32 = k.astype(mx.float32), v.astype(mx.float32)
        meta = cache.update_and_fetch_paged(k32, v32, mask_length=L, mask=mask)
        out = _attention.paged_attention(
            q.astype(mx.float32), meta.key_pages, meta.value_pages, meta.block_table,
            meta.context_lens, meta.page_size, scale=self.scale, mask=meta.mask,
        ).astype(x.dtype)
        out = out.transpose(0, 2, 1, 3).reshape(B, L, self.num_heads * self.head_dim)
        return quantized_linear(out, self.wo)


class Qwen2TransformerBlock(_Week2Block):
    """The week-2 block with the week-3 attention."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attn.__class__ = Qwen2MultiHeadAttention  # same fields, week-3 __call__


class Qwen2ModelWeek3:
    """Qwen2 from a quantized ``mlx_lm`` model, its KV in pages of ``page_size`` positions.

    ``self.page_pool`` is the model's one pool; ``create_kv_cache()`` gives a request one
    ``TinyKvPagedCache`` per layer, all on that pool. ``model(inputs (B, L), offset,
    cache)`` -> logits (B, L, vocab), float16.
    """

    def __init__(self, mlx_model: Any, page_size: int = 128):
        args = mlx_model.args
        inner = mlx_model.model
        dtype = mx.float16
        self.num_hidden_layers = args.num_hidden_layers
        self.hidden_size = args.hidden_size
        self.vocab_size = args.vocab_size
        self.page_size = page_size
        self.page_pool = TinyKvPagedPool(page_size=page_size)
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
                )
            )
        self.norm = RMSNorm(args.hidden_size, inner.norm.weight.astype(dtype), eps=args.rms_norm_eps)
        tied = getattr(args, "tie_word_embeddings", True)
        self.w_lm_head = None if tied else _quantized(mlx_model.lm_head, dtype)

    def create_kv_cache(self) -> list[TinyKvCache]:
        # One cache per layer: each has its own page table, all share the model's pool.
        return [TinyKvPagedCache(pool=self.page_pool) for _ in range(self.num_hidden_layers)]

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
