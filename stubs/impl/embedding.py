"""Token embedding table, also usable as the output head."""

import mlx.core as mx

from .basics import linear  # noqa: F401  (you will want it)

__all__ = ["Embedding"]


class Embedding:
    """weight: (vocab_size, embedding_dim), one row per token id."""

    def __init__(self, vocab_size: int, embedding_dim: int, weight: mx.array):
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.weight = weight

    def __call__(self, x: mx.array) -> mx.array:
        """Token ids of shape (N..) -> embeddings of shape (N.., embedding_dim)."""
        raise NotImplementedError("Embedding.__call__ is still a stub (lesson day 1.5)")

    def as_linear(self, x: mx.array) -> mx.array:
        """Hidden states (N.., embedding_dim) -> logits (N.., vocab_size), reusing the table."""
        raise NotImplementedError("Embedding.as_linear is still a stub (lesson day 1.5)")
