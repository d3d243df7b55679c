"""Token embedding table, usable as an output head (weight tying)."""

import mlx.core as mx

from .basics import linear

__all__ = ["Embedding"]


class Embedding:
    """weight: (vocab_size, embedding_dim)."""

    def __init__(self, vocab_size: int, embedding_dim: int, weight: mx.array):
        assert weight.shape == (vocab_size, embedding_dim)
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.weight = weight

    def __call__(self, x: mx.array) -> mx.array:
        """Token ids (N..) -> vectors (N.., embedding_dim): a row lookup."""
        return self.weight[x]

    def as_linear(self, x: mx.array) -> mx.array:
        """Hidden states (N.., embedding_dim) -> logits (N.., vocab_size)."""
        return linear(x, self.weight)
