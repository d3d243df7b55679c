"""Scaled dot-product attention (plain and grouped), multi-head attention, causal mask,
and (week 2) flash attention through your extension."""

import mlx.core as mx

from .basics import linear, softmax  # noqa: F401  (you will want these)

__all__ = [
    "scaled_dot_product_attention_simple",
    "SimpleMultiHeadAttention",
    "causal_mask",
    "scaled_dot_product_attention_grouped",
    "flash_attention",
    "paged_attention",
]


def scaled_dot_product_attention_simple(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | None = None,
) -> mx.array:
    """Attention for one set of heads: softmax(Q K^T * scale + mask) V.

    query: (N.., L, D); key, value: (N.., S, D); mask: additive, broadcastable
    to (N.., L, S), or None. scale defaults to 1 / sqrt(D).
    Returns (N.., L, D).
    """
    raise NotImplementedError("scaled_dot_product_attention_simple is still a stub (lesson day 1.1)")


class SimpleMultiHeadAttention:
    """Multi-head attention with given projection weights (no biases).

    hidden_size E, num_heads H, head dim D = E // H.
    wq, wk, wv: (H*D, E); wo: (E, H*D).
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
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.wq = wq
        self.wk = wk
        self.wv = wv
        self.wo = wo

    def __call__(
        self,
        query: mx.array,
        key: mx.array,
        value: mx.array,
        mask: mx.array | None = None,
    ) -> mx.array:
        """query: (N, L, E); key, value: (N, S, E); mask: broadcastable to (N, H, L, S).

        Project the inputs, split the projections into H heads of size D so that
        attention runs per head on (N, H, L, D) tensors, merge the heads back and
        apply the output projection. Returns (N, L, E).
        """
        raise NotImplementedError("SimpleMultiHeadAttention.__call__ is still a stub (lesson day 1.1)")


def causal_mask(L: int, S: int, dtype: mx.Dtype) -> mx.array:
    """Additive causal mask of shape (L, S): 0 where a query may attend, -inf elsewhere.

    The L queries are the last L positions of the S keys (aligned to the
    bottom-right), so with S > L the first query already sees S - L + 1 keys.
    """
    raise NotImplementedError("causal_mask is still a stub (lesson day 1.3)")


def scaled_dot_product_attention_grouped(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | str | None = None,
) -> mx.array:
    """Grouped-query attention: H_q query heads share H key/value heads.

    query: (N.., H_q, L, D); key, value: (N.., H, S, D), with H_q a multiple of H;
    consecutive groups of H_q // H query heads use the same key/value head.
    mask: None, the string "causal" (use causal_mask), or an additive array
    broadcastable to (N.., H_q, L, S). scale defaults to 1 / sqrt(D).
    Use broadcasting (reshapes), not copies of K/V. Returns (N.., H_q, L, D).
    """
    raise NotImplementedError("scaled_dot_product_attention_grouped is still a stub (lesson day 1.3)")


def flash_attention(
    query: mx.array,
    key: mx.array,
    value: mx.array,
    scale: float | None = None,
    mask: mx.array | str | None = None,
) -> mx.array:
    """Grouped attention computed by your extension's ``flash_attention`` kernel (day 2.4).

    query: (B.., H_q, L, E); key, value: (B.., H, S, E); mask: None, "causal" or an
    additive array that broadcasts to (B.., H_q, L, S). scale defaults to 1 / sqrt(E).
    Returns (B.., H_q, L, E).

    The kernel only knows 3-D float32 tensors: queries (N, L, E) with N = B..*H_q,
    keys/values (B..*H, S, E), and a float32 mask of shape (N, L, S) that is always
    passed (zeros when there is none); ``is_causal=True`` lets it skip work. Import the
    extension inside this function (``from tiny_llm_ext import flash_attention``) so that
    the package still imports when the extension is not built.
    """
    raise NotImplementedError("flash_attention is still a stub (lesson day 2.4)")


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
    """Attention of each request's queries over its own pages, computed by your extension's
    ``paged_attention`` kernel (day 3.2).

    query: (B, H_q, L, D); key_pages, value_pages: (P, H, page_size, D), the pool's pages;
    block_table: (B, max_pages) page ids, -1 where a request has no page; context_lens:
    (B,) how many positions each request holds. mask: None or "causal" (an array mask is
    not supported: raise NotImplementedError). scale defaults to 1 / sqrt(D). Returns
    (B, H_q, L, D) float32.

    The kernel takes float32 queries shaped (B * H_q, L, D), float32 pages and int32
    block table and lengths; it reads page_size from the pages' shape. Import the extension
    inside this function, as in flash_attention, so the package imports without it.
    """
    raise NotImplementedError("paged_attention is still a stub (lesson day 3.2)")
