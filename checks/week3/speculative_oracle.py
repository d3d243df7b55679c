"""The checks' own models for day 3.4: a target and drafts with the course's call surface
(``model(inputs, offset, cache)``, ``create_kv_cache()``), and caches that remember which
token ids they hold, so a check can see what each cache held at every call.

    target = SpecModel(tiny_model(), "target", eos_rule=...)   # OracleQwen2 + a call log
    same = SpecModel(tiny_model(), "draft")          # the target itself: always agrees
    shallow = SpecModel(tiny_model(), "draft", layers=1)   # its first layer only: sometimes
    scripted = ScriptedDraft(tiny_model(), agree=0.8, seed=7)  # agrees with known probability

Every model logs each call: the ids fed, the offset given, and what its cache held before
the call (token ids, per-layer offsets). Greedy texts come from ``greedy_alone`` in
week 2's serving oracle (the target generating on its own).
"""

from __future__ import annotations

import itertools

import mlx.core as mx
import numpy as np

from ..harness import outside_learner
from ..week2.serving_oracle import EOS, EosRule, OracleFullCache, OracleQwen2

F32 = mx.float32
# One clock for every model's log, so a check can put target and draft calls in order.
_CLOCK = itertools.count()


class EosOnceRule(EosRule):
    """EOS once: the logits predicting position ``early`` put EOS far on top when the token
    before it is one of EosRule's early tokens, those predicting position ``late`` always
    do, every other position puts EOS far below. Past EOS the model goes on with ordinary
    tokens, so a loop that keeps what follows an accepted EOS shows."""

    def apply(self, logits, ids, positions):
        n = positions + 1
        force = ((n == self.early) & ((ids % 3) == 0)) | (n == self.late)
        hi = mx.max(logits, axis=-1, keepdims=True)
        lo = mx.min(logits, axis=-1, keepdims=True)
        eos_value = mx.where(force[..., None], hi + 30.0, lo - 30.0)
        return mx.where(mx.arange(logits.shape[-1]) == EOS, eos_value, logits)


# EOS never wins: long generations bounded by max_tokens only.
NO_EOS = EosRule(early=10**9, late=10**9)


class IdCache(OracleFullCache):
    """OracleFullCache that also keeps the token id of every position it holds (the model
    appends them; ``rewind`` and ``release`` drop them with the positions)."""

    def __init__(self):
        super().__init__()
        self.ids: list[int] = []
        self.rewinds: list[int] = []

    def rewind(self, n: int) -> None:
        if n < 0 or n > self.offset:
            raise ValueError(f"cannot rewind {n} positions of {self.offset}")
        self.rewinds.append(int(n))
        if n == 0:
            return
        super().rewind(n)
        del self.ids[self.offset:]

    def release(self) -> None:
        super().release()
        self.ids = []


class SpecModel(OracleQwen2):
    """OracleQwen2 with ``IdCache`` caches and a log of calls: per call the fed ``ids``, the
    ``offset`` given, the ``held`` ids and per-layer ``offsets`` of its cache before the
    call. ``layers`` < the model's layer count runs only the first ``layers`` layers (a
    smaller draft sharing the embedding and the head)."""

    def __init__(self, mlx_model, role: str, *, layers: int | None = None,
                 eos_rule: EosRule | None = None):
        super().__init__(mlx_model, eos_rule=eos_rule)
        self.role = role
        if layers is not None:
            self.num_hidden_layers = layers
        self.log: list[dict] = []
        self.made: list[list[IdCache]] = []  # every cache list handed out

    def create_kv_cache(self):
        caches = [IdCache() for _ in range(self.num_hidden_layers)]
        self.made.append(caches)
        return caches

    def __call__(self, inputs, offsets, cache, *args, **kwargs):
        with outside_learner():
            ids = mx.array(inputs) if not isinstance(inputs, mx.array) else inputs
            ids = ids.reshape(1, -1) if ids.ndim == 1 else ids
            fed = [int(t) for t in ids[0].tolist()]
            off = int(offsets.item() if isinstance(offsets, mx.array) and offsets.size == 1
                      else offsets[0] if isinstance(offsets, (list, tuple)) else offsets)
            entry = {"t": next(_CLOCK), "role": self.role, "ids": fed, "offset": off,
                     "held": list(getattr(cache[0], "ids", [])) if cache else [],
                     "offsets": [getattr(c, "offset", None) for c in cache]}
            self.log.append(entry)
            out = self._logits(ids, offsets, cache, *args, **kwargs)
            for c in cache:
                if isinstance(c, IdCache):
                    c.ids.extend(fed)
            return out

    def _logits(self, ids, offsets, cache, *args, **kwargs):
        return OracleQwen2.__call__(self, ids, offsets, cache, *args, **kwargs)


def _unit(seed: int, position: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, position): the same whenever and however
    often a position is proposed."""
    return float(np.random.default_rng([seed, position]).random())


class ScriptedDraft(SpecModel):
    """A draft that agrees with the target's greedy choice at each absolute position with
    probability ``agree``, independently per position (fixed by ``seed``). It runs the
    target's own weights and, where it is to disagree, lifts another token (never EOS)
    above the target's choice. ``agree=0`` never agrees; ``agree=1`` always does."""

    def __init__(self, mlx_model, agree: float, seed: int, eos_rule: EosRule | None = None):
        super().__init__(mlx_model, "draft", eos_rule=eos_rule)
        self.agree, self.seed = agree, seed

    def _logits(self, ids, offsets, cache, *args, **kwargs):
        out = OracleQwen2.__call__(self, ids, offsets, cache, *args, **kwargs)
        off = self.log[-1]["offset"]
        L, V = out.shape[1], out.shape[2]
        rows = []
        top = mx.argmax(out[0], axis=-1).tolist()
        hi = mx.max(out[0], axis=-1).tolist()
        for i in range(L):
            pos = off + i + 1  # the position of the token this row predicts
            row = out[0, i]
            if _unit(self.seed, pos) >= self.agree:
                other = (top[i] + 1 + int(_unit(self.seed + 1, pos) * (V - 3))) % V
                if other == EOS or other == top[i]:
                    other = (other + 1) % V if (other + 1) % V not in (EOS, top[i]) else (
                        other + 2) % V
                row = mx.where(mx.arange(V) == other, hi[i] + 5.0, row)
            rows.append(row)
        return mx.stack(rows)[None]


__all__ = ["EosOnceRule", "NO_EOS", "IdCache", "SpecModel", "ScriptedDraft"]
