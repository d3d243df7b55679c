"""Paged KV storage (day 3.1): a pool of fixed-size pages shared by a whole model, and a
per-layer request cache that keeps only a page table into it."""

from dataclasses import dataclass
from typing import Optional

import mlx.core as mx

from .kv_cache import TinyKvCache

__all__ = ["PagedKvMetadata", "TinyKvPagedPool", "TinyKvPagedCache"]


@dataclass
class PagedKvMetadata:
    """PROVIDED. What a paged attention reads instead of dense keys and values (day 3.2):

    - key_pages, value_pages: the pool's storage, (num pages, H, page_size, D);
    - block_table: (B, max_pages) int32, row b lists request b's page ids in order,
      padded with -1;
    - context_lens: (B,) int32, how many positions of each row are valid;
    - page_size: positions per page; mask: the mask to attend with.
    """

    key_pages: mx.array
    value_pages: mx.array
    block_table: mx.array
    context_lens: mx.array
    page_size: int
    mask: mx.array | str | None = None


class TinyKvPagedPool:
    """The model's one store of KV pages, shared by every layer cache of every request.

    A page holds ``page_size`` positions of keys and values for all kv heads, (1, H,
    page_size, D) when read. The pool hands out page ids, takes freed ones back, and hands
    a freed id out again before it makes a new page. It does not know which request or
    layer a page belongs to.
    """

    def __init__(self, page_size: int = 128):
        """An empty pool of pages of ``page_size`` positions. (H, D and the dtype are only
        known from the first write.)"""
        raise NotImplementedError("TinyKvPagedPool.__init__ is still a stub (lesson day 3.1)")

    @property
    def num_pages(self) -> int:
        """How many pages the pool has made so far, in use or free."""
        raise NotImplementedError("TinyKvPagedPool.num_pages is still a stub (lesson day 3.1)")

    @property
    def num_free_pages(self) -> int:
        """How many of those pages are free."""
        raise NotImplementedError("TinyKvPagedPool.num_free_pages is still a stub (lesson day 3.1)")

    def allocate_page(self) -> int:
        """A page id for the caller to use: a freed one if there is one, else a new page."""
        raise NotImplementedError("TinyKvPagedPool.allocate_page is still a stub (lesson day 3.1)")

    def read_page(self, page_id: int) -> tuple[mx.array, mx.array]:
        """The page's keys and values, each (1, H, page_size, D): the whole page, whatever
        part of it is valid."""
        raise NotImplementedError("TinyKvPagedPool.read_page is still a stub (lesson day 3.1)")

    def write_page_slice(
        self,
        page_id: int,
        start: int,
        key: mx.array,
        value: mx.array,
    ) -> None:
        """Store key/value of shape (1, H, n, D) at positions start .. start+n-1 of the page
        ``page_id`` (in use; start + n <= page_size). Only those positions change."""
        raise NotImplementedError("TinyKvPagedPool.write_page_slice is still a stub (lesson day 3.1)")

    def free_page(self, page_id: int) -> None:
        """Give a page in use back to the pool."""
        raise NotImplementedError("TinyKvPagedPool.free_page is still a stub (lesson day 3.1)")


class TinyKvPagedCache(TinyKvCache):
    """One layer's cache for one request, kept in pages of the model's pool.

    ``page_ids`` lists the request's pages in order, ``page_lens`` how many positions of
    each are valid, ``offset`` how many positions are cached in all (the context length).
    The cache owns its pages until ``release()`` or ``rewind(n)`` gives them back.
    """

    def __init__(self, pool: TinyKvPagedPool):
        """An empty cache on ``pool`` (the model's; never a pool of its own)."""
        raise NotImplementedError("TinyKvPagedCache.__init__ is still a stub (lesson day 3.1)")

    @property
    def num_pages(self) -> int:
        """How many pages the request holds."""
        raise NotImplementedError("TinyKvPagedCache.num_pages is still a stub (lesson day 3.1)")

    def gather_dense(self) -> tuple[mx.array, mx.array]:
        """All cached keys and values, (1, H, offset, D) each, read from the pages in order:
        what a TinyKvFullCache holding the same positions would hold."""
        raise NotImplementedError("TinyKvPagedCache.gather_dense is still a stub (lesson day 3.1)")

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        """Store the new (1, H, L, D) keys and values in the pages, then return (all keys,
        all values, the new offset, ``mask`` unchanged), keys and values gathered dense."""
        raise NotImplementedError("TinyKvPagedCache.update_and_fetch is still a stub (lesson day 3.1)")

    def block_table(self, max_pages: int | None = None) -> mx.array:
        """(1, max_pages) int32: the page ids, padded with -1 (max_pages defaults to
        num_pages). Used from day 3.2."""
        raise NotImplementedError("TinyKvPagedCache.block_table is still a stub (lesson day 3.2)")

    def context_lens(self) -> mx.array:
        """(1,) int32: the offset. Used from day 3.2."""
        raise NotImplementedError("TinyKvPagedCache.context_lens is still a stub (lesson day 3.2)")

    def paged_metadata(
        self,
        max_pages: int | None = None,
        mask: mx.array | str | None = None,
    ) -> PagedKvMetadata:
        """This request's PagedKvMetadata over the pool's storage. Used from day 3.2."""
        raise NotImplementedError("TinyKvPagedCache.paged_metadata is still a stub (lesson day 3.2)")

    def update_and_fetch_paged(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> PagedKvMetadata:
        """Store the new keys and values like update_and_fetch, but return the paged
        metadata instead of dense K/V. Used from day 3.2."""
        raise NotImplementedError("TinyKvPagedCache.update_and_fetch_paged is still a stub (lesson day 3.2)")

    def rewind(self, n: int):
        """Forget the newest ``n`` positions (0 <= n <= offset): afterwards the cache is
        what it was before they were appended, and pages left without a valid position go
        back to the pool."""
        raise NotImplementedError("TinyKvPagedCache.rewind is still a stub (lesson day 3.1)")

    def release(self):
        """The request is finished: give every page back to the pool and empty the cache."""
        raise NotImplementedError("TinyKvPagedCache.release is still a stub (lesson day 3.1)")
