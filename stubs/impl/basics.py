"""Elementary building blocks: softmax, a linear layer and the SiLU activation."""

import mlx.core as mx

__all__ = ["softmax", "linear", "silu"]


def softmax(x: mx.array, axis: int) -> mx.array:
    """Softmax of ``x`` along ``axis``.

    Provided by the course so attention can be written first; it uses MLX's own
    softmax. Writing your own (exp, then normalise, with a max-subtraction for
    numerical stability) is a good optional exercise.
    """
    # PROVIDED: MLX's built-in softmax.
    return mx.softmax(x, axis=axis)


def linear(
    x: mx.array,
    w: mx.array,
    bias: mx.array | None = None,
) -> mx.array:
    """A fully connected layer.

    x: (N.., I) inputs; w: (O, I) weight, stored output-major like PyTorch/MLX;
    bias: (O,) or None. Returns (N.., O).
    """
    raise NotImplementedError("linear is still a stub (lesson day 1.1)")


def silu(x: mx.array) -> mx.array:
    """The SiLU (swish) activation, elementwise; same shape and dtype as ``x``."""
    raise NotImplementedError("silu is still a stub (lesson day 1.4)")
