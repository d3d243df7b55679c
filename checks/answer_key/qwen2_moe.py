"""Qwen2-MoE (Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B) from the week-2 pieces: the decoder's MLP
becomes a sparse MoE block; attention, norms, embedding and the KV cache are week 2's."""

from typing import Any

import mlx.core as mx

from .embedding import Embedding
from .kv_cache import TinyKvCache, TinyKvFullCache
from .layer_norm import RMSNorm
from .moe import Qwen2MoeExpert, Qwen2SparseMoeBlock
from .quantize import QuantizedWeights, dequantize_linear, quantized_linear
from .qwen2_week2 import Qwen2MultiHeadAttention

__all__ = ["Qwen2MoeModel"]


def _weights(layer: Any, dtype: mx.Dtype, expert: int | None = None) -> Any:
    """A layer's weight as the model uses it: QuantizedWeights (scales and biases in the
    activation dtype) when the layer is quantized, else the plain array. ``expert`` picks
    one expert out of a stacked (n_experts, O, I..) switch layer."""
    def pick(a):
        return a if expert is None else a[expert]

    if getattr(layer, "scales", None) is not None:
        return QuantizedWeights(
            scales=pick(layer.scales).astype(dtype),
            biases=pick(layer.biases).astype(dtype),
            group_size=layer.group_size,
            bits=layer.bits,
            weight=pick(layer.weight),
        )
    return pick(layer.weight).astype(dtype)


def _moe_block(mlp: Any, args: Any, dtype: mx.Dtype) -> Qwen2SparseMoeBlock:
    sw = mlp.switch_mlp
    experts = [
        Qwen2MoeExpert(_weights(sw.gate_proj, dtype, e), _weights(sw.up_proj, dtype, e),
                       _weights(sw.down_proj, dtype, e))
        for e in range(args.num_experts)
    ]
    se = mlp.shared_expert
    shared = Qwen2MoeExpert(_weights(se.gate_proj, dtype), _weights(se.up_proj, dtype),
                            _weights(se.down_proj, dtype))
    return Qwen2SparseMoeBlock(
        _weights(mlp.gate, dtype), experts, args.num_experts_per_tok, shared,
        _weights(mlp.shared_expert_gate, dtype),
        norm_topk_prob=bool(getattr(args, "norm_topk_prob", False)),
    )


class Qwen2MoeDecoderLayer:
    """Pre-norm block: x + attn(norm1(x)), then h + moe(norm2(h))."""

    def __init__(self, attn: Qwen2MultiHeadAttention, moe: Qwen2SparseMoeBlock,
                 input_layernorm: RMSNorm, post_attention_layernorm: RMSNorm):
        self.self_attn, self.mlp = attn, moe
        self.input_layernorm = input_layernorm
        self.post_attention_layernorm = post_attention_layernorm

    def __call__(self, x: mx.array, offset: Any, cache: TinyKvCache, mask: Any = None) -> mx.array:
        h = x + self.self_attn(self.input_layernorm(x), offset, cache, mask)
        return h + self.mlp(self.post_attention_layernorm(h))


class Qwen2MoeModel:
    """Qwen2-MoE from a quantized ``mlx_lm`` qwen2_moe model, with Qwen2ModelWeek2's
    surface: ``model(inputs (B, L), offset, cache)`` -> logits (B, L, vocab) in float16."""

    def __init__(self, mlx_model: Any):
        args = mlx_model.args
        inner = mlx_model.model
        dtype = self.dtype = mx.float16
        self.num_hidden_layers = args.num_hidden_layers
        self.vocab_size = args.vocab_size
        self.embedding = Embedding(
            args.vocab_size, args.hidden_size, dequantize_linear(inner.embed_tokens).astype(dtype)
        )
        self.layers_inner = []
        for layer in inner.layers:
            a = layer.self_attn
            attn = Qwen2MultiHeadAttention(
                args.hidden_size, args.num_attention_heads, args.num_key_value_heads,
                _weights(a.q_proj, dtype), _weights(a.k_proj, dtype),
                _weights(a.v_proj, dtype), _weights(a.o_proj, dtype),
                a.q_proj.bias.astype(dtype), a.k_proj.bias.astype(dtype),
                a.v_proj.bias.astype(dtype),
                max_seq_len=getattr(args, "max_position_embeddings", 32768),
                theta=args.rope_theta,
            )
            self.layers_inner.append(Qwen2MoeDecoderLayer(
                attn, _moe_block(layer.mlp, args, dtype),
                RMSNorm(args.hidden_size, layer.input_layernorm.weight.astype(dtype),
                        eps=args.rms_norm_eps),
                RMSNorm(args.hidden_size, layer.post_attention_layernorm.weight.astype(dtype),
                        eps=args.rms_norm_eps),
            ))
        self.norm = RMSNorm(args.hidden_size, inner.norm.weight.astype(dtype), eps=args.rms_norm_eps)
        self.w_lm_head = None if args.tie_word_embeddings else _weights(mlx_model.lm_head, dtype)

    def create_kv_cache(self) -> list[TinyKvCache]:
        return [TinyKvFullCache() for _ in range(self.num_hidden_layers)]

    def __call__(self, inputs: mx.array, offset: Any, cache: list[TinyKvCache]) -> mx.array:
        assert len(cache) == self.num_hidden_layers, "one cache per layer"
        h = self.embedding(inputs)
        for layer, layer_cache in zip(self.layers_inner, cache):
            h = layer(h, offset, layer_cache, mask="causal")
        h = self.norm(h)
        if self.w_lm_head is None:
            return self.embedding.as_linear(h)
        return quantized_linear(h, self.w_lm_head)
