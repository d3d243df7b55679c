"""Key/value caches: one request's growing cache (day 2.1) and a batch of them (day 2.6)."""

from abc import ABC, abstractmethod
from typing import Optional

import mlx.core as mx

from .attention import causal_mask  # noqa: F401  (you will want it on day 2.6)

__all__ = ["TinyKvCache", "BatchingKvCache", "TinyKvFullCache"]


class TinyKvCache(ABC):
    """What an attention layer needs from a cache. PROVIDED: the interface.

    ``update_and_fetch(key, value, mask_length, mask)`` receives the keys and values of
    the new tokens, laid out (B, H, L, D) as the attention uses them, stores them, and
    returns a 4-tuple ``(keys, values, offset, mask)``:

    - keys, values: everything cached so far, (B, H, S, D);
    - offset: how many positions the cache holds after the update (None if the rows of
      the batch have different lengths);
    - mask: the mask the attention should use with these keys (the one passed in, or
      one the cache builds itself).
    """

    @abstractmethod
    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        ...

    def update_and_fetch_paged(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> "PagedKvMetadata":  # noqa: F821  (defined in paged_kv_cache)
        """Store the new keys/values and describe the cache as pages (week 3).

        PROVIDED: only paged caches (day 3.1) override this; a dense cache has no pages.
        """
        raise NotImplementedError(f"{type(self).__name__} has no pages (not a paged cache)")

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` cached positions (week 3: speculative decoding drops the
        positions of rejected draft tokens). PROVIDED default: this cache cannot."""
        raise NotImplementedError(f"{type(self).__name__} cannot rewind")

    def release(self) -> None:
        """Drop the cached arrays once the request is finished."""


class TinyKvFullCache(TinyKvCache):
    """The whole key/value history of one request.

    ``key_values`` is None while empty, then the pair (keys, values), each (B, H, S, D);
    ``offset`` is S, the number of positions cached.
    """

    def __init__(self):
        self.key_values: tuple[mx.array, mx.array] | None = None
        self.offset = 0

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        """Append the new (B, H, L, D) keys and values after the cached ones.

        Returns (all keys, all values, the new offset, ``mask`` unchanged). ``mask_length``
        is not needed by this cache.
        """
        raise NotImplementedError("TinyKvFullCache.update_and_fetch is still a stub (lesson day 2.1)")

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` positions: afterwards the cache is exactly what it was
        before those positions were appended (``0 <= n <= offset``, else ValueError)."""
        raise NotImplementedError("TinyKvFullCache.rewind is still a stub (lesson day 3.1)")

    def release(self) -> None:
        # PROVIDED
        self.key_values = None
        self.offset = 0


class BatchingKvCache(TinyKvCache):
    """Up to ``max_active_requests`` request caches decoded as one batch (day 2.6).

    Slot i of the cache is row i of every batch. Each slot holds one request's own
    cache (added with ``add_request``) or nothing. Rows have different lengths S_i; the
    batch returned by ``update_and_fetch`` is S = max(S_i) long, with every row
    **right-aligned** (its data in the last S_i positions, zeros before), and comes with
    a mask of shape (B, 1, L, S) where L = ``mask_length``: causal within the row's own
    S_i positions, -inf on the padding, and all -inf for an empty slot. The offset in
    the returned tuple is None.
    """

    def __init__(self, max_active_requests: int, max_seq_len: int):
        self.max_active_requests = max_active_requests
        self.max_seq_len = max_seq_len
        # Add what you need to remember per slot.

    def update_and_fetch(
        self,
        keys: mx.array,
        values: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        """keys, values: (B, H, L, D) with B = max_active_requests; row i goes to slot i
        (rows of empty slots are ignored). Returns (keys (B, H, S, D), values, None,
        mask (B, 1, L, S))."""
        raise NotImplementedError("BatchingKvCache.update_and_fetch is still a stub (lesson day 2.6)")

    def update_and_fetch_paged(
        self,
        keys: mx.array,
        values: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> "PagedKvMetadata":
        """Week 3: append row i of ``keys``/``values`` (B, H, L, D) to slot i's
        ``TinyKvPagedCache``, then return one ``PagedKvMetadata`` for the batch: the shared
        pool's key/value pages, a (B, max_pages) int32 block table (each slot's page ids,
        padded with -1; an empty slot all -1), context_lens (B,) int32 (0 for an empty
        slot), the page size and ``mask``. Every slot must hold a paged cache on one pool."""
        raise NotImplementedError(
            "BatchingKvCache.update_and_fetch_paged is still a stub (lesson day 3.2)")

    def add_request(self, prefilled: TinyKvCache, id: int):
        """Put a request's (already prefilled) cache into the empty slot ``id``."""
        raise NotImplementedError("BatchingKvCache.add_request is still a stub (lesson day 2.6)")

    def remove_request(self, id: int):
        """Empty slot ``id`` and release the request's cache."""
        raise NotImplementedError("BatchingKvCache.remove_request is still a stub (lesson day 2.6)")
