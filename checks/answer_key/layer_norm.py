"""Root-mean-square layer normalisation."""

import mlx.core as mx

__all__ = ["RMSNorm"]


class RMSNorm:
    """y = x / sqrt(mean(x^2, last axis) + eps) * weight.

    The statistics are accumulated in float32 (float16 squares overflow and lose
    precision) and the result is cast back to the input dtype.
    """

    def __init__(self, dim: int, weight: mx.array, eps: float = 1e-5):
        assert weight.shape == (dim,), f"weight must have shape ({dim},)"
        self.dim = dim
        self.eps = eps
        self.weight = weight.astype(mx.float32)

    def __call__(self, x: mx.array) -> mx.array:
        xf = x.astype(mx.float32)
        inv_rms = mx.rsqrt(mx.mean(mx.square(xf), axis=-1, keepdims=True) + self.eps)
        return (xf * inv_rms * self.weight).astype(x.dtype)
