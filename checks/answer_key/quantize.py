"""The int4 weights shipped in MLX checkpoints: dequantizing them (week 1) and multiplying
by them without dequantizing (week 2, through the extension's quantized_matmul)."""

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


def _extension():
    """The compiled extension the check process made importable: the answer key's own
    build (``tiny_llm_ext_key``) when it is loaded, else ``tiny_llm_ext``. Imported on
    first use only, so this package imports without any extension built."""
    import sys

    key = sys.modules.get("tiny_llm_ext_key")
    if key is not None:
        return key
    try:
        import tiny_llm_ext

        return tiny_llm_ext
    except ImportError:
        import tiny_llm_ext_key

        return tiny_llm_ext_key


def quantized_matmul(
    scales: mx.array,
    biases: mx.array,
    group_size: int,
    bits: int,
    a: mx.array,
    b: mx.array,
    transpose_b: bool = False,
) -> mx.array:
    """``a @ dequantize(b).T`` (transpose_b) or ``a @ dequantize(b)`` via the extension.

    a: (N.., D) activations; b: packed uint32 weights with their scales/biases. The kernel
    takes a 2-D, row-contiguous ``a``, so the leading axes are flattened and restored.
    """
    ext = _extension()
    *lead, D = a.shape
    a2 = mx.contiguous(a.reshape(-1, D))
    out = ext.quantized_matmul(
        scales,
        biases,
        group_size,
        bits,
        a2,
        mx.contiguous(b),
        transpose_b=transpose_b,
    )
    return out.reshape(*lead, -1)


def quantized_linear(
    x: mx.array,
    w: QuantizedWeights,
    bias: mx.array | None = None,
) -> mx.array:
    """A linear layer with a quantized (O, I) weight: x (N.., I) -> (N.., O), plus bias."""
    out = quantized_matmul(w.scales, w.biases, w.group_size, w.bits, x, w.weight, True)
    if bias is not None:
        out = out + bias
    return out
