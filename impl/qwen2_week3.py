"""Qwen2 over paged KV storage (week 3). Day 3.1: the week-2 model with one page pool per
model and a paged cache per layer, attention still on the dense K/V the cache gathers.
Day 3.2: attention that reads the pages directly."""

from typing import Any

import mlx.core as mx

from .kv_cache import TinyKvCache
from .paged_kv_cache import TinyKvPagedCache, TinyKvPagedPool  # noqa: F401
from .qwen2_week2 import Qwen2MLP, Qwen2MultiHeadAttention, Qwen2TransformerBlock  # noqa: F401

__all__ = ["Qwen2ModelWeek3"]


class Qwen2ModelWeek3:
    """The week-2 model (same weights, same blocks) whose KV lives in pages.

    The model owns one ``TinyKvPagedPool(page_size)`` as ``self.page_pool``; every layer
    cache of every request is made on that pool.
    """

    def __init__(
        self,
        mlx_model: Any,
        page_size: int = 128,
    ):
        self.num_hidden_layers = mlx_model.args.num_hidden_layers
        self.page_size = page_size
        self.mlx_model = mlx_model

    def create_kv_cache(self) -> list[TinyKvCache]:
        """One new request: one TinyKvPagedCache per layer, all on the model's page_pool."""
        raise NotImplementedError("Qwen2ModelWeek3.create_kv_cache is still a stub (lesson day 3.1)")

    def __call__(
        self,
        inputs: mx.array,
        offset: int | list[int] | mx.array,
        cache: list[TinyKvCache],
    ) -> mx.array:
        """Token ids (B, L) -> logits (B, L, vocab_size), as the week-2 model: ``offset``
        one int for the whole batch or one per row, ``cache`` one cache per layer."""
        raise NotImplementedError("Qwen2ModelWeek3.__call__ is still a stub (lesson day 3.1)")
