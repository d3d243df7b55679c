"""Text generation: without a KV cache (day 1.6) and with one (day 2.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import mlx.core as mx

if TYPE_CHECKING:  # importing mlx_lm is slow; only type checkers need the name
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    from .qwen2_week1 import Qwen2ModelWeek1
    from .qwen2_week2 import Qwen2ModelWeek2

__all__ = ["simple_generate", "simple_generate_with_kv_cache", "speculative_generate"]


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


def simple_generate_with_kv_cache(
    model: Qwen2ModelWeek2, tokenizer: TokenizerWrapper, prompt: str
) -> str:
    """Greedy generation with a KV cache (day 2.1).

    Make the caches with ``model.create_kv_cache()``. Run the whole prompt once
    (prefill, starting at position 0); after that, feed the model only the newest token,
    with its position, and let the caches supply the past (decode). Pick the next token
    greedily from the last position's logits, stop at ``tokenizer.eos_token_id``, and
    stream the text through ``tokenizer.detokenizer`` as in ``simple_generate``. Return
    the generated text (without the prompt and without EOS). Release the caches when
    you are done.
    """
    raise NotImplementedError("simple_generate_with_kv_cache is still a stub (lesson day 2.1)")


def speculative_generate(
    draft_model: Qwen2ModelWeek2,
    model: Qwen2ModelWeek2,
    draft_tokenizer: TokenizerWrapper,
    tokenizer: TokenizerWrapper,
    prompt: str,
) -> str:
    """The book keeps this name in generate.py; the course writes it on day 3.4 in
    ``speculative.py``, and this forwards there (write it there, not here)."""
    # imported here: speculative.py builds on this module's neighbours, not the reverse
    from .speculative import speculative_generate as _speculative_generate

    return _speculative_generate(draft_model, model, draft_tokenizer, tokenizer, prompt)
