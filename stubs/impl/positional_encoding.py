"""Rotary positional embeddings (RoPE)."""

import mlx.core as mx

__all__ = ["RoPE"]


class RoPE:
    """Rotary positional embedding over the last axis of (N, L, H, D) inputs.

    dims: D (even); seq_len: the largest position supported; base: the
    frequency base. traditional=True rotates interleaved pairs (x[2i], x[2i+1]);
    traditional=False (what Qwen2 uses) pairs the first and second halves,
    (x[i], x[i + D/2]). Pair i turns by the angle position * base ** (-i / (D/2)).
    """

    def __init__(
        self,
        dims: int,
        seq_len: int,
        base: int = 10000,
        traditional: bool = False,
    ):
        self.dims = dims
        self.seq_len = seq_len
        self.base = base
        self.traditional = traditional

    def __call__(
        self, x: mx.array, offset: list[slice] | slice | None = None
    ) -> mx.array:
        """x: (N, L, H, D) -> same shape and dtype.

        offset gives the positions of the L tokens: None means 0..L-1, a slice
        of length L gives them for every batch row, and a list of N slices
        (needed in week 2) gives them row by row.
        """
        raise NotImplementedError("RoPE.__call__ is still a stub (lesson day 1.2)")
