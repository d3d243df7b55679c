"""Text generation without a KV cache."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import mlx.core as mx

if TYPE_CHECKING:  # importing mlx_lm is slow; only type checkers need the name
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    from .qwen2_week1 import Qwen2ModelWeek1

__all__ = ["simple_generate"]


def simple_generate(
    model: Qwen2ModelWeek1,
    tokenizer: TokenizerWrapper,
    prompt: str,
    sampler: Callable[[mx.array], mx.array] | None,
) -> str:
    """Continue ``prompt`` one token at a time until the tokenizer's EOS token.

    Encode the prompt with ``tokenizer.encode(prompt, add_special_tokens=False)``.
    Each step runs the model on the whole sequence so far (a (1, S) batch),
    keeps the logits of the last position, turns them into log-probabilities and
    picks the next token with ``sampler`` (greedy when it is None). Stop at
    ``tokenizer.eos_token_id``. Feed the new tokens to ``tokenizer.detokenizer``
    (reset / add_token / finalize / last_segment) and return the generated text,
    without the prompt and without EOS.
    """
    raise NotImplementedError("simple_generate is still a stub (lesson day 1.6)")
