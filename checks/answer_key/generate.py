"""Text generation without a KV cache: the whole sequence is re-run every step."""

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
