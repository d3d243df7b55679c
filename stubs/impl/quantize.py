"""The int4 weights shipped in MLX checkpoints. PROVIDED: dequantize_linear and
QuantizedWeights. Yours (day 2.2): quantized_matmul and quantized_linear."""

from typing import Any

import mlx.core as mx

__all__ = ["dequantize_linear", "QuantizedWeights", "quantized_matmul", "quantized_linear"]


def dequantize_linear(mx_layer: Any) -> mx.array:
    """Full-precision weight matrix of an mlx ``QuantizedLinear``/``QuantizedEmbedding``.

    A layer that is not quantized (plain ``nn.Linear``/``nn.Embedding``) has no
    ``scales``; its weight is returned unchanged.
    """
    scales = getattr(mx_layer, "scales", None)
    if scales is None:
        return mx_layer.weight
    return mx.dequantize(
        mx_layer.weight,
        scales,
        getattr(mx_layer, "biases", None),
        group_size=mx_layer.group_size,
        bits=mx_layer.bits,
        mode=getattr(mx_layer, "mode", "affine"),
    )


class QuantizedWeights:
    """The packed weight of a quantized linear layer plus what is needed to unpack it.

    weight: (O, I * bits / 32) uint32; scales/biases: (O, I / group_size).
    """

    def __init__(
        self,
        scales: mx.array,
        biases: mx.array,
        group_size: int,
        bits: int,
        weight: mx.array,
    ):
        self.scales = scales
        self.biases = biases
        self.group_size = group_size
        self.bits = bits
        self.weight = weight

    @staticmethod
    def from_mlx_layer(mlx_layer: Any) -> "QuantizedWeights":
        return QuantizedWeights(
            scales=mlx_layer.scales,
            biases=mlx_layer.biases,
            group_size=mlx_layer.group_size,
            bits=mlx_layer.bits,
            weight=mlx_layer.weight,
        )


def quantized_matmul(
    scales: mx.array,
    biases: mx.array,
    group_size: int,
    bits: int,
    a: mx.array,
    b: mx.array,
    transpose_b: bool = False,
) -> mx.array:
    """Multiply activations by a packed quantized matrix with your extension (day 2.2).

    a: (N.., D) activations; b: the packed uint32 weight with its ``scales`` and
    ``biases`` (one pair per group of ``group_size`` values, ``bits`` bits per value).
    With ``transpose_b`` the result is a @ dequantize(b).T, shape (N.., K).

    The extension's ``quantized_matmul`` (same arguments) takes a 2-D, row-contiguous
    ``a``: flatten the leading axes, call it, and restore them. Import it inside this
    function (``from tiny_llm_ext import quantized_matmul``) so that the package still
    imports when the extension is not built.
    """
    raise NotImplementedError("quantized_matmul is still a stub (lesson day 2.2)")


def quantized_linear(
    x: mx.array,
    w: QuantizedWeights,
    bias: mx.array | None = None,
) -> mx.array:
    """A linear layer whose (O, I) weight is quantized: x (N.., I) -> (N.., O), plus
    ``bias`` (O,) if given. Like ``linear``, the weight is stored output-major (day 2.2)."""
    raise NotImplementedError("quantized_linear is still a stub (lesson day 2.2)")
