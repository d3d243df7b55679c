"""Elementary building blocks: softmax, a linear layer and the SiLU activation."""

import mlx.core as mx

__all__ = ["softmax", "linear", "silu"]


def softmax(x: mx.array, axis: int) -> mx.array:
    """Numerically stable softmax along ``axis``.

    The maximum is subtracted before exponentiating so that large logits
    cannot overflow; the result is mathematically unchanged.
    """
    shifted = x - mx.max(x, axis=axis, keepdims=True)
    e = mx.exp(shifted)
    return e / mx.sum(e, axis=axis, keepdims=True)


def linear(
    x: mx.array,
    w: mx.array,
    bias: mx.array | None = None,
) -> mx.array:
    """``x @ w.T (+ bias)`` with x: (N.., I), w: (O, I), bias: (O,) -> (N.., O)."""
    if bias is None:
        return x @ w.T
    return mx.addmm(bias, x, w.T)


def silu(x: mx.array) -> mx.array:
    """SiLU / swish: ``x * sigmoid(x)``."""
    return x * mx.sigmoid(x)
