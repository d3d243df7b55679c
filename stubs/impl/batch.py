"""Continuous batching (day 2.6): requests are prefilled one at a time, in chunks, and
decoded together, each in its own slot of a BatchingKvCache, joining and leaving as
they go."""

from __future__ import annotations

from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING

import mlx.core as mx

from .kv_cache import BatchingKvCache, TinyKvFullCache

if TYPE_CHECKING:
    from mlx_lm.tokenizer_utils import TokenizerWrapper

__all__ = ["Request", "batch_generate"]


def _step(model, y: mx.array, offsets, kv_cache) -> mx.array:
    """PROVIDED. Run the model on token ids ``y`` (B, L) starting at ``offsets`` and return
    the greedy next token of every row, shape (B,)."""
    logits = model(y, offsets, kv_cache)[:, -1, :].astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return mx.argmax(logprobs, axis=-1)


class Request:
    """One prompt on its way through the scheduler.

    PROVIDED: the constructor and ``text``. Yours: ``try_prefill`` and ``decode_done``.

    State: ``offset`` is how many positions the request's own caches (``kv_cache``, one
    per layer) hold; ``next_token`` is the token generated last, which has not been fed
    to the model yet (it goes in at position ``offset``); ``generated`` lists every
    generated token except EOS; ``is_prefill_done`` / ``is_done`` say where it is.
    """

    def __init__(
        self,
        model: any,
        tokenizer: TokenizerWrapper,
        prompt: str,
        prefill_max_step: int = 128,
        prompt_idx: int = 0,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.prompt_idx = prompt_idx
        self.prefill_max_step = prefill_max_step
        if hasattr(model, "create_kv_cache"):
            self.kv_cache = model.create_kv_cache()
        else:
            self.kv_cache = [TinyKvFullCache() for _ in range(model.num_hidden_layers)]
        self.prefill_tokens = mx.array(
            tokenizer.encode(prompt, add_special_tokens=False), dtype=mx.int32
        )
        self.eos_token_id = tokenizer.eos_token_id
        self.offset = 0
        self.next_token: int | None = None
        self.generated: list[int] = []
        self.is_prefill_done = False
        self.is_done = False

    def try_prefill(self) -> bool:
        """Run the next chunk of the prompt -- at most ``prefill_max_step`` tokens -- through
        the model at the right position, then force the caches to be computed (mx.eval).

        Returns True once the whole prompt is in the caches; the last chunk's prediction
        is the first generated token (record it with ``decode_done``: which offset update
        does it need?).
        """
        raise NotImplementedError("Request.try_prefill is still a stub (lesson day 2.6)")

    def decode_done(self, token: int, update_offset: bool = True):
        """Record a token the model just generated for this request.

        ``update_offset``: the previous ``next_token`` was just fed to the model, so the
        request's caches grew by one position. EOS finishes the request (and is not part
        of the text); any other token becomes ``next_token`` and joins ``generated``.
        """
        raise NotImplementedError("Request.decode_done is still a stub (lesson day 2.6)")

    def text(self) -> str:
        """PROVIDED. The generated text so far."""
        return self.tokenizer.decode(self.generated)


def _print_progress(
    requests: list[Request | None],
    pending_prefill_request: Request | None,
    queue_size: int,
    progress_cnt: int,
    start_time: datetime,
):
    """PROVIDED. One status line per slot, for watching the scheduler work."""
    elapsed = (datetime.now() - start_time).total_seconds()
    lines = [f"--- {elapsed:.1f}s, {progress_cnt} finished, {queue_size} queued"]
    for i, req in enumerate(requests):
        if req is None:
            lines.append(f"  slot {i}: idle")
        else:
            tail = req.text()[-40:].replace("\n", " ")
            lines.append(f"  slot {i}: #{req.prompt_idx} at {req.offset}: {tail}")
    if pending_prefill_request is not None:
        p = pending_prefill_request
        lines.append(
            f"  prefill #{p.prompt_idx}: {p.offset}/{p.prefill_tokens.shape[0]} tokens"
        )
    print("\n".join(lines))


def batch_generate(
    model: any,
    tokenizer: TokenizerWrapper,
    prompts: list[str],
    max_seq_len=512,
    batch_size=5,
    prefill_step=128,
):
    """Generate greedily for every prompt, ``batch_size`` requests decoding at a time.

    PROVIDED: the set-up and the loop. Yours: the two steps of a scheduler round.
    A request finishes at EOS, or when its caches hold ``max_seq_len`` positions.
    Returns ``[(prompt_idx, text), ...]`` for every prompt, in the order they finished.
    """
    queue = deque(enumerate(prompts))  # (prompt_idx, prompt) not started yet
    slots: list[Request | None] = [None] * batch_size  # slot i = row i of the decode batch
    kv_cache = [
        BatchingKvCache(max_active_requests=batch_size, max_seq_len=max_seq_len)
        for _ in range(model.num_hidden_layers)
    ]
    results: list[tuple[int, str]] = []
    pending: Request | None = None  # the request being prefilled
    start_time = datetime.now()  # for _print_progress, if you want to watch

    while queue or pending is not None or any(r is not None for r in slots):
        # Step 1, prefill: when a slot is free, take the next prompt from the queue as the
        # pending request; run one chunk of its prefill. When its prompt is done, either
        # it is already finished (record its result) or it moves into a free slot of
        # every layer's BatchingKvCache.
        raise NotImplementedError("batch_generate: the prefill step is still a stub (lesson day 2.6)")

        # Step 2, decode: if any slot is active, feed every slot's next token (a (B, 1)
        # batch, 0 for empty slots) at its own offset, record each active row's new
        # token, and retire finished requests (result, remove_request, free the slot).
        raise NotImplementedError("batch_generate: the decode step is still a stub (lesson day 2.6)")

    return results
