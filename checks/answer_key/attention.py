"""Scaled dot-product attention (plain and grouped), multi-head attention, causal mask;
flash attention (week 2) and paged attention (week 3) through the compiled extension."""

import math

import mlx.core as mx

from .basics import linear, softmax

__all__ = [
    "scaled_dot_product_attention_simple",
    "SimpleMultiHeadAttention",
    "causal_mask",
    "scaled_dot_product_attention_grouped",
    "flash_attention",
    "paged_attention",
]


def _default_scale(head_dim: int, scale: float | None) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None else scale


def scaled_dot_product_attention_simple(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | None = None,
) -> mx.array:
    """softmax(Q K^T * scale + mask) V.

    query: (N.., L, D), key/value: (N.., S, D), mask: broadcastable to (N.., L, S).
    Returns (N.., L, D).
    """
    factor = _default_scale(query.shape[-1], scale)
    scores = (query @ key.swapaxes(-1, -2)) * factor
    if mask is not None:
        scores = scores + mask
    return softmax(scores, axis=-1) @ value


class SimpleMultiHeadAttention:
    """Multi-head attention with explicit projection matrices (no biases).

    wq/wk/wv: (H*D, E), wo: (E, H*D); inputs/outputs are (N.., L, E).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        wq: mx.array,
        wk: mx.array,
        wv: mx.array,
        wo: mx.array,
    ):
        assert hidden_size % num_heads == 0, "hidden_size must be divisible by num_heads"
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        inner = num_heads * self.head_dim
        assert wq.shape == (inner, hidden_size)
        assert wk.shape == (inner, hidden_size)
        assert wv.shape == (inner, hidden_size)
        assert wo.shape == (hidden_size, inner)
        self.wq, self.wk, self.wv, self.wo = wq, wk, wv, wo

    def _split_heads(self, x: mx.array) -> mx.array:
        # (N.., L, H*D) -> (N.., H, L, D)
        return x.reshape(*x.shape[:-1], self.num_heads, self.head_dim).swapaxes(-2, -3)

    def __call__(
        self,
        query: mx.array,
        key: mx.array,
        value: mx.array,
        mask: mx.array | None = None,
    ) -> mx.array:
        q = self._split_heads(linear(query, self.wq))
        k = self._split_heads(linear(key, self.wk))
        v = self._split_heads(linear(value, self.wv))
        out = scaled_dot_product_attention_simple(q, k, v, scale=self.scale, mask=mask)
        # (N.., H, L, D) -> (N.., L, H*D)
        out = out.swapaxes(-2, -3)
        out = out.reshape(*out.shape[:-2], self.num_heads * self.head_dim)
        return linear(out, self.wo)


def causal_mask(L: int, S: int, dtype: mx.Dtype) -> mx.array:
    """Additive (L, S) causal mask aligned to the bottom-right corner.

    Query i sits at absolute position i + (S - L) and may see keys 0..i + (S - L);
    allowed entries are 0, the others -inf.
    """
    rows = mx.arange(L)[:, None]
    cols = mx.arange(S)[None, :]
    allowed = cols <= rows + (S - L)
    return mx.where(allowed, mx.array(0.0, dtype=dtype), mx.array(-mx.inf, dtype=dtype))


def scaled_dot_product_attention_grouped(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | str | None = None,
) -> mx.array:
    """Grouped-query attention without materialising repeated K/V.

    query: (N.., H_q, L, D); key/value: (N.., H, S, D) with H_q % H == 0;
    mask: None, "causal", or an array broadcastable to (N.., H_q, L, S).
    Query head h uses kv head h // (H_q // H). Returns (N.., H_q, L, D).
    """
    *batch, n_q_heads, L, D = query.shape
    n_kv_heads, S = key.shape[-3], key.shape[-2]
    assert n_q_heads % n_kv_heads == 0, "H_q must be a multiple of H"
    n_repeats = n_q_heads // n_kv_heads
    factor = _default_scale(D, scale)

    # Give every kv head a group axis of size n_repeats (queries) or 1 (keys/values),
    # so matmul broadcasting pairs each group of query heads with its kv head.
    q = query.reshape(*batch, n_kv_heads, n_repeats, L, D)
    k = key.reshape(*key.shape[:-3], n_kv_heads, 1, S, D)
    v = value.reshape(*value.shape[:-3], n_kv_heads, 1, S, D)

    scores = (q @ k.swapaxes(-1, -2)) * factor  # (N.., H, n_repeats, L, S)
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"unknown mask kind {mask!r}; expected 'causal'")
        scores = scores + causal_mask(L, S, scores.dtype)
    elif mask is not None:
        mask = mx.broadcast_to(mask, (*batch, n_q_heads, L, S))
        mask = mask.reshape(*batch, n_kv_heads, n_repeats, L, S)
        scores = scores + mask.astype(scores.dtype)

    out = softmax(scores, axis=-1) @ v  # (N.., H, n_repeats, L, D)
    return out.reshape(*batch, n_q_heads, L, D)


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


def flash_attention(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | str | None = None,
) -> mx.array:
    """Grouped attention through the extension's ``flash_attention`` kernel.

    query: (B.., H_q, L, E); key/value: (B.., H, S, E); mask: None, "causal" or an
    additive array broadcastable to (B.., H_q, L, S). The kernel works on float32 3-D
    tensors (B..*H_q, L, E) / (B..*H, S, E) and an (B..*H_q, L, S) float32 mask that is
    always given; ``is_causal`` only lets it skip tiles that are entirely masked.
    Returns (B.., H_q, L, E) in the query's dtype.
    """
    ext = _extension()
    *batch, n_q_heads, L, E = query.shape
    n_kv_heads, S = key.shape[-3], key.shape[-2]
    factor = _default_scale(E, scale)

    is_causal = isinstance(mask, str)
    if is_causal:
        if mask != "causal":
            raise ValueError(f"unknown mask kind {mask!r}; expected 'causal'")
        full_mask = causal_mask(L, S, mx.float32)
    elif mask is None:
        full_mask = mx.zeros((L, S), dtype=mx.float32)
    else:
        full_mask = mask.astype(mx.float32)
    full_mask = mx.broadcast_to(full_mask, (*batch, n_q_heads, L, S)).reshape(-1, L, S)

    q = mx.contiguous(query.astype(mx.float32).reshape(-1, L, E))
    k = mx.contiguous(key.astype(mx.float32).reshape(-1, S, E))
    v = mx.contiguous(value.astype(mx.float32).reshape(-1, S, E))
    out = ext.flash_attention(
        q,
        k,
        v,
        mx.contiguous(full_mask),
        scale=factor,
        is_causal=is_causal,
        num_kv_heads=n_kv_heads,
        num_heads=n_q_heads,
    )
    return out.reshape(*batch, n_q_heads, L, E).astype(query.dtype)


def paged_attention(
    query: mx.array,
    key_pages: mx.array,
    value_pages: mx.array,
    block_table: mx.array,
    context_lens: mx.array,
    page_size: int,
    scale: float | None = None,
    mask: mx.array | str | None = None,
) -> mx.array:
    """Attention of each request's queries over its pages, through the extension's
    ``paged_attention`` kernel (day 3.2).

    query: (B, H_q, L, D); key_pages/value_pages: (P, H, page_size, D), the pool's
    storage; block_table: (B, max_pages), request b's page ids in logical order then -1;
    context_lens: (B,), how many positions of those pages are real. mask: None or
    "causal" (query row i sees positions <= context_len - L + i); the kernel takes no
    array mask. Returns (B, H_q, L, D) float32; a request with no context gives zeros.
    """
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"unknown mask kind {mask!r}; expected 'causal'")
    elif mask is not None:
        raise NotImplementedError("paged_attention takes mask=None or mask='causal', not an array")
    ext = _extension()
    B, n_q_heads, L, D = query.shape
    n_kv_heads = key_pages.shape[1]
    if key_pages.shape[2] != page_size:
        raise ValueError(f"the pages hold {key_pages.shape[2]} positions each, page_size is {page_size}")
    queries = mx.contiguous(query.astype(mx.float32).reshape(B * n_q_heads, L, D))
    out = ext.paged_attention(
        queries,
        mx.contiguous(key_pages.astype(mx.float32)),
        mx.contiguous(value_pages.astype(mx.float32)),
        mx.contiguous(block_table.astype(mx.int32)),
        mx.contiguous(context_lens.astype(mx.int32).reshape(-1)),
        scale=_default_scale(D, scale),
        is_causal=mask is not None,
        num_kv_heads=n_kv_heads, num_heads=n_q_heads,
    )
    return out.reshape(B, n_q_heads, L, D)
