"""Day 2.6 (and 2.7) -- per-row RoPE offsets and batch masks, BatchingKvCache, the
continuous-batching scheduler and chunked prefill.

Oracles: mx.fast.rope with an array of per-row offsets; mx.fast.scaled_dot_product_attention
with a (B, 1, L, S) mask; the batch layout written out in numpy (``batch_layout``); mlx_lm's
Qwen2 forward pass; and ``OracleQwen2`` -- mlx_lm's weights run with the course's call
surface ``model(inputs, offsets, caches)`` on any cache with the course's API.

Isolation: the scheduler checks (batch-generate, chunked-prefill) drive the learner's
``batch_generate`` / ``Request`` with ``OracleQwen2`` as the model, whose
``create_kv_cache()`` hands out the checks' own per-request caches; so they test the
scheduler and the learner's ``BatchingKvCache``, not the learner's model. The learner's
model meets per-row offsets in rope-batch-offsets (with the checks' own batching cache).
batching-kv-cache feeds the learner's ``BatchingKvCache`` the checks' own per-request caches.

The mistakes are modelled on the oracle side: every row rotated at row 0's offset
(batch-rope-offsets-shared), the padding or an empty slot left visible in the mask
(batch-padded-slot-unmasked), rows left-aligned (batch-left-aligned), and every prefill
chunk placed at offset 0 (chunk-offset-restarts). batch-generate also runs one prompt longer
than prefill_step alone: a loop that ends while it is still prefilling returns no text for
it, having run no decode step (batch-loop-ends-while-prefilling).

Real weights (qwen2-0.5b-batch): the book's staggered batching test on Qwen2-0.5B-Instruct
when it is in the local Hugging Face cache (skipped otherwise): the learner's model and
BatchingKvCache decode four requests that join and leave the batch at different steps,
each active row against mlx_lm's full forward of that request.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..harness import CheckFailed, LearnerError, check, dtype_str, merge_evidence, to_np
from ..week1.tiny_tokenizer import CharTokenizer
from .probes import int_offset_probe, offsets_as, same_values_other_shape, with_probe
from .day2_4 import masked_tile_nan
from .serving_oracle import (EOS, VOCAB, EosRule, OracleBatchCache, OracleFullCache,
                             OracleQwen2, RunawayError, batch_layout, greedy_alone, log_softmax,
                             tiny_model)

SDPA = "mx.fast.scaled_dot_product_attention"
ROPE_FORBID = ("mx.fast.rope", "nn.RoPE")
MODEL_FORBID = (SDPA, "mx.fast.rope", "nn.RoPE", "mx.fast.rms_norm", "nn.RMSNorm", "nn.silu",
                "nn.SiLU")
F32, F16 = mx.float32, mx.float16
# The learner's model (float16, int4 weights) against mlx_lm in float32 on the same
# float16-representable weights: log-probs agree to ~0.03 (answer key); as on day 2.1.
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}


# --------------------------------------------------------------------------- task 1


def rope_rows(x, dims, traditional, base, starts):
    """mx.fast.rope on (N, L, H, D) with one start position per row (array offsets)."""
    y = mx.fast.rope(x.transpose(0, 2, 1, 3), dims, traditional=traditional, base=base,
                     scale=1.0, offset=mx.array(starts, dtype=mx.int32))
    return y.transpose(0, 2, 1, 3)


# (N, L, H, D, dtype, base, traditional, seq_len, starts): row 0's start differs from the
# others, so rotating every row at row 0's positions shows.
ROPE_CASES = [
    (5, 1, 2, 8, F32, 10000, False, 32, [3, 0, 7, 12, 1]),
    (4, 3, 3, 16, F16, 1000000, False, 40, [0, 5, 2, 9]),
    (3, 2, 2, 8, F32, 10000, True, 24, [6, 1, 13]),
    (2, 4, 1, 16, F16, 10000, True, 64, [9, 30]),
]


def _rope_part(ctx):
    cls = ctx.symbol("RoPE")
    mx.random.seed(2601)
    evs = []
    for N, L, H, D, dtype, base, trad, seq_len, starts in ROPE_CASES:
        x = mx.random.normal((N, L, H, D)).astype(dtype)
        layer = ctx.call(cls, D, seq_len, base, trad)
        offset = [slice(s, s + L) for s in starts]
        got = ctx.call(layer, x, offset)
        want = rope_rows(x, D, trad, base, starts)
        case = (f"x (N, L, H, D) = {(N, L, H, D)}, {dtype_str(dtype)}, base={base}, "
                f"traditional={trad}, offset = one slice per row starting at {starts}")
        evs.append(ctx.expect_close(got, want, case=case, candidates={
            "batch-rope-offsets-shared": lambda: rope_rows(x, D, trad, base,
                                                           [starts[0]] * N),
            # every row from 0, or from its slice's stop
            "batch-rope-slices-misread": [
                lambda: rope_rows(x, D, trad, base, [0] * N),
                lambda: rope_rows(x, D, trad, base, [s + L for s in starts]),
                lambda: rope_rows(x, D, trad, base, starts[::-1])]}))
    return evs


# Rows of the model part: prompt lengths (so the new tokens sit at offsets 5, 11 and 2).
MODEL_ROWS = (5, 11, 2)


def _model_part(ctx):
    """The learner's week-2 model decodes one token for three requests at different
    positions in one batch, with the checks' own batching cache (right-aligned rows,
    the right mask); offsets given as a list of ints and as an mx.array."""
    from .w2_oracle import tiny_w2

    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")
    oracle, given = tiny_w2(26, tied=False)
    V = oracle.args.vocab_size
    n_layers = oracle.args.num_hidden_layers
    mx.random.seed(2602)
    prompts = [mx.random.randint(0, V, (1, P)).astype(mx.int32) for P in MODEL_ROWS]
    nxt = mx.random.randint(0, V, (len(MODEL_ROWS), 1)).astype(mx.int32)
    offsets = list(MODEL_ROWS)
    model = ctx.call(Model, given)

    # Each request's prompt through the learner's model alone (int offset 0, day 2.1),
    # into the checks' caches.
    filled = []
    for i, p in enumerate(prompts):
        caches = [OracleFullCache() for _ in range(n_layers)]
        got = ctx.call(model, p, 0, caches)
        want = oracle(p)
        case = f"one request, prefill of {p.shape[1]} tokens at offset 0"
        try:
            ctx.expect_close(log_softmax(got), log_softmax(want), what="log-probs",
                             case=case, **MODEL_LOGP)
        except CheckFailed as exc:
            exc.message = ("Your week-2 model is already wrong for a single request (day "
                           "2.1): " + exc.message)
            raise
        filled.append(caches)

    want = mx.concatenate([oracle(mx.concatenate([p, nxt[i:i + 1]], axis=1))[:, -1:]
                           for i, p in enumerate(prompts)], axis=0)

    om = OracleQwen2(oracle)

    def modelled(rope=None, **layout):
        """The decode step computed by the oracle, with one thing changed."""
        caches = []
        for p in prompts:
            c = om.create_kv_cache()
            om(p, 0, c)
            caches.append(c)
        batch = [OracleBatchCache([caches[i][layer] for i in range(len(prompts))], **layout)
                 for layer in range(n_layers)]
        return log_softmax(om(nxt, offsets, batch, rope_offsets=rope))

    evs = []
    for form, offs in (("a list of ints", offsets),
                       ("an mx.array", mx.array(offsets, dtype=mx.int32))):
        batch = [OracleBatchCache([OracleFullCache(filled[i][layer].key_values)
                                   for i in range(len(prompts))])
                 for layer in range(n_layers)]
        got = ctx.call(model, nxt, offs, batch)
        case = (f"Qwen2ModelWeek2, a batch of {len(prompts)} requests decoding one token each "
                f"at offsets {offsets} given as {form}; the cache returns a (B, 1, 1, S) mask")
        ctx.expect_shape(got, want.shape, "logits", case)
        evs.append(ctx.expect_close(
            log_softmax(got), log_softmax(want), what="log-probs", case=case, candidates={
                "batch-rope-offsets-shared": lambda: modelled(rope=[offsets[0]] * len(offsets)),
                "batch-rope-slices-misread": [
                    lambda: modelled(rope=[0] * len(offsets)),
                    lambda: modelled(rope=[o + 1 for o in offsets])],
                "batch-padded-slot-unmasked": lambda: modelled(pad_mask="0"),
            }, **MODEL_LOGP))
    return evs


@check("rope-batch-offsets", 1,
       "RoPE with one offset slice per row, and the week-2 model with per-row offsets",
       forbid=MODEL_FORBID, symbols=("RoPE", "qwen2_week2.Qwen2ModelWeek2"))
def rope_batch_offsets(ctx):
    evs = _rope_part(ctx)
    evs += _model_part(ctx)
    evs += _int_offset_part(ctx)
    return merge_evidence(evs)


# Requests of one length prefilled and decoded together: a batch with one int offset (the
# form days 2.1-2.4 use) must keep working next to the per-row offsets.
SAME_LENGTH_BATCH = (2, 6)  # (B, prompt length)


def _int_offset_part(ctx):
    from .w2_oracle import tiny_w2

    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")
    oracle, given = tiny_w2(26, tied=False)
    V = oracle.args.vocab_size
    n_layers = oracle.args.num_hidden_layers
    B, P = SAME_LENGTH_BATCH
    ids = mx.random.randint(0, V, (B, P + 1), key=mx.random.key(2606)).astype(mx.int32)
    full = log_softmax(oracle(ids))

    def scenario(variant):
        model = ctx.call(Model, given)
        caches = [OracleFullCache() for _ in range(n_layers)]
        evs = []
        for s, e in ((0, P), (P, P + 1)):
            case = (f"Qwen2ModelWeek2, a batch of {B} requests of the same length, "
                    f"{'prefill' if s == 0 else 'decode'}: tokens {s}..{e - 1}, the offset "
                    f"given as the int {s} for the whole batch")
            got = ctx.call(model, ids[:, s:e], offsets_as(variant, s, B), caches)
            ctx.expect_shape(got, (B, e - s, V), "logits", case)
            evs.append(ctx.expect_close(log_softmax(got), full[:, s:e], what="log-probs",
                                        case=case, **MODEL_LOGP))
        return evs

    return with_probe(scenario, int_offset_probe(B))


def _grouped_oracle(q, k, v, scale, mask):
    B, Hq, L, E = q.shape
    S = k.shape[2]
    m = mx.broadcast_to(mask.astype(F32), (B, Hq, L, S))
    return mx.fast.scaled_dot_product_attention(
        q.astype(F32), k.astype(F32), v.astype(F32), scale=scale, mask=m).astype(q.dtype)


def _finite_padding(got, want, open_mask):
    """``got`` itself when it differs from ``want`` only where the padding and empty slots
    are (``open_mask`` opens them) and holds a finite value in each of those places: a
    mask that does not hide them (-1e9 would; -1 does not)."""
    g, w, o = (np.array(to_np(x), dtype=np.float64) for x in (got, want, open_mask))
    if g.shape != w.shape:
        raise ValueError("shape")
    differs = ~((g == w) | (np.isnan(g) & np.isnan(w)))
    padding = w != o
    if not differs.any() or (differs & ~padding).any() or not np.all(
            np.isfinite(g[differs]) & (g[differs] > -1e4)):
        raise ValueError("not this mistake")
    return got


def _grouped_oracle_tiled(q, k, v, scale, mask):
    """Grouped attention with query head h reading kv head h mod H (the kv heads tiled
    instead of each repeated for its group of query heads)."""
    rep = q.shape[1] // k.shape[1]
    if rep == 1:
        raise ValueError("H_q == H: the same either way")
    kt = mx.concatenate([k] * rep, axis=1)
    vt = mx.concatenate([v] * rep, axis=1)
    return _grouped_oracle(q, kt, vt, scale, mask)


def _batching_mask(lengths, L):
    rows = [(mx.zeros((1, 1, s, 1)), mx.zeros((1, 1, s, 1))) for s in lengths]
    return batch_layout(rows, L, 1, 1)[2]


# (B, H_q, H, L, S, E, dtype, scale, mask): "random" uniform(-2, 2) of shape (B, 1, L, S), or
# the mask of a batching cache whose rows hold the listed numbers of positions.
BATCH_MASK_CASES = [
    (3, 6, 2, 4, 9, 8, F32, 0.8, "random"),
    (2, 4, 4, 7, 3, 5, F32, 0.8, "random"),
    (3, 4, 2, 2, 6, 16, F32, 0.5, (6, 3, 4)),
    (2, 4, 2, 3, 5, 8, F16, 0.6, "random"),
    (2, 4, 1, 1, 70, 32, F32, 0.3, (70, 12)),
]


def _flash_not_done(exc) -> str | None:
    """Why the learner's flash_attention cannot be tried yet, or None if it should work."""
    msg = getattr(exc, "message", str(exc))
    if isinstance(exc, CheckFailed) and exc.status == "fail" and "Not implemented" in msg:
        return "flash_attention is still a stub"
    if "still a stub" in msg:
        return "your extension's flash_attention is still a stub"
    if isinstance(exc, CheckFailed) and "extension is not available" in msg:
        return "your extension is not built"
    if "ImportError" in msg or "No module named" in msg:
        return "your extension (or its flash_attention) cannot be imported"
    return None


@check("gqa-batch-mask", 1,
       "grouped attention (and flash_attention, once day 2.4 is done) with a (B, 1, L, S) mask",
       forbid=(SDPA,), symbols=("scaled_dot_product_attention_grouped", "flash_attention"))
def gqa_batch_mask(ctx):
    grouped = ctx.symbol("scaled_dot_product_attention_grouped")
    flash = ctx.symbol("flash_attention") if hasattr(ctx.impl, "flash_attention") else None
    flash_state = "checked"
    mx.random.seed(2603)
    evs = []
    for B, Hq, H, L, S, E, dtype, scale, mkind in BATCH_MASK_CASES:
        q = mx.random.normal((B, Hq, L, E)).astype(dtype)
        k = mx.random.normal((B, H, S, E)).astype(dtype)
        v = mx.random.normal((B, H, S, E)).astype(dtype)
        if mkind == "random":
            mask = mx.random.uniform(-2.0, 2.0, (B, 1, L, S)).astype(dtype)
            mdesc = "random (B, 1, L, S) mask"
        else:
            mask = _batching_mask(mkind, L)
            mdesc = f"(B, 1, L, S) batching mask, rows of {list(mkind)} positions"
        want = _grouped_oracle(q, k, v, scale, mask)
        case = (f"q {tuple(q.shape)}, k/v {tuple(k.shape)}, {dtype_str(dtype)}, scale={scale}, "
                f"{mdesc}")
        got = ctx.call(grouped, q, k, v, scale=scale, mask=mask)
        evs.append(ctx.expect_close(
            got, want, case="scaled_dot_product_attention_grouped, " + case, candidates={
                "batch-gqa-head-mapping": lambda q=q, k=k, v=v, mask=mask, scale=scale: (
                    _grouped_oracle_tiled(q, k, v, scale, mask))}))
        if flash is None or flash_state != "checked":
            continue
        try:
            # The course's flash kernel takes float32 only and the model casts before
            # calling it, so flash_attention gets the same values in float32.
            got = ctx.call(flash, *(t.astype(F32) for t in (q, k, v)), scale=scale,
                           mask=mask.astype(F32))
        except (CheckFailed, Exception) as exc:  # noqa: BLE001
            why = _flash_not_done(exc)
            if why is None:
                raise
            flash_state = f"not checked: {why} (day 2.4)"
            continue
        # The inputs hold values of the case's dtype: compare at its tolerance.
        evs.append(ctx.expect_close(
            got, want, case="flash_attention (float32 inputs), " + case, dtype=dtype_str(dtype),
            candidates={"flash-masked-tile-nan": lambda want=want, mask=mask: [
                masked_tile_nan(want, mask, bc) for bc in (8, 16, 32)]}))
    ev = merge_evidence(evs)
    ev["flash_attention"] = flash_state if flash is not None else "not found"
    return ev


# --------------------------------------------------------------------------- task 2


def _kv(S, H, D, rng):
    k = mx.array(rng.normal(size=(1, H, S, D)).astype(np.float32))
    v = mx.array(rng.normal(size=(1, H, S, D)).astype(np.float32))
    return k, v


def _concat(a, b):
    if a is None:
        return b
    return (mx.concatenate([a[0], b[0]], axis=2), mx.concatenate([a[1], b[1]], axis=2))


# The BatchingKvCache mistakes modelled by what the slots hold: every slot storing row 0 of
# each update, and add_request dropping the request's prefilled keys and values.
SLOT_MISTAKES = ("batch-slot-rows-mixed", "batch-add-request-drops-prefill")


@check("batching-kv-cache", 2,
       "BatchingKvCache: right-aligned keys/values and (B, 1, L, S) masks, empty slots",
       symbols=("kv_cache.BatchingKvCache",))
def batching_kv_cache(ctx):
    cls = ctx.symbol("kv_cache.BatchingKvCache")
    rng = np.random.default_rng(2604)
    B, H, D, MAX = 3, 2, 3, 16
    cache = ctx.call(cls, B, MAX)
    # What each slot must hold -- (keys, values), "new" (added empty) or None (no request) --
    # and what it holds with one of the cache's catalogued mistakes, kept side by side.
    held: dict[str, list] = {m: [None] * B for m in (None, *SLOT_MISTAKES)}
    evs = []

    def add(slot, prefill_len):
        kv = _kv(prefill_len, H, D, rng) if prefill_len else None
        ctx.call(cache.add_request, OracleFullCache(kv), slot)
        for m, slots in held.items():
            drops = m == "batch-add-request-drops-prefill"
            slots[slot] = "new" if kv is None or drops else kv

    def remove(slot):
        ctx.call(cache.remove_request, slot)
        for slots in held.values():
            slots[slot] = None

    def update(L, step):
        k_new = mx.array(rng.normal(size=(B, H, L, D)).astype(np.float32))
        v_new = mx.array(rng.normal(size=(B, H, L, D)).astype(np.float32))
        rows_of = {}
        for m, slots in held.items():
            rows_of[m] = []
            for i in range(B):
                if slots[i] is None:
                    rows_of[m].append(None)
                    continue
                r = 0 if m == "batch-slot-rows-mixed" else i  # which batch row slot i takes
                new = (k_new[r:r + 1], v_new[r:r + 1])
                slots[i] = new if isinstance(slots[i], str) else _concat(slots[i], new)
                rows_of[m].append(slots[i])
        rows = rows_of[None]
        lengths = ["empty" if r is None else int(r[0].shape[2]) for r in rows]
        out = ctx.call(cache.update_and_fetch, k_new, v_new, mask_length=L)
        case = f"step {step}: update with L={L}; slots hold {lengths} positions after it"
        if not isinstance(out, (tuple, list)) or len(out) != 4:
            raise CheckFailed(f"[{case}] update_and_fetch returned {type(out).__name__}"
                              f"{'' if not isinstance(out, (tuple, list)) else f' of {len(out)}'}"
                              "; expected (keys, values, offset, mask).", {"case": case})
        keys, values, offset, mask = out
        want_k, want_v, want_m = batch_layout(rows, L, H, D)
        left_k, left_v, left_m = batch_layout(rows, L, H, D, align="left")
        slot_k = {m: batch_layout(rows_of[m], L, H, D)[0] for m in SLOT_MISTAKES}
        slot_v = {m: batch_layout(rows_of[m], L, H, D)[1] for m in SLOT_MISTAKES}
        evs.append(ctx.expect_close(keys, want_k, what="keys", case=case, rtol=0.0, atol=0.0,
                                    candidates={"batch-left-aligned": left_k, **slot_k}))
        evs.append(ctx.expect_close(values, want_v, what="values", case=case, rtol=0.0,
                                    atol=0.0, candidates={"batch-left-aligned": left_v,
                                                          **slot_v}))
        if offset is not None:
            raise CheckFailed(
                f"[{case}] the offset returned is {offset!r}, expected None: the rows of a "
                "batch have different lengths, so there is no single offset.",
                {"case": case, "offset": repr(offset)})
        if same_values_other_shape(mask, want_m, 0.0, 0.0):
            raise CheckFailed(
                f"[{case}] the mask has shape {tuple(mask.shape)}, expected "
                f"{tuple(want_m.shape)}: the right values without the axis of size 1 that "
                "broadcasts over the heads.", {"case": case}, pitfall="batch-mask-head-axis")
        shape = tuple(getattr(mask, "shape", ()))
        if len(shape) == 4 and shape[:2] == (B, 1) and shape[3] == want_m.shape[3] \
                and shape[2] != L:
            raise CheckFailed(
                f"[{case}] the mask has shape {shape}, expected {tuple(want_m.shape)}: "
                f"{shape[2]} query rows for mask_length={L} new tokens.", {"case": case},
                pitfall="batch-mask-length-ignored")
        ctx.expect_shape(mask, want_m.shape, "mask", case)
        unmasked = [batch_layout(rows, L, H, D, pad_mask=p, empty_mask=e)[2]
                    for p, e in (("0", "-inf"), ("0", "0"), ("-inf", "0"))]
        # ... or hidden with a finite value: only padding and empty-slot entries differ,
        # and none of them is -inf any more
        unmasked.append(lambda: _finite_padding(mask, want_m, unmasked[1]))
        evs.append(ctx.expect_close(mask, want_m, what="mask", case=case, rtol=0.0, atol=0.0,
                                    candidates={"batch-padded-slot-unmasked": unmasked,
                                                "batch-left-aligned": left_m,
                                                "batch-row-mask-not-causal": lambda rows=rows: (
                                                    batch_layout(rows, L, H, D,
                                                                 row_causal=False)[2])}))

    # The book's scenario: slot 0 holds 1 position, slot 2 holds 2, slot 1 is empty.
    add(0, 1)
    add(2, 2)
    update(2, 1)
    # A request leaves, a longer one joins another slot: the padding moves.
    remove(0)
    add(1, 5)
    update(1, 2)
    # A request joins with an empty cache (nothing prefilled); every slot is busy.
    add(0, 0)
    update(1, 3)
    return {"cases": len(evs), "steps": 3}


# --------------------------------------------------------------------------- task 3


# Prompts of 1..13 characters; the last one is long enough that its first generated token
# is already EOS (it must finish without ever taking a slot). EosRule ends the others after
# lengths 9 or 14, depending on their text; max_seq_len is never reached.
GEN_PROMPTS = ["Tiny6", "x", "qwen2Go", "hello1", "MLXbatch9", "Zz", "abcdefghijklmn"]
GEN_BATCH, GEN_PREFILL_STEP, GEN_MAX_SEQ = 3, 4, 32
# A second run where max_seq_len cuts three of these prompts short ("x", "hello1", "Zz"
# would otherwise run past 8 positions): a request stops once its cache holds
# max_seq_len positions.
CUT_PROMPTS, CUT_MAX_SEQ = ["Tiny6", "x", "qwen2Go", "hello1", "Zz"], 8
# A third run: one prompt longer than prefill_step and nothing else. While it is prefilled
# no slot decodes and no prompt waits, which a loop that looks only at those two ends on.
LONE_PROMPT = "MLXbatch9"


def _tok():
    return CharTokenizer(VOCAB, EOS)


def _oracle_model():
    return OracleQwen2(tiny_model(), EosRule())


def _references(tok, prompts, max_seq_len):
    om = _oracle_model()
    return [tok.decode(greedy_alone(om, tok.encode(p), max_seq_len)) for p in prompts]


# Scheduler mistakes that show in the texts, as arguments of greedy_alone (each prompt
# generated alone with that mistake); compared only when the texts are wrong.
TEXT_MISTAKES = {
    "batch-decode-offset-wrong": [{"decode_shift": 1}, {"decode_shift": -1},
                                  {"fixed_position": 0}],
    "batch-stale-decode-token": [{"stale": "prompt-tail"}, {"stale": "first"}],
    # the prefill's prediction fed on, but missing from the text
    "batch-prefill-token-dropped": [{"drop_first": True}],
}
# ... and the ones that show only where max_seq_len stops a request.
STOP_MISTAKES = {"batch-stop-at-max-seq-len": [
    {"seq_shift": 1}, {"seq_shift": -1}, {"seq_shift": 10 ** 6},  # the last: never stopped
    {"seq_shift": 1, "limit_after_prefill": False},
    {"seq_shift": -1, "limit_after_prefill": False}]}


def lone_prompt_run(ctx, fn, tok, om, want: str, pitfall: str) -> CheckFailed | None:
    """batch_generate on LONE_PROMPT alone (``om`` records the model calls): None when it
    returns the prompt's own text ``want``, else the failure. Named ``pitfall`` when nothing
    came back, no decode step ran and the prefill chunks stopped short of the prompt: the
    loop ended while the prompt was still being prefilled."""
    import contextlib
    import io

    P = len(tok.encode(LONE_PROMPT))
    setup = (f"one prompt of {P} tokens and nothing else, prefill_step={GEN_PREFILL_STEP}, "
             f"batch_size={GEN_BATCH}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            results = ctx.call(fn, om, tok, [LONE_PROMPT], max_seq_len=GEN_MAX_SEQ,
                               batch_size=GEN_BATCH, prefill_step=GEN_PREFILL_STEP)
    except RunawayError as exc:
        return CheckFailed(f"[{setup}] batch_generate did not finish: {exc.message}",
                           {"model_calls": len(om.calls)})
    try:
        got = {int(i): t for i, t in results}
    except (TypeError, ValueError):
        return CheckFailed(f"[{setup}] batch_generate returned {type(results).__name__}; "
                           "expected a list of (prompt_idx, text) pairs.", {})
    if got.get(0) == want:
        return None
    prefill = sum(c["shape"][1] for c in om.calls if c["shape"][0] == 1)
    decoded = any(c["shape"][0] > 1 for c in om.calls)
    ev = {"prompt_tokens": P, "prefill_tokens_fed": prefill, "decode_steps_ran": decoded,
          "returned": sorted(got)}
    if 0 not in got and not decoded and 0 < prefill < P:
        return CheckFailed(
            f"[{setup}] batch_generate returned no text for {LONE_PROMPT!r} (alone: {want!r}): "
            f"its prefill had fed {prefill} of the prompt's {P} tokens when the run ended.",
            ev, pitfall=pitfall)
    return CheckFailed(f"[{setup}] got {got.get(0)!r} for {LONE_PROMPT!r}; generated alone: "
                       f"{want!r}.", ev)


def _text_mistake(tok, prompts, max_seq_len, got: dict, mistakes: dict) -> str | None:
    """The catalogued mistake whose texts (every prompt generated alone with it) are
    exactly the texts returned, if any."""
    for pit, forms in mistakes.items():
        for form in forms:
            kw = dict(form)
            limit = max_seq_len + kw.pop("seq_shift", 0)
            skip = 1 if kw.pop("drop_first", False) else 0
            try:
                texts = [tok.decode(greedy_alone(_oracle_model(), tok.encode(p), limit,
                                                 min_gap=0.0, **kw)[skip:]) for p in prompts]
            except Exception:  # noqa: BLE001 - this form does not apply here
                continue
            if all(got.get(i) == t for i, t in enumerate(texts)):
                return pit
    return None


def _cut_short_run(ctx, fn, tok) -> tuple[str, str | None]:
    """Run batch_generate where max_seq_len stops some requests: ('', None) when every text
    matches the prompt generated alone under the same limit, else what differs and the
    mistake it matches."""
    import contextlib
    import io

    want = _references(tok, CUT_PROMPTS, CUT_MAX_SEQ)
    om = _oracle_model()
    om.call_limit = CALL_LIMIT
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            results = ctx.call(fn, om, tok, list(CUT_PROMPTS), max_seq_len=CUT_MAX_SEQ,
                               batch_size=GEN_BATCH, prefill_step=GEN_PREFILL_STEP)
    except LearnerError as exc:
        # A crash after a token was fed at a position >= max_seq_len: a request was not
        # stopped when its cache was full (a batching cache may refuse to grow past it).
        fed = max((o for c in om.calls if c["shape"][1] == 1 for o in c["offsets"]),
                  default=-1)
        if exc.pitfall is None and fed >= CUT_MAX_SEQ:
            exc.pitfall = "batch-stop-at-max-seq-len"
            exc.message += (f" With max_seq_len={CUT_MAX_SEQ}, a decode step fed a token at "
                            f"position {fed}.")
        raise
    try:
        got = {int(i): t for i, t in results}
    except (TypeError, ValueError):
        return "the results are not (prompt_idx, text) pairs", None
    wrong = [j for j in range(len(CUT_PROMPTS)) if got.get(j) != want[j]]
    if not wrong:
        return "", None
    return ("; ".join(f"#{j} {CUT_PROMPTS[j]!r}: got {got.get(j)!r}, alone {want[j]!r}"
                      for j in wrong[:3]),
            _text_mistake(tok, CUT_PROMPTS, CUT_MAX_SEQ, got, STOP_MISTAKES))


@check("batch-generate", 3,
       "batch_generate: the same text for every prompt as generating it alone",
       symbols=("batch.batch_generate", "batch.Request", "kv_cache.BatchingKvCache"))
def batch_generate_check(ctx):
    fn = ctx.symbol("batch.batch_generate")
    batching_cls = ctx.symbol("kv_cache.BatchingKvCache")
    tok = _tok()
    want = _references(tok, GEN_PROMPTS, GEN_MAX_SEQ)
    # Prompts whose first generated token is EOS: they finish at their prefill.
    done_at_prefill = [i for i, w in enumerate(want) if w == ""]

    def scenario(variant):
        keep = [i for i in range(len(GEN_PROMPTS))
                if variant is None or i not in done_at_prefill]
        return _generate_run(ctx, fn, tok, [GEN_PROMPTS[i] for i in keep],
                             [want[i] for i in keep], batching_cls)

    probes = []
    if done_at_prefill:
        names = ", ".join(repr(GEN_PROMPTS[i]) for i in done_at_prefill)
        # Only when the learner's own Request says these requests finished at their
        # prefill: then the scheduler is what mishandles them.
        probes.append((
            "without-done-at-prefill", "batch-eos-at-prefill",
            lambda exc: all(_done_at_prefill(ctx, tok, i) for i in done_at_prefill),
            f"Your Request marks {names} done at its prefill (its first generated token is "
            "already EOS), and without that prompt every text is right."))
    om, ev, setup = with_probe(scenario, probes)
    decode_calls = [c for c in om.calls if _batched(c, batching_cls)]
    cut, cut_pitfall = _cut_short_run(ctx, fn, tok)
    if cut:
        raise CheckFailed(
            f"[{len(CUT_PROMPTS)} prompts, max_seq_len={CUT_MAX_SEQ}] texts differ from "
            f"generating each prompt alone with the same max_seq_len: {cut}. A request "
            "stops once its cache holds max_seq_len positions.", ev, pitfall=cut_pitfall)
    lone_om = _oracle_model()
    lone_om.call_limit = CALL_LIMIT
    lone = lone_prompt_run(ctx, fn, tok, lone_om, want[GEN_PROMPTS.index(LONE_PROMPT)],
                           "batch-loop-ends-while-prefilling")
    if lone is not None:
        raise lone
    bad_shape = [c["shape"] for c in decode_calls if c["shape"] != [GEN_BATCH, 1]]
    if bad_shape or not decode_calls:
        shapes = (f"ran on batches of shape {[tuple(b) for b in bad_shape[:3]]}" if bad_shape
                  else "never used the BatchingKvCache caches")
        raise CheckFailed(
            f"[{setup}] the texts are right, but the decode steps {shapes}: every decode "
            f"step should feed all {GEN_BATCH} slots at once, a ({GEN_BATCH}, 1) batch with "
            "one BatchingKvCache per layer.", ev)
    busiest = max(sum(1 for o in c["offsets"] if o > 0) for c in decode_calls)
    ev["max_active_rows"] = busiest
    if busiest < 2:
        raise CheckFailed(
            f"[{setup}] the texts are right, but no decode step had more than one active "
            "request.", ev, pitfall="batch-one-request-at-a-time")
    return ev


# Far more model calls than any of the check's runs needs (about 70): past it, the
# scheduler is not finishing.
CALL_LIMIT = 600


def _runaway_failure(exc, om, setup: str, batching_cls) -> CheckFailed:
    """batch_generate did not finish. Named when a busy row's offset stood still over
    several decode steps (its requests never reach max_seq_len, nor the EOS the model
    gives at a later position)."""
    decode = [c["offsets"] for c in om.calls if _batched(c, batching_cls)]
    stuck = _stuck_slots(om, batching_cls)
    msg = (f"[{setup}] batch_generate did not finish: {exc.message} The last decode steps "
           f"were given the offsets {decode[-3:]}.")
    if stuck:
        msg += f" The offset of slot(s) {stuck} stood still from one decode step to the next."
    return CheckFailed(msg, {"model_calls": len(om.calls), "last_offsets": decode[-3:]},
                       pitfall="batch-decode-offset-wrong" if stuck else None)


def _stuck_slots(om, batching_cls) -> list[int]:
    """Slots whose (nonzero) offset stood still over three decode steps in a row: a busy
    request's position must grow by one every step."""
    decode = [c["offsets"] for c in om.calls if _batched(c, batching_cls)]
    return [i for i in range(len(decode[0]) if decode else 0)
            if any(d1[i] == d2[i] == d3[i] > 0
                   for d1, d2, d3 in zip(decode, decode[1:], decode[2:]))]


def _prefill_cut_short(om, tok, prompts) -> bool:
    """Some request's prefill fed only the beginning of its prompt, in order, and the
    request went on without the rest. Prefills are the one-row calls: one at offset 0
    begins a request's prefill, the next one-row call at the offset where it stopped
    continues it (decode steps of the batch may come in between)."""
    encoded = [tok.encode(p) for p in prompts]

    def continues(run, ids) -> bool:  # the next tokens of a prompt this run is a prefix of
        both = run["ids"] + ids
        return any(len(run["ids"]) < len(e) and e[:len(both)] == both for e in encoded)

    runs, cur = [], None
    for c in om.calls:
        if c["shape"][0] != 1 or c.get("ids") is None:
            continue  # a decode step of the batch: prefills go on around it
        if c["offsets"][0] == 0 and not (cur is not None and cur["ids"] and continues(cur, c["ids"])):
            cur = {"ids": [], "next": 0, "broken": False}
            runs.append(cur)
        if cur is None:
            continue
        if c["offsets"][0] != cur["next"]:  # chunks misplaced: some other mistake
            cur["broken"] = True
        cur["ids"] += c["ids"]
        cur["next"] += c["shape"][1]
    return any(not r["broken"]
               and any(len(r["ids"]) < len(e) and e[:len(r["ids"])] == r["ids"]
                       for e in encoded)
               and not any(e == r["ids"] for e in encoded) for r in runs)


def _one_offset_for_all(om, batching_cls) -> bool:
    """Every decode step with several requests in it gave all of them one offset (the
    requests' positions differ, so at least one of those steps should not)."""
    multi = [[o for o in c["offsets"] if o > 0] for c in om.calls if _batched(c, batching_cls)]
    multi = [m for m in multi if len(m) > 1]
    return len(multi) >= 3 and all(len(set(m)) == 1 for m in multi)


def _kept_after_eos(om, batching_cls) -> bool:
    """A decode step picked EOS for a row, and the next decode step fed that row again at
    the same or the next position (whether a request counts the EOS step is its own
    bookkeeping) with its old token or EOS itself: the finished request kept its slot."""
    decode = [c for c in om.calls if _batched(c, batching_cls) and "picked" in c]
    for c1, c2 in zip(decode, decode[1:]):
        for r, (picked, off) in enumerate(zip(c1["picked"], c1["offsets"])):
            if (picked == EOS and off > 0 and r < len(c2["offsets"])
                    and c2["offsets"][r] in (off, off + 1)
                    and c2["fed"][r] in (c1["fed"][r], EOS)):
                return True
    return False


def _done_at_prefill(ctx, tok, i: int) -> bool:
    """Whether the learner's Request, prefilled on its own in batch_generate's chunks,
    reports prompt ``i`` finished (is_done) once its prefill is done."""
    try:
        Request = ctx.symbol("batch.Request")
        req = ctx.call(Request, _oracle_model(), tok, GEN_PROMPTS[i], GEN_PREFILL_STEP, i)
        for _ in range(len(GEN_PROMPTS[i]) + 1):
            if getattr(req, "is_prefill_done", False):
                break
            ctx.call(req.try_prefill)
        return (bool(getattr(req, "is_prefill_done", False))
                and getattr(req, "is_done", None) is True)
    except Exception:  # noqa: BLE001 - no diagnosis then
        return False


def _batched(call, batching_cls) -> bool:
    return isinstance(call["cache"], type) and issubclass(call["cache"], batching_cls)


def _generate_run(ctx, fn, tok, prompts, want, batching_cls):
    """batch_generate over ``prompts`` against each prompt generated alone (``want``);
    returns (the recording model, evidence, setup text)."""
    import contextlib
    import io

    om = _oracle_model()
    om.call_limit = CALL_LIMIT
    setup = (f"{len(prompts)} prompts, batch_size={GEN_BATCH}, "
             f"prefill_step={GEN_PREFILL_STEP}, max_seq_len={GEN_MAX_SEQ}")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            results = ctx.call(fn, om, tok, list(prompts), max_seq_len=GEN_MAX_SEQ,
                               batch_size=GEN_BATCH, prefill_step=GEN_PREFILL_STEP)
    except RunawayError as exc:
        raise _runaway_failure(exc, om, setup, batching_cls) from None
    except LearnerError as exc:
        if exc.pitfall is None and _kept_after_eos(om, batching_cls):
            exc.pitfall = "batch-done-request-kept"
            exc.message += (" Before that, a request was fed again in the decode step after "
                            "it had generated EOS.")
        elif exc.pitfall is None and _stuck_slots(om, batching_cls):
            exc.pitfall = "batch-decode-offset-wrong"
            exc.message += (f" Before that, the offset of slot(s) {_stuck_slots(om, batching_cls)}"
                            " stood still from one decode step to the next.")
        raise
    try:
        got = {int(i): t for i, t in results}
        n = len(list(results))
    except (TypeError, ValueError):
        raise CheckFailed(f"[{setup}] batch_generate returned {type(results).__name__}; "
                          "expected a list of (prompt_idx, text) pairs.",
                          {"returned": type(results).__name__}) from None
    missing = [i for i in range(len(prompts)) if i not in got]
    if missing or n != len(prompts):
        texts = sorted(str(t) for _, t in results)
        raise CheckFailed(
            f"[{setup}] batch_generate returned {n} results for prompts {sorted(got)}; "
            f"expected one per prompt (0..{len(prompts) - 1}).",
            {"returned_idx": sorted(got), "results": n},
            # every prompt's own text is there, under other indices
            pitfall="batch-results-mislabelled" if texts == sorted(want) else None)
    decode_calls = [c for c in om.calls if _batched(c, batching_cls)]
    wrong = [i for i in range(len(prompts)) if got[i] != want[i]]
    ev = {"prompts": len(prompts), "model_calls": len(om.calls),
          "decode_steps": len(decode_calls),
          "prefill_calls": len(om.calls) - len(decode_calls)}
    if wrong:
        details = "; ".join(f"#{j} {prompts[j]!r}: got {got[j]!r}, alone {want[j]!r}"
                            for j in wrong[:3])
        raise CheckFailed(
            f"[{setup}] {len(wrong)} of {len(prompts)} prompts get a different text in the "
            f"batch than alone: {details}. The reference generates each prompt alone, "
            "greedily, with the same model.",
            {**ev, "wrong": [{"prompt_idx": j, "prompt": prompts[j], "got": got[j],
                              "expected": want[j]} for j in wrong], "first": wrong[0]},
            pitfall=("batch-results-mislabelled" if sorted(got.values()) == sorted(want)
                     else "chunk-prefill-ends-early" if _prefill_cut_short(om, tok, prompts)
                     else "batch-done-request-kept" if _kept_after_eos(om, batching_cls)
                     else "batch-offsets-not-per-row" if _one_offset_for_all(om, batching_cls)
                     else _text_mistake(tok, prompts, GEN_MAX_SEQ, got, TEXT_MISTAKES)))
    return om, ev, setup


# The book's staggered test on real weights: REAL_REQUESTS requests of REAL_LEN tokens each,
# request i joining at step REAL_LEN * i // REAL_REQUESTS and leaving after its last token;
# one BatchingKvCache(REAL_REQUESTS, REAL_LEN) per layer, one token per request per step.
REAL_REQUESTS, REAL_LEN, REAL_SEED = 4, 4, 2605
# How the catalogued mistakes are modelled in the staggered run (OracleQwen2 + the checks'
# batch cache with a mistaken layout, or every row rotated at row 0's offset).
REAL_MISTAKES = {
    "batch-rope-offsets-shared": {"rope_shared": True},
    "batch-padded-slot-unmasked": {"pad_mask": "0"},
    "batch-left-aligned": {"data_left": True},
}


class _DataLeftCache(OracleBatchCache):
    """The checks' batch cache with the rows' keys and values at the left (padding after)
    while the mask is still built for right-aligned rows: batch-left-aligned as it shows
    in a model (a mask that is left-aligned too would hide the mistake in a decode step)."""

    def update_and_fetch(self, keys, values, mask_length=None, mask=None):
        L = keys.shape[2] if mask_length is None else mask_length
        rows = self.rows(keys, values)
        k, v, _ = batch_layout(rows, L, keys.shape[1], keys.shape[3], align="left")
        _, _, m = batch_layout(rows, L, keys.shape[1], keys.shape[3])
        return k, v, None, m


def _staggered_schedule():
    """[(step, [(request, position) for active requests], joins, leaves)]."""
    starts = [REAL_LEN * i // REAL_REQUESTS for i in range(REAL_REQUESTS)]
    steps = []
    for step in range(REAL_LEN + starts[-1]):
        pos = [step - s for s in starts]
        joins = [r for r, p in enumerate(pos) if p == 0]
        leaves = [r for r, p in enumerate(pos) if p == REAL_LEN]
        active = [(r, p) for r, p in enumerate(pos) if 0 <= p < REAL_LEN]
        steps.append((step, active, joins, leaves))
    return starts, steps


def _step_inputs(ids, active):
    toks, offs = [0] * REAL_REQUESTS, [0] * REAL_REQUESTS
    for r, p in active:
        toks[r] = int(ids[r, p].item())
        offs[r] = p
    return (mx.array(toks, dtype=mx.int32).reshape(-1, 1), mx.array(offs, dtype=mx.int32),
            offs)


def _staggered_modelled(mlx_model, ids, schedule, rope_shared=False, data_left=False,
                        **layout):
    """The staggered run computed by the oracle with one mistake: per step, the
    log-probabilities of the active rows."""
    om = OracleQwen2(mlx_model)
    cls = _DataLeftCache if data_left else OracleBatchCache
    caches = [cls([None] * REAL_REQUESTS, **layout) for _ in range(om.num_hidden_layers)]
    outs = []
    for _, active, joins, leaves in schedule:
        for c in caches:
            for r in leaves:
                c.slots[r] = None
            for r in joins:
                c.slots[r] = OracleFullCache()
        x, offs, offs_list = _step_inputs(ids, active)
        rope = [offs_list[0]] * REAL_REQUESTS if rope_shared else None
        logits = om(x, offs, caches, rope_offsets=rope)
        outs.append(log_softmax(logits[mx.array([r for r, _ in active]), 0]))
    mx.eval(outs)
    return outs


@check("qwen2-0.5b-batch", 3,
       "Qwen2ModelWeek2 with BatchingKvCache on the real Qwen2-0.5B-Instruct weights: "
       "requests joining and leaving a batch",
       forbid=MODEL_FORBID,
       symbols=("qwen2_week2.Qwen2ModelWeek2", "kv_cache.BatchingKvCache"))
def qwen2_real_batch(ctx):
    from .real_weights import CASE_NAME, REAL_LOGP, REAL_REPO, load_real_qwen2, real_snapshot

    path = real_snapshot()
    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")
    Batching = ctx.symbol("kv_cache.BatchingKvCache")
    mlx_model = load_real_qwen2(path)
    a = mlx_model.args
    ids = mx.random.randint(0, a.vocab_size, (REAL_REQUESTS, REAL_LEN),
                            key=mx.random.key(REAL_SEED))
    # The truth: each request's tokens through mlx_lm's full forward, on their own rows.
    full = log_softmax(mlx_model(ids))
    mx.eval(full)
    starts, schedule = _staggered_schedule()
    modelled: dict = {}

    def cand(pit, i):
        def fn():
            if pit not in modelled:
                modelled[pit] = _staggered_modelled(mlx_model, ids, schedule,
                                                    **REAL_MISTAKES[pit])
            return modelled[pit][i]
        return fn

    model = ctx.call(Model, mlx_model)
    caches = [ctx.call(Batching, REAL_REQUESTS, REAL_LEN) for _ in range(a.num_hidden_layers)]
    evs = []
    for i, (step, active, joins, leaves) in enumerate(schedule):
        for c in caches:
            for r in leaves:
                ctx.call(c.remove_request, r)
            for r in joins:
                ctx.call(c.add_request, OracleFullCache(), r)
        x, offs, offs_list = _step_inputs(ids, active)
        case = (f"{CASE_NAME}, {REAL_REQUESTS} requests of {REAL_LEN} tokens starting at steps "
                f"{starts}; step {step}: rows {[r for r, _ in active]} at positions "
                f"{[p for _, p in active]}, offsets {offs_list}"
                + (f", request(s) {joins} joined" if joins else "")
                + (f", request(s) {leaves} left" if leaves else ""))
        got = ctx.call(model, x, offs, caches)
        ctx.expect_shape(got, (REAL_REQUESTS, 1, a.vocab_size), "logits", case)
        rows = mx.array([r for r, _ in active])
        want = mx.stack([full[r, p] for r, p in active])
        evs.append(ctx.expect_close(
            log_softmax(got[rows, 0]), want, what="log-probs of the active rows", case=case,
            candidates={p: cand(p, i) for p in REAL_MISTAKES}, **REAL_LOGP))
    ev = merge_evidence(evs)
    ev.update({"model": REAL_REPO, "steps": len(schedule), "starts": starts})
    return ev


# --------------------------------------------------------------------------- task 4


CHUNK_PROMPT = "qwen2GoTin9"  # 11 tokens
CHUNK_STEPS = (3, 4, 11, 64)


def _chunking_mistake(calls, ids, step, want_calls) -> str | None:
    """The catalogued mistake that the prefill's model calls show, if any: every chunk at
    offset 0 (chunk-offset-restarts), or chunks that are not the prompt cut into
    prefill_max_step-long pieces -- longer or shorter, tokens skipped or fed twice, a chunk
    fed at another position than where it starts (chunk-boundaries-wrong)."""
    got = [(c["shape"][1], c["offsets"][0]) for c in calls]
    if got != want_calls and [n for n, _ in got] == [n for n, _ in want_calls] and all(
            o == 0 for _, o in got):
        return "chunk-offset-restarts"
    fed, pos, tiled = [], 0, True
    for c in calls:
        tiled = tiled and c["offsets"][0] == pos
        fed += list(c.get("ids") or [])
        pos += c["shape"][1]
    if any(c.get("ids") is None for c in calls):  # not recorded: judge sizes and offsets
        fed = list(ids)
    if got != want_calls or not tiled or fed != list(ids):
        return "chunk-boundaries-wrong"
    return None


def _modelled_prefill(om, ids, step, restart=False):
    """The per-layer cached keys/values and the predicted token after prefilling ``ids``
    in chunks of ``step`` (every chunk at offset 0 when ``restart``)."""
    caches = om.create_kv_cache()
    tok = None
    for s in range(0, len(ids), step):
        chunk = ids[s:s + step]
        logits = om(mx.array([chunk], dtype=mx.int32), 0 if restart else s, caches)
        tok = int(mx.argmax(logits[0, -1]).item())
    return caches, tok


@check("chunked-prefill", 4,
       "Request.try_prefill in chunks: the same cache and first token as a whole prefill",
       symbols=("batch.Request",))
def chunked_prefill(ctx):
    Request = ctx.symbol("batch.Request")
    tok = _tok()
    ids = tok.encode(CHUNK_PROMPT)
    P = len(ids)
    om = OracleQwen2(tiny_model())  # no EOS rule: the first token is the model's own
    want_caches, want_tok = _modelled_prefill(om, ids, P)
    evs = []
    for step in CHUNK_STEPS:
        case = f"prompt of {P} tokens, prefill_max_step={step}"
        om.calls.clear()
        req = ctx.call(Request, om, tok, CHUNK_PROMPT, step, 0)
        chunks = math.ceil(P / step)
        want_calls = [(min(step, P - s), s) for s in range(0, P, step)]
        rets = []
        for n in range(chunks + 2):
            if getattr(req, "is_prefill_done", False):
                break
            rets.append(ctx.call(req.try_prefill))
            done_now = bool(getattr(req, "is_prefill_done", False))
            if n + 1 < chunks and done_now:
                fed = sum(c["shape"][1] for c in om.calls)
                raise CheckFailed(
                    f"[{case}] the prefill reported done after {n + 1} call(s) that fed {fed} "
                    f"of the prompt's {P} tokens; {chunks} chunks of at most {step} tokens "
                    "are needed.", {"case": case, "calls": [c["shape"] for c in om.calls]},
                    # everything fed, in chunks too long: a boundary mistake, not an early end
                    pitfall=("chunk-prefill-ends-early" if fed < P else
                             _chunking_mistake(om.calls, ids, step, want_calls)))
        calls = [dict(c) for c in om.calls]
        ev = {"case": case, "model_calls": [{"tokens": c["shape"][1], "offset": c["offsets"][0]}
                                            for c in calls]}
        if not getattr(req, "is_prefill_done", False):
            raise CheckFailed(f"[{case}] after {len(rets)} calls of try_prefill, "
                              "is_prefill_done is still not True.", ev,
                              # chunks that did not tile the prompt, not merely a flag
                              # never set after the right ones
                              pitfall=None if [(c["shape"][1], c["offsets"][0]) for c in
                                               calls[:len(want_calls)]] == want_calls
                              else _chunking_mistake(calls, ids, step, want_calls))
        # How it was chunked: the model calls the prefill made.
        got_calls = [(c["shape"][1], c["offsets"][0]) for c in calls]
        mistake = _chunking_mistake(calls, ids, step, want_calls)
        if got_calls != want_calls:
            raise CheckFailed(
                f"[{case}] the prefill ran the model on (tokens, offset) = {got_calls}; "
                f"expected {want_calls}: at most prefill_max_step tokens per call, each chunk "
                "starting where the previous one ended.", ev, pitfall=mistake)
        if mistake:
            fed = [t for c in calls for t in (c.get("ids") or [])]
            raise CheckFailed(
                f"[{case}] the prefill's chunks have the right sizes and offsets, but fed the "
                f"tokens {fed}; the prompt is {list(ids)}.", ev, pitfall=mistake)
        # The cache: what every layer holds after the prefill.
        held = [getattr(c, "key_values", None) for c in req.kv_cache]
        if any(h is None for h in held):
            raise CheckFailed(f"[{case}] after the prefill a layer's cache is empty: the "
                              "chunks must go through the model with the request's caches.",
                              ev)
        restarted = _modelled_prefill(om, ids, step, restart=True)[0] if step < P else None
        for layer, (h, w) in enumerate(zip(held, want_caches)):
            for j, what in enumerate(("keys", "values")):
                cand = ({"chunk-offset-restarts": restarted[layer].key_values[j]}
                        if restarted is not None else None)
                evs.append(ctx.expect_close(h[j], w.key_values[j],
                                            what=f"layer {layer} cached {what}", case=case,
                                            rtol=1e-4, atol=1e-4, candidates=cand))
        if req.offset != P:
            # One more: the token the prefill predicted counted as cached before it is fed.
            raise CheckFailed(f"[{case}] after the prefill the request's offset is "
                              f"{req.offset!r}, expected {P} (the prompt's length).", ev,
                              pitfall=("batch-decode-offset-wrong"
                                       if req.offset == P + 1 else None))
        # next_token / generated are the tutor's stub's bookkeeping; a solution written
        # for the book's own batch.py may keep other names, so judge what is there.
        nt = getattr(req, "next_token", want_tok)
        nt = int(nt.item()) if isinstance(nt, mx.array) else nt
        gen = [int(t.item()) if isinstance(t, mx.array) else t
               for t in getattr(req, "generated", [want_tok])]
        if nt != want_tok or gen != [want_tok] or getattr(req, "is_done", False):
            raise CheckFailed(
                f"[{case}] after the prefill next_token is {nt!r} and generated is {gen!r}; "
                f"expected {want_tok} and [{want_tok}] (the prediction of the last chunk, "
                "recorded with decode_done(token, update_offset=False)).", ev,
                pitfall=("batch-prefill-token-dropped"
                         if nt == want_tok and gen == [] and not getattr(req, "is_done", False)
                         else "batch-next-token-wrong-position"
                         if nt != want_tok and calls and calls[-1]["shape"][1] > 1
                         and nt == calls[-1]["picked_first"][0]
                         else None))
        bools = [r for r in rets if isinstance(r, bool)]
        if bools and bools != [False] * (len(rets) - 1) + [True]:
            raise CheckFailed(f"[{case}] try_prefill returned {rets}; it should return "
                              "False until the last chunk and True then.", ev)
    return merge_evidence(evs)
