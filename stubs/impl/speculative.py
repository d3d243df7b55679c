"""Speculative decoding (day 3.4): a small draft model proposes a few tokens, the target
model checks them all in one forward pass, and both caches are rewound past the first
rejected proposal."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mlx.core as mx

if TYPE_CHECKING:  # importing mlx_lm is slow; only type checkers need the name
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    from .qwen2_week2 import Qwen2ModelWeek2

__all__ = ["verify_greedy", "speculative_accept", "speculative_generate"]


def verify_greedy(draft_tokens: list[int], target_logits: mx.array) -> tuple[int, int]:
    """Judge k draft proposals against the target's greedy choices.

    ``draft_tokens`` holds the proposals d_1, ..., d_k (ints). ``target_logits`` (k + 1, V)
    is the target's output for the inputs [last, d_1, ..., d_k], where ``last`` is the
    newest token already accepted. Return ``(n, next_token)``: n is the number of
    proposals accepted, and ``next_token`` (an int) is the target's own greedy token that
    follows them.
    """
    raise NotImplementedError("verify_greedy")


def speculative_accept(
    p: mx.array, q: mx.array, token: mx.array, u: mx.array, u_resample: mx.array
) -> tuple[mx.array, mx.array]:
    """The sampling rule of speculative decoding, for N positions at once.

    p, q (N, V): the target's and the draft's probabilities at each position; token (N,):
    the draft's proposal there (drawn from q); u, u_resample (N,): uniform draws in [0, 1).
    Accept a proposal x where u < p(x) / q(x). Where it is rejected, draw a replacement
    from max(0, p - q), normalised: the first token whose cumulative probability exceeds
    u_resample. Return ``(accepted (N,) bool, out (N,) int32)``, out holding the proposal
    where it was accepted and the replacement elsewhere.
    """
    raise NotImplementedError("speculative_accept")


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
    """Greedy generation with a draft model: the text must be exactly what ``model`` would
    generate greedily on its own.

    Both models have the week-2 surface ``model(inputs (1, L), offset, cache) -> logits``
    and ``create_kv_cache()`` (a list of caches with ``rewind(n)``). Each round the draft
    proposes up to ``proposal_length`` tokens, one call per token; the target checks them
    in ONE call; ``verify_greedy`` decides what is kept; both caches are rewound to hold
    exactly the kept tokens. Stop at ``tokenizer.eos_token_id`` or after ``max_tokens``
    generated tokens (None: no limit). Return the generated text (without the prompt and
    EOS). When ``stats`` is a dict, fill in ``target_calls`` and ``draft_calls`` (prefills
    included), ``rounds``, ``proposed``, ``accepted``, ``generated`` and
    ``acceptance_rate`` (accepted / proposed).
    """
    raise NotImplementedError("speculative_generate")
