"""Continuous batching: requests are prefilled (in chunks) one at a time and decoded
together, each in its own slot of a BatchingKvCache, joining and leaving as they go."""

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
    """Run the model on ``y`` (B, L) and return the greedy next token of every row (B,)."""
    logits = model(y, offsets, kv_cache)[:, -1, :].astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    return mx.argmax(logprobs, axis=-1)


def _cache_arrays(caches) -> list:
    """What a request's caches hold, to evaluate: a paged cache's pool storage (asking it
    for key_values would copy its pages out dense), a full cache's keys and values."""
    out = []
    for c in caches:
        pool = getattr(c, "pool", None)
        if pool is not None:
            out += [a for a in (pool.key_pages, pool.value_pages) if a is not None]
        elif getattr(c, "key_values", None) is not None:
            out += list(c.key_values)
    return out


class Request:
    """One prompt on its way through the scheduler.

    ``offset`` counts the positions already in the request's own KV cache; ``next_token``
    is the token generated last (to be fed at position ``offset``); ``generated`` holds
    every generated token (EOS excluded).
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
        """Prefill the next chunk of at most ``prefill_max_step`` prompt tokens.

        Returns True once the whole prompt is in the cache; the last chunk also yields the
        first generated token.
        """
        if self.is_prefill_done:
            raise ValueError("prefill is already done")
        total = self.prefill_tokens.shape[0]
        n = min(self.prefill_max_step, total - self.offset)
        chunk = self.prefill_tokens[self.offset : self.offset + n]
        token = _step(self.model, chunk[None], [self.offset], self.kv_cache)
        # Evaluate the cache now: otherwise every chunk's graph stays lazy and the last
        # chunk would recompute the whole prompt.
        mx.eval(_cache_arrays(self.kv_cache))
        self.offset += n
        if self.offset == total:
            self.is_prefill_done = True
            self.decode_done(int(token.item()), update_offset=False)
        return self.is_prefill_done

    def decode_done(self, token: int, update_offset: bool = True):
        """Record a generated token. ``update_offset``: the previous token was just fed
        to the model, so the cache grew by one position."""
        if self.is_done:
            raise ValueError("request is already finished")
        if update_offset:
            self.offset += 1
        if token == self.eos_token_id:
            self.is_done = True
            return
        self.next_token = token
        self.generated.append(token)

    def text(self) -> str:
        return self.tokenizer.decode(self.generated)


def _print_progress(
    requests: list[Request | None],
    pending_prefill_request: Request | None,
    queue_size: int,
    progress_cnt: int,
    start_time: datetime,
):
    """One status line per slot: what it decodes and how far it got."""
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

    Each scheduler round prefills one chunk of the pending request (moving it into a free
    slot when its prompt is done), then runs one decode step for every active slot. A
    request finishes at EOS or when its cache holds ``max_seq_len`` positions.
    Returns ``[(prompt_idx, text), ...]`` in the order requests finished.
    """
    queue = deque(enumerate(prompts))
    slots: list[Request | None] = [None] * batch_size
    kv_cache = [
        BatchingKvCache(max_active_requests=batch_size, max_seq_len=max_seq_len)
        for _ in range(model.num_hidden_layers)
    ]
    results: list[tuple[int, str]] = []
    pending: Request | None = None

    def finish(req: Request):
        results.append((req.prompt_idx, req.text()))

    while queue or pending is not None or any(r is not None for r in slots):
        # 1. Prefill: one chunk of the pending request, if a slot is free for it.
        if pending is None and queue and any(r is None for r in slots):
            idx, prompt = queue.popleft()
            pending = Request(model, tokenizer, prompt, prefill_step, idx)
        if pending is not None:
            if pending.try_prefill():
                if pending.is_done or pending.offset >= max_seq_len:
                    finish(pending)
                    for cache in pending.kv_cache:
                        cache.release()
                else:
                    slot = slots.index(None)
                    for layer_cache, request_cache in zip(kv_cache, pending.kv_cache):
                        layer_cache.add_request(request_cache, slot)
                    slots[slot] = pending
                pending = None

        # 2. Decode: one token for every active slot.
        if any(r is not None for r in slots):
            tokens = [r.next_token if r is not None else 0 for r in slots]
            offsets = [r.offset if r is not None else 0 for r in slots]
            y = mx.array(tokens, dtype=mx.int32)[:, None]
            next_tokens = _step(model, y, mx.array(offsets, dtype=mx.int32), kv_cache).tolist()
            for i, req in enumerate(slots):
                if req is None:
                    continue
                req.decode_done(int(next_tokens[i]))
                if req.is_done or req.offset >= max_seq_len:
                    finish(req)
                    for layer_cache in kv_cache:
                        layer_cache.remove_request(i)
                    slots[i] = None
    return results
