"""Token samplers: greedy, temperature, top-k and top-p (nucleus)."""

import mlx.core as mx  # noqa: F401

__all__ = ["make_sampler"]


def make_sampler(temp: float, top_p: float, top_k: int | None):
    """Return ``sample(logprobs) -> token ids``.

    logprobs: (B, V) log-probabilities (or (V,)); the result has the leading
    shape, (B,), one token id per row.
    temp == 0 means greedy. Otherwise: top_k (if set) keeps only the k most
    likely tokens; top_p (if below 1) keeps the smallest set of most likely
    tokens whose probabilities add up to at least top_p, never dropping the
    most likely token; then one token is drawn per row with probabilities
    proportional to exp(logprob / temp).
    """
    raise NotImplementedError("make_sampler is still a stub (lesson day 1.7)")
