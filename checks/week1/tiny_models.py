"""Tiny random Qwen2 models built with mlx_lm's own classes, for the model-level checks
(days 1.5-1.7).

    m = tiny_qwen2(seed=1)                          # tied head, 4-bit quantized, float32
    m.args.vocab_size, m.model.layers, m.model.embed_tokens, m.model.norm, m.lm_head (untied)
    logits = m(mx.array([[1, 2, 3]]))               # mlx_lm's forward: the oracle
    logits = qwen2_forward(m, ids, final_norm=False)  # the oracle with one piece changed

The weights are random but not mlx's default init: the embedding (and an untied lm_head)
have entries of std ``embed_scale`` (0.7, not 1/sqrt(hidden)), so logits are spread over
tens of nats and a mistake in the head or
the final norm moves log-probabilities far beyond float16 noise; every RMSNorm weight is
drawn from [0.5, 1.5) (not ones), so a norm whose weight is skipped or swapped changes the
output. Quantization (``nn.quantize``, group_size 32, 4 bits by default) runs after that,
so learner code has to dequantize exactly like it must for the real checkpoints; sizes must
then be multiples of the group size on every input dimension (hidden, intermediate).
"""

from __future__ import annotations

from typing import Callable

import mlx.core as mx
import mlx.nn as nn

from ..harness import import_mlx_lm

__all__ = ["qwen2_module", "tiny_qwen2", "qwen2_forward", "dense_weight"]


def qwen2_module():
    """``mlx_lm.models.qwen2`` (imported without mlx_lm/__init__)."""
    return import_mlx_lm("mlx_lm.models.qwen2")


def tiny_qwen2(seed: int = 0, *, tie_word_embeddings: bool = True, quantize: bool = True,
               vocab: int = 300, hidden: int = 64, intermediate: int = 96, layers: int = 2,
               heads: int = 4, kv_heads: int = 2, rms_norm_eps: float = 1e-6,
               rope_theta: float = 10000.0, max_position_embeddings: int = 256,
               group_size: int = 32, bits: int = 4, embed_scale: float = 0.7):
    """A random ``mlx_lm.models.qwen2.Model`` (with ``.args``); deterministic for a seed.

    ``rope_theta`` defaults to 10000 (not Qwen2's 1e6) so that a learner who ignores
    ``args.rope_theta`` is caught. ``embed_scale`` is the std of embedding/lm_head entries.
    """
    q = qwen2_module()
    args = q.ModelArgs(
        model_type="qwen2", hidden_size=hidden, num_hidden_layers=layers,
        intermediate_size=intermediate, num_attention_heads=heads,
        num_key_value_heads=kv_heads, rms_norm_eps=rms_norm_eps, vocab_size=vocab,
        rope_theta=rope_theta, max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings)
    mx.random.seed(seed)
    model = q.Model(args)
    inner = model.model
    inner.embed_tokens.weight = embed_scale * mx.random.normal((vocab, hidden))
    for layer in inner.layers:
        layer.input_layernorm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
        layer.post_attention_layernorm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
    inner.norm.weight = mx.random.uniform(0.5, 1.5, (hidden,))
    if not tie_word_embeddings:
        model.lm_head.weight = embed_scale * mx.random.normal((vocab, hidden))
    if quantize:
        nn.quantize(model, group_size=group_size, bits=bits)
    mx.eval(model.parameters())
    return model


def dense_weight(layer, dtype=None) -> mx.array:
    """The full-precision weight of an mlx (Quantized)Linear/Embedding, computed with
    ``mx.dequantize`` (the checks' own, independent of the learner's quantize.py)."""
    if getattr(layer, "scales", None) is not None:
        w = mx.dequantize(layer.weight, layer.scales, getattr(layer, "biases", None),
                          group_size=layer.group_size, bits=layer.bits,
                          mode=getattr(layer, "mode", "affine"))
    else:
        w = layer.weight
    return w.astype(dtype) if dtype is not None else w


def qwen2_forward(model, ids: mx.array, *, block: Callable | None = None,
                  final_norm: bool = True, tied_head: bool | None = None,
                  layers: Callable | None = None, chain: bool = True,
                  causal: bool = True) -> mx.array:
    """mlx_lm's Qwen2 forward pass written out from its modules, so that a check can model a
    mistake by changing one piece: ``block(layer, h, mask)`` replaces each decoder layer,
    ``final_norm=False`` skips the last RMSNorm, ``tied_head=True`` uses the embedding as
    the output head even when the model has an lm_head, ``layers(list) -> list`` changes
    which layers run in which order, ``chain=False`` feeds every layer the embeddings
    instead of the previous layer's output, ``causal=False`` drops the mask. Defaults
    reproduce ``model(ids)``."""
    inner = model.model
    h = emb = inner.embed_tokens(ids)
    mask = "causal" if (h.shape[1] > 1 and causal) else None
    stack = list(inner.layers) if layers is None else layers(list(inner.layers))
    for layer in stack:
        x = h if chain else emb
        h = block(layer, x, mask) if block is not None else layer(x, mask)
    if final_norm:
        h = inner.norm(h)
    tied = model.args.tie_word_embeddings if tied_head is None else tied_head
    return inner.embed_tokens.as_linear(h) if tied else model.lm_head(h)
