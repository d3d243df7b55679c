"""Key/value caches: one request's growing cache, and a batch of them side by side."""

from abc import ABC, abstractmethod
from typing import Optional

import mlx.core as mx

from .attention import causal_mask

__all__ = ["TinyKvCache", "BatchingKvCache", "TinyKvFullCache"]


class TinyKvCache(ABC):
    """What an attention layer needs from a cache.

    ``update_and_fetch(key, value, mask_length, mask)`` stores the new keys/values
    (B, H, L, D) and returns ``(keys, values, offset, mask)``: everything cached so far,
    the offset after the update (or None when rows have different lengths), and the mask
    the attention must use.
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

        Only paged caches can; a dense cache has no pages to describe.
        """
        raise NotImplementedError(f"{type(self).__name__} has no pages (not a paged cache)")

    def rewind(self, n: int) -> None:
        """Forget the last ``n`` cached positions (speculative decoding drops rejected drafts)."""
        raise NotImplementedError(f"{type(self).__name__} cannot rewind")

    def release(self) -> None:
        """Drop the cached arrays (the request is finished)."""


class TinyKvFullCache(TinyKvCache):
    """The whole history of one request, keys and values of shape (B, H, S, D)."""

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
        if self.key_values is None:
            keys, values = key, value
        else:
            old_keys, old_values = self.key_values
            # The sequence axis of (B, H, S, D) is axis 2.
            keys = mx.concatenate([old_keys, key], axis=2)
            values = mx.concatenate([old_values, value], axis=2)
        self.key_values = (keys, values)
        self.offset += key.shape[2]
        return keys, values, self.offset, mask

    def rewind(self, n: int) -> None:
        if n < 0 or n > self.offset:
            raise ValueError(f"cannot rewind {n} positions of {self.offset}")
        if n == 0:
            return
        self.offset -= n
        if self.offset == 0:
            self.key_values = None
        else:
            keys, values = self.key_values
            self.key_values = (keys[:, :, : self.offset], values[:, :, : self.offset])

    def release(self) -> None:
        self.key_values = None
        self.offset = 0


class BatchingKvCache(TinyKvCache):
    """Up to ``max_active_requests`` per-request caches decoded together.

    Row i of every batch belongs to slot i. Rows have different lengths S_i; the batch is
    S = max(S_i) long and every row is right-aligned: its data sits in the last S_i
    positions, the first S - S_i are padding. The returned mask (B, 1, L, S) hides the
    padding and is causal inside each row; an empty slot's mask row is all -inf.
    """

    def __init__(self, max_active_requests: int, max_seq_len: int):
        self.max_active_requests = max_active_requests
        self.max_seq_len = max_seq_len
        self.kv_caches: list[TinyKvCache | None] = [None] * max_active_requests
        self.HD: tuple[int, int] | None = None

    def update_and_fetch(
        self,
        keys: mx.array,
        values: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        B, H, L, D = keys.shape
        assert B == self.max_active_requests, f"batch {B} != {self.max_active_requests} slots"
        if self.HD is None:
            self.HD = (H, D)
        assert self.HD == (H, D), f"(H, D) = {(H, D)} but the cache holds {self.HD}"
        if mask_length is None:
            mask_length = L

        rows: list[tuple[mx.array, mx.array] | None] = []
        for i, cache in enumerate(self.kv_caches):
            if cache is None:
                rows.append(None)
                continue
            k, v, _, _ = cache.update_and_fetch(keys[i : i + 1], values[i : i + 1])
            rows.append((k, v))
        lengths = [0 if r is None else r[0].shape[2] for r in rows]
        S = max(lengths + [mask_length])
        assert S <= self.max_seq_len, f"sequence of {S} exceeds max_seq_len {self.max_seq_len}"

        batch_k, batch_v, masks = [], [], []
        for row, S_i in zip(rows, lengths):
            pad = S - S_i
            if row is None:
                batch_k.append(mx.zeros((1, H, S, D), dtype=keys.dtype))
                batch_v.append(mx.zeros((1, H, S, D), dtype=values.dtype))
                masks.append(mx.full((mask_length, S), -mx.inf, dtype=mx.float32))
                continue
            k, v = row
            zeros = mx.zeros((1, H, pad, D), dtype=k.dtype)
            # Right-align: padding first, then the row's own S_i positions.
            batch_k.append(mx.concatenate([zeros, k], axis=2) if pad else k)
            batch_v.append(mx.concatenate([zeros.astype(v.dtype), v], axis=2) if pad else v)
            row_mask = causal_mask(mask_length, S_i, mx.float32)
            hidden = mx.full((mask_length, pad), -mx.inf, dtype=mx.float32)
            masks.append(mx.concatenate([hidden, row_mask], axis=1) if pad else row_mask)

        out_keys = mx.concatenate(batch_k, axis=0)
        out_values = mx.concatenate(batch_v, axis=0)
        out_mask = mx.stack(masks, axis=0).reshape(B, 1, mask_length, S)
        return out_keys, out_values, None, out_mask

    def update_and_fetch_paged(
        self,
        keys: mx.array,
        values: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> "PagedKvMetadata":
        """Append row i to slot i's paged cache, then describe the whole batch as pages:
        a (B, max_pages) block table (-1 padding; an empty slot all -1), context_lens (B,)
        (0 for an empty slot) and the one pool's storage. Nothing is copied out of the pages."""
        from .paged_kv_cache import PagedKvMetadata, TinyKvPagedCache

        B, H, L, D = keys.shape
        assert B == self.max_active_requests, f"batch {B} != {self.max_active_requests} slots"
        if self.HD is None:
            self.HD = (H, D)
        assert self.HD == (H, D), f"(H, D) = {(H, D)} but the cache holds {self.HD}"
        pool = None
        for i, cache in enumerate(self.kv_caches):
            if cache is None:
                continue
            if not isinstance(cache, TinyKvPagedCache):
                raise TypeError(f"slot {i} holds a {type(cache).__name__}: paged attention "
                                "needs a TinyKvPagedCache in every slot")
            if pool is None:
                pool = cache.pool
            elif cache.pool is not pool:
                raise ValueError(f"slot {i}'s cache uses another page pool: one block table "
                                 "can only address one pool")
            cache.update_and_fetch_paged(keys[i : i + 1], values[i : i + 1], mask_length, mask)
        if pool is None:
            raise ValueError("no active request: nothing to attend to")
        # Lengths only after every append: the kernel must see this step's keys too.
        lens = [0 if c is None else c.offset for c in self.kv_caches]
        assert max(lens) <= self.max_seq_len, f"sequence exceeds max_seq_len {self.max_seq_len}"
        width = max(c.num_pages for c in self.kv_caches if c is not None)
        rows = [[-1] * width if c is None else c.page_ids + [-1] * (width - c.num_pages)
                for c in self.kv_caches]
        return PagedKvMetadata(*pool.minted_pages(), mx.array(rows, dtype=mx.int32),
                               mx.array(lens, dtype=mx.int32), pool.page_size, mask)

    def add_request(self, prefilled: TinyKvCache, id: int):
        if not 0 <= id < self.max_active_requests:
            raise ValueError(f"slot {id} outside 0..{self.max_active_requests - 1}")
        if self.kv_caches[id] is not None:
            raise ValueError(f"slot {id} is already in use")
        kv = getattr(prefilled, "key_values", None)
        if kv is not None:
            _, H, _, D = kv[0].shape
            if self.HD is None:
                self.HD = (H, D)
            assert self.HD == (H, D), f"(H, D) = {(H, D)} but the cache holds {self.HD}"
        self.kv_caches[id] = prefilled

    def remove_request(self, id: int):
        cache = self.kv_caches[id]
        if cache is None:
            raise ValueError(f"slot {id} is empty")
        cache.release()
        self.kv_caches[id] = None
