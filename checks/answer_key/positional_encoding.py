"""Rotary positional embeddings (RoPE), traditional and half-split layouts."""

import operator

import mlx.core as mx

__all__ = ["RoPE"]


class RoPE:
    """Rotate pairs of feature dimensions by a position-dependent angle.

    x: (N, L, H, D). Pair i is rotated by ``position * base ** (-i / (D/2))``.
    traditional=True pairs (x[2i], x[2i+1]); False (Qwen2) pairs (x[i], x[i + D/2]).
    offset: None (positions 0..L-1), a slice of length L, or a list of N slices
    (one per batch row) each of length L.
    """

    def __init__(
        self,
        dims: int,
        seq_len: int,
        base: int = 10000,
        traditional: bool = False,
    ):
        assert dims % 2 == 0, "RoPE needs an even number of dimensions"
        self.dims = dims
        self.seq_len = seq_len
        self.base = base
        self.traditional = traditional
        half = dims // 2
        # Angles are built per call from the requested positions (L x D/2 values), so
        # a model with many layers and a long max_seq_len keeps no large tables around.
        self.inv_freq = mx.power(float(base), -mx.arange(half, dtype=mx.float32) / half)

    def _start(self, s: slice, length: int) -> int:
        # Callers build slices from Python ints, NumPy integers (the book's tests use
        # np.random) or 0-d mx.arrays; operator.index turns each into a plain int (and
        # refuses floats), so the positions below are always a float32 mx.array.
        start = 0 if s.start is None else operator.index(s.start)
        stop = start + length if s.stop is None else operator.index(s.stop)
        if s.step not in (None, 1) or stop - start != length:
            raise ValueError(f"offset {s} must cover exactly {length} consecutive positions")
        if start < 0 or stop > self.seq_len:
            raise ValueError(f"offset {s} is outside the supported 0..{self.seq_len} positions")
        return start

    def _positions(self, offset, batch: int, length: int) -> mx.array:
        """Absolute positions: (1, L) for None or a slice, (N, L) for a list of slices."""
        steps = mx.arange(length, dtype=mx.float32)
        if offset is None:
            if length > self.seq_len:
                raise ValueError(f"sequence of {length} exceeds seq_len {self.seq_len}")
            return steps[None, :]
        if isinstance(offset, slice):
            return (self._start(offset, length) + steps)[None, :]
        offsets = list(offset)
        if len(offsets) != batch:
            raise ValueError(f"need one offset slice per batch row: {len(offsets)} != {batch}")
        starts = mx.array([self._start(s, length) for s in offsets], dtype=mx.float32)
        return starts[:, None] + steps[None, :]

    def __call__(
        self, x: mx.array, offset: list[slice] | slice | None = None
    ) -> mx.array:
        N, L, H, D = x.shape
        assert D == self.dims, f"expected head dim {self.dims}, got {D}"
        half = D // 2
        pos = self._positions(offset, N, L)  # (1 | N, L)
        angles = pos[:, :, None, None] * self.inv_freq  # (1 | N, L, 1, D/2)
        cos, sin = mx.cos(angles), mx.sin(angles)

        if self.traditional:
            pairs = x.reshape(N, L, H, half, 2)
            x1, x2 = pairs[..., 0], pairs[..., 1]
        else:
            x1, x2 = x[..., :half], x[..., half:]
        y1 = x1 * cos - x2 * sin
        y2 = x1 * sin + x2 * cos
        if self.traditional:
            y = mx.stack([y1, y2], axis=-1).reshape(N, L, H, D)
        else:
            y = mx.concatenate([y1, y2], axis=-1)
        return y.astype(x.dtype)
