"""Long context: YaRN-scaled RoPE, a sink + sliding-window KV cache, a quantized KV cache."""

from __future__ import annotations

import math
from typing import Optional

import mlx.core as mx

from .kv_cache import TinyKvCache
from .positional_encoding import RoPE

__all__ = [
    "yarn_inv_freq",
    "yarn_mscale",
    "YarnRoPE",
    "rope_from_config",
    "TinyKvSinkCache",
    "TinyKvQuantizedCache",
]


def yarn_inv_freq(
    dims: int,
    base: float,
    factor: float,
    original_max_position_embeddings: int,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
) -> mx.array:
    """YaRN's per-pair rotation speeds (radians per position), (dims // 2,) float32."""

    def pair_index(turns: float) -> float:
        # The pair whose wavelength fits `turns` times into the trained length.
        return dims * math.log(original_max_position_embeddings / (turns * 2 * math.pi)) / (
            2 * math.log(base)
        )

    low = max(math.floor(pair_index(beta_fast)), 0)
    high = min(math.ceil(pair_index(beta_slow)), dims - 1)
    if low == high:
        high += 0.001
    half = dims // 2
    plain = mx.power(float(base), -mx.arange(0, dims, 2, dtype=mx.float32) / dims)
    ramp = mx.clip((mx.arange(half, dtype=mx.float32) - low) / (high - low), 0.0, 1.0)
    return plain * (1 - ramp) + (plain / factor) * ramp


def yarn_mscale(factor: float) -> float:
    """YaRN's attention temperature, applied to q and k alike."""
    return 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0


class YarnRoPE(RoPE):
    """RoPE whose speeds come from YaRN, its output scaled by the temperature."""

    def __init__(
        self,
        dims: int,
        seq_len: int,
        base: float = 10000,
        traditional: bool = False,
        factor: float = 1.0,
        original_max_position_embeddings: int = 4096,
        beta_fast: float = 32.0,
        beta_slow: float = 1.0,
    ):
        super().__init__(dims, seq_len, base, traditional)
        self.factor = factor
        self.original_max_position_embeddings = original_max_position_embeddings
        self.beta_fast = beta_fast
        self.beta_slow = beta_slow
        # RoPE.__call__ reads its speeds from inv_freq: replacing them is all YaRN changes
        # in the rotation itself.
        self.inv_freq = yarn_inv_freq(
            dims, base, factor, original_max_position_embeddings, beta_fast, beta_slow
        )
        self.mscale = yarn_mscale(factor)

    def __call__(
        self, x: mx.array, offset: list[slice] | slice | None = None
    ) -> mx.array:
        y = super().__call__(x, offset)
        if self.mscale == 1.0:
            return y
        return (y * self.mscale).astype(x.dtype)


def rope_from_config(
    dims: int,
    seq_len: int,
    base: float,
    traditional: bool = False,
    rope_scaling: dict | None = None,
) -> RoPE | YarnRoPE:
    """The RoPE of a Qwen2 config's ``rope_scaling`` (None, "default" or "yarn")."""
    if rope_scaling is None:
        return RoPE(dims, seq_len, base, traditional)
    kind = rope_scaling.get("type") or rope_scaling.get("rope_type") or "default"
    if kind == "default":
        return RoPE(dims, seq_len, base, traditional)
    if kind != "yarn":
        raise ValueError(f"rope_scaling type {kind!r} is not supported (only 'yarn')")
    for needed in ("factor", "original_max_position_embeddings"):
        if needed not in rope_scaling:
            raise ValueError(f"a yarn rope_scaling needs {needed!r}")
    return YarnRoPE(
        dims,
        seq_len,
        base,
        traditional,
        factor=float(rope_scaling["factor"]),
        original_max_position_embeddings=int(rope_scaling["original_max_position_embeddings"]),
        beta_fast=float(rope_scaling.get("beta_fast", 32.0)),
        beta_slow=float(rope_scaling.get("beta_slow", 1.0)),
    )


class TinyKvSinkCache(TinyKvCache):
    """The first ``sink_size`` positions plus the last ``window_size``, in position order."""

    def __init__(self, sink_size: int, window_size: int):
        if sink_size < 0 or window_size < 1:
            raise ValueError("need sink_size >= 0 and window_size >= 1")
        self.sink_size = sink_size
        self.window_size = window_size
        self.offset = 0
        self.key_values: tuple[mx.array, mx.array] | None = None
        # Absolute position of every cached entry: sinks first, then the window.
        self.positions: list[int] = []

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        L = key.shape[2]
        first = self.offset  # position of the first new query
        # The earliest new query still sees the last window_size - 1 positions before it;
        # anything older (and not a sink) can go before attending.
        keep = [i for i, p in enumerate(self.positions)
                if p < self.sink_size or p > first - self.window_size]
        positions = [self.positions[i] for i in keep] + list(range(first, first + L))
        if self.key_values is None:
            keys, values = key, value
        else:
            old_k, old_v = self.key_values
            idx = mx.array(keep, dtype=mx.int32)
            keys = mx.concatenate([old_k[:, :, idx], key], axis=2)
            values = mx.concatenate([old_v[:, :, idx], value], axis=2)

        pos = mx.array(positions, dtype=mx.int32)[None, :]
        query = mx.arange(first, first + L, dtype=mx.int32)[:, None]
        visible = (pos <= query) & ((pos < self.sink_size) | (pos > query - self.window_size))
        out_mask = mx.where(visible, 0.0, -mx.inf).astype(mx.float32)

        self.offset = first + L
        last = self.offset
        stay = [i for i, p in enumerate(positions)
                if p < self.sink_size or p > last - 1 - self.window_size]
        if len(stay) == len(positions):
            self.key_values = (keys, values)
        else:
            idx = mx.array(stay, dtype=mx.int32)
            self.key_values = (keys[:, :, idx], values[:, :, idx])
        self.positions = [positions[i] for i in stay]
        return keys, values, self.offset, out_mask

    @property
    def nbytes(self) -> int:
        if self.key_values is None:
            return 0
        return self.key_values[0].nbytes + self.key_values[1].nbytes

    def release(self) -> None:
        self.key_values = None
        self.positions = []
        self.offset = 0


class TinyKvQuantizedCache(TinyKvCache):
    """Every cached key and value stored as ``bits``-bit groups of ``group_size``."""

    def __init__(self, group_size: int = 64, bits: int = 8):
        self.group_size = group_size
        self.bits = bits
        self.offset = 0
        # (packed, scales, biases) for the keys, then for the values.
        self.parts: tuple[tuple[mx.array, ...], tuple[mx.array, ...]] | None = None

    def _quantize(self, x: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        packed, scales, biases = mx.quantize(x, group_size=self.group_size, bits=self.bits)
        return packed, scales.astype(x.dtype), biases.astype(x.dtype)

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        new = (self._quantize(key), self._quantize(value))
        if self.parts is None:
            self.parts = new
        else:
            self.parts = tuple(
                tuple(mx.concatenate([old, add], axis=2) for old, add in zip(olds, adds))
                for olds, adds in zip(self.parts, new)
            )
        self.offset += key.shape[2]
        keys, values = (
            mx.dequantize(*p, group_size=self.group_size, bits=self.bits).astype(key.dtype)
            for p in self.parts
        )
        return keys, values, self.offset, mask

    @property
    def nbytes(self) -> int:
        if self.parts is None:
            return 0
        return sum(a.nbytes for p in self.parts for a in p)

    def release(self) -> None:
        self.parts = None
        self.offset = 0
