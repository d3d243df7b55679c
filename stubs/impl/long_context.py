"""Long context (day 3.7): RoPE past the trained length with YaRN, a KV cache that keeps
"sink" tokens and a sliding window, and a KV cache stored quantized.

All shapes follow the rest of the package: RoPE inputs are (N, L, H, D) like ``RoPE``
(day 1.2); caches receive and return (B, H, L, D) keys and values through the week-2
interface ``update_and_fetch(key, value, mask_length=None, mask=None)``.
"""

from __future__ import annotations

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
    """The D/2 rotation speeds (radians per position) of YaRN, float32, shape (dims // 2,).

    Pair i of plain RoPE turns by ``base ** (-2i / dims)`` per position. YaRN keeps the
    fast pairs as they are, slows the slow pairs down by ``factor``, and blends the pairs
    in between:

    - the pair that makes r full turns over ``original_max_position_embeddings`` positions
      sits at the (fractional) index
      ``dims * log(original_max_position_embeddings / (2 * pi * r)) / (2 * log(base))``;
    - ``low`` is that index for r = beta_fast rounded down, ``high`` the one for
      r = beta_slow rounded up, both kept within 0..dims - 1 (if they are equal, add
      0.001 to ``high``);
    - ``ramp_i = clip((i - low) / (high - low), 0, 1)``: 0 for pairs that keep their speed,
      1 for pairs slowed down by ``factor``;
    - speed_i = plain_i * (1 - ramp_i) + (plain_i / factor) * ramp_i.
    """
    raise NotImplementedError("yarn_inv_freq")


def yarn_mscale(factor: float) -> float:
    """YaRN's attention temperature, as a multiplier of the rotated queries and keys.

    ``0.1 * ln(factor) + 1`` when ``factor > 1``, else 1.0. Both q and k are multiplied by
    it, so the attention logits grow by its square.
    """
    raise NotImplementedError("yarn_mscale")


class YarnRoPE:
    """RoPE with YaRN scaling; called exactly like ``RoPE`` (day 1.2).

    dims, seq_len (the largest position supported), base and traditional mean what they
    mean for ``RoPE``; factor, original_max_position_embeddings, beta_fast and beta_slow
    are YaRN's (see ``yarn_inv_freq``). ``x (N, L, H, D)`` -> same shape and dtype: each
    pair rotated by position * ``yarn_inv_freq(...)[i]``, and the result multiplied by
    ``yarn_mscale(factor)``. ``offset`` is None, a slice, or a list of N slices, as for
    ``RoPE``.
    """

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
        self.dims = dims
        self.seq_len = seq_len
        self.base = base
        self.traditional = traditional
        self.factor = factor
        self.original_max_position_embeddings = original_max_position_embeddings
        self.beta_fast = beta_fast
        self.beta_slow = beta_slow

    def __call__(
        self, x: mx.array, offset: list[slice] | slice | None = None
    ) -> mx.array:
        raise NotImplementedError("YarnRoPE.__call__")


def rope_from_config(
    dims: int,
    seq_len: int,
    base: float,
    traditional: bool = False,
    rope_scaling: dict | None = None,
) -> RoPE | YarnRoPE:
    """The RoPE a Qwen2 ``config.json`` asks for.

    ``rope_scaling`` is the config's dict, or None. None, or a type of "default", gives a
    plain ``RoPE``. A type of "yarn" gives a ``YarnRoPE`` with the dict's ``factor`` and
    ``original_max_position_embeddings`` (and ``beta_fast`` / ``beta_slow`` when
    present). The type is under the key "type" or "rope_type" (configs use both). Raise
    ValueError for any other type, and for a "yarn" dict without ``factor`` or
    ``original_max_position_embeddings``.
    """
    raise NotImplementedError("rope_from_config")


class TinyKvSinkCache(TinyKvCache):
    """A bounded cache: the first ``sink_size`` positions ever seen (the "sinks") plus a
    sliding window of the most recent positions.

    The query at absolute position p may attend to key position k when k <= p and either
    k < sink_size or k > p - window_size (the window counts p itself).

    ``update_and_fetch(key, value, mask_length=None, mask=None)`` with key, value
    (B, H, L, D) returns ``(keys, values, offset, mask)``:

    - keys, values (B, H, S, D): the sinks, then the cached positions the new queries may
      still see, then the L new ones, in the order of their positions;
    - offset: the number of positions seen so far, sinks and dropped ones included (the
      RoPE position of the next token);
    - mask: a float32 (L, S) array, 0 where a query may attend and -inf where it may not
      (the ``mask`` passed in is ignored: only the cache knows what it dropped).

    After the update the cache holds at most ``sink_size + window_size`` positions.
    ``nbytes`` is the number of bytes of the key and value arrays it holds.
    """

    def __init__(self, sink_size: int, window_size: int):
        self.sink_size = sink_size
        self.window_size = window_size
        self.offset = 0

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        raise NotImplementedError("TinyKvSinkCache.update_and_fetch")

    @property
    def nbytes(self) -> int:
        raise NotImplementedError("TinyKvSinkCache.nbytes")


class TinyKvQuantizedCache(TinyKvCache):
    """The whole history, stored quantized: every key and value vector is split into
    groups of ``group_size`` along D, each group stored as ``bits``-bit integers packed
    into uint32 with a scale and a bias in the dtype of the keys it received (the affine
    format of ``mx.quantize``, which you may call).

    ``update_and_fetch(key, value, mask_length=None, mask=None)`` stores the new
    (B, H, L, D) keys and values quantized and returns ``(keys, values, offset, mask)``:
    every cached position dequantized to (B, H, S, D) in the dtype of ``key``, the number
    of positions cached, and ``mask`` unchanged (the whole history is visible, as in
    ``TinyKvFullCache``).

    ``nbytes`` is the number of bytes the cache holds for its ``offset`` positions: the
    packed integers, scales and biases of the keys and of the values.
    """

    def __init__(self, group_size: int = 64, bits: int = 8):
        self.group_size = group_size
        self.bits = bits
        self.offset = 0

    def update_and_fetch(
        self,
        key: mx.array,
        value: mx.array,
        mask_length: int | None = None,
        mask: mx.array | str | None = None,
    ) -> tuple[mx.array, mx.array, int, Optional[mx.array]]:
        raise NotImplementedError("TinyKvQuantizedCache.update_and_fetch")

    @property
    def nbytes(self) -> int:
        raise NotImplementedError("TinyKvQuantizedCache.nbytes")
