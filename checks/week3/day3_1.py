"""Day 3.1 -- the paged KV cache: TinyKvPagedPool, TinyKvPagedCache (append, dense
gather, release, rewind), TinyKvFullCache.rewind, and Qwen2ModelWeek3 on paged caches.

Oracles: the checks' own NumPy paged pool and cache and the plain concatenation of every
chunk appended (``w3_oracle``), the page tables a length must give (full pages, then the
tail), and mlx_lm's Qwen2 forward pass on tiny random 4-bit models (``w2_oracle.tiny_w2``).
K/V comparisons are exact up to float32 (a cache only moves values).

Cost of a write (``pool-write-in-place``, ``append-writes-only-new``): never timed. MLX
updates a slice of an array in place when nothing else holds its buffer, so writing one
position into a pool of many pages allocates about nothing, while rebuilding the storage
allocates all of it: the check measures MLX's peak allocation during the write against the
pool's size (a margin of 8x). The cache's side is counted: the positions it hands to the
pool's ``write_page_slice`` for an append of L positions must be L. Growing the storage
when a new page is minted (the book grows it one page at a time) is never measured:
only writes into existing pages are.

Isolation: the pool checks drive the learner's pool alone; the cache checks use the
learner's pool and cache; the model checks give the learner's model its own
``create_kv_cache()`` caches, and compare with mlx_lm (float32) on float16-representable
weights: log-probs within 0.15 absolute (as in days 2.1 and 2.6).

The batch case runs two requests of the same length with one int offset, each row on its
own request's caches (``SameLengthRows``). The book's week-3 model wraps an int offset in a
list of one slice, so this crashes in RoPE; a probe re-runs it with one offset per row and
names the pitfall (w3-rope-int-offset-one-slice) when that run is right.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..harness import CheckFailed, check, measure, merge_evidence, outside_learner
from ..week2.probes import crashed, offsets_as, with_probe
from .w3_oracle import (OraclePagedCache, OraclePagedPool, SameLengthRows, kv_chunk,
                        page_lens_of, pages_for, peak_bytes)

POOL = "paged_kv_cache.TinyKvPagedPool"
CACHE = "paged_kv_cache.TinyKvPagedCache"
MODEL = "qwen2_week3.Qwen2ModelWeek3"
MODEL_FORBID = ("mx.fast.scaled_dot_product_attention", "mx.fast.rope", "nn.RoPE",
                "mx.fast.rms_norm", "nn.RMSNorm", "nn.silu", "nn.SiLU")
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}
INT_OFFSET_PITFALL = "w3-rope-int-offset-one-slice"


def _np(x) -> np.ndarray:
    return np.array(x.astype(mx.float32) if isinstance(x, mx.array) else x)


def _table(cache) -> dict:
    """The page table a cache shows, for evidence."""
    return {"page_ids": list(cache.page_ids), "page_lens": list(cache.page_lens),
            "offset": cache.offset}


# --------------------------------------------------------------------------- task 1: pool


@check("pool-bookkeeping", 1, "The pool hands out, frees and reuses page ids and keeps each "
       "page's contents", symbols=(POOL,))
def pool_bookkeeping(ctx):
    Pool = ctx.symbol(POOL)
    pool = ctx.call(Pool, 4)
    ids = [ctx.call(pool.allocate_page) for _ in range(3)]
    case = "page_size 4, three pages allocated"
    if len(set(ids)) != 3:
        ctx.fail(f"[{case}] allocate_page returned {ids}: three live pages need three "
                 "different ids.", {"ids": ids})
    got = (ctx.call(lambda: pool.num_pages), ctx.call(lambda: pool.num_free_pages))
    if got != (3, 0):
        ctx.fail(f"[{case}] (num_pages, num_free_pages) is {got}, expected (3, 0).",
                 {"got": list(got)})

    # Writes land where they are sent, and only there.
    k1, v1 = kv_chunk(3, 3101)
    k2, v2 = kv_chunk(1, 3102)
    k0, v0 = kv_chunk(4, 3103)
    ctx.call(pool.write_page_slice, ids[1], 0, k1, v1)
    ctx.call(pool.write_page_slice, ids[1], 3, k2, v2)
    ctx.call(pool.write_page_slice, ids[0], 0, k0, v0)
    evs = []
    for pid, want_k, want_v, what in ((ids[1], mx.concatenate([k1, k2], axis=2),
                                       mx.concatenate([v1, v2], axis=2),
                                       "3 positions at 0, then 1 at 3"),
                                      (ids[0], k0, v0, "4 positions at 0")):
        kp, vp = ctx.call(pool.read_page, pid)
        c = f"page {pid} after writing {what} (and writing the other page)"
        ctx.expect_shape(kp, (1, 2, 4, 8), "read_page keys", c)
        evs.append(ctx.expect_close(kp, want_k, what="read_page keys", case=c))
        evs.append(ctx.expect_close(vp, want_v, what="read_page values", case=c))
        del kp, vp

    # A freed page is handed out again before the pool mints a new one.
    ctx.call(pool.free_page, ids[1])
    case = f"pages {ids} allocated, page {ids[1]} freed"
    got = (ctx.call(lambda: pool.num_pages), ctx.call(lambda: pool.num_free_pages))
    if got != (3, 1):
        ctx.fail(f"[{case}] (num_pages, num_free_pages) is {got}, expected (3, 1): num_pages "
                 "counts every page the pool has, free or not.", {"got": list(got)})
    again = ctx.call(pool.allocate_page)
    if again != ids[1] or ctx.call(lambda: pool.num_pages) != 3:
        ctx.fail(f"[{case}] the next allocate_page returned {again} and num_pages is "
                 f"{pool.num_pages}: expected the freed page {ids[1]} back, and no new page.",
                 {"allocated": again, "num_pages": pool.num_pages})
    for pid in ids:
        ctx.call(pool.free_page, pid)
    back = sorted(ctx.call(pool.allocate_page) for _ in range(3))
    if back != sorted(ids) or ctx.call(lambda: pool.num_pages) != 3:
        ctx.fail(f"[all three pages freed, three allocated again] got ids {back} and "
                 f"num_pages {pool.num_pages}; expected the same ids {sorted(ids)} and 3.",
                 {"allocated": back, "num_pages": pool.num_pages})
    fourth = ctx.call(pool.allocate_page)
    if fourth in ids or ctx.call(lambda: pool.num_pages) != 4:
        ctx.fail(f"[three pages live, a fourth allocated] got id {fourth} and num_pages "
                 f"{pool.num_pages}; expected a new id and 4.",
                 {"allocated": fourth, "num_pages": pool.num_pages})
    return merge_evidence(evs)


# Storage for the in-place write: 192 pages of (H 4, 16 positions, D 64) float32, keys and
# values: 6.3 MB. One position of keys and values is 2 KB.
BIG = dict(pages=192, page_size=16, H=4, D=64)


@check("pool-write-in-place", 1, "Writing a few positions into an existing page costs those "
       "positions, not the whole pool", symbols=(POOL,))
def pool_write_in_place(ctx):
    Pool = ctx.symbol(POOL)
    n, P, H, D = BIG["pages"], BIG["page_size"], BIG["H"], BIG["D"]
    pool = ctx.call(Pool, P)
    ids = [ctx.call(pool.allocate_page) for _ in range(n)]
    one = [kv_chunk(1, 3110 + i, H=H, D=D) for i in range(2)]
    for pid in ids:  # every page gets storage, however the pool grows it
        ctx.call(pool.write_page_slice, pid, 0, *one[0])

    def settle():
        for pid in ids:
            mx.eval(*pool.read_page(pid))

    ctx.call(settle)
    storage = n * H * P * D * 4 * 2
    target = ids[n // 2]
    k, v = kv_chunk(2, 3120, H=H, D=D)

    def write_and_read():
        ctx.call(pool.write_page_slice, target, 5, k, v)
        mx.eval(*pool.read_page(target))

    used = peak_bytes(write_and_read)
    case = (f"a pool of {n} pages (page_size {P}, H {H}, D {D}, float32: "
            f"{storage / 1e6:.1f} MB of keys and values), 2 positions written at 5 into page "
            f"{target}")
    kp, vp = ctx.call(pool.read_page, target)
    want_k = mx.concatenate([one[0][0], mx.zeros((1, H, 4, D)), k], axis=2)
    ev = ctx.expect_close(kp[:, :, :7][:, :, [0, 5, 6]], want_k[:, :, [0, 5, 6]],
                          what="read_page keys at positions 0, 5, 6", case=case)
    del kp, vp
    ev["peak_bytes"] = used
    ev["pool_bytes"] = storage
    if used * 8 > storage:
        raise CheckFailed(
            f"[{case}] MLX allocated {used / 1e6:.1f} MB while the write ran: about "
            f"{used / storage:.0%} of the pool's storage, for 4 KB of new keys and values. "
            "The write copied the pool (or most of it) instead of updating the page in "
            "place.", ev, pitfall="paged-pool-copied-on-write")
    return ev


# --------------------------------------------------------------------------- task 2: cache

# Chunk lengths appended one after another (page_size 4, then 16): single positions, one
# short of a page, a page, one past, several pages; prefill then decode steps across page
# boundaries.
APPEND_CASES = [
    (4, [1]), (4, [3]), (4, [4]), (4, [5]), (4, [14]),
    (4, [3, 1, 1, 1, 1, 4, 5]),
    (16, [15, 1, 1, 16, 17, 2]),
    (16, [40, 1, 1, 1]),
]


def _check_table(ctx, cache, total: int, P: int, case: str):
    """The page table of a cache holding ``total`` positions: ceil(total/P) pages, all
    full but the last."""
    ids, lens, off = list(cache.page_ids), list(cache.page_lens), cache.offset
    ev = {"case": case, **_table(cache)}
    if off != total:
        ctx.fail(f"[{case}] cache.offset is {off}, expected {total}.", ev)
    num = ctx.call(lambda: cache.num_pages)
    want = page_lens_of(total, P)
    if lens != want or num != len(want) or len(ids) != len(want):
        tail_unfilled = (sum(lens) == total and len(lens) > len(want)
                         and all(0 < n <= P for n in lens))
        ctx.fail(f"[{case}] the cache holds {len(ids)} pages (num_pages {num}) with "
                 f"page_lens {lens}; {total} positions in pages of {P} need "
                 f"{len(want)} pages: {want}.", ev,
                 pitfall="paged-tail-page-not-filled" if tail_unfilled else None)
    if len(set(ids)) != len(ids):
        ctx.fail(f"[{case}] page_ids {ids} names a page twice.", ev)
    for pid in ids:
        kp, _ = ctx.call(cache.pool.read_page, pid)
        if kp.shape[2] != P:
            ctx.fail(f"[{case}] page {pid} holds {kp.shape[2]} positions, expected the "
                     f"page capacity {P}: pages have a fixed size.", ev)


def _pages_in_pool_order(cache, P: int):
    """The mistake of reading pages 0 .. n-1 of the pool instead of the cache's own (not
    a mistake one can see when those are the cache's pages)."""
    if list(cache.page_ids) == list(range(len(cache.page_ids))):
        raise ValueError("the cache's own pages are 0 .. n-1")
    ks, vs = [], []
    for i in range(len(cache.page_ids)):
        k, v = cache.pool.read_page(i)
        ks.append(k)
        vs.append(v)
    with outside_learner():
        k = mx.concatenate(ks, axis=2)[:, :, : cache.offset]
        v = mx.concatenate(vs, axis=2)[:, :, : cache.offset]
    return k, v


def _pages_lost(got, want, P: int):
    """The mistake of losing pages' contents (read back as zeros), e.g. when the pool's
    storage grows without the pages already written: the reference with exactly those
    pages of the request zeroed."""
    g, w = _np(got), _np(want)
    if g.shape != w.shape:
        raise ValueError("shape")
    out, lost = w.copy(), 0
    for s in range(0, w.shape[2], P):
        if not np.any(g[:, :, s : s + P]) and np.any(w[:, :, s : s + P]):
            out[:, :, s : s + P] = 0
            lost += 1
    if not lost:
        raise ValueError("no page lost")
    return out


def _compare_kv(ctx, got, want, cache, P, case):
    evs = []
    for j, what in ((0, "keys"), (1, "values")):
        evs.append(ctx.expect_close(
            got[j], want[j], what=f"gathered {what}", case=case,
            axes=("batch", "kv head", "position", "dim"),
            candidates={"paged-page-table-ignored":
                        lambda j=j: _pages_in_pool_order(cache, P)[j],
                        "paged-pool-growth-loses-pages":
                        lambda j=j: _pages_lost(got[j], want[j], P)}))
    return evs


@check("paged-matches-full", 2, "Appends of every length gather back the keys and values of a "
       "full cache, with a consistent page table", symbols=(POOL, CACHE))
def paged_matches_full(ctx):
    Pool, Cache = ctx.symbol(POOL), ctx.symbol(CACHE)
    evs = []
    for n_case, (P, lengths) in enumerate(APPEND_CASES):
        dtype = mx.float16 if n_case % 3 == 2 else mx.float32
        pool = ctx.call(Pool, P)
        # Another request holds the pool's first pages, so this one's pages are not 0, 1, ..
        other = ctx.call(Cache, pool)
        ctx.call(other.update_and_fetch, *kv_chunk(P + 1, 3130 + n_case, dtype=dtype))
        cache = ctx.call(Cache, pool)
        ks, vs = [], []
        for step, L in enumerate(lengths):
            k, v = kv_chunk(L, 3140 + 10 * n_case + step, dtype=dtype)
            ks.append(k)
            vs.append(v)
            total = sum(lengths[: step + 1])
            case = (f"page_size {P}, {str(dtype).split('.')[-1]}, chunks of {lengths[:step + 1]} "
                    f"positions appended one after another (another request already holds "
                    f"{P + 1} positions of the pool); after the last chunk")
            out = ctx.call(cache.update_and_fetch, k, v, mask_length=L, mask="causal")
            if not isinstance(out, tuple) or len(out) != 4:
                ctx.fail(f"[{case}] update_and_fetch returned {type(out).__name__}, expected "
                         "the 4-tuple (keys, values, offset, mask).")
            if out[2] != total or out[3] != "causal":
                ctx.fail(f"[{case}] update_and_fetch returned offset {out[2]} and mask "
                         f"{out[3]!r}, expected {total} and the mask passed in ('causal').",
                         {"case": case, **_table(cache)})
            _check_table(ctx, cache, total, P, case)
            want = (mx.concatenate(ks, axis=2), mx.concatenate(vs, axis=2))
            evs += _compare_kv(ctx, out[:2], want, cache, P, case)
            dense = ctx.call(cache.gather_dense)
            evs += _compare_kv(ctx, dense, want, cache, P, case + " (gather_dense)")
        if set(cache.page_ids) & set(other.page_ids):
            ctx.fail(f"[{case}] two requests share pages: {cache.page_ids} and "
                     f"{other.page_ids}.", _table(cache))
    return merge_evidence(evs)


def _counting_writes(pool) -> list[int]:
    """Wrap this pool object's write_page_slice: the list receives the number of positions
    of every write."""
    counts: list[int] = []
    original = pool.write_page_slice

    def write_page_slice(page_id, start, key, value, *a, **kw):
        counts.append(int(key.shape[2]))
        return original(page_id, start, key, value, *a, **kw)

    pool.write_page_slice = write_page_slice
    return counts


# page_size 16: a prefill of 100 positions, three decode steps inside the tail page, then a
# chunk of 20 that crosses into new pages.
WRITE_STEPS = [100, 1, 1, 1, 20]


@check("append-writes-only-new", 2, "An append writes only the new positions into the pool",
       symbols=(POOL, CACHE))
def append_writes_only_new(ctx):
    Pool, Cache = ctx.symbol(POOL), ctx.symbol(CACHE)
    pool = ctx.call(Pool, 16)
    counts = _counting_writes(pool)
    cache = ctx.call(Cache, pool)
    total = 0
    for step, L in enumerate(WRITE_STEPS):
        before = len(counts)
        ctx.call(cache.update_and_fetch, *kv_chunk(L, 3150 + step))
        total += L
        written = sum(counts[before:])
        case = (f"page_size 16, appends of {WRITE_STEPS[: step + 1]} positions; the last "
                f"append of {L} to a request of {total - L}")
        ev = {"case": case, "positions_written": written, "appended": L, **_table(cache)}
        if written == 0:
            ctx.fail(f"[{case}] the cache wrote nothing through pool.write_page_slice. A "
                     "request cache stores its positions by asking its pool to write them "
                     "(the pool owns the pages).", ev)
        if written != L:
            rewrote = written == total
            ctx.fail(f"[{case}] the cache wrote {written} positions through "
                     f"pool.write_page_slice for an append of {L}"
                     + (": the whole request again, so each append costs as much as the "
                        "request is long." if rewrote else "."), ev,
                     pitfall="paged-append-rewrites-request" if rewrote and L < total
                     else None)
    return {"positions_written": sum(counts), "appended": total}


# Requests (lengths) that come and go in rounds on one pool of page_size 4: 2 + 3 + 1 pages
# at once, so 6 pages at most.
ROUNDS = [[5, 9, 3], [9, 3, 5], [3, 5, 9]]


@check("pages-reused", 2, "Released pages go back to the pool, which does not grow as "
       "requests come and go", symbols=(POOL, CACHE))
def pages_reused(ctx):
    Pool, Cache = ctx.symbol(POOL), ctx.symbol(CACHE)
    P = 4
    pool = ctx.call(Pool, P)
    peak = max(sum(pages_for(n, P) for n in r) for r in ROUNDS)
    evs = []
    for r, lengths in enumerate(ROUNDS):
        caches = []
        for i, n in enumerate(lengths):
            c = ctx.call(Cache, pool)
            k, v = kv_chunk(n, 3160 + 10 * r + i)
            out = ctx.call(c.update_and_fetch, k, v)
            evs += _compare_kv(ctx, out[:2], (k, v), c, P,
                               f"round {r + 1}: a request of {n} positions on pages freed "
                               "by earlier requests")
            caches.append(c)
        live = sum(len(c.page_ids) for c in caches)
        case = (f"page_size 4, round {r + 1} of requests {ROUNDS[: r + 1]} (each round's "
                "requests released before the next)")
        num, free = ctx.call(lambda: pool.num_pages), ctx.call(lambda: pool.num_free_pages)
        ev = {"case": case, "num_pages": num, "num_free_pages": free, "live_pages": live}
        if num > peak:
            ctx.fail(f"[{case}] the pool has {num} pages with {live} in use and {free} "
                     f"free; at most {peak} pages are ever in use at once, so it should "
                     f"not have more than {peak}.", ev,
                     pitfall="paged-release-keeps-pages" if free == 0 or free < num - live
                     else None)
        for c in caches:
            ctx.call(c.release)
            if c.page_ids or c.page_lens or c.offset:
                ctx.fail(f"[{case}] after release() the cache still shows {_table(c)}; "
                         "expected no pages and offset 0.", ev)
        free = ctx.call(lambda: pool.num_free_pages)
        if free != ctx.call(lambda: pool.num_pages):
            ctx.fail(f"[{case}] every request released, but only {free} of the pool's "
                     f"{pool.num_pages} pages are free.",
                     {**ev, "num_free_pages": free}, pitfall="paged-release-keeps-pages")
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 3: rewind

# (page_size, appends, rewind, appends after): rewind inside the tail page, across page
# boundaries, to a page boundary, to zero.
REWIND_CASES = [
    (4, [4, 3, 2], 1, [2]),
    (4, [4, 3, 2], 3, [1, 4]),
    (4, [6, 3], 5, [3]),
    (4, [4, 4], 4, [1]),
    (4, [7], 7, [5]),
    (16, [20, 1, 1], 0, [1]),
]


def _oracle_after(P, back, chunks):
    """The checks' own paged cache holding ``chunks`` and then rewound by ``back``."""
    c = OraclePagedCache(OraclePagedPool(P))
    for k, v in chunks:
        c.append(k, v)
    c.rewind(back)
    return c


@check("rewind-then-append", 3, "Rewinding then appending equals never having appended; "
       "pages past the end go back to the pool", symbols=(CACHE, "TinyKvFullCache"))
def rewind_then_append(ctx):
    Pool, Cache = ctx.symbol(POOL), ctx.symbol(CACHE)
    Full = ctx.symbol("TinyKvFullCache")
    evs = []
    for n_case, (P, appends, back, after) in enumerate(REWIND_CASES):
        chunks = [kv_chunk(L, 3200 + 10 * n_case + i) for i, L in enumerate(appends)]
        later = [kv_chunk(L, 3300 + 10 * n_case + i) for i, L in enumerate(after)]
        pool = ctx.call(Pool, P)
        cache, full = ctx.call(Cache, pool), ctx.call(Full)
        for k, v in chunks:
            ctx.call(cache.update_and_fetch, k, v)
            ctx.call(full.update_and_fetch, k, v)
        total = sum(appends)
        minted = ctx.call(lambda: pool.num_pages)
        ctx.call(cache.rewind, back)
        ctx.call(full.rewind, back)
        kept = total - back
        case = (f"page_size {P}, appends of {appends} positions, rewind({back})")
        ev = {"case": case, **_table(cache)}
        want_lens = page_lens_of(kept, P)
        freed = pages_for(total, P) - pages_for(kept, P)
        free = ctx.call(lambda: pool.num_free_pages)
        if cache.offset != kept or list(cache.page_lens) != want_lens:
            # The page table or the offset still counts rewound positions (the other one
            # is right); or pages past the end were kept, and never reached the pool.
            stale = ((len(cache.page_lens) == len(want_lens) and cache.offset == kept)
                     or (list(cache.page_lens) == want_lens and cache.offset == total))
            kept_pages = len(cache.page_ids) > len(want_lens) and free < freed
            ctx.fail(f"[{case}] the cache shows offset {cache.offset} and page_lens "
                     f"{list(cache.page_lens)} (the pool has {free} free pages); {kept} "
                     f"positions left need offset {kept} and page_lens {want_lens}, and "
                     f"{freed} pages back in the pool.", ev,
                     pitfall="paged-rewind-bookkeeping-stale" if stale else
                     "paged-rewind-keeps-pages" if kept_pages else None)
        if free != freed or ctx.call(lambda: pool.num_pages) != minted:
            ctx.fail(f"[{case}] the pool has {free} free pages of {pool.num_pages}; the "
                     f"rewind leaves {pages_for(kept, P)} of the request's "
                     f"{pages_for(total, P)} pages holding positions, so {freed} should be "
                     f"back in the pool (of {minted}).",
                     {**ev, "num_free_pages": free, "num_pages": pool.num_pages},
                     pitfall="paged-rewind-keeps-pages" if free < freed else None)
        if getattr(full, "offset", None) != kept:
            ctx.fail(f"[{case}] TinyKvFullCache.offset is {getattr(full, 'offset', None)} "
                     f"after the rewind, expected {kept}.")
        for k, v in later:
            out = ctx.call(cache.update_and_fetch, k, v)
            fout = ctx.call(full.update_and_fetch, k, v)
        # The oracle: the kept positions, then the later appends, never the rewound ones.
        oracle = _oracle_after(P, back, chunks)
        for k, v in later:
            oracle.append(k, v)
        want = oracle.gather()
        c2 = f"{case}, then appends of {after}"
        _check_table(ctx, cache, oracle.offset, P, c2)
        evs += _compare_kv(ctx, out[:2], want, cache, P, c2)
        for j, what in ((0, "keys"), (1, "values")):
            evs.append(ctx.expect_close(fout[j], want[j], what=f"TinyKvFullCache {what}",
                                        case=c2))
    # To zero, then nothing: the cache is empty and every page is free.
    pool = ctx.call(Pool, 4)
    cache = ctx.call(Cache, pool)
    ctx.call(cache.update_and_fetch, *kv_chunk(6, 3400))
    ctx.call(cache.rewind, 6)
    if cache.offset != 0 or cache.page_ids or ctx.call(lambda: pool.num_free_pages) != 2:
        ctx.fail("[page_size 4, 6 positions, rewind(6)] expected an empty cache and both "
                 f"pages free; the cache shows {_table(cache)} and the pool "
                 f"{pool.num_free_pages} free pages.", _table(cache),
                 pitfall="paged-rewind-keeps-pages" if not cache.page_ids else None)
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 4: model


def _tiny(seed: int):
    from ..week2.w2_oracle import tiny_w2

    return tiny_w2(seed, tied=False)


@check("model-shares-one-pool", 4, "The week-3 model gives every layer of every request its "
       "own page table on the model's one pool", symbols=(MODEL,))
def model_shares_one_pool(ctx):
    Model = ctx.symbol(MODEL)
    oracle, given = _tiny(31)
    model = ctx.call(Model, given, page_size=4)
    pool = getattr(model, "page_pool", None)
    if pool is None:
        ctx.fail("Qwen2ModelWeek3 has no `page_pool`: the model owns one page pool, made "
                 "in its constructor with its page_size.")
    n_layers = oracle.args.num_hidden_layers
    requests = [ctx.call(model.create_kv_cache) for _ in range(2)]
    for r, caches in enumerate(requests):
        if len(caches) != n_layers or len({id(c) for c in caches}) != n_layers:
            ctx.fail(f"create_kv_cache() returned {len(caches)} caches, "
                     f"{len({id(c) for c in caches})} of them distinct, for {n_layers} layers: "
                     "every layer needs its own cache.")
        for layer, c in enumerate(caches):
            if getattr(c, "pool", None) is not pool:
                ctx.fail(f"Request {r + 1}, layer {layer}: the cache's pool is not the "
                         "model's page_pool. Every layer cache of every request should "
                         "share that one pool.", {"layer": layer},
                         pitfall="paged-pool-per-cache")
    V = oracle.args.vocab_size
    ids = mx.random.randint(0, V, (1, 9), key=mx.random.key(3500)).astype(mx.int32)
    ctx.call(model, ids[:, :5], 0, requests[0])
    ctx.call(model, ids[:, :3], 0, requests[1])
    owner: dict[int, str] = {}
    for r, (caches, n) in enumerate(zip(requests, (5, 3))):
        for layer, c in enumerate(caches):
            case = f"page_size 4, request {r + 1} prefilled with {n} tokens, layer {layer}"
            _check_table(ctx, c, n, 4, case)
            for pid in c.page_ids:
                if pid in owner:
                    ctx.fail(f"[{case}] page {pid} also belongs to {owner[pid]}: every "
                             "layer of every request needs pages of its own.",
                             _table(c))
                owner[pid] = f"request {r + 1}, layer {layer}"
    if ctx.call(lambda: pool.num_pages) != len(owner):
        ctx.fail(f"The model's pool has {pool.num_pages} pages, but the caches hold "
                 f"{len(owner)}: the pool should only have minted the pages in use.")
    return {"pages": len(owner)}


# (page_size, prompt length, decode steps)
MODEL_CASES = [(4, 6, 5), (16, 17, 3)]
SAME_LENGTH_BATCH = (2, 5)  # (B, prompt length), then one decode step


def _log_softmax(x):
    x = x.astype(mx.float32)
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


@check("model-matches-week2", 4, "The week-3 model on paged caches gives the week-2 model's "
       "output, prefill and decode", forbid=MODEL_FORBID, symbols=(MODEL,))
def model_matches_week2(ctx):
    Model = ctx.symbol(MODEL)
    oracle, given = _tiny(32)
    V = oracle.args.vocab_size
    evs = []
    for n_case, (P, prompt, steps) in enumerate(MODEL_CASES):
        ids = mx.random.randint(0, V, (1, prompt + steps),
                                key=mx.random.key(3600 + n_case)).astype(mx.int32)
        full = _log_softmax(oracle(ids))
        model = ctx.call(Model, given, page_size=P)
        caches = ctx.call(model.create_kv_cache)
        spans = [(0, prompt)] + [(prompt + i, prompt + i + 1) for i in range(steps)]
        for s, e in spans:
            case = (f"Qwen2ModelWeek3(page_size={P}), one request: "
                    f"{'prefill of' if s == 0 else 'decode of token'} "
                    f"{f'{e} tokens' if s == 0 else s} at offset {s}")
            got = ctx.call(model, ids[:, s:e], s, caches)
            ctx.expect_shape(got, (1, e - s, V), "logits", case)
            evs.append(ctx.expect_close(_log_softmax(got), full[:, s:e], what="log-probs",
                                        case=case, **MODEL_LOGP))
    evs += _same_length_batch(ctx, Model, oracle, given)
    return merge_evidence(evs)


def _same_length_batch(ctx, Model, oracle, given):
    """Two requests of one length prefilled and decoded together with one int offset,
    each row on its own request's paged caches."""
    B, L = SAME_LENGTH_BATCH
    V = oracle.args.vocab_size
    ids = mx.random.randint(0, V, (B, L + 1), key=mx.random.key(3700)).astype(mx.int32)
    full = _log_softmax(oracle(ids))

    def scenario(variant):
        model = ctx.call(Model, given, page_size=4)
        per_request = [ctx.call(model.create_kv_cache) for _ in range(B)]
        layers = [SameLengthRows([per_request[b][layer] for b in range(B)])
                  for layer in range(len(per_request[0]))]
        evs = []
        for s, e in ((0, L), (L, L + 1)):
            case = (f"Qwen2ModelWeek3(page_size=4), a batch of {B} requests of the same "
                    f"length, {'prefill' if s == 0 else 'decode'}: tokens {s}..{e - 1}, the "
                    f"offset given as the int {s} for the whole batch; each row on its own "
                    "request's caches")
            got = ctx.call(model, ids[:, s:e], offsets_as(variant, s, B), layers)
            ctx.expect_shape(got, (B, e - s, V), "logits", case)
            evs.append(ctx.expect_close(_log_softmax(got), full[:, s:e], what="log-probs",
                                        case=case, **MODEL_LOGP))
        return evs

    probe = [("list-offsets", INT_OFFSET_PITFALL, crashed,
              f"The same calls with the offset given as a list of {B} ints (one per row) "
              "instead of one int run and are right.")]
    return with_probe(scenario, probe)


# --------------------------------------------------------------------------- predict


PREDICT_PAGE_SIZE = 16
PREDICT_REQUESTS = (1, 15, 16, 17, 50)


@measure("pages-for-requests", unit="pages")
def measure_pages_for_requests(ctx):
    """The pages the learner's pool hands out for one layer of five requests of 1, 15, 16,
    17 and 50 tokens, page_size 16, all live at once."""
    Pool, Cache = ctx.symbol(POOL), ctx.symbol(CACHE)
    pool = ctx.call(Pool, PREDICT_PAGE_SIZE)
    for i, n in enumerate(PREDICT_REQUESTS):
        cache = ctx.call(Cache, pool)
        ctx.call(cache.update_and_fetch, *kv_chunk(n, 3800 + i))
    return float(ctx.call(lambda: pool.num_pages))
