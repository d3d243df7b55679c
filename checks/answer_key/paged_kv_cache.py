"""Paged KV storage: one pool of fixed-size pages per model, and per-layer request caches
that keep only a page table into it."""

from dataclasses import dataclass
from typing import Optional

import mlx.core as mx

from .kv_cache import TinyKvCache

__all__ = ["PagedKvMetadata", "TinyKvPagedPool", "TinyKvPagedCache"]


@dataclass
class PagedKvMetadata:
    """What a paged attention needs instead of dense K/V (day 3.2)."""

    key_pages: mx.array  # (P, H, page_size, D): the pool's storage, one row per page id
    value_pages: mx.array
    block_table: mx.array  # (B, max_pages) int32 page ids, -1 past a row's pages
    context_lens: mx.array  # (B,) int32 valid positions per row
    page_size: int
    mask: mx.array | str | None = None


class TinyKvPagedPool:
    """Storage for every page of a model: key_pages/value_pages of shape
    (capacity, H, page_size, D), and the free list of page ids.

    Page ids are never renumbered: a freed id goes to the free list and is handed out
    again before a new id is minted, so the pool only grows when more pages are live at
    once than ever before. The storage grows by doubling (rarely, amortised O(1) per
    page); every write lands inside the existing buffer. Metadata shows only the minted
    pages (``minted_pages``): callers size things by it, and the spare rows are no page.
    """

    def __init__(self, page_size: int = 128):
        if page_size <= 0:
            raise ValueError(f"page_size must be positive, got {page_size}")
        self.page_size = page_size
        self.key_pages: mx.array | None = None
        self.value_pages: mx.array | None = None
        self._minted = 0  # ids 0 .. _minted-1 exist
        self._free: list[int] = []
        self._live: set[int] = set()

    @property
    def num_pages(self) -> int:
        """Page ids that exist, live or free."""
        return self._minted

    @property
    def num_free_pages(self) -> int:
        return len(self._free)

    def allocate_page(self) -> int:
        # Reuse the most recently freed page first: it is likely still in cache.
        page_id = self._free.pop() if self._free else self._mint()
        self._live.add(page_id)
        return page_id

    def _mint(self) -> int:
        self._minted += 1
        return self._minted - 1

    def free_page(self, page_id: int) -> None:
        if page_id not in self._live:
            raise ValueError(f"page {page_id} is not in use")
        # The stale contents stay: page_lens, not the bytes, say what is valid.
        self._live.remove(page_id)
        self._free.append(page_id)

    def _reserve(self, H: int, D: int, dtype: mx.Dtype) -> None:
        """Make room for every minted page in storage of the given shape and dtype."""
        if self.key_pages is None:
            capacity = max(1, self._minted)
            shape = (capacity, H, self.page_size, D)
            self.key_pages = mx.zeros(shape, dtype=dtype)
            self.value_pages = mx.zeros(shape, dtype=dtype)
            return
        _, h, _, d = self.key_pages.shape
        if (h, d) != (H, D) or self.key_pages.dtype != dtype:
            raise ValueError(f"pages hold (H, D) = {(h, d)} {self.key_pages.dtype}, "
                             f"got {(H, D)} {dtype}")
        capacity = self.key_pages.shape[0]
        if self._minted <= capacity:
            return
        grown = max(self._minted, 2 * capacity)
        extra = (grown - capacity, H, self.page_size, D)
        self.key_pages = mx.concatenate([self.key_pages, mx.zeros(extra, dtype=dtype)])
        self.value_pages = mx.concatenate([self.value_pages, mx.zeros(extra, dtype=dtype)])

    def write_page_slice(self, page_id: int, start: int, key: mx.array, value: mx.array) -> None:
        """Write key/value (1, H, n, D) into positions start .. start+n-1 of a live page."""
        if page_id not in self._live:
            raise ValueError(f"page {page_id} is not in use")
        B, H, n, D = key.shape
        if B != 1 or value.shape != key.shape:
            raise ValueError(f"expected key and value of shape (1, H, n, D), got "
                             f"{key.shape} and {value.shape}")
        end = start + n
        if not 0 <= start < end <= self.page_size:
            raise ValueError(f"positions {start}..{end - 1} do not fit a page of {self.page_size}")
        self._reserve(H, D, key.dtype)
        # A slice update of an array nothing else references is done in place by MLX:
        # the cost is the n positions written, not the pool.
        self.key_pages[page_id, :, start:end, :] = key[0]
        self.value_pages[page_id, :, start:end, :] = value[0]

    def minted_pages(self) -> tuple[mx.array, mx.array]:
        """Keys and values of every page id minted so far, (num_pages, H, page_size, D):
        the storage cut before its spare capacity. A leading-axis slice of a contiguous
        array is a view, so handing it to a kernel copies nothing."""
        if self.key_pages is None:
            raise ValueError("the pool holds no pages yet")
        return self.key_pages[: self._minted], self.value_pages[: self._minted]

    def read_page(self, page_id: int) -> tuple[mx.array, mx.array]:
        """The whole page (1, H, page_size, D), valid prefix and stale tail alike."""
        if self.key_pages is None or not 0 <= page_id < self._minted:
            raise ValueError(f"page {page_id} has no storage")
        return self.key_pages[page_id : page_id + 1], self.value_pages[page_id : page_id + 1]


class TinyKvPagedCache(TinyKvCache):
    """One layer's cache of one request: a page table into a shared pool.

    page_ids[i] holds positions i*page_size .. ; every page but the last is full, so
    page_lens is [page_size, ..., page_size, tail] and sums to offset.
    """

    def __init__(self, pool: TinyKvPagedPool):
        self.pool = pool
        self.page_size = pool.page_size
        self.page_ids: list[int] = []
        self.page_lens: list[int] = []
        self.offset = 0

    @property
    def num_pages(self) -> int:
        return len(self.page_ids)

    @property
    def key_values(self) -> tuple[mx.array, mx.array] | None:
        return None if self.offset == 0 else self.gather_dense()

    def _append(self, key: mx.array, value: mx.array) -> None:
        if key.shape != value.shape or key.shape[0] != 1:
            raise ValueError(f"a request cache takes (1, H, L, D) keys and values, got "
                             f"{key.shape} and {value.shape}")
        L = key.shape[2]
        done = 0
        while done < L:
            room = self.page_size - self.page_lens[-1] if self.page_ids else 0
            if room == 0:
                self.page_ids.append(self.pool.allocate_page())
                self.page_lens.append(0)
                room = self.page_size
            take = min(room, L - done)
            start = self.page_lens[-1]
            self.pool.write_page_slice(self.page_ids[-1], start,
                                       key[:, :, done : done + take],
                                       value[:, :, done : done + take])
            self.page_lens[-1] += take
            done += take
        self.offset += L

    def gather_dense(self) -> tuple[mx.array, mx.array]:
        """The cached keys and values as (1, H, offset, D), read through the page table."""
        if self.offset == 0:
            raise ValueError("the cache is empty")
        ids = mx.array(self.page_ids, dtype=mx.int32)
        out = []
        for store in (self.pool.key_pages, self.pool.value_pages):
            pages = store[ids]  # (n, H, page_size, D), in page-table order
            n, H, P, D = pages.shape
            flat = pages.transpose(1, 0, 2, 3).reshape(1, H, n * P, D)
            out.append(flat[:, :, : self.offset])  # only the last page may be partial
        return out[0], out[1]

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        self._append(key, value)
        keys, values = self.gather_dense()
        return keys, values, self.offset, mask

    def block_table(self, max_pages: int | None = None) -> mx.array:
        width = self.num_pages if max_pages is None else max_pages
        if width < self.num_pages:
            raise ValueError(f"{self.num_pages} pages do not fit max_pages={width}")
        return mx.array([self.page_ids + [-1] * (width - self.num_pages)], dtype=mx.int32)

    def context_lens(self) -> mx.array:
        return mx.array([self.offset], dtype=mx.int32)

    def paged_metadata(
        self,
        max_pages: int | None = None,
        mask: mx.array | str | None = None,
    ) -> PagedKvMetadata:
        return PagedKvMetadata(*self.pool.minted_pages(), self.block_table(max_pages),
                               self.context_lens(), self.page_size, mask)

    def update_and_fetch_paged(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> PagedKvMetadata:
        self._append(key, value)
        return self.paged_metadata(mask=mask)

    def rewind(self, n: int) -> None:
        if not 0 <= n <= self.offset:
            raise ValueError(f"cannot rewind {n} of {self.offset} positions")
        self.offset -= n
        keep = -(-self.offset // self.page_size)  # pages still holding valid positions
        while len(self.page_ids) > keep:
            self.pool.free_page(self.page_ids.pop())
            self.page_lens.pop()
        if self.page_ids:
            self.page_lens[-1] = self.offset - (keep - 1) * self.page_size

    def release(self) -> None:
        for page_id in self.page_ids:
            self.pool.free_page(page_id)
        self.page_ids = []
        self.page_lens = []
        self.offset = 0
