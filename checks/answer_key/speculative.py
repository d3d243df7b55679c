"""Speculative decoding: a small draft model proposes a few tokens, the target model checks
them all in one forward pass, and the caches of both are rewound past the first rejected
proposal.

Greedy (``verify_greedy``, ``speculative_generate``): the text is exactly the target's own
greedy text. Sampling (``speculative_accept``): accepting a proposal x with probability
min(1, p(x) / q(x)) and otherwise drawing from the normalised max(0, p - q) yields tokens
distributed as p.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlx.core as mx

if TYPE_CHECKING:  # importing mlx_lm is slow; only type checkers need the name
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    from .qwen2_week2 import Qwen2ModelWeek2

__all__ = ["verify_greedy", "speculative_accept", "speculative_generate"]


def verify_greedy(draft_tokens: list[int], target_logits: mx.array) -> tuple[int, int]:
    """Judge k proposals against the target's greedy choices.

    ``target_logits`` (k + 1, V) is the target's output for the inputs [last, d_1, ..., d_k]:
    row i predicts the token after d_i (row 0 the token after ``last``). Returns
    ``(n, next_token)``: n proposals were accepted (the longest prefix that agrees with the
    target), and ``next_token`` is the target's own choice at row n -- its correction at
    the first disagreement, or a bonus token when all k were accepted.
    """
    picks = mx.argmax(target_logits, axis=-1).tolist()
    n = 0
    while n < len(draft_tokens) and int(draft_tokens[n]) == picks[n]:
        n += 1
    return n, int(picks[n])


def speculative_accept(
    p: mx.array, q: mx.array, token: mx.array, u: mx.array, u_resample: mx.array
) -> tuple[mx.array, mx.array]:
    """The accept/resample rule, for N positions at once.

    p, q (N, V): the target's and the draft's probabilities; token (N,): the draft's
    proposals (drawn from q); u, u_resample (N,): uniform draws in [0, 1). Returns
    ``(accepted (N,) bool, out (N,) int32)``: accepted where u < p(x) / q(x); out is the
    proposal where accepted, else the first token whose cumulative normalised
    max(0, p - q) exceeds u_resample.
    """
    token = token.astype(mx.int32)
    p_x = mx.take_along_axis(p, token[:, None], axis=-1)[:, 0]
    q_x = mx.take_along_axis(q, token[:, None], axis=-1)[:, 0]
    # u < p/q, without dividing: q(x) > 0 for a token the draft proposed.
    accepted = u * q_x < p_x
    residual = mx.maximum(p - q, 0.0)
    residual = residual / mx.sum(residual, axis=-1, keepdims=True)
    cdf = mx.cumsum(residual, axis=-1)
    # The number of tokens whose cumulative mass is still <= u is the index of the first
    # one that exceeds it; rounding can leave the last cdf a hair below 1.
    resampled = mx.sum(cdf <= u_resample[:, None], axis=-1)
    resampled = mx.minimum(resampled, p.shape[-1] - 1)
    return accepted, mx.where(accepted, token, resampled).astype(mx.int32)


def speculative_generate(
    draft_model: Qwen2ModelWeek2,
    model: Qwen2ModelWeek2,
    draft_tokenizer: TokenizerWrapper,
    tokenizer: TokenizerWrapper,
    prompt: str,
    proposal_length: int = 4,
    max_tokens: int | None = None,
    stats: dict | None = None,
) -> str:
    """Greedy generation with a draft model; the text is the target's own greedy text.

    Each round the draft proposes up to ``proposal_length`` tokens one at a time, the target
    runs the newest committed token and the proposals in one call, ``verify_greedy`` keeps
    the agreeing prefix plus the target's next token, and both caches are rewound to hold
    exactly the committed tokens. Stops at EOS or after ``max_tokens`` generated tokens.
    When ``stats`` is a dict it receives ``target_calls``, ``draft_calls`` (prefills
    included), ``rounds``, ``proposed``, ``accepted``, ``generated`` and
    ``acceptance_rate`` (accepted / proposed).
    """
    ids = [int(t) for t in tokenizer.encode(prompt, add_special_tokens=False)]
    if [int(t) for t in draft_tokenizer.encode(prompt, add_special_tokens=False)] != ids:
        raise ValueError("the draft and the target tokenizers encode the prompt differently")
    eos = tokenizer.eos_token_id
    counts = {"target_calls": 0, "draft_calls": 0, "rounds": 0, "proposed": 0, "accepted": 0}

    def run(which: str, m, cache, tokens: list[int], offset: int) -> mx.array:
        counts[which] += 1
        logits = m(mx.array([tokens], dtype=mx.int32), offset, cache)[0]
        return logits.astype(mx.float32)

    target_cache = model.create_kv_cache()
    draft_cache = draft_model.create_kv_cache()
    out: list[int] = []
    try:
        nxt = int(mx.argmax(run("target_calls", model, target_cache, ids, 0)[-1]).item())
        run("draft_calls", draft_model, draft_cache, ids, 0)
        offset = len(ids)  # positions in the target's cache: every committed token but nxt
        draft_len = len(ids)  # positions in the draft's cache (it may lag one behind)
        while nxt != eos and (max_tokens is None or len(out) < max_tokens):
            out.append(nxt)
            if max_tokens is not None and len(out) >= max_tokens:
                break
            budget = proposal_length if max_tokens is None else min(
                proposal_length, max_tokens - len(out))
            committed = ids + out
            # The draft catches up on committed tokens it has not seen, then proposes.
            draft: list[int] = []
            feed, at = committed[draft_len:], draft_len
            for _ in range(budget):
                logits = run("draft_calls", draft_model, draft_cache, feed, at)
                at += len(feed)
                draft.append(int(mx.argmax(logits[-1]).item()))
                feed = draft[-1:]
                if draft[-1] == eos:
                    break
            # One target call over the newest committed token and every proposal.
            logits = run("target_calls", model, target_cache, [nxt] + draft, offset)
            n, nxt = verify_greedy(draft, logits)
            counts["rounds"] += 1
            counts["proposed"] += len(draft)
            counts["accepted"] += n
            # Keep the last committed token and the n accepted proposals in both caches.
            keep = offset + 1 + n
            for cache in target_cache:
                cache.rewind(offset + 1 + len(draft) - keep)
            draft_len = min(at, keep)
            for cache in draft_cache:
                cache.rewind(at - draft_len)
            offset = keep
            for t in draft[:n]:
                if t == eos or (max_tokens is not None and len(out) >= max_tokens):
                    nxt = eos  # end here: the target agreed to stop (or the budget is spent)
                    break
                out.append(t)
    finally:
        for cache in target_cache + draft_cache:
            cache.release()
    if stats is not None:
        stats.update(counts)
        stats["generated"] = len(out)
        stats["acceptance_rate"] = (counts["accepted"] / counts["proposed"]
                                    if counts["proposed"] else 0.0)
    detokenizer = tokenizer.detokenizer
    detokenizer.reset()
    for t in out:
        detokenizer.add_token(t)
    detokenizer.finalize()
    return detokenizer.text
