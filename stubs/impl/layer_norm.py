"""Root-mean-square layer normalisation."""

import mlx.core as mx

__all__ = ["RMSNorm"]


class RMSNorm:
    """RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight.

    weight: (dim,). Inputs may be float16: compute the statistics in float32
    and return the input's dtype.
    """

    def __init__(self, dim: int, weight: mx.array, eps: float = 1e-5):
        self.dim = dim
        self.weight = weight
        self.eps = eps

    def __call__(self, x: mx.array) -> mx.array:
        """x: (N.., dim) -> (N.., dim), same dtype as x."""
        raise NotImplementedError("RMSNorm.__call__ is still a stub (lesson day 1.4)")
