"""Text generation: without a KV cache (week 1, the whole sequence is re-run every step)
and with one (week 2, each step runs only the newest token)."""

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
    """Continue ``prompt`` until the model emits ``tokenizer.eos_token_id``.

    Each step feeds the full token sequence (1, S) to the model, turns the logits
    of the last position into log-probabilities, and picks the next token with
    ``sampler`` (argmax when it is None). Returns the generated text (without
    the prompt and without the EOS token).
    """

    def _step(model, y: mx.array) -> mx.array:
        # float32: in float16, subtracting logsumexp (~tens) rounds nearby logits together
        # and can turn a clear argmax into a tie.
        logits = model(y[None])[:, -1, :].astype(mx.float32)  # (1, vocab)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        if sampler is None:
            return mx.argmax(logprobs, axis=-1)
        return sampler(logprobs)

    tokens = mx.array(tokenizer.encode(prompt, add_special_tokens=False), dtype=mx.int32)
    detokenizer = tokenizer.detokenizer
    detokenizer.reset()
    pieces: list[str] = []
    while True:
        next_token = _step(model, tokens)
        token_id = int(next_token.item())
        if token_id == tokenizer.eos_token_id:
            break
        tokens = mx.concatenate([tokens, mx.array([token_id], dtype=tokens.dtype)])
        detokenizer.add_token(token_id)
        pieces.append(detokenizer.last_segment)  # what a streaming UI would print now
    detokenizer.finalize()
    pieces.append(detokenizer.last_segment)
    return "".join(pieces)


def simple_generate_with_kv_cache(
    model: Qwen2ModelWeek2, tokenizer: TokenizerWrapper, prompt: str
) -> str:
    """Greedy generation with a KV cache: the prompt is run once (prefill), then each step
    feeds only the newest token at its position (decode). Stops at EOS; returns the
    generated text (without the prompt and without EOS)."""

    def _step(model, y: mx.array, offset: int, kv_cache) -> mx.array:
        logits = model(y[None], offset, kv_cache)[:, -1, :].astype(mx.float32)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        return mx.argmax(logprobs, axis=-1)

    kv_cache = model.create_kv_cache()
    tokens = mx.array(tokenizer.encode(prompt, add_special_tokens=False), dtype=mx.int32)
    detokenizer = tokenizer.detokenizer
    detokenizer.reset()
    pieces: list[str] = []
    try:
        next_token = _step(model, tokens, 0, kv_cache)  # prefill: positions 0 .. P-1
        offset = tokens.shape[0]
        while True:
            token_id = int(next_token.item())
            if token_id == tokenizer.eos_token_id:
                break
            detokenizer.add_token(token_id)
            pieces.append(detokenizer.last_segment)
            # decode: one token at position `offset`; the cache supplies the past
            next_token = _step(model, mx.array([token_id], dtype=mx.int32), offset, kv_cache)
            offset += 1
    finally:
        for cache in kv_cache:
            cache.release()
    detokenizer.finalize()
    pieces.append(detokenizer.last_segment)
    return "".join(pieces)


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
