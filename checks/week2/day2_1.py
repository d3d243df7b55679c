"""Day 2.1 -- the KV cache: ``TinyKvFullCache``, the week-2 attention and model with a
cache, and ``simple_generate_with_kv_cache``.

Oracles: plain concatenation for the cache; mlx_lm's qwen2.Attention with mlx_lm's own
KVCache for the attention; the full-sequence forward of mlx_lm's Qwen2 (tiny random 4-bit
models, group size 64) for the model decoded chunk by chunk, and on the real
Qwen2-0.5B-Instruct weights when they are in the local Hugging Face cache (skipped
otherwise); mlx_lm's greedy decoding with its own prompt cache for generation. The
catalogued mistakes are modelled by a decode loop written out from mlx_lm's modules
(``w2_oracle.decode_steps``) with one piece changed: the new tokens rotated from position
0 (kv-rope-offset-ignored) or the causal mask aligned top-left (kv-mask-wrong-for-decode).
The cache's own mistakes (kv-offset-not-advanced, kv-concat-wrong-axis) show in what
``update_and_fetch`` returns; in generation, a stuck offset shows in the offsets the loop
passes to the model.

Precision: the learner's model runs in float16, the oracles in float32 on the same
(float16-representable) weights; see the tolerances below.
"""

from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import mlx.core as mx
import numpy as np

from ..harness import (CheckFailed, Ctx, LearnerError, check, import_mlx_lm, outside_learner,
                       to_np)
from ..week1.tiny_tokenizer import CharTokenizer
from .real_weights import CASE_NAME, REAL_LOGP, REAL_REPO, load_real_qwen2, real_snapshot
from .probes import int_offset_probe, offsets_as, with_probe
from .w2_oracle import (RefCache, attention_steps, decode_steps, forward_chunk, log_softmax,
                        mlx_lm_cache, new_caches, tiny_w2)

# The attention and the model must be built from the learner's own pieces.
BUILT_ON = ("mx.fast.scaled_dot_product_attention", "mx.fast.rope", "nn.RoPE",
            "mx.fast.rms_norm", "nn.RMSNorm", "mx.fast.layer_norm", "nn.silu", "nn.SiLU",
            "nn.MultiHeadAttention")

# float16 attention output (values up to ~1, mean ~0.1) against a float32 oracle on the
# same weights: the projections and the attention round to half a few times. Correct code:
# ~3e-4 abs at worst; the catalogued mistakes move outputs by 0.05 to 0.8.
ATTN_F16 = {"dtype": "float16", "rtol": 1e-2, "atol": 3e-3}
# Log-probabilities of the tiny 2-layer models (values -30..0), float16 vs float32 oracle,
# as on day 1.5. Correct code: ~5e-2 abs at worst; the mistakes move them by nats.
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}

# Pitfall id -> the forms of that mistake, as arguments of the modelled decode loop
# (w2_oracle.attention_step / decode_steps). "shared" is a model-level mistake only.
MISTAKES = {
    "kv-rope-offset-ignored": [{"rope_zero": True}, {"rope_zero": "k"}, {"rope_zero": "q"},
                               {"rope_after": True}, {"rope_shift": -1}, {"rope_shift": 1}],
    "kv-mask-wrong-for-decode": [{"mask_mode": "top-left"}],
    "kv-mask-missing": [{"mask_mode": "none"}, {"mask_mode": "none-after-first"}],
    "kv-heads-not-merged": [{"heads_not_merged": True}],
    "kv-rope-q-or-k-skipped": [{"rope_skip": "k"}, {"rope_skip": "q"}],
    "kv-attention-scale-wrong": [{"scale_power": 2.0}, {"scale_power": 0.0},
                                 {"scale_power": -1.0}],
    "kv-cache-shared-across-layers": [{"shared": True}],
    "kv-model-wiring": [{"no_residual": "attn"}, {"no_residual": "mlp"},
                        {"no_final_norm": True}, {"no_activation": True},
                        {"mlp_reads_input": True}, {"one_norm": True}, {"no_o_proj": True}],
    "kv-projection-bias-missing": [{"no_bias": "qkv"}, {"no_bias": "q"}, {"no_bias": "k"},
                                   {"no_bias": "v"}],
    # another layout, or Qwen2's usual base instead of the model's rope_theta
    "kv-rope-settings-wrong": [{"rope_traditional": True}, {"rope_base": 1e6}],
}
# In the attention check, the forms that are the model's own (a shared cache, a residual)
# do not apply: the modelled attention rejects them and they are left out.
ATTN_MISTAKES = {p: v for p, v in MISTAKES.items() if p != "kv-cache-shared-across-layers"}


def _modelled(run, pit: str, i: int, memo: dict):
    """The candidate outputs of mistake ``pit`` at call ``i``: one per form, each computed
    (by ``run(**form)``, the whole call sequence) the first time a mismatch asks for it."""
    def form_out(j):
        def fn():
            key = (pit, j)
            if key not in memo:
                memo[key] = run(**MISTAKES[pit][j])
            return memo[key][i]
        return fn
    return [form_out(j) for j in range(len(MISTAKES[pit]))]


def _int(x):
    """An offset as a Python int (an int, a 0-d or 1-element array, a 1-element list)."""
    if isinstance(x, (list, tuple)) and len(x) == 1:
        x = x[0]
    if isinstance(x, mx.array):
        x = x.reshape(-1)
        if x.size != 1:
            raise ValueError
        x = x.item()
    if isinstance(x, np.ndarray):
        x = x.reshape(-1)[0]
    if isinstance(x, bool) or x is None:
        raise ValueError
    return int(x)


# --------------------------------------------------------------------------- task 1: cache

KV_B, KV_H, KV_D = 2, 3, 4
# (name, new tokens per call, dtype). Equal chunks first: joining them on a wrong axis
# still works there, so that mistake shows as a shape instead of an exception.
KV_CASES = [("chunks of 3 tokens", [3, 3, 3], mx.float16),
            ("a 5-token prefill, then decode steps and a 2-token chunk", [5, 1, 1, 2, 1],
             mx.float32)]


def _same_mask(got, want) -> bool:
    if want is None or isinstance(want, str):
        return got is want or (isinstance(got, str) and got == want)
    if got is want:
        return True
    return (isinstance(got, mx.array) and got.shape == want.shape
            and bool(mx.array_equal(got, want)))


@check("kv-full-cache", 1,
       "TinyKvFullCache over several calls: the keys, values, offset and mask it returns",
       symbols=("TinyKvFullCache",))
def kv_full_cache(ctx: Ctx):
    Cache = ctx.symbol("TinyKvFullCache")
    calls = 0
    offsets_seen = []
    for ci, (name, lengths, dtype) in enumerate(KV_CASES):
        cache = ctx.call(Cache)
        keys_in, values_in = [], []
        S = 0
        offsets = []
        for i, L in enumerate(lengths):
            seed = 2100 + 10 * ci + i
            k = mx.random.normal((KV_B, KV_H, L, KV_D), key=mx.random.key(seed)).astype(dtype)
            v = mx.random.normal((KV_B, KV_H, L, KV_D), key=mx.random.key(seed + 500)).astype(dtype)
            masks = ["causal", mx.zeros((L, S + L), dtype=mx.float32) - 0.5, None]
            mask = masks[i % 3]
            keys_in.append(k)
            values_in.append(v)
            S += L
            case = (f"{name}, {dtype_name(dtype)}, (B, H, L, D) = ({KV_B}, {KV_H}, {L}, {KV_D}), "
                    f"call {i + 1} of {len(lengths)}")
            out = ctx.call(cache.update_and_fetch, k, v, mask_length=L, mask=mask)
            calls += 1
            if not isinstance(out, (tuple, list)) or len(out) != 4:
                raise CheckFailed(
                    f"[{case}] update_and_fetch returned {_describe(out)}; it must return the "
                    "4-tuple (keys, values, offset, mask).", {"case": case})
            keys, values, off, got_mask = out
            for what, got, seq, other in (("keys", keys, keys_in, values_in),
                                          ("values", values, values_in, keys_in)):
                want = mx.concatenate(seq, axis=2)
                cands = {"kv-concat-wrong-axis": [
                    (lambda a=a, seq=list(seq): mx.concatenate(seq, axis=a)) for a in (0, 1, 3)],
                    # only this call's tokens handed back (stored or not)
                    "kv-returns-new-only": [seq[-1]],
                    # each call's tokens put in front of the ones cached before
                    "kv-concat-order": [lambda seq=list(seq): mx.concatenate(seq[::-1], axis=2)],
                    # the other array of the pair, stored or returned in this one's place
                    "kv-keys-values-mixed": [
                        lambda other=list(other): mx.concatenate(other, axis=2),
                        lambda seq=list(seq), other=list(other): mx.concatenate(
                            seq[:1] + other[1:], axis=2)]}
                ctx.expect_close(got, want, what=f"returned {what}", case=case,
                                 candidates=cands, dtype=dtype_name(dtype))
            try:
                off_i = _int(off)
            except (TypeError, ValueError):
                raise CheckFailed(f"[{case}] the offset returned is {_describe(off)}, expected "
                                  f"the int {S}.", {"case": case}) from None
            offsets.append(off_i)
            if off_i != S:
                raise _offset_failure(case, offsets, lengths[:i + 1], "returned offset")
            attr = getattr(cache, "offset", None)
            if attr is not None:
                try:
                    attr_i = _int(attr)
                except (TypeError, ValueError):
                    attr_i = None
                if attr_i != S:
                    raise CheckFailed(
                        f"[{case}] update_and_fetch returned offset {S}, but the cache's "
                        f"`offset` attribute says {attr!r}: keep it equal to the number of "
                        "cached positions.", {"case": case, "offset_attribute": repr(attr),
                                              "expected": S}, pitfall="kv-offset-not-advanced")
            if not _same_mask(got_mask, mask):
                raise CheckFailed(
                    f"[{case}] update_and_fetch was given mask={_describe(mask)} and returned "
                    f"{_describe(got_mask)}; a full cache hands the mask back unchanged.",
                    {"case": case})
        offsets_seen.append(offsets)
    return {"cases": len(KV_CASES), "calls": calls, "offsets": offsets_seen}


def dtype_name(dtype) -> str:
    return str(dtype).replace("mlx.core.", "")


def _describe(x) -> str:
    if isinstance(x, mx.array):
        return f"an array of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} items"
    return repr(x)


def _offset_failure(case: str, got: list[int], lengths: list[int], what: str) -> CheckFailed:
    want = list(np.cumsum(lengths))
    want = [int(w) for w in want]
    ev = {"case": case, "offsets": got, "expected_offsets": want, "new_tokens": lengths}
    before = [w - l for w, l in zip(want, lengths)]
    stuck = len(set(got)) == 1 and len(got) > 1
    if got == [0] * len(got) or got == lengths or (stuck and got[-1] != want[-1]):
        msg = (f"[{case}] the {what}s were {got} after storing {lengths} new positions; "
               f"expected {want}: the offset does not grow by L on every call.")
        return CheckFailed(msg, ev, pitfall="kv-offset-not-advanced")
    if got == before:
        msg = (f"[{case}] the {what}s were {got}, the number of positions cached BEFORE each "
               f"call; expected {want}, the count after storing the new tokens.")
        return CheckFailed(msg, ev, pitfall="kv-offset-not-advanced")
    steps = [g - p for g, p in zip(got, [0] + got[:-1])]
    if len(set(steps)) == 1 and steps[0] not in lengths:
        msg = (f"[{case}] the {what}s were {got} after storing {lengths} new positions; "
               f"expected {want}: the offset grows by {steps[0]} on every call, whatever the "
               "number of new tokens.")
        return CheckFailed(msg, ev, pitfall="kv-offset-not-advanced")
    return CheckFailed(f"[{case}] the {what}s were {got}; expected {want} (the number of "
                       "cached positions after each call).", ev)


# --------------------------------------------------------------------------- task 2: attention

ATTN_SEED = 2110
ATTN_B = 2
# New tokens per call: a prefill, a 3-token chunk (L < S: the mask must align bottom-right),
# a decode step (L = 1).
ATTN_STEPS = [6, 3, 1]


@lru_cache(maxsize=4)
def _models(seed: int, tied: bool, scales: str = "float16"):
    return tiny_w2(seed, tied=tied, scales_dtype=getattr(mx, scales))


def _qweights(ctx: Ctx, layer):
    QW = ctx.symbol("quantize.QuantizedWeights")
    return ctx.call(QW, scales=layer.scales, biases=layer.biases, group_size=layer.group_size,
                    bits=layer.bits, weight=layer.weight)


def _f16(x):
    return x.astype(mx.float16)


@check("qwen2-week2-prefill", 2,
       "Qwen2MultiHeadAttention (week 2) matches mlx_lm's attention: a prefill, then new "
       "tokens at an offset", forbid=BUILT_ON,
       symbols=("qwen2_week2.Qwen2MultiHeadAttention",))
def qwen2_week2_prefill(ctx: Ctx):
    Attn = ctx.symbol("qwen2_week2.Qwen2MultiHeadAttention")
    oracle, given = _models(ATTN_SEED, True)
    a = oracle.args
    ga = given.model.layers[0].self_attn
    oa = oracle.model.layers[0].self_attn
    xs = [mx.random.normal((ATTN_B, L, a.hidden_size), key=mx.random.key(ATTN_SEED + 1 + i))
          .astype(mx.float16) for i, L in enumerate(ATTN_STEPS)]
    xs32 = [x.astype(mx.float32) for x in xs]
    # The truth: mlx_lm's own attention with its own KV cache.
    ref_cache = mlx_lm_cache()
    base = import_mlx_lm("mlx_lm.models.base")
    want = []
    for x in xs32:
        want.append(oa(x, mask=base.create_attention_mask(x, ref_cache), cache=ref_cache))
    mx.eval(want)
    cands_cache: dict = {}

    def cand(pit, i):
        return _modelled(lambda **kw: attention_steps(oa, xs32, **kw), pit, i, cands_cache)

    def scenario(variant):
        return _attention_calls(ctx, Attn, a, ga, xs, want, cand, variant)

    return with_probe(scenario, int_offset_probe(ATTN_B))


def _square_mask_crash(message: str, L: int, S: int) -> bool:
    """MLX refused to broadcast an (L, L) mask against (.., L, S) scores, with L < S: a mask
    built for the new tokens alone, not for everything cached."""
    text = message.replace(" ", "")
    return (L < S and "broadcast" in text and f"({L},{L})" in text
            and f",{L},{S})" in text)


def _attention_calls(ctx: Ctx, Attn, a, ga, xs, want, cand, variant):
    """The attention's calls over one cache; ``variant`` (a probe) changes how the
    offsets are given."""
    attn = ctx.call(Attn, a.hidden_size, a.num_attention_heads, a.num_key_value_heads,
                    _qweights(ctx, ga.q_proj), _qweights(ctx, ga.k_proj),
                    _qweights(ctx, ga.v_proj), _qweights(ctx, ga.o_proj),
                    _f16(ga.q_proj.bias), _f16(ga.k_proj.bias), _f16(ga.v_proj.bias),
                    max_seq_len=a.max_position_embeddings, theta=a.rope_theta)
    cache = RefCache()
    offset = 0
    H, D = a.num_key_value_heads, a.hidden_size // a.num_attention_heads
    worst = 0.0
    for i, (x, L) in enumerate(zip(xs, ATTN_STEPS)):
        case = (f"call {i + 1}: x ({ATTN_B}, {L}, {a.hidden_size}) float16 at offset {offset} "
                f"with {offset} positions cached, {a.num_attention_heads} heads / {H} kv heads, "
                "mask='causal'")
        n_before = len(cache.calls)
        try:
            got = ctx.call(attn, x, offsets_as(variant, offset, ATTN_B), cache, mask="causal")
        except LearnerError as exc:
            # a crash after handing the cache (B, L, H, D) arrays: the layout, not the math
            handed = cache.calls[n_before:]
            if exc.pitfall is None and handed and [ATTN_B, L, H, D] in (
                    handed[-1]["key_shape"], handed[-1]["value_shape"]):
                exc.pitfall = "kv-layout-not-transposed"
                exc.message += (f" It had handed the cache keys {tuple(handed[-1]['key_shape'])}"
                                f" and values {tuple(handed[-1]['value_shape'])}.")
            elif exc.pitfall is None and _square_mask_crash(exc.message, L, offset + L):
                exc.pitfall = "kv-mask-wrong-for-decode"
            raise
        if len(cache.calls) != n_before + 1:
            raise CheckFailed(
                f"[{case}] the attention called cache.update_and_fetch "
                f"{len(cache.calls) - n_before} times; it should hand the new keys and values "
                "to the cache once per call and attend with what it returns.",
                {"case": case, "cache_calls": cache.calls[n_before:]})
        handed = cache.calls[-1]
        if handed["key_shape"] != [ATTN_B, H, L, D] or handed["value_shape"] != [ATTN_B, H, L, D]:
            in_order = [ATTN_B, L, H, D]
            raise CheckFailed(
                f"[{case}] the attention handed keys {tuple(handed['key_shape'])} and values "
                f"{tuple(handed['value_shape'])} to the cache; expected (B, H, L, D) = "
                f"{(ATTN_B, H, L, D)}.", {"case": case, "handed": handed},
                pitfall=("kv-layout-not-transposed"
                         if in_order in (handed["key_shape"], handed["value_shape"]) else None))
        ctx.expect_shape(got, (ATTN_B, L, a.hidden_size), "attention output", case)
        ev = ctx.expect_close(got, want[i], what="attention output", case=case,
                              candidates={pit: cand(pit, i) for pit in ATTN_MISTAKES},
                              **ATTN_F16)
        worst = max(worst, ev["max_abs_err"])
        offset += L
    return {"calls": len(ATTN_STEPS), "max_abs_err": worst,
            "cache_calls": [{k: c[k] for k in ("key_shape", "mask_length", "mask")}
                            for c in cache.calls]}


# --------------------------------------------------------------------------- task 3: model

# (seed, tied, batch, new tokens per call)
DECODE_CASES = [(2120, True, 1, [5, 1, 1, 3, 1]), (2125, False, 2, [4, 1, 1, 1])]


def _learner_caches(ctx: Ctx, model, n_layers: int):
    if hasattr(model, "create_kv_cache"):
        caches = ctx.call(model.create_kv_cache)
    else:
        Cache = ctx.symbol("TinyKvFullCache")
        caches = [ctx.call(Cache) for _ in range(n_layers)]
    return caches


@check("qwen2-week2-decode", 3,
       "Qwen2ModelWeek2 decoded token by token with its cache matches mlx_lm's full forward",
       forbid=BUILT_ON, symbols=("qwen2_week2.Qwen2ModelWeek2",))
def qwen2_week2_decode(ctx: Ctx):
    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")
    worst = 0.0
    steps_total = 0
    for seed, tied, B, lengths in DECODE_CASES:
        oracle, given = _models(seed, tied)
        a = oracle.args
        T = sum(lengths)
        ids = mx.random.randint(0, a.vocab_size, (B, T), key=mx.random.key(seed + 1))
        full = log_softmax(oracle(ids))
        bounds = np.cumsum([0] + lengths)
        chunks = [ids[:, s:e] for s, e in zip(bounds[:-1], bounds[1:])]
        modelled: dict = {}

        def cand(pit, i, chunks=chunks, oracle=oracle, modelled=modelled):
            return _modelled(lambda **kw: [log_softmax(o) for o in
                                           decode_steps(oracle, chunks, **kw)], pit, i, modelled)

        def scenario(variant, given=given, a=a, tied=tied, B=B, bounds=bounds, chunks=chunks,
                     full=full, cand=cand):
            model = ctx.call(Model, given)
            caches = _learner_caches(ctx, model, a.num_hidden_layers)
            errs = []
            for i, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
                s, e = int(s), int(e)
                kind = "prefill" if i == 0 else ("decode" if e - s == 1 else "chunk")
                case = (f"{'tied' if tied else 'untied'} tiny 4-bit Qwen2 (hidden "
                        f"{a.hidden_size}, {a.num_hidden_layers} layers), batch {B}, call "
                        f"{i + 1} ({kind}): tokens {s}..{e - 1} at offset {s}")
                try:
                    got = ctx.call(model, chunks[i], offsets_as(variant, s, B), caches)
                except LearnerError as exc:
                    if exc.pitfall is None and _square_mask_crash(exc.message, e - s, e):
                        exc.pitfall = "kv-mask-wrong-for-decode"
                    raise
                ctx.expect_shape(got, (B, e - s, a.vocab_size), "logits", case)
                ev = ctx.expect_close(log_softmax(got), full[:, s:e],
                                      what="log-softmax of the logits", case=case,
                                      candidates={p: cand(p, i) for p in MISTAKES},
                                      **MODEL_LOGP)
                errs.append(ev["max_abs_err"])
            return errs

        errs = with_probe(scenario, int_offset_probe(B))
        worst = max([worst] + errs)
        steps_total += len(errs)
    return {"cases": len(DECODE_CASES), "calls": steps_total, "max_abs_err": worst}


# A prefill of 4 tokens, then one token at a time (the book decodes token by token).
REAL_DECODE = [4, 1, 1, 1, 1, 1, 1]
REAL_SEED = 2140


@check("qwen2-0.5b-decode", 3,
       "Qwen2ModelWeek2 decoded token by token on the real Qwen2-0.5B-Instruct weights",
       forbid=BUILT_ON, symbols=("qwen2_week2.Qwen2ModelWeek2",))
def qwen2_real_decode(ctx: Ctx):
    path = real_snapshot()
    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")  # a missing symbol fails before loading
    oracle = load_real_qwen2(path)
    a = oracle.args
    T = sum(REAL_DECODE)
    ids = mx.random.randint(0, a.vocab_size, (1, T), key=mx.random.key(REAL_SEED))
    # The truth: mlx_lm's full-sequence forward on the same weights, as the book compares.
    full = log_softmax(oracle(ids))
    mx.eval(full)
    bounds = [int(b) for b in np.cumsum([0] + REAL_DECODE)]
    chunks = [ids[:, s:e] for s, e in zip(bounds[:-1], bounds[1:])]
    modelled: dict = {}

    def cand(pit, i):
        return _modelled(lambda **kw: [log_softmax(o) for o in
                                       decode_steps(oracle, chunks, **kw)], pit, i, modelled)

    model = ctx.call(Model, oracle)
    caches = _learner_caches(ctx, model, a.num_hidden_layers)
    worst = 0.0
    for i, (s, e) in enumerate(zip(bounds[:-1], bounds[1:])):
        kind = "prefill" if i == 0 else "decode"
        case = (f"{CASE_NAME}, {a.num_hidden_layers} layers, call {i + 1} ({kind}): tokens "
                f"{s}..{e - 1} at offset {s}")
        got = ctx.call(model, chunks[i], s, caches)
        ctx.expect_shape(got, (1, e - s, a.vocab_size), "logits", case)
        ev = ctx.expect_close(log_softmax(got), full[:, s:e], what="log-softmax of the logits",
                              case=case, candidates={p: cand(p, i) for p in MISTAKES},
                              **REAL_LOGP)
        worst = max(worst, ev["max_abs_err"])
    return {"model": REAL_REPO, "calls": len(REAL_DECODE), "tokens": T, "max_abs_err": worst}


# --------------------------------------------------------------------------- task 4: generate

GEN_VOCAB = 63           # 62 printable characters + EOS (the day-1.6 tokenizer)
GEN_EOS = GEN_VOCAB - 1
GEN_SEED = 2130
# (prompt, K): K tokens before EOS. Every step's top-2 logits are >= 0.02 apart (checked
# by _guard_margin), far above float32 noise between the reference and the adapter.
GEN_CASE = ("kvCache7", 6)
GEN_MARGIN = 3
GEN_LOGIT_OFFSET = 5.0


@lru_cache(maxsize=1)
def _gen_model():
    oracle, _ = tiny_w2(GEN_SEED, tied=False, vocab=GEN_VOCAB)
    return oracle


def _env(logits, seq_len: int, stop_at: int):
    """EOS far below every other logit until the sequence is stop_at long, far above after."""
    hi = mx.max(logits, axis=-1, keepdims=True)
    lo = mx.min(logits, axis=-1, keepdims=True)
    eos_value = hi + 30.0 if seq_len >= stop_at else lo - 30.0
    return mx.where(mx.arange(logits.shape[-1]) == GEN_EOS, eos_value, logits)


class _Runaway(CheckFailed):
    pass


class _GenCache:
    """One layer's cache as the adapter hands it out; the adapter keeps the arrays."""

    def __init__(self, state: dict):
        self._state = state
        self.released = False

    @property
    def offset(self) -> int:
        return self._state["len"]

    def update_and_fetch(self, *args, **kwargs):
        raise CheckFailed("simple_generate_with_kv_cache called update_and_fetch on a cache "
                          "itself; only the model's attention does that.", {})

    def release(self) -> None:
        self.released = True


class GenModel:
    """The week-2 model's call signature, ``model(inputs (1, L), offset, cache) -> logits
    (1, L, V)``, backed by a tiny mlx_lm Qwen2 run at the offsets the learner passes.
    Records every call."""

    def __init__(self, prompt_ids: list[int], k: int):
        self.mlx_model = _gen_model()
        self.num_hidden_layers = self.mlx_model.args.num_hidden_layers
        self.prompt = list(prompt_ids)
        self.k = k
        self.stop_at = len(prompt_ids) + k
        self.calls: list[dict] = []
        self.handed_out: list[_GenCache] = []
        self._states: dict[int, tuple] = {}
        self.runaway = False

    def create_kv_cache(self):
        with outside_learner():
            state = {"len": 0, "kv": new_caches(self.mlx_model)}
            caches = [_GenCache(state) for _ in range(self.num_hidden_layers)]
            self.handed_out.extend(caches)
            self._states[id(caches)] = (caches, state)
            return caches

    def _state(self, cache) -> dict:
        if id(cache) in self._states:
            return self._states[id(cache)][1]
        if isinstance(cache, (list, tuple)) and cache and isinstance(cache[0], _GenCache):
            return cache[0]._state
        state = {"len": 0, "kv": new_caches(self.mlx_model)}
        self._states[id(cache)] = (cache, state)
        return state

    def __call__(self, inputs, offset=None, cache=None):
        with outside_learner():
            shape = tuple(getattr(inputs, "shape", np.shape(inputs)))
            if len(shape) != 2 or shape[0] != 1:
                raise CheckFailed(
                    f"simple_generate_with_kv_cache called the model with token ids of shape "
                    f"{shape}; the week-2 model takes (1, L), batch first: where do the ids "
                    "get their batch axis?",
                    {"model_input_shape": list(shape)})
            try:
                off = _int(offset)
            except (TypeError, ValueError):
                raise CheckFailed(
                    f"simple_generate_with_kv_cache passed offset={offset!r}; the model "
                    "takes the position of the first input token as an int.",
                    {"offset": repr(offset)}) from None
            if cache is None:
                raise CheckFailed("simple_generate_with_kv_cache called the model without a "
                                  "cache (model(tokens, offset, cache)).", {})
            ids = [int(t) for t in to_np(inputs).reshape(-1).tolist()]
            state = self._state(cache)
            self.calls.append({"ids": ids, "offset": off, "cached": state["len"]})
            if len(self.calls) > self.k + 1 + GEN_MARGIN:
                self.runaway = True
                raise _Runaway("simple_generate_with_kv_cache did not stop.", {})
            x = mx.array([ids], dtype=mx.int32)
            logits = forward_chunk(self.mlx_model, x, off, state["kv"])
            state["len"] += len(ids)
            logits = _env(logits, state["len"], self.stop_at) + GEN_LOGIT_OFFSET
            mx.eval(logits)
            # the greedy pick after this call: what the next decode step should feed
            # (and the picks at every position, to see a token read from another one)
            self.calls[-1]["picked"] = int(mx.argmax(logits[0, -1]).item())
            self.calls[-1]["picked_at"] = mx.argmax(logits[0], axis=-1).tolist()
            return logits


def _reference_tokens(prompt_ids: list[int], k: int) -> list[int]:
    """mlx_lm's greedy generation with its own prompt cache, under the same EOS rule."""
    cache_mod = import_mlx_lm("mlx_lm.models.cache")
    model = _gen_model()
    cache = cache_mod.make_prompt_cache(model)
    stop_at = len(prompt_ids) + k
    logits = model(mx.array([prompt_ids], dtype=mx.int32), cache=cache)[0, -1]
    seq_len = len(prompt_ids)
    out: list[int] = []
    while True:
        row = to_np(_env(logits, seq_len, stop_at)).astype(np.float64)
        tok = int(np.argmax(row))
        _guard_margin(row, tok)
        if tok == GEN_EOS:
            return out
        out.append(tok)
        seq_len += 1
        if len(out) > k:
            raise RuntimeError("day-2.1 check design: reference generation did not stop")
        logits = model(mx.array([[tok]], dtype=mx.int32), cache=cache)[0, -1]


def _guard_margin(row: np.ndarray, tok: int, min_gap: float = 0.02) -> None:
    s = np.sort(row)[::-1]
    if s[0] - s[1] < min_gap:
        raise RuntimeError(f"day-2.1 check design: near tie at token {tok} "
                           f"(gap {s[0] - s[1]:.3g})")


def _text_ok(case: str, tok: CharTokenizer, prompt: str, gen: list[int], ret, out: str) -> dict:
    want = tok.decode(gen)
    strip = lambda s: "".join(str(s).split())  # noqa: E731 - the alphabet has no whitespace
    if isinstance(ret, str) and strip(ret) in (want, prompt + want):
        return {"text_returned": True}
    if strip(out) in (want, prompt + want):
        return {"text_printed": True}
    raise CheckFailed(
        f"[{case}] the tokens are right, but the text is not: expected {want!r} to be printed "
        f"(detokenizer.last_segment) or returned; returned {ret!r}, printed {out[-80:]!r}.",
        {"case": case, "expected_text": want, "returned": repr(ret)[:200],
         "printed": out[-200:]})


@check("generate-with-cache", 4,
       "simple_generate_with_kv_cache: one prefill, then one token per step at the right "
       "offset; same tokens as mlx_lm's greedy decoding",
       symbols=("simple_generate_with_kv_cache",))
def generate_with_cache(ctx: Ctx):
    fn = ctx.symbol("simple_generate_with_kv_cache")
    prompt, k = GEN_CASE
    tok = CharTokenizer(GEN_VOCAB, GEN_EOS)
    prompt_ids = tok.encode(prompt)
    P = len(prompt_ids)
    case = f"prompt {prompt!r} ({P} tokens), greedy, EOS after {k} tokens"
    model = GenModel(prompt_ids, k)
    buf = io.StringIO()
    ret = None
    try:
        with contextlib.redirect_stdout(buf):
            ret = ctx.call(fn, model, tok, prompt)
    except CheckFailed:
        if not model.runaway:
            raise
    except Exception:
        if not model.runaway:
            raise
    calls = model.calls
    ev = {"case": case, "model_calls": len(calls),
          "calls": [{"tokens": len(c["ids"]), "offset": c["offset"]} for c in calls[:12]]}
    if not calls:
        raise CheckFailed(f"[{case}] simple_generate_with_kv_cache returned without calling the "
                          "model.", ev)
    first = calls[0]
    if first["ids"] != prompt_ids or first["offset"] != 0:
        raise CheckFailed(
            f"[{case}] the first model call should be the prefill: the prompt's {P} tokens "
            f"{prompt_ids} at offset 0; it was {first['ids'][:12]} at offset {first['offset']}.",
            ev, pitfall="kv-prefill-offset-wrong" if first["ids"] == prompt_ids else None)
    for j, c in enumerate(calls[1:], start=1):
        if len(c["ids"]) != 1:
            fed_all = len(c["ids"]) > 1 and c["ids"][:P] == prompt_ids
            raise CheckFailed(
                f"[{case}] decode call {j} fed {len(c['ids'])} tokens"
                + (" (the whole sequence again)" if fed_all else "")
                + ": with a KV cache each decode step feeds only the newest token, as a (1, 1) "
                "batch; the cache already holds everything before it.", ev,
                pitfall="kv-decode-refeeds-tokens" if c["ids"] else None)
    offsets = [c["offset"] for c in calls[1:]]
    want_offsets = [P + j for j in range(len(offsets))]
    if offsets != want_offsets:
        stuck = len(set(offsets)) == 1 and len(offsets) > 1
        shifts = {o - w for o, w in zip(offsets, want_offsets)}
        msg = (f"[{case}] the decode calls were given offsets {offsets[:10]}; after a "
               f"{P}-token prefill they should be {want_offsets[:10]} (the position of the "
               "token fed, one more every step).")
        pit = None
        if stuck:
            pit = "kv-offset-not-advanced"
        elif len(shifts) == 1:  # every step advances, all by the same amount off
            shift = shifts.pop()
            msg += f" Every decode position is off by {shift:+d}."
            pit = "kv-decode-position-shifted"
        raise CheckFailed(msg, {**ev, "offsets": offsets, "expected_offsets": want_offsets},
                          pitfall=pit)
    if len(calls) > 1 and calls[1]["cached"] < calls[1]["offset"]:
        raise CheckFailed(
            f"[{case}] the first decode step ran on a cache holding {calls[1]['cached']} "
            f"positions, although the prefill had stored {P}: it was not the cache the "
            "prefill filled.", {**ev, "cached_at_first_decode": calls[1]["cached"]},
            pitfall="kv-cache-not-reused")
    for j in range(1, len(calls)):
        picked, fed = calls[j - 1].get("picked"), calls[j]["ids"][0]
        if picked is not None and fed != picked:
            # Read from the first position of the prefill's logits: shows on the first
            # decode step only (decode calls have one position), and only when no stale
            # token explains the same number.
            at = calls[j - 1].get("picked_at") or []
            other = (j == 1 and len(at) > 1 and fed == at[0]
                     and fed not in (prompt_ids[-1], calls[j - 1]["ids"][-1]))
            where = (f" (the pick at position 0 of that call's {len(at)}, not at its last)"
                     if other else "")
            raise CheckFailed(
                f"[{case}] decode call {j} fed token {fed}, but the logits of call {j} "
                f"(greedy) picked token {picked}{where}: each decode step feeds the token "
                "just generated.", {**ev, "fed": fed, "picked": picked},
                pitfall="kv-logits-wrong-position" if other else "kv-decode-wrong-token")
    if model.runaway:
        raise CheckFailed(
            f"[{case}] simple_generate_with_kv_cache did not stop: the model produced EOS "
            f"(token {GEN_EOS}) after {k} tokens but the loop went on ({len(calls)} calls).", ev,
            pitfall="kv-generate-ignores-eos")
    gen = [c["ids"][0] for c in calls[1:]]
    want = _reference_tokens(prompt_ids, k)
    if gen != want:
        first_diff = next((i for i, (x, y) in enumerate(zip(gen, want)) if x != y),
                          min(len(gen), len(want)))
        raise CheckFailed(
            f"[{case}] generated {tok.decode(gen)!r} ({len(gen)} tokens), mlx_lm's greedy "
            f"decoding generates {tok.decode(want)!r} ({len(want)} tokens); they differ from "
            f"step {first_diff + 1}.", {**ev, "generated": gen, "expected": want})
    ev.update(_text_ok(case, tok, prompt, gen, ret, buf.getvalue()))
    ev["generated"] = tok.decode(gen)
    ev["caches_released"] = bool(model.handed_out) and all(c.released for c in model.handed_out)
    return ev
