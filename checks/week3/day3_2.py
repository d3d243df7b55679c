"""Day 3.2 -- batch metadata (block tables, context lengths), paged attention, the week-3
model's paged dispatch, continuous batching over pages.

Oracles: the block table is read back the way a kernel reads it, in numpy (``gather_rows``:
each row's pages in logical order, cut at its context length), and compared with the keys
and values the checks wrote; ``paged_attention`` is compared with
``mx.fast.scaled_dot_product_attention`` on the keys and values the checks gather from the
same pages themselves (``paged_oracle``); the week-3 model with mlx_lm's Qwen2 forward pass
on a tiny random model (``tiny_w2``, as in week 2); the scheduler with each prompt
generated alone by ``OracleQwen2`` (week 2's serving oracle).

Isolation: paged-metadata and batch-paged-metadata use the learner's pool and caches (day
3.1) and read only metadata. paged-attention feeds the learner's ``paged_attention``
page storage the checks build themselves (shuffled page ids, garbage in every unused slot),
so it tests the wrapper and the kernel alone. The model checks run the learner's
``Qwen2ModelWeek3`` on its own caches. paged-batch-generate drives the learner's
``batch_generate`` with ``PagedOracleQwen2``: mlx_lm's weights whose attention reads the
metadata of the learner's ``BatchingKvCache.update_and_fetch_paged`` (gathered by the
checks, attended by MLX), over the learner's paged caches and pool; so it tests the
scheduler, the batch metadata and the page bookkeeping, not the learner's kernel.

The no-gather tripwire (paged-model-no-gather) is honest in this sense: while a call of the
learner's model runs (the wires are armed only inside ``Qwen2ModelWeek3.__call__``; setting
up caches and batch slots around it is not watched), neither the dense read paths of the
learner's own classes (``TinyKvPagedCache.update_and_fetch``/``gather_dense``/``key_values``,
``TinyKvPagedPool.read_page``, ``BatchingKvCache.update_and_fetch``) nor the dense attention
of earlier days (``scaled_dot_product_attention_grouped``/``_simple``, ``flash_attention``,
wherever the learner's modules look them up) may be called, and ``paged_attention`` must be
called once per layer with the pool's whole page storage and a block table. A scheduler
that gathers for its own bookkeeping after a prefill chunk (the book's does) is not held to
this: only the model's call is watched. Code that gathers pages by hand and attends with
an attention of its own is not caught by the wires; the storage check (the kernel gets
(P, H, page_size, D) pages, not a dense (1, H, S, D) history) and paged-attention's
forbidding MLX's fused attention narrow that route.

Tolerances: paged-attention is float32 against float32 (the harness's defaults). The model
checks compare float16 log-probs with mlx_lm in float32 as week 2 does (``MODEL_LOGP``).

Mistakes are modelled oracle-side: the causal mask aligned top-left, kv head h mod H, the
unused tail slots of last pages attended, logical page i read from physical page i, the
scale ignored; block-table padding, context lengths read before the append, empty slots
dropped, rows taken from the wrong slot are named from the metadata itself; the int offset
wrapped into one slice by a probe (the same calls with a list of offsets), and the
end-of-sequence-at-prefill crash and page leak by probes (the same run without that prompt);
a loop that ends while a prompt is still in its chunked prefill, from a run of one prompt
longer than prefill_step (nothing came back, no decode step ran, the chunks stopped short).
"""

from __future__ import annotations

import contextlib
import io

import mlx.core as mx
import numpy as np

from ..harness import (
    CheckFailed,
    Skip,
    check,
    measure,
    merge_evidence,
    outside_learner,
    to_np,
)
from ..week2.day2_6 import GEN_PROMPTS, LONE_PROMPT, _references, _tok, lone_prompt_run
from ..week2.probes import crashed, with_probe
from ..week2.serving_oracle import EosRule, OracleQwen2, log_softmax, tiny_model
from ..week2.w2_oracle import tiny_w2

F32 = mx.float32
# The learner's model (float16, int4 weights) against mlx_lm in float32 on the same
# float16-representable weights, as in week 2.
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------- oracles


def gather_rows(pages, table, lens, page_size: int, *, tail: bool = False,
                ignore_table: bool = False) -> list[np.ndarray]:
    """Per row b, the (H, S_b, D) data the block table lists, in logical order, cut at
    ``lens[b]`` -- the way a kernel walks it. ``tail`` keeps the whole last page (the
    mistake of reading past the context length); ``ignore_table`` reads logical page i from
    physical page i."""
    pages, table = np.asarray(to_np(pages)), np.asarray(to_np(table))
    out = []
    for b, n in enumerate(int(x) for x in lens):
        need = _ceil_div(n, page_size)
        ids = list(range(need)) if ignore_table else [int(x) for x in table[b, :need]]
        if not ids:
            out.append(np.zeros((pages.shape[1], 0, pages.shape[3]), dtype=pages.dtype))
            continue
        data = np.concatenate([pages[i] for i in ids], axis=1)
        out.append(data if tail else data[:, :n])
    return out


def _attend_row(q, k, v, scale, causal, top_left=False, gqa_mod=False):
    """mx.fast.scaled_dot_product_attention for one row: q (H_q, L, D), k/v (H, S, D)."""
    Hq, L, _ = q.shape
    H, S, _ = k.shape
    if gqa_mod:  # every query head its own copy of kv head h mod H
        idx = [h % H for h in range(Hq)]
        k, v = k[idx], v[idx]
    mask = None
    if causal and L > 1 or top_left:
        i, j = np.arange(L)[:, None], np.arange(S)[None, :]
        limit = i if top_left else S - L + i
        mask = mx.array(np.where(j <= limit, 0.0, -np.inf).astype(np.float32))
    out = mx.fast.scaled_dot_product_attention(
        mx.array(q, dtype=F32)[None], mx.array(k, dtype=F32)[None], mx.array(v, dtype=F32)[None],
        scale=float(scale), mask=mask)
    return np.asarray(out[0])


def paged_oracle(q, key_pages, value_pages, table, lens, page_size, scale=None,
                 causal=True, *, mistake: str | None = None) -> np.ndarray:
    """(B, H_q, L, D) attention of every row with a context (rows of length 0 stay zero),
    over keys and values gathered through the block table. ``mistake`` models one:
    "top-left", "gqa-mod", "tail", "table-ignored", "scale-default", "no-causal"."""
    q = np.asarray(to_np(q), dtype=np.float32)
    causal = causal and mistake != "no-causal"
    B, Hq, L, D = q.shape
    s = 1.0 / np.sqrt(D) if scale is None or mistake == "scale-default" else scale
    ks = gather_rows(key_pages, table, lens, page_size, tail=mistake == "tail",
                     ignore_table=mistake == "table-ignored")
    vs = gather_rows(value_pages, table, lens, page_size, tail=mistake == "tail",
                     ignore_table=mistake == "table-ignored")
    out = np.zeros((B, Hq, L, D), dtype=np.float32)
    for b in range(B):
        if ks[b].shape[1] == 0:
            continue
        out[b] = _attend_row(q[b], ks[b], vs[b], s, causal, top_left=mistake == "top-left"
                             and causal, gqa_mod=mistake == "gqa-mod")
    return out


def make_pages(seed: int, B: int, Hq: int, H: int, L: int, D: int, page_size: int,
               lens: list[int], extra_width: int = 0):
    """Query (B, H_q, L, D), key/value pages (P, H, page_size, D) full of random data (the
    unused slots too, like pages an earlier request left behind), and a block table
    (B, max_pages + extra_width) whose page ids are a shuffled pick from the pool, -1 after
    each row's pages. A row of length 0 is an empty slot (all -1)."""
    rng = np.random.default_rng(seed)
    need = [_ceil_div(n, page_size) for n in lens]
    P = sum(need) + 3  # spare pages hold garbage too
    perm = rng.permutation(P)
    table = -np.ones((B, max(need) + extra_width), dtype=np.int32)
    at = 0
    for b, n in enumerate(need):
        table[b, :n] = perm[at:at + n]
        at += n
    q = rng.standard_normal((B, Hq, L, D)).astype(np.float32)
    kp = rng.standard_normal((P, H, page_size, D)).astype(np.float32)
    vp = rng.standard_normal((P, H, page_size, D)).astype(np.float32)
    return (mx.array(q), mx.array(kp), mx.array(vp), mx.array(table),
            mx.array(np.array(lens, dtype=np.int32)))


# --------------------------------------------------------------------------- task 1


def _kv(rng, H, L, D):
    return (mx.array(rng.standard_normal((1, H, L, D)).astype(np.float32)),
            mx.array(rng.standard_normal((1, H, L, D)).astype(np.float32)))


def _meta_arrays(ctx, meta, case):
    """The metadata's fields as numpy, with its types checked."""
    for field in ("key_pages", "value_pages", "block_table", "context_lens", "page_size"):
        if not hasattr(meta, field):
            ctx.fail(f"[{case}] the metadata returned has no `{field}`; expected a "
                     "PagedKvMetadata.", {"case": case, "type": type(meta).__name__})
    table, lens = meta.block_table, meta.context_lens
    for name, arr in (("block_table", table), ("context_lens", lens)):
        if not isinstance(arr, mx.array) or arr.dtype != mx.int32:
            ctx.fail(f"[{case}] {name} is {getattr(arr, 'dtype', type(arr).__name__)}; "
                     "expected an int32 mx.array (the kernel reads it as int32).",
                     {"case": case, name: str(getattr(arr, "dtype", type(arr).__name__))})
    return np.asarray(to_np(table)), np.asarray(to_np(lens)).reshape(-1)


def _verify_rows(ctx, meta, hists: list, page_size: int, L: int, case: str, mask="causal"):
    """Check a PagedKvMetadata against what each slot holds: ``hists[b]`` is the list of
    (k, v) chunks slot b was given (None for an empty slot)."""
    table, lens = _meta_arrays(ctx, meta, case)
    B = len(hists)
    want_lens = [0 if h is None else sum(int(k.shape[2]) for k, _ in h) for h in hists]
    need = [_ceil_div(n, page_size) for n in want_lens]
    ev = {"case": case, "block_table": table.tolist(), "context_lens": lens.tolist(),
          "expected_context_lens": want_lens}
    if table.ndim != 2 or table.shape[0] != B or lens.shape != (B,):
        active = sum(h is not None for h in hists)
        ctx.fail(f"[{case}] block_table has shape {tuple(table.shape)} and context_lens "
                 f"{tuple(lens.shape)}; expected ({B}, max_pages) and ({B},): one row per "
                 "slot.", ev, pitfall="paged-empty-slot-row" if active < B and (
                     table.shape[:1] == (active,) or lens.shape == (active,)) else None)
    if table.shape[1] < max(need):
        ctx.fail(f"[{case}] block_table is {table.shape[1]} pages wide, but a row needs "
                 f"{max(need)} pages for {max(want_lens)} positions (page_size {page_size}).", ev)
    occupied = [b for b in range(B) if hists[b] is not None]
    stale = [b for b in occupied if lens[b] == want_lens[b] - L]
    if lens.tolist() != want_lens:
        pit = None
        if L and stale and len(stale) == len(occupied):
            pit = "paged-context-lens-stale"
        elif any(lens[b] != 0 for b in range(B) if hists[b] is None):
            pit = "paged-empty-slot-row"
        ctx.fail(f"[{case}] context_lens are {lens.tolist()}, expected {want_lens} (after "
                 f"this step's {L} new positions were appended; 0 for an empty slot).", ev,
                 pitfall=pit)
    for b in occupied:
        pad = table[b, need[b]:]
        if np.any(pad != -1):
            ctx.fail(f"[{case}] row {b} holds {want_lens[b]} positions in {need[b]} pages, but "
                     f"its block table row is {table[b].tolist()}: every entry after its pages "
                     "should be -1.", ev,
                     pitfall="paged-table-pad-zero" if np.all(pad >= 0) else None)
    for b in range(B):
        if hists[b] is None and np.any(table[b] != -1):
            ctx.fail(f"[{case}] slot {b} is empty, but its block table row is "
                     f"{table[b].tolist()}; expected all -1.", ev, pitfall="paged-empty-slot-row")
    ids = table[table >= 0]
    if len(set(ids.tolist())) != ids.size:
        ctx.fail(f"[{case}] the block table lists a page twice: {table.tolist()}. Every live "
                 "page belongs to one request's cache.", ev, pitfall="paged-slot-rows-mixed")
    if int(meta.page_size) != page_size:
        ctx.fail(f"[{case}] page_size is {meta.page_size}, expected {page_size}.", ev)
    if mask is not None and not (isinstance(meta.mask, str) and meta.mask == mask):
        ctx.fail(f"[{case}] the metadata's mask is {meta.mask!r}; expected the mask passed "
                 f"in ({mask!r}).", ev)
    kp = np.asarray(to_np(meta.key_pages))
    if kp.ndim != 4 or kp.shape[2] != page_size:
        ctx.fail(f"[{case}] key_pages has shape {tuple(kp.shape)}; expected the pool's "
                 f"storage (P, H, {page_size}, D).", ev)
    keys = gather_rows(meta.key_pages, table, want_lens, page_size)
    values = gather_rows(meta.value_pages, table, want_lens, page_size)
    evs = []
    for b in occupied:
        want_k = np.concatenate([np.asarray(to_np(k))[0] for k, _ in hists[b]], axis=1)
        want_v = np.concatenate([np.asarray(to_np(v))[0] for _, v in hists[b]], axis=1)
        for j, (what, got, want) in enumerate((("keys", keys[b], want_k),
                                               ("values", values[b], want_v))):
            evs.append(ctx.expect_close(
                mx.array(got), mx.array(want), what=f"row {b}'s {what} read through the "
                "block table", case=case,
                candidates={"paged-slot-rows-mixed": _mixed_rows(hists, b, occupied, j, L)}))
    return merge_evidence(evs) if evs else ev


def _mixed_rows(hists, b, occupied, j, L) -> list:
    """Slot b's data (keys j=0, values j=1) as the mistake of mixing slots would leave it:
    another slot's whole history of the same length, or its own history whose newest chunk
    (this step's row) came from another slot."""
    def cat(chunks):
        return mx.array(np.concatenate([np.asarray(to_np(t[j]))[0] for t in chunks], axis=1))

    n = sum(int(k.shape[2]) for k, _ in hists[b])
    out = []
    for c in occupied:
        if c == b:
            continue
        if sum(int(k.shape[2]) for k, _ in hists[c]) == n:
            out.append(cat(hists[c]))
        if L:
            out.append(cat(hists[b][:-1] + [hists[c][-1]]))
    return out


@check("paged-metadata", 1, "a paged cache describes itself with a block table and its length",
       symbols=("paged_kv_cache.TinyKvPagedCache",))
def paged_metadata(ctx):
    Pool = ctx.symbol("paged_kv_cache.TinyKvPagedPool")
    Cache = ctx.symbol("paged_kv_cache.TinyKvPagedCache")
    rng = np.random.default_rng(3201)
    H, D, ps = 2, 8, 4
    pool = ctx.call(Pool, page_size=ps)
    a, b, c = (ctx.call(Cache, pool) for _ in range(3))
    hist = {id(a): [], id(b): []}

    def write(cache, L):
        k, v = _kv(rng, H, L, D)
        ctx.call(cache.update_and_fetch, k, v)
        if id(cache) in hist:
            hist[id(cache)].append((k, v))

    # Interleaved writes and a release: a's pages are neither contiguous nor in order.
    write(c, 5)
    write(a, 3)
    write(b, 6)
    ctx.call(c.release)
    write(a, 2)
    write(b, 1)
    evs = []
    for name, cache, L in (("a", a, 5), ("b", b, 1), ("a", a, 4)):
        k, v = _kv(rng, H, L, D)
        hist[id(cache)].append((k, v))
        n = sum(int(x.shape[2]) for x, _ in hist[id(cache)])
        case = (f"page_size {ps}, cache {name} after writes interleaved with another cache and "
                f"a release, update_and_fetch_paged of {L} -> {n} positions")
        meta = ctx.call(cache.update_and_fetch_paged, k, v, mask_length=L, mask="causal")
        evs.append(_verify_rows(ctx, meta, [hist[id(cache)]], ps, L, case))
        wide = _ceil_div(n, ps) + 2
        case_w = f"{case}; block_table(max_pages={wide})"
        table = ctx.call(cache.block_table, max_pages=wide)
        t = np.asarray(to_np(table))
        if t.shape != (1, wide) or getattr(table, "dtype", None) != mx.int32:
            ctx.fail(f"[{case_w}] got shape {tuple(t.shape)} {getattr(table, 'dtype', '')}; "
                     f"expected (1, {wide}) int32.", {"case": case_w})
        meta_t = np.asarray(to_np(meta.block_table))
        need = _ceil_div(n, ps)
        if t[0, :need].tolist() != meta_t[0, :need].tolist() or np.any(t[0, need:] != -1):
            ctx.fail(f"[{case_w}] got {t.tolist()}: expected the cache's {need} page ids, then "
                     "-1 up to max_pages.", {"case": case_w, "block_table": t.tolist()},
                     pitfall="paged-table-pad-zero" if np.all(t[0, need:] >= 0) else None)
        lens = np.asarray(to_np(ctx.call(cache.context_lens))).reshape(-1).tolist()
        if lens != [n]:
            ctx.fail(f"[{case}] context_lens() is {lens}, expected [{n}].", {"case": case})
        meta2 = ctx.call(cache.paged_metadata, max_pages=wide, mask=None)
        evs.append(_verify_rows(ctx, meta2, [hist[id(cache)]], ps, 0,
                                f"{case}; paged_metadata(max_pages={wide})", mask=None))
    return merge_evidence(evs)


def _fill(ctx, Cache, pool, rng, H, D, plan):
    """Caches written in interleaved chunks: plan is a list of (cache index, length)."""
    n = 1 + max(i for i, _ in plan)
    caches = [ctx.call(Cache, pool) for _ in range(n)]
    hists = [[] for _ in range(n)]
    for i, L in plan:
        k, v = _kv(rng, H, L, D)
        ctx.call(caches[i].update_and_fetch, k, v)
        hists[i].append((k, v))
    return caches, hists


@check("batch-paged-metadata", 1,
       "the batching cache lays its slots' pages out as one block table",
       symbols=("kv_cache.BatchingKvCache",))
def batch_paged_metadata(ctx):
    Pool = ctx.symbol("paged_kv_cache.TinyKvPagedPool")
    Cache = ctx.symbol("paged_kv_cache.TinyKvPagedCache")
    Batching = ctx.symbol("kv_cache.BatchingKvCache")
    Full = ctx.symbol("kv_cache.TinyKvFullCache")
    rng = np.random.default_rng(3202)
    H, D, ps, B = 2, 8, 4, 4
    pool = ctx.call(Pool, page_size=ps)
    # Lengths 9, 3 and 14 after interleaved chunks; slot 2 stays empty.
    caches, hists = _fill(ctx, Cache, pool, rng, H, D,
                          [(2, 5), (0, 4), (1, 3), (2, 4), (0, 5), (2, 5)])
    batch = ctx.call(Batching, B, 64)
    slots = {0: 0, 1: 1, 3: 2}
    for slot, i in slots.items():
        ctx.call(batch.add_request, caches[i], slot)
    slot_hists: list = [None] * B
    for slot, i in slots.items():
        slot_hists[slot] = hists[i]
    evs = []

    def step(L, label):
        keys = mx.array(rng.standard_normal((B, H, L, D)).astype(np.float32))
        values = mx.array(rng.standard_normal((B, H, L, D)).astype(np.float32))
        for s in range(B):
            if slot_hists[s] is not None:
                slot_hists[s].append((keys[s:s + 1], values[s:s + 1]))
        lens = [0 if h is None else sum(int(k.shape[2]) for k, _ in h) for h in slot_hists]
        case = (f"BatchingKvCache({B} slots), page_size {ps}, {label}: {L} new position(s) per "
                f"slot, slot lengths after it {lens} (0 = empty slot)")
        meta = ctx.call(batch.update_and_fetch_paged, keys, values, mask_length=L, mask="causal")
        evs.append(_verify_rows(ctx, meta, slot_hists, ps, L, case))

    step(1, "a decode step")
    step(3, "a step of 3 positions")
    ctx.call(batch.remove_request, 1)
    slot_hists[1] = None
    step(1, "a decode step after slot 1 left")

    # Every slot must hold a paged cache drawing from the one pool.
    for label, bad in (("a TinyKvFullCache in a slot", lambda: ctx.call(Full)),
                       ("a paged cache on another pool",
                        lambda: ctx.call(Cache, ctx.call(Pool, page_size=ps)))):
        other = ctx.call(Batching, 2, 64)
        first = ctx.call(Cache, pool)
        k, v = _kv(rng, H, 2, D)
        ctx.call(first.update_and_fetch, k, v)
        ctx.call(other.add_request, first, 0)
        second = bad()
        ctx.call(second.update_and_fetch, k, v)
        ctx.call(other.add_request, second, 1)
        keys = mx.array(rng.standard_normal((2, H, 1, D)).astype(np.float32))
        try:
            with outside_learner():
                other.update_and_fetch_paged(keys, keys, mask_length=1, mask="causal")
        except Exception:  # noqa: BLE001 - refusing is what is asked
            continue
        ctx.fail(f"BatchingKvCache.update_and_fetch_paged with {label} returned metadata. One "
                 "block table can only describe pages of one pool: it should raise an error "
                 "saying so.", {"case": label})
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


# (B, H_q, H, L, D, page_size, context lengths, causal, scale, extra block-table width)
PA_CASES = [
    (4, 4, 2, 1, 16, 4, [7, 0, 12, 3], True, None, 0),      # decode, ragged, an empty slot
    (1, 4, 1, 5, 32, 8, [13], True, None, 0),               # prefill chunk, 4 heads per kv head
    (3, 6, 3, 3, 16, 5, [3, 11, 20], True, 0.3, 2),         # ragged prefill, a scale, wide table
    (2, 2, 2, 2, 8, 4, [6, 9], False, None, 3),             # not causal
    (3, 8, 2, 1, 64, 16, [33, 16, 1], False, 0.125, 0),     # decode, page_size 16
]
PA_MISTAKES = {"paged-causal-top-left": "top-left", "paged-gqa-head-mapping": "gqa-mod",
               "paged-tail-slots-read": "tail", "paged-block-table-ignored": "table-ignored",
               "paged-scale-ignored": "scale-default", "paged-causal-ignored": "no-causal"}


def _paged_case(ctx, fn, seed, B, Hq, H, L, D, ps, lens, causal, scale, extra):
    q, kp, vp, table, cl = make_pages(seed, B, Hq, H, L, D, ps, lens, extra)
    mask = "causal" if causal else None
    kw = {} if scale is None else {"scale": scale}
    case = (f"query (B, H_q, L, D) = {(B, Hq, L, D)}, {H} kv heads, page_size {ps}, "
            f"context_lens {lens}, block table {tuple(table.shape)} with shuffled page ids "
            f"and -1 padding, mask={mask!r}, scale={scale}")
    got = ctx.call(fn, q, kp, vp, table, cl, ps, mask=mask, **kw)
    ctx.expect_shape(got, (B, Hq, L, D), case=case)
    active = [b for b in range(B) if lens[b] > 0]
    want = paged_oracle(q, kp, vp, table, lens, ps, scale, causal)
    g = np.asarray(to_np(got), dtype=np.float32)[active]
    if not np.all(np.isfinite(g)):
        ctx.fail(f"[{case}] the output of a request with a context holds NaN or inf.",
                 {"case": case})
    cands = {pit: (lambda m=m: mx.array(paged_oracle(q, kp, vp, table, lens, ps, scale,
                                                     causal, mistake=m)[active]))
             for pit, m in PA_MISTAKES.items()}
    return ctx.expect_close(mx.array(g), mx.array(want[active]), case=case,
                            candidates=cands, axes=("row", "query head", "query", "dim"))


@check("paged-attention", 2,
       "paged_attention matches attention on the keys and values its block table lists",
       forbid=("mx.fast.scaled_dot_product_attention",), symbols=("paged_attention",))
def paged_attention_check(ctx):
    fn = ctx.symbol("paged_attention")

    def scenario(variant):
        evs = []
        for i, (B, Hq, H, L, D, ps, lens, causal, scale, extra) in enumerate(PA_CASES):
            if variant == "no-groups":  # the probe: one query head per kv head
                Hq = H
            evs.append(_paged_case(ctx, fn, 3210 + i, B, Hq, H, L, D, ps, lens, causal, scale,
                                   extra))
        return evs

    # A failure no modelled mistake explains, where the same cases with as many query heads
    # as kv heads are right, is in the grouping of query heads (a crash included).
    evs = with_probe(scenario, [(
        "no-groups", "paged-gqa-head-mapping", lambda exc: True,
        "The same cases with as many query heads as kv heads (no grouping) run and are "
        "right.")])
    # Only None and "causal" are supported: an array mask must be refused, not ignored
    # (ignoring it attends where the caller said not to).
    q, kp, vp, table, cl = make_pages(3219, 1, 2, 2, 2, 8, 4, [6])
    try:
        with outside_learner():
            mx.eval(fn(q, kp, vp, table, cl, 4, mask=mx.zeros((2, 6), dtype=F32)))
    except Exception:  # noqa: BLE001 - refusing is what is asked
        return merge_evidence(evs)
    ctx.fail("paged_attention returned a result for an array mask of shape (2, 6). It "
             "supports mask=None and mask=\"causal\" only; any other mask should raise, "
             "since ignoring it would attend to keys the caller masked out.",
             {"case": "mask = an (L, S) array"})


# --------------------------------------------------------------------------- task 3


def _week3(ctx, seed: int, page_size: int = 4):
    Model = ctx.symbol("qwen2_week3.Qwen2ModelWeek3")
    oracle, given = tiny_w2(seed, tied=False)
    model = ctx.call(Model, given, page_size=page_size)
    return model, oracle


def _rand_ids(rng, V, L):
    return mx.array(rng.integers(0, V, (1, L)).astype(np.int32))


def _expect_logp(ctx, got, want, case):
    return ctx.expect_close(log_softmax(got), log_softmax(want), what="log-probs", case=case,
                            **MODEL_LOGP)


def _single_request(ctx, model, oracle, rng, V):
    """Prefill 6 tokens at offset 0, then 3 decode steps at int offsets."""
    ids = _rand_ids(rng, V, 6)
    caches = ctx.call(model.create_kv_cache)
    evs = [_expect_logp(ctx, ctx.call(model, ids, 0, caches), oracle(ids),
                        "one request, prefill of 6 tokens at offset 0, page_size 4")]
    for step in range(3):
        nxt = _rand_ids(rng, V, 1)
        off = ids.shape[1]
        ids = mx.concatenate([ids, nxt], axis=1)
        got = ctx.call(model, nxt, off, caches)
        evs.append(_expect_logp(ctx, got[:, -1], oracle(ids)[:, -1],
                                f"one request, decode step {step + 1} at offset {off}"))
    return evs


def _batched_decode(ctx, model, oracle, rng, V, lengths=(5, 9, None, 2)):
    """Prompts prefilled alone, then decode steps of all slots through the learner's
    BatchingKvCache (slot 2 empty), offsets as a list and then as an mx.array."""
    Batching = ctx.symbol("kv_cache.BatchingKvCache")
    n_layers = oracle.args.num_hidden_layers
    B = len(lengths)
    seqs = [None if n is None else _rand_ids(rng, V, n) for n in lengths]
    batch = [ctx.call(Batching, B, 64) for _ in range(n_layers)]
    for s, ids in enumerate(seqs):
        if ids is None:
            continue
        caches = ctx.call(model.create_kv_cache)
        ctx.call(model, ids, 0, caches)
        for layer, c in zip(batch, caches):
            ctx.call(layer.add_request, c, s)
    evs = []
    for step, form in enumerate(("a list", "an mx.array")):
        nxt = mx.array(rng.integers(0, V, (B, 1)).astype(np.int32))
        offs = [0 if x is None else x.shape[1] for x in seqs]
        got = ctx.call(model, nxt, offs if step == 0 else mx.array(offs, dtype=mx.int32), batch)
        case = (f"decode step {step + 1} of {B} slots (slot 2 empty) with offsets {offs} as "
                f"{form}, through your BatchingKvCache, page_size 4")
        for s, ids in enumerate(seqs):
            if ids is None:
                continue
            seqs[s] = mx.concatenate([ids, nxt[s:s + 1]], axis=1)
            evs.append(_expect_logp(ctx, got[s:s + 1, -1], oracle(seqs[s])[:, -1],
                                    f"{case}, row {s}"))
    return evs


def _int_offset_batch(ctx, model, oracle, rng, V, variant):
    """Two requests of the same length prefilled together as one batch of two rows through
    the learner's BatchingKvCache, the offset given as one int (or, in the probe, a list)."""
    Batching = ctx.symbol("kv_cache.BatchingKvCache")
    ids = mx.array(rng.integers(0, V, (2, 4)).astype(np.int32))
    batch = []
    for _ in range(oracle.args.num_hidden_layers):
        layer = ctx.call(Batching, 2, 64)
        for s in range(2):
            ctx.call(layer.add_request, ctx.call(model.create_kv_cache)[0], s)
        batch.append(layer)
    offset = [0, 0] if variant == "list-offsets" else 0
    got = ctx.call(model, ids, offset, batch)
    case = f"a batch of 2 new requests prefilled together (4 tokens each), offset {offset!r}"
    return [_expect_logp(ctx, got[r:r + 1], oracle(ids[r:r + 1]), f"{case}, row {r}")
            for r in range(2)]


INT_OFFSET_PROBE = [("list-offsets", "paged-int-offset-one-slice", crashed,
                     "The same batch with the offset given as a list of 2 ints (one per row) "
                     "runs and is right.")]


@check("paged-model", 3, "the week-3 model matches Qwen2 for one request and for a batch",
       symbols=("qwen2_week3.Qwen2ModelWeek3",))
def paged_model(ctx):
    model, oracle = _week3(ctx, 3230)
    V = oracle.args.vocab_size
    rng = np.random.default_rng(3230)
    evs = _single_request(ctx, model, oracle, rng, V)
    evs += _batched_decode(ctx, model, oracle, rng, V)

    def scenario(variant):
        m, o = _week3(ctx, 3231)
        return _int_offset_batch(ctx, m, o, np.random.default_rng(3231), V, variant)

    evs += with_probe(scenario, INT_OFFSET_PROBE)
    return merge_evidence(evs)


_INHERITED = object()  # an attribute the class only inherits: undone by deleting it


class _Wires:
    """While active, counts calls of the learner's dense read paths and of paged_attention
    (wrapped where the learner's modules look it up)."""

    DENSE = (("paged_kv_cache.TinyKvPagedCache", ("update_and_fetch", "gather_dense",
                                                  "key_values")),
             ("paged_kv_cache.TinyKvPagedPool", ("read_page",)),
             ("kv_cache.BatchingKvCache", ("update_and_fetch",)))
    DENSE_ATTENTION = ("scaled_dot_product_attention_grouped",
                       "scaled_dot_product_attention_simple", "flash_attention")

    def __init__(self, ctx):
        self.ctx = ctx
        self.dense: list[str] = []
        self.paged: list[dict] = []
        self._undo: list = []
        self._armed = 0  # inside a call of the learner's model

    def __enter__(self):
        model_cls = self.ctx.symbol("qwen2_week3.Qwen2ModelWeek3")
        orig_call = getattr(model_cls, "__call__", None)
        if orig_call is not None:
            wires = self

            def armed(*args, **kwargs):
                wires._armed += 1
                try:
                    return orig_call(*args, **kwargs)
                finally:
                    wires._armed -= 1

            own = model_cls.__dict__.get("__call__", _INHERITED)
            model_cls.__call__ = armed
            self._undo.append((model_cls, "__call__", own))
        for dotted, names in self.DENSE:
            cls = self.ctx.symbol(dotted)
            for name in names:
                orig = cls.__dict__.get(name)
                if orig is None:
                    continue
                label = f"{dotted.split('.')[-1]}.{name}"
                if isinstance(orig, property):
                    wrapped = property(self._wrap(orig.fget, label))
                else:
                    wrapped = self._wrap(orig, label)
                setattr(cls, name, wrapped)
                self._undo.append((cls, name, orig))
        impl = self.ctx.impl
        mods = [impl] + [getattr(impl, m, None) for m in ("attention", "qwen2_week2",
                                                         "qwen2_week3")]
        # Dense attention of earlier days: reaching it from the week-3 model means a
        # dense copy of the keys and values was made somewhere, whoever made it.
        for name in self.DENSE_ATTENTION:
            orig = getattr(getattr(impl, "attention", None), name, None)
            if orig is None:
                continue
            wrapped = self._wrap(orig, f"attention.{name}")
            for mod in mods:
                if mod is not None and getattr(mod, name, None) is orig:
                    setattr(mod, name, wrapped)
                    self._undo.append((mod, name, orig))
        orig_pa = getattr(getattr(impl, "attention", None), "paged_attention", None)
        for mod in mods:
            if mod is not None and getattr(mod, "paged_attention", None) is orig_pa and orig_pa:
                setattr(mod, "paged_attention", self._wrap_pa(orig_pa))
                self._undo.append((mod, "paged_attention", orig_pa))
        return self

    def __exit__(self, *exc):
        for obj, name, orig in reversed(self._undo):
            if orig is _INHERITED:
                delattr(obj, name)
            else:
                setattr(obj, name, orig)
        return False

    def _wrap(self, fn, label):
        wires = self

        def wire(*args, **kwargs):
            if wires._armed:  # only the model's own call is held to this
                wires.dense.append(label)
            return fn(*args, **kwargs)

        return wire

    def _wrap_pa(self, fn):
        wires = self

        def wire(query, key_pages, value_pages, block_table, context_lens, *args, **kwargs):
            if wires._armed:
                    wires.paged.append({"query": tuple(query.shape),
                                    "key_pages": tuple(key_pages.shape),
                                    "block_table": tuple(block_table.shape)})
            return fn(query, key_pages, value_pages, block_table, context_lens, *args, **kwargs)

        return wire


@check("paged-model-no-gather", 3,
       "the week-3 attention reads pages through paged_attention, never a dense copy",
       symbols=("qwen2_week3.Qwen2ModelWeek3",))
def paged_model_no_gather(ctx):
    model, oracle = _week3(ctx, 3232)
    V, n_layers = oracle.args.vocab_size, oracle.args.num_hidden_layers
    Hq, H = oracle.args.num_attention_heads, oracle.args.num_key_value_heads
    D = oracle.args.hidden_size // Hq
    rng = np.random.default_rng(3232)
    runs = []
    with _Wires(ctx) as wires:
        evs = _single_request(ctx, model, oracle, rng, V)
        runs.append(("one request, a prefill and 3 decode steps", 4))
        evs += _batched_decode(ctx, model, oracle, rng, V)
        runs.append(("3 prefills and 2 batched decode steps", 5))
    ev = merge_evidence(evs)
    calls = sum(n for _, n in runs)
    ev.update({"dense_reads": sorted(set(wires.dense)), "paged_attention_calls": len(wires.paged),
               "model_calls": calls})
    if wires.dense:
        ctx.fail(f"While your week-3 model ran ({'; '.join(r for r, _ in runs)}), the cache's "
                 f"dense read path was used: {', '.join(sorted(set(wires.dense)))}. The output is "
                 "right, but each such call copies the whole history out of the pages, which "
                 "is the cost paged attention removes.", ev, pitfall="paged-model-dense-fallback")
    if len(wires.paged) != calls * n_layers:
        ctx.fail(f"Your week-3 model called paged_attention {len(wires.paged)} times in {calls} "
                 f"model calls of {n_layers} layers; expected once per layer and call.", ev,
                 pitfall="paged-model-dense-fallback" if not wires.paged else None)
    bad = [c for c in wires.paged if len(c["key_pages"]) != 4
           or tuple(c["key_pages"][1:]) != (H, model_page_size(model), D)]
    if bad:
        ctx.fail(f"paged_attention was given key pages of shape {bad[0]['key_pages']}; expected "
                 f"the pool's storage (P, {H}, page_size, {D}), not a gathered copy.", ev,
                 pitfall="paged-model-dense-fallback")
    return ev


def model_page_size(model) -> int:
    return int(getattr(model, "page_size", 4))


@check("paged-model-dense-cache", 3, "the week-3 model refuses a dense cache",
       symbols=("qwen2_week3.Qwen2ModelWeek3",))
def paged_model_dense_cache(ctx):
    model, oracle = _week3(ctx, 3233)
    Full = ctx.symbol("kv_cache.TinyKvFullCache")
    Batching = ctx.symbol("kv_cache.BatchingKvCache")
    n_layers = oracle.args.num_hidden_layers
    ids = mx.array([[3, 1, 4]], dtype=mx.int32)
    # First the model must work on its own caches (so a stub cannot pass by raising).
    _expect_logp(ctx, ctx.call(model, ids, 0, ctx.call(model.create_kv_cache)), oracle(ids),
                 "one request, prefill of 3 tokens on the model's own caches")

    def dense_batch():
        layers = []
        for _ in range(n_layers):
            b = ctx.call(Batching, 1, 64)
            ctx.call(b.add_request, ctx.call(Full), 0)
            layers.append(b)
        return layers

    for label, make in (("a TinyKvFullCache per layer",
                         lambda: [ctx.call(Full) for _ in range(n_layers)]),
                        ("a BatchingKvCache of TinyKvFullCaches per layer", dense_batch)):
        caches = make()
        try:
            with outside_learner():
                mx.eval(model(ids, 0, caches))
        except Exception:  # noqa: BLE001 - an error is what is asked
            continue
        ctx.fail(f"Your week-3 model ran on {label} and returned logits. A dense cache has no "
                 "pages to give paged attention; the model should let the error surface "
                 "instead of falling back to dense attention.", {"case": label},
                 pitfall="paged-model-dense-fallback")
    return {"refused": 2}


# --------------------------------------------------------------------------- task 4


class PagedOracleQwen2(OracleQwen2):
    """OracleQwen2 over the learner's paged caches: ``create_kv_cache()`` hands out the
    learner's ``TinyKvPagedCache`` per layer on one learner ``TinyKvPagedPool``; attention
    asks each cache for ``update_and_fetch_paged`` metadata, gathers each row's keys and
    values through the block table (numpy) and attends with MLX."""

    def __init__(self, mlx_model, pool, cache_cls, eos_rule=None):
        super().__init__(mlx_model, eos_rule)
        self.pool, self.cache_cls = pool, cache_cls
        self.handed: list[list] = []

    def create_kv_cache(self):
        caches = [self.cache_cls(self.pool) for _ in range(self.num_hidden_layers)]
        self.handed.append(caches)
        return caches

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
            meta = layer_cache.update_and_fetch_paged(k.astype(F32), v.astype(F32),
                                                      mask_length=L, mask="causal")
            lens = np.asarray(meta.context_lens).reshape(-1).tolist()
            o = paged_oracle(q.astype(F32), meta.key_pages, meta.value_pages, meta.block_table,
                             lens, int(meta.page_size), a.scale, True)
            o = a.o_proj(mx.array(o).transpose(0, 2, 1, 3).reshape(B, L, Hq * D))
            h = h + o
            h = h + layer.mlp(layer.post_attention_layernorm(h))
        h = inner.norm(h)
        return self.m.lm_head(h).astype(F32)


GEN_BATCH, GEN_PREFILL_STEP, GEN_MAX_SEQ, GEN_PAGE = 3, 4, 32, 4


def _held_pages(om) -> list[str]:
    """Layer caches the model handed out that still hold pages after the run."""
    held = []
    for r, caches in enumerate(om.handed):
        for layer, c in enumerate(caches):
            ids = list(getattr(c, "page_ids", []) or [])
            if ids:
                held.append(f"request cache {r}, layer {layer}: pages {ids}")
    return held


@check("paged-batch-generate", 4,
       "batch_generate over pages: the same texts as alone, and every page back in the pool",
       symbols=("batch.batch_generate", "batch.Request", "kv_cache.BatchingKvCache"))
def paged_batch_generate(ctx):
    fn = ctx.symbol("batch.batch_generate")
    Pool = ctx.symbol("paged_kv_cache.TinyKvPagedPool")
    Cache = ctx.symbol("paged_kv_cache.TinyKvPagedCache")
    tok = _tok()
    want_all = _references(tok, GEN_PROMPTS, GEN_MAX_SEQ)
    at_prefill = [i for i, w in enumerate(want_all) if w == ""]
    setup = (f"{{n}} prompts of mixed lengths, batch_size={GEN_BATCH}, "
             f"prefill_step={GEN_PREFILL_STEP}, max_seq_len={GEN_MAX_SEQ}, page_size {GEN_PAGE}")

    def run(variant):
        keep = [i for i in range(len(GEN_PROMPTS)) if variant is None or i not in at_prefill]
        prompts = [GEN_PROMPTS[i] for i in keep]
        want = [want_all[i] for i in keep]
        pool = ctx.call(Pool, page_size=GEN_PAGE)
        om = PagedOracleQwen2(tiny_model(), pool, Cache, EosRule())
        om.call_limit = 600
        where = setup.format(n=len(prompts))
        with contextlib.redirect_stdout(io.StringIO()):
            results = ctx.call(fn, om, tok, list(prompts), max_seq_len=GEN_MAX_SEQ,
                               batch_size=GEN_BATCH, prefill_step=GEN_PREFILL_STEP)
        got = {int(i): t for i, t in results}
        wrong = [j for j in range(len(prompts)) if got.get(j) != want[j]]
        if wrong:
            details = "; ".join(f"#{j} {prompts[j]!r}: got {got.get(j)!r}, alone {want[j]!r}"
                                for j in wrong[:3])
            raise CheckFailed(f"[{where}] {len(wrong)} of {len(prompts)} prompts get a different "
                              f"text than generating them alone: {details}.",
                              {"wrong": wrong, "prompts": len(prompts)})
        ev = {"prompts": len(prompts), "model_calls": len(om.calls),
              "pool_pages": int(pool.num_pages), "free_pages": int(pool.num_free_pages)}
        # Continuous batching: some decode step must serve several requests at once.
        busiest = max((sum(1 for o in c["offsets"] if o > 0) for c in om.calls
                       if c["shape"] == [GEN_BATCH, 1]), default=0)
        ev["max_active_rows"] = busiest
        if busiest < 2:
            raise CheckFailed(f"[{where}] every text is right, but no decode step fed more than "
                              f"one request: decode steps should feed all {GEN_BATCH} slots as "
                              f"one ({GEN_BATCH}, 1) batch through the batching caches.", ev)
        held = _held_pages(om)
        if held or pool.num_free_pages != pool.num_pages:
            raise CheckFailed(
                f"[{where}] every text is right, but after all requests finished the pool has "
                f"{pool.num_free_pages} free of {pool.num_pages} pages"
                + (f" ({'; '.join(held[:3])})" if held else "") + ". A finished request "
                "gives back every page of every layer.", ev, pitfall=None)
        return ev

    probes = []
    if at_prefill:
        names = ", ".join(repr(GEN_PROMPTS[i]) for i in at_prefill)
        note = (f"Without {names}, whose first generated token is end-of-sequence, the run is "
                "right.")
        probes.append(("without-eos-at-prefill", "paged-eos-at-prefill-crash", crashed, note))
        probes.append(("without-eos-at-prefill", "paged-eos-at-prefill-leak",
                       lambda exc: not crashed(exc) and "free of" in exc.message, note))
    try:
        ev = with_probe(run, probes)
    except CheckFailed as exc:
        if exc.pitfall is None and "free of" in exc.message:
            exc.pitfall = "paged-pages-leak"
        raise
    om = PagedOracleQwen2(tiny_model(), ctx.call(Pool, page_size=GEN_PAGE), Cache, EosRule())
    om.call_limit = 600
    lone = lone_prompt_run(ctx, fn, tok, om, want_all[GEN_PROMPTS.index(LONE_PROMPT)],
                           "paged-loop-ends-while-prefilling")
    if lone is not None:
        raise lone
    return ev


# --------------------------------------------------------------------------- predict


@measure("paging-bytes-saved", unit="bytes")
def measure_paging_bytes_saved(ctx):
    """Four requests of 5, 16, 17 and 40 positions in the learner's paged caches (page_size
    16, 2 kv heads of dimension 16, float32): bytes of a padded dense batch minus the bytes
    of the pages the learner's block tables list."""
    Pool = ctx.symbol("paged_kv_cache.TinyKvPagedPool")
    Cache = ctx.symbol("paged_kv_cache.TinyKvPagedCache")
    pool = ctx.call(Pool, page_size=16)
    rng = np.random.default_rng(3240)
    metas = []
    for n in (5, 16, 17, 40):
        cache = ctx.call(Cache, pool)
        k, v = _kv(rng, 2, n, 16)
        metas.append(ctx.call(cache.update_and_fetch_paged, k, v, mask_length=n, mask=None))
    _, H, ps, D = metas[-1].key_pages.shape
    per_position = 2 * H * D * metas[-1].key_pages.dtype.size  # keys and values
    lens = [int(np.asarray(m.context_lens).reshape(-1)[0]) for m in metas]
    pages = sum(int((np.asarray(m.block_table) >= 0).sum()) for m in metas)
    dense = len(lens) * max(lens) * per_position
    return float(dense - pages * ps * per_position)


# ---- kernels (kernels engineer) ---------------------------------------------------------
# The extension's paged_attention called directly (q (B*H_q, L, D), pages, block table,
# context lengths): so a wrong number is pinned on the kernel, not the wrapper. Oracle:
# paged_oracle above (keys/values gathered in numpy through the block table, attended by
# mx.fast.scaled_dot_product_attention). Modelled kernel mistakes: those of paged_oracle,
# and an online softmax that forgets to rescale (``online_model``, tiles of a page, of one
# position or of 32 positions). Rows of an empty slot must come back finite (the book's
# kernel returns 0 there). The cost check times the same batch with a tight block table
# and one padded to 65536 pages of -1; the Metal check needs an Apple GPU.

# (B, H_q, H, L, D, page_size, context lengths, causal, scale, extra block-table width)
KERNEL_CASES = [
    (4, 4, 2, 1, 16, 4, [7, 0, 12, 3], True, 0.25, 2),       # decode, an empty slot
    (1, 8, 2, 6, 32, 8, [29], True, None, 0),                 # prefill chunk, 4 q heads per kv
    (3, 6, 3, 3, 16, 5, [3, 11, 20], True, 0.3, 4),           # ragged, page_size 5
    (2, 2, 1, 4, 64, 16, [40, 70], False, 0.125, 1),          # not causal, long pages
    (2, 4, 4, 1, 128, 32, [100, 0], True, None, 3),           # head dim 128, empty slot last
]
KERNEL_MISTAKES = {"paged-causal-top-left": "top-left", "paged-gqa-head-mapping": "gqa-mod",
                   "paged-tail-slots-read": "tail", "paged-block-table-ignored": "table-ignored",
                   "paged-scale-ignored": "scale-default"}


def online_model(q, key_pages, value_pages, table, lens, page_size, scale, causal, *,
                 tile: int, rescale: str) -> np.ndarray:
    """(B, H_q, L, D) online-softmax attention in float64 over tiles of ``tile`` logical
    positions, with the rescaling done wrong: "none" (neither the running sum nor the
    accumulator rescaled when the max grows), "sum-only", "out-only"."""
    q = np.asarray(to_np(q), dtype=np.float64)
    B, Hq, L, D = q.shape
    ks = gather_rows(key_pages, table, lens, page_size)
    vs = gather_rows(value_pages, table, lens, page_size)
    out = np.zeros((B, Hq, L, D))
    for b in range(B):
        k, v = ks[b].astype(np.float64), vs[b].astype(np.float64)
        H, S = k.shape[0], k.shape[1]
        if S == 0:
            continue
        kv = np.arange(Hq) // (Hq // H)
        s = scale * np.einsum("hld,hsd->hls", q[b], k[kv])
        if causal:  # s is (H_q, L, S); row i sees positions <= S - L + i
            lim = S - L + np.arange(L)
            s = np.where(np.arange(S)[None, None, :] <= lim[None, :, None], s, -np.inf)
        m = np.full((Hq, L, 1), -np.inf)
        acc_l = np.zeros((Hq, L, 1))
        o = np.zeros((Hq, L, D))
        for c0 in range(0, S, tile):
            st = s[:, :, c0:c0 + tile]
            m_new = np.maximum(m, st.max(axis=-1, keepdims=True))
            live = np.isfinite(m_new)
            safe = np.where(live, m_new, 0.0)
            with np.errstate(invalid="ignore", over="ignore"):
                p = np.where(live, np.exp(st - safe), 0.0)
                alpha = np.where(live & np.isfinite(m), np.exp(m - safe), 0.0)
            a_sum = alpha if rescale == "sum-only" else 1.0
            a_out = alpha if rescale == "out-only" else 1.0
            acc_l = np.where(live, acc_l * a_sum + p.sum(axis=-1, keepdims=True), acc_l)
            o = np.where(live, o * a_out + p @ v[kv][:, c0:c0 + tile], o)
            m = np.where(live, m_new, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[b] = np.where(acc_l > 0, o / np.where(acc_l > 0, acc_l, 1.0), 0.0)
    return out.astype(np.float32)


def _kernel_fn(ctx):
    ext = ctx.extension()
    fn = getattr(ext, "paged_attention", None)
    if fn is None:
        raise CheckFailed("Your extension has no `paged_attention`: declare it in "
                          "src/tiny_llm_ext.h, bind it in bindings.cpp (query, key_pages, "
                          "value_pages, block_table, context_lens, scale, is_causal, "
                          "num_kv_heads, num_heads) and rebuild with `tiny-llm-tutor "
                          "build-kernels`.", {"extension": getattr(ext, "__name__", "?")},
                          status="error")
    return fn


def _call_paged_kernel(ctx, fn, q, kp, vp, table, cl, scale, causal, Hq, H, device=None):
    """q (B, H_q, L, D) flattened to the kernel's (B*H_q, L, D); returns (B, H_q, L, D)."""
    B, _, L, D = q.shape
    with mx.stream(device or mx.cpu):
        out = ctx.call(fn, q.reshape(B * Hq, L, D), kp, vp, table, cl, scale=float(scale),
                       is_causal=causal, num_kv_heads=H, num_heads=Hq)
        if hasattr(out, "shape"):
            mx.eval(out)
    return out


def _kernel_case(B, Hq, H, L, D, ps, lens, causal, scale, table, device="CPU"):
    return (f"kernel on the {device}: query (B*H_q, L, D) = {(B * Hq, L, D)}, {H} kv heads, "
            f"page_size {ps}, context_lens {lens}, block table {tuple(table.shape)} with "
            f"shuffled page ids and -1 padding, is_causal={causal}, scale={scale:.4g}")


def _kernel_compare(ctx, fn, spec, seed, device=None, tol=None):
    B, Hq, H, L, D, ps, lens, causal, scale, extra = spec
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    q, kp, vp, table, cl = make_pages(seed, B, Hq, H, L, D, ps, lens, extra)
    case = _kernel_case(B, Hq, H, L, D, ps, lens, causal, scale, table,
                        "GPU" if device is not None else "CPU")
    got = _call_paged_kernel(ctx, fn, q, kp, vp, table, cl, scale, causal, Hq, H, device)
    ctx.expect_shape(got, (B * Hq, L, D), case=case)
    g = np.asarray(to_np(got), dtype=np.float32).reshape(B, Hq, L, D)
    empty = [b for b in range(B) if lens[b] == 0]
    if empty and not np.all(np.isfinite(g[empty])):
        ctx.fail(f"[{case}] the rows of the empty slot (context_len 0: row {empty[0]}) hold NaN "
                 "or inf. Nothing is there to attend to; the row should come back finite (the "
                 "book's kernel returns 0), or that slot's logits turn into NaN.",
                 {"case": case, "empty_rows": empty}, pitfall="paged-empty-slot-nan")
    active = [b for b in range(B) if lens[b] > 0]
    want = paged_oracle(q, kp, vp, table, lens, ps, scale, causal)[active]
    cands = {pit: (lambda m=m: mx.array(paged_oracle(q, kp, vp, table, lens, ps, scale, causal,
                                                     mistake=m)[active]))
             for pit, m in KERNEL_MISTAKES.items()}
    cands["paged-no-rescale"] = [
        (lambda t=t, r=r: mx.array(online_model(q, kp, vp, table, lens, ps, scale, causal,
                                                tile=t, rescale=r)[active]))
        for t in sorted({ps, 1, 32}) for r in ("none", "sum-only", "out-only")]
    kw = tol or {}
    return ctx.expect_close(mx.array(g[active]), mx.array(want), case=case, candidates=cands,
                            axes=("row", "query head", "query", "dim"), **kw)


@check("paged-kernel-cpu", 2,
       "your extension's paged_attention kernel (CPU) matches attention over its pages",
       symbols=("PagedAttention",))
def paged_kernel_cpu(ctx):
    fn = _kernel_fn(ctx)
    return merge_evidence([_kernel_compare(ctx, fn, spec, 3250 + i)
                           for i, spec in enumerate(KERNEL_CASES)])


# The cost rule: the same decode batch with a tight block table (T) and with the table
# padded to COST_WIDTH pages of -1 (W). Pass when median(W) / median(T) <= COST_PASS in a
# round; fail only when two rounds both show >= COST_FAIL (measured: 0.94-1.01 for the
# answer key; 5.5-11 for a kernel that only skips each -1 entry of a 16384-wide table, and
# the width here is four times that); anything in between is skipped with the ratios.
COST_WIDTH, COST_PASS, COST_FAIL = 65536, 2.0, 3.0


def _timed_kernel(ctx, fn, args):
    import time

    t0 = time.perf_counter()
    _call_paged_kernel(ctx, fn, *args)
    return time.perf_counter() - t0


@check("paged-kernel-cost", 2,
       "cost: the kernel's time follows the context lengths, not the block table's width",
       symbols=("PagedAttention",))
def paged_kernel_cost(ctx):
    """Times a decode step of 4 requests (8 query heads over 2 kv heads, D = 64, page_size
    16, contexts 64, 48, 64, 33) twice: with a block table as wide as the longest request
    (4 pages) and with the same table padded with -1 to 65536 pages. Nothing a request
    attends to changes, so a kernel that walks each row's pages up to its context length
    takes the same time; one that walks the table's width does 16384x more iterations."""
    import statistics

    fn = _kernel_fn(ctx)
    B, Hq, H, D, ps, lens = 4, 8, 2, 64, 16, [64, 48, 64, 33]
    q, kp, vp, tight, cl = make_pages(3260, B, Hq, H, 1, D, ps, lens)
    t = np.asarray(to_np(tight))
    wide_np = -np.ones((B, COST_WIDTH), dtype=np.int32)
    wide_np[:, :t.shape[1]] = t
    wide = mx.array(wide_np)
    mx.eval(q, kp, vp, tight, wide, cl)
    scale = 1.0 / np.sqrt(D)
    T = (q, kp, vp, tight, cl, scale, True, Hq, H)
    W = (q, kp, vp, wide, cl, scale, True, Hq, H)
    # Same answers first: a cost figure of a wrong kernel means nothing.
    got_t = np.asarray(to_np(_call_paged_kernel(ctx, fn, *T)))
    got_w = np.asarray(to_np(_call_paged_kernel(ctx, fn, *W)))
    case = (f"decode step, 4 requests of {lens} positions, page_size {ps}, block table "
            f"{tuple(t.shape)} and the same padded to (4, {COST_WIDTH})")
    ctx.expect_close(mx.array(got_w), mx.array(got_t), what="output with the padded table",
                     case=case)
    warm = _timed_kernel(ctx, fn, T) + _timed_kernel(ctx, fn, W)
    pairs = int(max(5, min(15, 2.0 / max(warm, 1e-4))))
    ev = {"case": case, "rounds": []}
    ratios = []
    for n in (pairs, pairs, pairs):
        tt, tw = [], []
        for i in range(n):  # interleaved, the order alternating, so load drift hits both
            for args, bucket in ((T, tt), (W, tw))[:: 1 if i % 2 == 0 else -1]:
                bucket.append(_timed_kernel(ctx, fn, args))
        mt, mw = statistics.median(tt), statistics.median(tw)
        ratio = mw / mt
        ratios.append(ratio)
        ev["rounds"].append({"wide_over_tight": round(ratio, 2), "runs": n,
                             "median_ms": {"tight": round(mt * 1e3, 3), "wide": round(mw * 1e3, 3)}})
        if ratio <= COST_PASS:
            ev["ratio"] = round(ratio, 2)
            return ev
        if len(ratios) >= 2 and all(r >= COST_FAIL for r in ratios):
            raise CheckFailed(
                f"[{case}] the same requests took {', '.join(f'{r:.1f}x' for r in ratios)} as "
                f"long with the padded block table (in {len(ratios)} rounds; expected about 1x, "
                f"at most {COST_PASS}x): your kernel's work grows with the table's width, which "
                "is set by the longest request in the batch (or by padding), not with each "
                "request's own context length.", ev, pitfall="paged-walks-table-width")
    raise Skip(
        f"timing inconclusive: the padded table took {', '.join(f'{r:.2f}x' for r in ratios)} "
        f"the time of the tight one (pass: <= {COST_PASS}x; fail: >= {COST_FAIL}x in two "
        "rounds). This machine may be busy; the result is not counted either way. Run the "
        "check again when it is idle.")


METAL_KERNEL_CASES = KERNEL_CASES


@check("paged-kernel-metal", 2, "your Metal paged attention kernel on the Apple GPU",
       symbols=("PagedAttention",))
def paged_kernel_metal(ctx):
    if not mx.metal.is_available():
        raise Skip("needs an Apple GPU (Metal): this machine's MLX has no Metal backend, so "
                   "the kernel in paged_attention.metal cannot run here. It is checked on an "
                   "Apple Silicon Mac.")
    fn = _kernel_fn(ctx)
    return merge_evidence([_kernel_compare(ctx, fn, spec, 3270 + i, device=mx.gpu,
                                           tol={"rtol": 1e-3, "atol": 1e-4})
                           for i, spec in enumerate(METAL_KERNEL_CASES)])
