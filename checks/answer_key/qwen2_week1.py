"""Qwen2 built from the week-1 pieces, with all weights dequantized to float16."""

import math
from typing import Any

import mlx.core as mx

from .attention import scaled_dot_product_attention_grouped
from .basics import linear, silu
from .embedding import Embedding
from .layer_norm import RMSNorm
from .positional_encoding import RoPE
from .quantize import dequantize_linear

__all__ = [
    "Qwen2MultiHeadAttention",
    "Qwen2MLP",
    "Qwen2TransformerBlock",
    "Qwen2ModelWeek1",
]


class Qwen2MultiHeadAttention:
    """Qwen2 self-attention: biased q/k/v projections, half-split RoPE, GQA, o_proj.

    wq: (H_q*D, E), wk/wv: (H*D, E), wo: (E, H_q*D), bq: (H_q*D,), bk/bv: (H*D,).
    x: (B, L, E) -> (B, L, E).
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

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        B, L, _ = x.shape
        q = linear(x, self.wq, self.bq).reshape(B, L, self.num_heads, self.head_dim)
        k = linear(x, self.wk, self.bk).reshape(B, L, self.num_kv_heads, self.head_dim)
        v = linear(x, self.wv, self.bv).reshape(B, L, self.num_kv_heads, self.head_dim)
        q = self.rope(q, offset=slice(0, L))
        k = self.rope(k, offset=slice(0, L))
        # (B, L, heads, D) -> (B, heads, L, D); attention itself runs in float32.
        q, k, v = (t.transpose(0, 2, 1, 3) for t in (q, k, v))
        out = scaled_dot_product_attention_grouped(
            q.astype(mx.float32),
            k.astype(mx.float32),
            v.astype(mx.float32),
            scale=self.scale,
            mask=mask,
        ).astype(q.dtype)
        out = out.transpose(0, 2, 1, 3).reshape(B, L, self.num_heads * self.head_dim)
        return linear(out, self.wo)


class Qwen2MLP:
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x)); no biases.

    w_gate/w_up: (I, E), w_down: (E, I); x: (N.., E) -> (N.., E).
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
        return linear(silu(linear(x, self.w_gate)) * linear(x, self.w_up), self.w_down)


class Qwen2TransformerBlock:
    """Pre-norm decoder block: x + attn(norm1(x)), then h + mlp(norm2(h))."""

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
        )
        self.mlp = Qwen2MLP(hidden_size, intermediate_size, w_gate, w_up, w_down)
        self.input_layernorm = RMSNorm(hidden_size, w_input_layernorm, eps=rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(
            hidden_size, w_post_attention_layernorm, eps=rms_norm_eps
        )

    def __call__(
        self,
        x: mx.array,
        mask: mx.array | str | None = None,
    ) -> mx.array:
        h = x + self.self_attn(self.input_layernorm(x), mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Qwen2ModelWeek1:
    """Qwen2 assembled from an ``mlx_lm`` model object (``mlx_lm.load(...)[0]``).

    Every weight is dequantized (if needed) and cast to float16.
    inputs: token ids (B, L) -> logits (B, L, vocab_size).
    """

    def __init__(self, mlx_model: Any):
        args = mlx_model.args
        inner = mlx_model.model
        dtype = mx.float16

        def dense(layer: Any) -> mx.array:
            return dequantize_linear(layer).astype(dtype)

        self.num_hidden_layers = args.num_hidden_layers
        self.hidden_size = args.hidden_size
        self.vocab_size = args.vocab_size
        self.embedding = Embedding(
            args.vocab_size, args.hidden_size, dense(inner.embed_tokens)
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
                    wq=dense(attn.q_proj),
                    wk=dense(attn.k_proj),
                    wv=dense(attn.v_proj),
                    wo=dense(attn.o_proj),
                    bq=attn.q_proj.bias.astype(dtype),
                    bk=attn.k_proj.bias.astype(dtype),
                    bv=attn.v_proj.bias.astype(dtype),
                    w_gate=dense(mlp.gate_proj),
                    w_up=dense(mlp.up_proj),
                    w_down=dense(mlp.down_proj),
                    w_input_layernorm=layer.input_layernorm.weight.astype(dtype),
                    w_post_attention_layernorm=layer.post_attention_layernorm.weight.astype(dtype),
                    max_seq_len=args.max_position_embeddings,
                    theta=args.rope_theta,
                )
            )
        self.norm = RMSNorm(args.hidden_size, inner.norm.weight.astype(dtype), eps=args.rms_norm_eps)
        if args.tie_word_embeddings:
            self.w_lm_head = None
        else:
            self.w_lm_head = dense(mlx_model.lm_head)

    def __call__(
        self,
        inputs: mx.array,
    ) -> mx.array:
        h = self.embedding(inputs)
        for block in self.layers_inner:
            h = block(h, mask="causal")
        h = self.norm(h)
        if self.w_lm_head is None:
            return self.embedding.as_linear(h)
        return linear(h, self.w_lm_head)
