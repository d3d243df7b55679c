"""Helpers for the int4 weights shipped in MLX checkpoints. PROVIDED: nothing to implement here."""

from typing import Any

import mlx.core as mx

__all__ = ["dequantize_linear", "QuantizedWeights"]


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
