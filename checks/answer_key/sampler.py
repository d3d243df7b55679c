"""Token samplers: greedy, temperature, top-k and top-p (nucleus)."""

import mlx.core as mx

__all__ = ["make_sampler"]


def make_sampler(temp: float, top_p: float, top_k: int | None):
    """Build ``sample(logprobs) -> token ids`` for log-probabilities of shape (..., V).

    temp == 0: argmax. Otherwise top-k keeps the k most likely tokens, top-p keeps
    the smallest set of most likely tokens whose total probability reaches top_p
    (the most likely token is always kept), and a token is drawn from the rest
    with probabilities proportional to exp(logprob / temp).
    Filters are off when top_k is None/<= 0 or top_p is None/>= 1.
    """

    def sample(logprobs: mx.array) -> mx.array:
        if temp == 0:
            return mx.argmax(logprobs, axis=-1)
        logits = logprobs
        vocab = logits.shape[-1]
        neg_inf = mx.array(-mx.inf, dtype=logits.dtype)

        if top_k is not None and 0 < top_k < vocab:
            # After partitioning the negated logits, positions >= top_k hold the losers.
            losers = mx.argpartition(-logits, kth=top_k - 1, axis=-1)[..., top_k:]
            logits = mx.put_along_axis(logits, losers, neg_inf, axis=-1)

        if top_p is not None and top_p < 1.0:
            order = mx.argsort(-logits, axis=-1)  # most likely first
            sorted_logits = mx.take_along_axis(logits, order, axis=-1)
            probs = mx.exp(sorted_logits - mx.logsumexp(sorted_logits, axis=-1, keepdims=True))
            mass_before = mx.cumsum(probs, axis=-1, inclusive=False)
            # Keep a token while the mass of the tokens before it is still short of top_p:
            # this includes the token that crosses top_p; the first token is always kept.
            keep_sorted = (mass_before < top_p) | (mx.arange(vocab) == 0)
            keep = mx.put_along_axis(
                mx.zeros(logits.shape, dtype=mx.bool_), order, keep_sorted, axis=-1
            )
            logits = mx.where(keep, logits, neg_inf)

        return mx.random.categorical(logits / temp, axis=-1)

    return sample
