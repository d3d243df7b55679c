"""The checks' own paged KV pieces for week 3, written in NumPy so that nothing here shares
code (or mistakes) with the answer key or the learner:

    pool = OraclePagedPool(page_size=4)                # a free list and NumPy page storage
    cache = OraclePagedCache(pool)                     # one layer of one request
    cache.append(k, v)                                 # (1, H, L, D) mx or NumPy arrays
    keys, values = cache.gather()                      # (1, H, S, D) mx.float32 arrays
    page_lens_of(10, 4) == [4, 4, 2]                   # the page table a length must give
    kv_chunk(L, seed)                                  # random (1, H, L, D) keys, values
    rows = SameLengthRows([cache_a, cache_b])          # a batch of requests of one length
    peak_bytes(fn)                                     # MLX memory allocated while fn runs

``OraclePagedPool(..., order=...)`` hands out page ids in a given order (for block tables
whose pages are not ascending); freed ids are handed out again before new ones.

``SameLengthRows`` lets a model run a batch of B requests of the same length over B
per-request caches of any kind (the learner's paged caches included): it splits every
update by row, gives each row to its own cache, and returns the rows stacked (dense K/V
through ``update_and_fetch``, or the pages through ``update_and_fetch_paged``).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable

import mlx.core as mx
import numpy as np

from ..harness import outside_learner, to_np


def page_lens_of(length: int, page_size: int) -> list[int]:
    """The page_lens a request of ``length`` positions has: full pages, then the tail."""
    full, tail = divmod(length, page_size)
    return [page_size] * full + ([tail] if tail else [])


def pages_for(length: int, page_size: int) -> int:
    return -(-length // page_size)


def kv_chunk(L: int, seed: int, H: int = 2, D: int = 8, dtype=mx.float32):
    """Random keys and values of shape (1, H, L, D): distinct values everywhere, so a
    position read from the wrong place always shows."""
    k = mx.random.normal((1, H, L, D), key=mx.random.key(seed)).astype(dtype)
    v = mx.random.normal((1, H, L, D), key=mx.random.key(seed + 7919)).astype(dtype)
    mx.eval(k, v)
    return k, v


class OraclePagedPool:
    """Page storage in NumPy: ``keys[page]`` and ``values[page]`` of shape (H, page_size,
    D), a free list, and ids minted in ``order`` (default 0, 1, 2, ...)."""

    def __init__(self, page_size: int, order: list[int] | None = None):
        self.page_size = page_size
        self.order = list(order) if order is not None else None
        self.keys: dict[int, np.ndarray] = {}
        self.values: dict[int, np.ndarray] = {}
        self.free: list[int] = []
        self.minted = 0

    def allocate(self) -> int:
        if self.free:
            return self.free.pop()
        pid = self.order[self.minted] if self.order is not None else self.minted
        self.minted += 1
        return pid

    def release(self, pid: int) -> None:
        self.free.append(pid)

    def write(self, pid: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        H, n, D = k.shape
        if pid not in self.keys:
            self.keys[pid] = np.zeros((H, self.page_size, D), dtype=np.float32)
            self.values[pid] = np.zeros((H, self.page_size, D), dtype=np.float32)
        self.keys[pid][:, start : start + n] = k
        self.values[pid][:, start : start + n] = v

    def storage(self, num_pages: int | None = None) -> tuple[mx.array, mx.array]:
        """(P, H, page_size, D) float32 arrays holding every page id below ``num_pages``
        (unwritten pages are zero)."""
        P = num_pages if num_pages is not None else max(self.keys, default=-1) + 1
        some = next(iter(self.keys.values()))
        ks = np.zeros((P,) + some.shape, dtype=np.float32)
        vs = np.zeros_like(ks)
        for pid in self.keys:
            if pid < P:
                ks[pid], vs[pid] = self.keys[pid], self.values[pid]
        return mx.array(ks), mx.array(vs)


class OraclePagedCache:
    """One layer of one request on an ``OraclePagedPool``: page_ids, page_lens, offset."""

    def __init__(self, pool: OraclePagedPool):
        self.pool = pool
        self.page_ids: list[int] = []
        self.page_lens: list[int] = []
        self.offset = 0

    def append(self, key, value) -> None:
        k, v = to_np(key).astype(np.float32)[0], to_np(value).astype(np.float32)[0]
        P = self.pool.page_size
        i = 0
        while i < k.shape[1]:
            if not self.page_ids or self.page_lens[-1] == P:
                self.page_ids.append(self.pool.allocate())
                self.page_lens.append(0)
            n = min(P - self.page_lens[-1], k.shape[1] - i)
            self.pool.write(self.page_ids[-1], self.page_lens[-1], k[:, i : i + n],
                            v[:, i : i + n])
            self.page_lens[-1] += n
            i += n
        self.offset += k.shape[1]

    def gather(self) -> tuple[mx.array, mx.array]:
        ks = [self.pool.keys[p][:, :n] for p, n in zip(self.page_ids, self.page_lens)]
        vs = [self.pool.values[p][:, :n] for p, n in zip(self.page_ids, self.page_lens)]
        return (mx.array(np.concatenate(ks, axis=1)[None]),
                mx.array(np.concatenate(vs, axis=1)[None]))

    def rewind(self, n: int) -> None:
        self.offset -= n
        while self.page_ids and sum(self.page_lens[:-1]) >= self.offset:
            self.pool.release(self.page_ids.pop())
            self.page_lens.pop()
        if self.page_ids:
            self.page_lens[-1] = self.offset - sum(self.page_lens[:-1])

    def release(self) -> None:
        for p in self.page_ids:
            self.pool.release(p)
        self.page_ids, self.page_lens, self.offset = [], [], 0

    def block_table_row(self, width: int) -> list[int]:
        return self.page_ids + [-1] * (width - len(self.page_ids))


@dataclass
class RowsMetadata:
    """The paged view of a batch (the fields of the course's ``PagedKvMetadata``)."""

    key_pages: mx.array
    value_pages: mx.array
    block_table: mx.array
    context_lens: mx.array
    page_size: int
    mask: Any = None


class SameLengthRows:
    """A batch of requests of the same length over one per-request cache each. Row i of
    every update goes to ``caches[i]``; the rows come back stacked. Runs outside the
    forbidden-API tripwires (the learner's model calls it)."""

    def __init__(self, caches: list):
        self.caches = caches

    @property
    def offset(self) -> int:
        return self.caches[0].offset

    def update_and_fetch(self, key, value, mask_length=None, mask=None):
        outs = [c.update_and_fetch(key[i : i + 1], value[i : i + 1], mask_length=mask_length,
                                   mask=mask) for i, c in enumerate(self.caches)]
        with outside_learner():
            keys = mx.concatenate([o[0] for o in outs], axis=0)
            values = mx.concatenate([o[1] for o in outs], axis=0)
        return keys, values, outs[0][2], mask

    def update_and_fetch_paged(self, key, value, mask_length=None, mask=None):
        metas = [c.update_and_fetch_paged(key[i : i + 1], value[i : i + 1],
                                          mask_length=mask_length, mask=mask)
                 for i, c in enumerate(self.caches)]
        with outside_learner():
            rows = [np.asarray(to_np(m.block_table)).reshape(-1) for m in metas]
            width = max(len(r) for r in rows)
            table = np.full((len(rows), width), -1, dtype=np.int32)
            for i, r in enumerate(rows):
                table[i, : len(r)] = r
            lens = np.concatenate([np.asarray(to_np(m.context_lens)).reshape(-1) for m in metas])
            last = metas[-1]  # the storage after every row's write (it may have grown)
            return RowsMetadata(last.key_pages, last.value_pages, mx.array(table),
                                mx.array(lens.astype(np.int32)), last.page_size, mask)


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Bytes MLX allocates beyond what was live before ``fn`` runs, at the peak. ``fn``
    must evaluate what it computes; nothing it returns is kept (a kept view of a buffer
    would stop MLX from updating that buffer in place)."""
    gc.collect()
    mx.synchronize()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    fn()
    mx.synchronize()
    return max(0, mx.get_peak_memory() - before)
