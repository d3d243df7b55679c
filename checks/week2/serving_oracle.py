"""The checks' own serving pieces for days 2.4 and 2.6: a tiny Qwen2 run with the course's
call surface, KV caches with the course's cache API, and the batch layout.

    m = tiny_model()                       # mlx_lm Qwen2, 4-bit (group 64), untied head
    om = OracleQwen2(m)                    # om(inputs (B, L), offsets, caches) -> logits
    caches = om.create_kv_cache()          # [OracleFullCache() per layer]
    keys, values, mask = batch_layout(rows, L)   # right-aligned rows, (B, 1, L, S) mask

``OracleQwen2`` computes with mlx_lm's own modules (quantized linears, RMSNorm, MLP) plus
``mx.fast.rope`` with per-row offsets and ``mx.fast.scaled_dot_product_attention`` with the
mask the cache hands back, so it runs on any cache that follows the course's API -- the
checks' caches or the learner's ``BatchingKvCache``. It never uses learner code itself.
Everything it does runs outside the forbidden-API tripwires (it is called from inside
learner code: the learner's ``batch_generate`` drives it).

``OracleQwen2(m, eos_rule=...)`` adds a deterministic end of generation on top of the
logits (see ``EosRule``), so that greedy texts have a known, prompt-dependent length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import mlx.core as mx
import numpy as np

from ..harness import CheckFailed, outside_learner

F32 = mx.float32

# The tiny model: every input dimension a multiple of 64 (the course's kernels take
# group_size 64 only), an untied head (with a tied embedding a tiny random Qwen2 mostly
# echoes its last input token), head dim 16.
VOCAB = 63  # 62 printable characters + EOS (checks/week1/tiny_tokenizer.py)
EOS = VOCAB - 1
MODEL_SEED = 24


@lru_cache(maxsize=4)
def tiny_model(seed: int = MODEL_SEED, vocab: int = VOCAB):
    from ..week1.tiny_models import tiny_qwen2

    return tiny_qwen2(seed=seed, tie_word_embeddings=False, quantize=True, vocab=vocab,
                      hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2,
                      rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256,
                      group_size=64, bits=4, embed_scale=0.7)


def log_softmax(x: mx.array) -> mx.array:
    x = x.astype(F32)
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- caches


class OracleFullCache:
    """One request's cache with the surface of the course's ``TinyKvFullCache``:
    ``key_values`` (keys, values) of shape (1, H, S, D) or None, ``offset``,
    ``update_and_fetch(key, value, mask_length=None, mask=None) -> (keys, values, offset,
    mask)`` (the mask passes through), ``rewind(n)``, ``release()``."""

    def __init__(self, key_values=None):
        self.key_values = key_values
        self.offset = 0 if key_values is None else int(key_values[0].shape[2])

    def update_and_fetch(self, key, value, mask_length=None, mask=None):
        if self.key_values is None:
            keys, values = key, value
        else:
            keys = mx.concatenate([self.key_values[0], key], axis=2)
            values = mx.concatenate([self.key_values[1], value], axis=2)
        self.key_values = (keys, values)
        self.offset += int(key.shape[2])
        return keys, values, self.offset, mask

    def rewind(self, n: int) -> None:
        self.offset -= n
        if self.offset == 0:
            self.key_values = None
        else:
            k, v = self.key_values
            self.key_values = (k[:, :, : self.offset], v[:, :, : self.offset])

    def release(self) -> None:
        self.key_values = None
        self.offset = 0

    def copy(self) -> "OracleFullCache":
        return OracleFullCache(self.key_values)


def batch_layout(rows, L: int, H: int | None = None, D: int | None = None, *,
                 align: str = "right", pad_mask: str = "-inf", empty_mask: str = "-inf",
                 row_causal: bool = True, dtype=None):
    """Stitch per-slot (keys, values) of shape (1, H, S_i, D) -- or None for an empty slot --
    into the batch a BatchingKvCache returns after an update with ``L`` new tokens:
    keys/values (B, H, S, D) with S = max S_i, and the float32 mask (B, 1, L, S).

    The right answer: align="right" (row i in the last S_i columns, zeros in front),
    pad_mask="-inf", empty_mask="-inf". The mistakes: align="left" (data first, padding
    after, the row's causal block at the left), pad_mask="0" (padding visible),
    empty_mask="0" (an empty slot's row visible), row_causal=False (a row's own positions
    all visible to each of its new queries)."""
    present = [r for r in rows if r is not None]
    if H is None or D is None:
        _, H, _, D = present[0][0].shape
    kdt = dtype or (present[0][0].dtype if present else F32)
    lengths = [0 if r is None else int(r[0].shape[2]) for r in rows]
    S = max(lengths + [L])
    ks, vs, ms = [], [], []
    for r, S_i in zip(rows, lengths):
        pad = S - S_i
        if r is None:
            ks.append(mx.zeros((1, H, S, D), dtype=kdt))
            vs.append(mx.zeros((1, H, S, D), dtype=kdt))
            fill = -np.inf if empty_mask == "-inf" else 0.0
            ms.append(np.full((L, S), fill, dtype=np.float32))
            continue
        k, v = r
        z = mx.zeros((1, H, pad, D), dtype=k.dtype)
        parts_k = [z, k] if align == "right" else [k, z]
        parts_v = [z.astype(v.dtype), v] if align == "right" else [v, z.astype(v.dtype)]
        ks.append(mx.concatenate(parts_k, axis=2) if pad else k)
        vs.append(mx.concatenate(parts_v, axis=2) if pad else v)
        allowed = np.tril(np.ones((L, S_i), dtype=bool), k=S_i - L if row_causal else S_i)
        own = np.where(allowed, 0.0, -np.inf).astype(np.float32)
        fill = -np.inf if pad_mask == "-inf" else 0.0
        hidden = np.full((L, pad), fill, dtype=np.float32)
        ms.append(np.concatenate([hidden, own] if align == "right" else [own, hidden], axis=1))
    mask = mx.array(np.stack(ms)[:, None])
    return mx.concatenate(ks, axis=0), mx.concatenate(vs, axis=0), mask


class OracleBatchCache:
    """The checks' own BatchingKvCache over per-slot caches (OracleFullCache or None),
    returning (keys, values, None, mask) laid out by ``batch_layout`` (``**layout`` picks
    a mistake's layout, for modelling it)."""

    def __init__(self, slots, **layout):
        self.slots = list(slots)
        self.layout = layout

    def rows(self, keys, values) -> list:
        """Each slot's full (keys, values) after adding its row of this step (None for
        an empty slot)."""
        rows = []
        for i, c in enumerate(self.slots):
            if c is None:
                rows.append(None)
                continue
            k, v, _, _ = c.update_and_fetch(keys[i:i + 1], values[i:i + 1])
            rows.append((k, v))
        return rows

    def update_and_fetch(self, keys, values, mask_length=None, mask=None):
        L = keys.shape[2] if mask_length is None else mask_length
        rows = self.rows(keys, values)
        k, v, m = batch_layout(rows, L, keys.shape[1], keys.shape[3], **self.layout)
        return k, v, None, m


# --------------------------------------------------------------------------- the model


class RunawayError(CheckFailed):
    """Raised by OracleQwen2 past its call_limit (inside the learner's code: a CheckFailed
    passes through ctx.call as it is)."""


@dataclass
class EosRule:
    """End generation deterministically (the way day 1.6 does it, per row and position).

    The logits predicting the token after absolute position p (sequence length n = p + 1)
    get the EOS logit pushed far above every other one when n >= stop, and far below when
    n < stop, where stop = ``early`` if the token at p is in ``early_tokens`` (ids whose
    value mod 3 is 0), else ``late``. So each prompt ends after a length that depends on its
    own text, and the rule is the same whichever batch row or chunk a position is in."""

    early: int = 9
    late: int = 14

    def apply(self, logits: mx.array, ids: mx.array, positions: mx.array) -> mx.array:
        # logits (B, L, V), ids (B, L), positions (B, L) absolute.
        early = (ids % 3) == 0
        stop = mx.where(early, self.early, self.late)
        force = (positions + 1) >= stop
        hi = mx.max(logits, axis=-1, keepdims=True)
        lo = mx.min(logits, axis=-1, keepdims=True)
        eos_value = mx.where(force[..., None], hi + 30.0, lo - 30.0)
        is_eos = mx.arange(logits.shape[-1]) == EOS
        return mx.where(is_eos, eos_value, logits)


def offsets_array(offsets, batch: int) -> mx.array:
    """(B,) int32 row offsets from an int, a list/tuple of ints, or an mx.array."""
    if isinstance(offsets, mx.array):
        arr = offsets.astype(mx.int32).reshape(-1)
        if arr.size == 1 and batch > 1:
            arr = mx.broadcast_to(arr, (batch,))
        return arr
    if isinstance(offsets, (list, tuple)):
        vals = [int(o.item() if isinstance(o, mx.array) else o) for o in offsets]
        if len(vals) == 1 and batch > 1:
            vals = vals * batch
        return mx.array(vals, dtype=mx.int32)
    return mx.full((batch,), int(offsets), dtype=mx.int32)


class OracleQwen2:
    """mlx_lm's Qwen2 weights with the course's model surface:
    ``model(inputs (B, L), offsets, cache) -> logits (B, L, V)`` (float32), ``cache`` one
    TinyKvCache-like object per layer, ``num_hidden_layers``, ``create_kv_cache()``.

    ``rope_offsets`` (B,) overrides the positions RoPE uses (to model mistakes);
    ``eos_rule`` ends generation deterministically; ``record`` keeps every call's input
    shape, offsets and cache types."""

    def __init__(self, mlx_model, eos_rule: EosRule | None = None, scale_power: float = 1.0,
                 kv_roles: str | None = None):
        self.m = mlx_model
        # mistakes, to model them: the attention scale raised to a power; the keys attended
        # as values ("k-as-v") or the values as keys ("v-as-k")
        self.scale_power = scale_power
        self.kv_roles = kv_roles
        # A scheduler that never finishes would run until the check times out: past this
        # many calls the model refuses to go on (the check then says what it saw).
        self.call_limit: int | None = None
        self.args = mlx_model.args
        self.num_hidden_layers = mlx_model.args.num_hidden_layers
        self.eos_rule = eos_rule
        self.calls: list[dict] = []

    def create_kv_cache(self):
        return [OracleFullCache() for _ in range(self.num_hidden_layers)]

    def __call__(self, inputs, offsets, cache, *args, rope_offsets=None, **kwargs):
        with outside_learner():
            ids = mx.array(inputs) if not isinstance(inputs, mx.array) else inputs
            if ids.ndim == 1:
                ids = ids[None]
            B, L = ids.shape
            offs = offsets_array(offsets, B)
            if self.call_limit is not None and len(self.calls) >= self.call_limit:
                raise RunawayError(f"the model was called {len(self.calls)} times and the "
                                   "generation had not ended.", {"model_calls": len(self.calls)})
            self.calls.append({"shape": [B, L], "offsets": [int(o) for o in offs.tolist()],
                               "cache": type(cache[0]) if cache else None,
                               "ids": ids[0].tolist() if B == 1 else None})
            rope = offs if rope_offsets is None else offsets_array(rope_offsets, B)
            out = self._forward(ids.astype(mx.int32), rope, cache)
            if self.eos_rule is not None:
                pos = offs[:, None] + mx.arange(L)[None, :]
                out = self.eos_rule.apply(out, ids, pos)
            # what each row fed last, and what greedy decoding picks from the last and
            # from the first position (to see a request that goes on after EOS, or a
            # token read from the wrong position)
            self.calls[-1]["fed"] = ids[:, -1].tolist()
            self.calls[-1]["picked"] = mx.argmax(out[:, -1], axis=-1).tolist()
            self.calls[-1]["picked_first"] = mx.argmax(out[:, 0], axis=-1).tolist()
            mx.eval(out)
            return out

    def _forward(self, ids, rope_offsets, cache):
        args, inner = self.args, self.m.model
        h = inner.embed_tokens(ids).astype(F32)
        B, L = ids.shape
        for layer, layer_cache in zip(inner.layers, cache):
            a = layer.self_attn
            x = layer.input_layernorm(h)
            Hq, H = args.num_attention_heads, args.num_key_value_heads
            D = args.hidden_size // Hq
            q = a.q_proj(x).reshape(B, L, Hq, D).transpose(0, 2, 1, 3)
            k = a.k_proj(x).reshape(B, L, H, D).transpose(0, 2, 1, 3)
            v = a.v_proj(x).reshape(B, L, H, D).transpose(0, 2, 1, 3)
            q = mx.fast.rope(q, D, traditional=False, base=args.rope_theta, scale=1.0,
                             offset=rope_offsets)
            k = mx.fast.rope(k, D, traditional=False, base=args.rope_theta, scale=1.0,
                             offset=rope_offsets)
            k, v, _, mask = layer_cache.update_and_fetch(k, v, mask_length=L, mask="causal")
            if self.kv_roles == "k-as-v":
                v = k
            elif self.kv_roles == "v-as-k":
                k = v
            if isinstance(mask, mx.array):
                mask = mask.astype(F32)
            elif isinstance(mask, str) and L == 1:
                mask = None
            o = mx.fast.scaled_dot_product_attention(
                q.astype(F32), k.astype(F32), v.astype(F32), scale=a.scale ** self.scale_power,
                mask=mask)
            o = a.o_proj(o.transpose(0, 2, 1, 3).reshape(B, L, Hq * D))
            h = h + o
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = inner.norm(h)
        if args.tie_word_embeddings:
            return inner.embed_tokens.as_linear(h).astype(F32)
        return self.m.lm_head(h).astype(F32)


def greedy_alone(om: OracleQwen2, prompt_ids: list[int], max_seq_len: int,
                 min_gap: float = 0.05, *, decode_shift: int = 0,
                 stale: str | None = None, limit_after_prefill: bool = True,
                 fixed_position: int | None = None) -> list[int]:
    """One request generated on its own, the way batch_generate must treat it: prefill
    the whole prompt at offset 0, then one token per step at its own offset, until EOS or
    until its cache holds ``max_seq_len`` positions. Checks that every greedy pick is clear
    of the runner-up by ``min_gap`` (else the check itself is badly designed).

    Scheduler mistakes, to model them: ``decode_shift`` passes every decode step an offset
    that far from the token's position (the stop rule counts the same shifted offset);
    ``stale`` feeds a token that is never updated: "prompt-tail" (the prompt's last token)
    or "first" (the first generated token) on every decode step; ``limit_after_prefill``
    False applies max_seq_len only after decode steps (a request whose prompt already
    fills it still decodes once); ``fixed_position`` hands the model that offset on every
    decode step while the request still counts its positions right."""
    caches = om.create_kv_cache()
    logits = om(mx.array([prompt_ids], dtype=mx.int32), 0, caches)[0, -1]
    offset = len(prompt_ids) + decode_shift
    out: list[int] = []
    while True:
        row = np.array(logits, dtype=np.float64)
        tok = int(np.argmax(row))
        s = np.sort(row)[::-1]
        if s[0] - s[1] < min_gap:
            raise RuntimeError(f"check design: near tie ({s[0] - s[1]:.3g}) generating "
                               f"after {prompt_ids}")
        if tok == EOS:
            return out
        out.append(tok)
        if offset >= max_seq_len and (limit_after_prefill or len(out) > 1):
            return out
        fed = {"prompt-tail": prompt_ids[-1], "first": out[0]}.get(stale, tok)
        at = offset if fixed_position is None else fixed_position
        logits = om(mx.array([[fed]], dtype=mx.int32), at, caches)[0, -1]
        offset += 1


__all__ = ["VOCAB", "EOS", "RunawayError", "tiny_model", "log_softmax", "OracleFullCache",
           "OracleBatchCache",
           "batch_layout", "EosRule", "OracleQwen2", "greedy_alone", "offsets_array"]
