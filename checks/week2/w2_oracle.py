"""Oracle-side pieces shared by the day-2.1 and day-2.2 checks: tiny random quantized
Qwen2 models as the week-2 model sees them, a decode loop written out from mlx_lm's own
modules (so a catalogued KV-cache mistake can be modelled by changing one piece), and a
reference KV cache with the course's ``update_and_fetch`` contract.

    oracle, given = tiny_w2(seed=3, tied=True)          # mlx_lm models, group_size 64
    logits = oracle(ids)                                 # the full-sequence truth
    steps = decode_steps(oracle, chunks)                 # chunk by chunk with a cache
    steps = decode_steps(oracle, chunks, rope_zero=True) # kv-rope-offset-ignored

``oracle`` has float32 scales and biases whose values are exactly representable in the
dtype ``given`` stores them in (float16, or bfloat16 like some checkpoints), so the learner
and the oracle dequantize to the same weights.
"""

from __future__ import annotations

import mlx.core as mx
from mlx.utils import tree_map_with_path

from ..harness import import_mlx_lm, outside_learner
from ..week1.tiny_models import tiny_qwen2

# The week-2 tiny model: hidden 128 (two groups of 64 on every 128-wide input), 4 query
# heads of dimension 32 over 2 kv heads, an intermediate size of 3 groups, rope_theta
# 10000 (not Qwen2's 1e6: ignoring args.rope_theta shows). Every input dimension is a
# multiple of 64, Qwen2's group size.
W2_CFG = dict(vocab=300, hidden=128, intermediate=192, layers=2, heads=4, kv_heads=2,
              rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256,
              group_size=64, bits=4, embed_scale=0.7)


def _is_quant_param(path: str) -> bool:
    return path.endswith(".scales") or path.endswith(".biases")


def tiny_w2(seed: int, *, tied: bool, scales_dtype=mx.float16, **overrides):
    """(oracle, given): the same random 4-bit Qwen2 twice. ``given`` (what the learner's
    model is built from) stores the linear layers' scales and biases in ``scales_dtype``;
    ``oracle`` keeps them in float32 with exactly the same values. Every other float
    parameter (linear biases, norm weights, the embedding's scales and biases) holds
    float16 values, the dtype the week-2 model runs in: the embedding table is dequantized
    by the learner, and dequantizing with bfloat16 scales would round the table itself."""
    cfg = {**W2_CFG, **overrides}
    oracle = tiny_qwen2(seed=seed, tie_word_embeddings=tied, quantize=True, **cfg)

    def dtype_of(path: str):
        if _is_quant_param(path) and not path.startswith("model.embed_tokens."):
            return scales_dtype
        return mx.float16

    def rounded_value(p, v):
        if not mx.issubdtype(v.dtype, mx.floating):
            return v  # packed uint32 weights
        return v.astype(dtype_of(p)).astype(mx.float32)

    rounded = tree_map_with_path(rounded_value, oracle.parameters())
    oracle.update(rounded)
    given = tiny_qwen2(seed=seed, tie_word_embeddings=tied, quantize=True, **cfg)
    given.update(tree_map_with_path(
        lambda p, v: v.astype(dtype_of(p)) if _is_quant_param(p) else v, rounded))
    mx.eval(oracle.parameters(), given.parameters())
    return oracle, given


def log_softmax(x: mx.array) -> mx.array:
    x = x.astype(mx.float32)
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- masks

MASK_MODES = ("causal", "top-left", "none")


def additive_mask(L: int, S: int, mode: str) -> mx.array | None:
    """The (L, S) additive mask of ``mode``: "causal" aligned bottom-right (query i at
    absolute position S - L + i), "top-left" (query i sees keys 0..i: the mistake of
    building the mask as if the new tokens started at 0), "none"."""
    if mode == "none":
        return None
    rows = mx.arange(L)[:, None]
    cols = mx.arange(S)[None, :]
    shift = S - L if mode == "causal" else 0
    return mx.where(cols <= rows + shift, 0.0, -mx.inf).astype(mx.float32)


# --------------------------------------------------------------------------- modelled forward


def attention_step(attn, x: mx.array, offset: int, kv: list, *, rope_zero: bool | str = False,
                   mask_mode: str = "causal", rope_skip: str | None = None,
                   scale_power: float = 1.0, rope_after: bool = False, rope_shift: int = 0,
                   heads_not_merged: bool = False, rope_traditional: bool | None = None,
                   rope_base: float | None = None, no_bias: str = "",
                   no_o_proj: bool = False) -> mx.array:
    """mlx_lm's qwen2.Attention written out for one call with a cache ``kv`` ([keys,
    values] or [None, None], (B, H, S, D)), the new tokens at ``offset``. The mistakes:
    ``rope_zero`` rotates the new tokens as if they started at position 0 (True; "k" or
    "q": only that one);
    ``rope_after`` rotates them at the positions after this call (offset + L, the
    offset the cache reports once they are stored), ``rope_shift`` one position early or
    late at every call after the first; ``heads_not_merged`` reshapes the (B, H, L, D)
    output to (B, L, H*D) without moving the heads back behind the sequence;
    ``rope_traditional`` / ``rope_base`` rotate with another layout or base than the
    model's; ``no_bias`` ("q", "k", "v" or several) leaves those projections' biases out;
    ``no_o_proj`` returns the heads' output without the output projection; ``mask_mode`` as in
    ``additive_mask``; ``rope_skip`` "q" or "k" leaves that one unrotated; ``scale_power``
    uses scale ** power (2: 1/D instead of 1/sqrt(D); 0: no scale; -1: times sqrt(D))."""
    B, L, _ = x.shape

    def project(name, heads):
        proj = getattr(attn, name)
        y = proj(x)
        if name[0] in no_bias:
            y = y - proj.bias
        return y.reshape(B, L, heads, -1).transpose(0, 2, 1, 3)

    q = project("q_proj", attn.n_heads)
    k = project("k_proj", attn.n_kv_heads)
    v = project("v_proj", attn.n_kv_heads)
    pos = 0 if rope_zero is True else offset + (L if rope_after else 0)
    if offset > 0:
        pos = max(pos + rope_shift, 0)
    rope = attn.rope
    if rope_traditional is not None or rope_base is not None:
        import mlx.nn as nn

        with outside_learner():
            rope = nn.RoPE(attn.rope.dims, traditional=bool(rope_traditional),
                           base=rope_base if rope_base is not None else attn.rope.base)
    if rope_skip != "q":
        q = rope(q, offset=0 if rope_zero == "q" else pos)
    if rope_skip != "k":
        k = rope(k, offset=0 if rope_zero == "k" else pos)
    if kv[0] is not None:
        k = mx.concatenate([kv[0], k], axis=2)
        v = mx.concatenate([kv[1], v], axis=2)
    kv[0], kv[1] = k, v
    mode = mask_mode
    if mask_mode == "none-after-first":  # a mask for the first call only
        mode = "causal" if offset == 0 else "none"
    mask = additive_mask(L, k.shape[2], mode)
    if mask is not None:
        mask = mask.astype(q.dtype)  # a float16 model (real checkpoints) needs a float16 mask
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale ** scale_power,
                                               mask=mask)
    merged = out.reshape(B, L, -1) if heads_not_merged else out.transpose(0, 2, 1, 3).reshape(
        B, L, -1)
    return merged if no_o_proj else attn.o_proj(merged)


def new_caches(model, shared: bool = False) -> list[list]:
    """Empty per-layer caches for ``forward_chunk``; ``shared``: one cache that every layer
    reads and appends to (the mistake of handing each layer the same cache)."""
    if shared:
        kv = [None, None]
        return [kv for _ in model.model.layers]
    return [[None, None] for _ in model.model.layers]


def forward_chunk(model, ids: mx.array, offset: int, caches: list[list],
                  no_residual: str | None = None, no_final_norm: bool = False,
                  no_activation: bool = False, mlp_reads_input: bool = False,
                  one_norm: bool = False, **mistake):
    """One call of the week-2 model: token ids (B, L) at ``offset`` through ``model`` (an
    mlx_lm qwen2.Model) with the per-layer ``caches``; returns logits (B, L, V).
    Mistakes in the decoder's wiring: ``no_residual`` "attn" or "mlp" (that sublayer's
    output replaces h instead of being added to it), ``no_final_norm``, ``no_activation``
    (the MLP multiplies gate and up without SiLU), ``mlp_reads_input`` (the MLP gets the
    block's input instead of h), ``one_norm`` (input_layernorm used before the MLP too)."""
    inner = model.model
    h = inner.embed_tokens(ids)
    for layer, kv in zip(inner.layers, caches):
        a = attention_step(layer.self_attn, layer.input_layernorm(h), offset, kv, **mistake)
        block_in = h
        h = a if no_residual == "attn" else h + a
        norm2 = layer.input_layernorm if one_norm else layer.post_attention_layernorm
        x = norm2(block_in if mlp_reads_input else h)
        if no_activation:
            mlp = layer.mlp
            m = mlp.down_proj(mlp.gate_proj(x) * mlp.up_proj(x))
        else:
            m = layer.mlp(x)
        h = m if no_residual == "mlp" else h + m
    if not no_final_norm:
        h = inner.norm(h)
    if model.args.tie_word_embeddings:
        return inner.embed_tokens.as_linear(h)
    return model.lm_head(h)


def decode_steps(model, chunks: list[mx.array], shared: bool = False,
                 **mistake) -> list[mx.array]:
    """Run ``model`` over consecutive token chunks (B, L_i) with a KV cache, as the
    week-2 model does; returns the logits (B, L_i, V) of every call. Without
    ``mistake`` it equals the full-sequence forward (``shared``: see ``new_caches``)."""
    caches = new_caches(model, shared)
    offset = 0
    outs = []
    for ids in chunks:
        outs.append(forward_chunk(model, ids, offset, caches, **mistake))
        offset += ids.shape[1]
    mx.eval(outs)
    return outs


def attention_steps(attn, xs: list[mx.array], **mistake) -> list[mx.array]:
    """``attention_step`` over consecutive inputs sharing one cache (offsets follow)."""
    kv = [None, None]
    offset = 0
    outs = []
    for x in xs:
        outs.append(attention_step(attn, x, offset, kv, **mistake))
        offset += x.shape[1]
    mx.eval(outs)
    return outs


def mlx_lm_cache():
    """mlx_lm's own KV cache class (``mlx_lm.models.cache.KVCache``)."""
    return import_mlx_lm("mlx_lm.models.cache").KVCache()


# --------------------------------------------------------------------------- reference cache


class RefCache:
    """A full KV cache with the course's contract, handed to the learner's attention so
    that its check does not depend on the learner's own cache. Records every call."""

    def __init__(self):
        self.key_values = None
        self.offset = 0
        self.calls: list[dict] = []

    def update_and_fetch(self, key, value, mask_length=None, mask=None):
        with outside_learner():
            self.calls.append({"key_shape": list(getattr(key, "shape", ())),
                               "value_shape": list(getattr(value, "shape", ())),
                               "mask_length": mask_length,
                               "mask": mask if isinstance(mask, str) or mask is None
                               else f"array{tuple(mask.shape)}"})
            if self.key_values is None:
                keys, values = key, value
            else:
                keys = mx.concatenate([self.key_values[0], key], axis=2)
                values = mx.concatenate([self.key_values[1], value], axis=2)
            self.key_values = (keys, values)
            self.offset += key.shape[2]
            return keys, values, self.offset, mask

    def rewind(self, n: int) -> None:
        raise NotImplementedError("this cache cannot rewind")

    def release(self) -> None:
        self.key_values = None
        self.offset = 0
