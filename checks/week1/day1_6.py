"""Day 1.6 -- generating text: ``simple_generate(model, tokenizer, prompt, sampler)``.

The learner's loop runs against a model adapter with the week-1 call signature
``model(tokens (1, S)) -> logits (1, S, V)``, backed by a tiny random mlx_lm Qwen2 (so this
day does not depend on the learner's day-1.5 model), and a character-level tokenizer built
here. The reference is mlx_lm's own greedy generation: the same Qwen2 with its KV cache
(``mlx_lm.models.cache.make_prompt_cache``), one token at a time, argmax.

To make generation end deterministically, the adapter's logits depend on the input length:
while ``S < prompt_len + K`` the EOS logit is pushed far below every other one (EOS can
never be picked early), and once ``S >= prompt_len + K`` it is pushed far above them at every
position (EOS is the only sensible pick). A correct loop therefore calls the model exactly
K + 1 times (S = P, ..., P + K) and produces K tokens. The reference applies the same rule.

What the learner generated is read from what they fed the model (the last call's input is
prompt + generated tokens), so both styles work: a ``simple_generate`` that returns the text
and one that prints it through ``tokenizer.detokenizer`` (stdout is captured).

Diagnoses (from behaviour only): the first position's logits used (every step repeats the
token predicted after the first prompt token), the new token never appended (the model
sees the prompt over and over), EOS ignored (the model is fed EOS and asked to go on),
the sampler ignored (the tokens follow argmax, or the sampler is never called), only the
newest token fed after the first step (later inputs lack the prompt), the sampler handed
something other than log-probabilities, the whole text so far emitted at every step.
"""

from __future__ import annotations

import contextlib
import io
from functools import lru_cache

import numpy as np

from ..harness import CheckFailed, check, import_mlx_lm, outside_learner, to_np
from .tiny_tokenizer import CharTokenizer

VOCAB = 63          # 62 printable characters + EOS
EOS = VOCAB - 1
MODEL_SEED = 1
SYMBOLS = ("simple_generate",)

# (prompt, K): K tokens before EOS. Chosen so that every step's top-2 (and 2nd/3rd for the
# sampler check) logits are >= 0.2 apart: far above float32 noise between the KV-cache
# reference and the adapter's full-sequence forward, so argmax never flips between them.
GREEDY_CASE = ("qwen2Go", 6)
EOS_CASES = (("Tiny6", 3), ("abc", 0))
SAMPLER_CASE = ("Xy9k", 5)
# How far past the forced EOS the adapter lets a loop run before it stops it.
RUNAWAY_MARGIN = 3
# Added to every logit the adapter returns (logits are shift-invariant): raw logits are then
# clearly not log-probabilities, so a loop that hands them to the sampler unnormalized shows.
LOGIT_OFFSET = 5.0


@lru_cache(maxsize=1)
def _model():
    import mlx.core as mx  # noqa: F401

    from .tiny_models import tiny_qwen2

    # Untied head: with a tied embedding a tiny random Qwen2 mostly repeats its last input
    # token, and a loop that echoes its input would look right.
    # Every size is spelled out: the cases below were chosen for this exact model.
    return tiny_qwen2(seed=MODEL_SEED, tie_word_embeddings=False, quantize=True, vocab=VOCAB,
                      hidden=64, intermediate=96, layers=2, heads=4, kv_heads=2,
                      rms_norm_eps=1e-6, rope_theta=10000.0, max_position_embeddings=256,
                      group_size=32, bits=4, embed_scale=0.7)


def _env(logits, seq_len: int, stop_at: int):
    """The adapter's rule on top of the model's logits (..., V), as a function of the length
    of the sequence the logits were computed for."""
    import mlx.core as mx

    hi = mx.max(logits, axis=-1, keepdims=True)
    lo = mx.min(logits, axis=-1, keepdims=True)
    eos_value = hi + 30.0 if seq_len >= stop_at else lo - 30.0
    is_eos = mx.arange(logits.shape[-1]) == EOS
    return mx.where(is_eos, eos_value, logits)


class _Runaway(CheckFailed):
    """Raised by the adapter when the loop keeps going; the check turns it into a diagnosis."""


class GenModel:
    """``model(tokens (1, S)) -> logits (1, S, V)``, recording every input."""

    def __init__(self, prompt_ids: list[int], k: int, margin: int = RUNAWAY_MARGIN):
        self.mlx_model = _model()
        self.prompt = list(prompt_ids)
        self.stop_at = len(prompt_ids) + k
        self.k = k
        self.margin = margin
        self.calls: list[list[int]] = []
        self.runaway: str | None = None

    def __call__(self, tokens, *args, **kwargs):
        import mlx.core as mx

        with outside_learner():
            shape = tuple(getattr(tokens, "shape", np.shape(tokens)))
            if len(shape) != 2 or shape[0] != 1:
                raise CheckFailed(
                    f"simple_generate called the model with an input of shape {shape}; the "
                    "week-1 model takes token ids of shape (1, S), batch first: where does your "
                    "loop give the ids their batch axis?", {"model_input_shape": list(shape)})
            ids = [int(t) for t in to_np(tokens).reshape(-1).tolist()]
            self.calls.append(ids)
            too_long = len(ids) > self.stop_at + self.margin
            too_many = len(self.calls) > self.k + 1 + self.margin
            if too_long or too_many:
                self.runaway = "long" if too_long else "many"
                raise _Runaway("simple_generate did not stop.")
            x = mx.array([ids], dtype=mx.int32)
            logits = _env(self.mlx_model(x), len(ids), self.stop_at) + LOGIT_OFFSET
            mx.eval(logits)
            return logits


class RankSampler:
    """A deterministic sampler: the 2nd most likely token, unless the most likely one is EOS
    (which the adapter only makes likely when it forces the end). Accepts (..., V)
    log-probs or logits."""

    def __init__(self):
        self.calls = 0
        self.shapes: list[list[int]] = []
        self.logsumexp: list[float] = []  # of every row it was given: 0 for log-probs
        self.saw_probs = False  # some row looked like probabilities, not their logarithms

    def __call__(self, logprobs):
        import mlx.core as mx

        with outside_learner():
            self.calls += 1
            a = to_np(logprobs).astype(np.float64)
            self.shapes.append(list(a.shape))
            flat = a.reshape(-1, a.shape[-1])
            for row in flat:
                top = row.max()
                self.logsumexp.append(float(top + np.log(np.exp(row - top).sum())))
                if row.min() >= 0 and abs(row.sum() - 1.0) < 1e-2:
                    self.saw_probs = True
            out = [_rank2(row) for row in flat]
            return mx.array(np.array(out, dtype=np.int32).reshape(a.shape[:-1]))


def _rank2(row: np.ndarray) -> int:
    order = np.argsort(-row, kind="stable")
    return int(order[0]) if order[0] == EOS else int(order[1])


# --------------------------------------------------------------------------- references


def _reference(prompt_ids: list[int], k: int, pick) -> list[int]:
    """mlx_lm's generation: prefill the prompt into a KV cache, then one token per step."""
    import mlx.core as mx

    cache_mod = import_mlx_lm("mlx_lm.models.cache")
    model = _model()
    cache = cache_mod.make_prompt_cache(model)
    stop_at = len(prompt_ids) + k
    logits = model(mx.array([prompt_ids], dtype=mx.int32), cache=cache)[0, -1]
    out: list[int] = []
    seq_len = len(prompt_ids)
    while True:
        row = to_np(_env(logits, seq_len, stop_at)).astype(np.float64)
        tok = pick(row)
        _guard_margin(row, tok)
        if tok == EOS:
            return out
        out.append(tok)
        seq_len += 1
        if len(out) > k:  # cannot happen: EOS is forced at stop_at
            raise RuntimeError("reference generation did not stop")
        logits = model(mx.array([[tok]], dtype=mx.int32), cache=cache)[0, -1]


def _guard_margin(row: np.ndarray, tok: int, min_gap: float = 0.02) -> None:
    """The picked token must be separated from its neighbours in rank by more than float
    noise, or the reference and the adapter could disagree. A design error, not the learner's."""
    s = np.sort(row)[::-1]
    r = int(np.nonzero(s == row[tok])[0][0])
    gaps = [s[r - 1] - s[r]] if r > 0 else []
    gaps += [s[r] - s[r + 1]] if r + 1 < len(s) else []
    if min(gaps) < min_gap:
        raise RuntimeError(f"day-1.6 check design: near tie at token {tok} (gap {min(gaps):.3g})")


def _distinct(want: list[int], candidates: dict) -> dict:
    for pit, cand in candidates.items():
        if cand == want:
            raise RuntimeError(f"day-1.6 check design: {pit} is indistinguishable here")
    return candidates


def _first_position(prompt_ids: list[int], k: int, pick) -> list[int]:
    """Model of gen-logits-wrong-position: every step reads the logits of position 0, which
    (causal attention) depend on the first token only; EOS is forced there too at P + K."""
    import mlx.core as mx

    logits = _model()(mx.array([prompt_ids[:1]], dtype=mx.int32))[0, 0]
    tok = pick(to_np(_env(logits, len(prompt_ids), len(prompt_ids) + k)).astype(np.float64))
    return [tok] * k


def _argmax(row: np.ndarray) -> int:
    return int(np.argmax(row))


# --------------------------------------------------------------------------- running


def _run(ctx, prompt: str, k: int, sampler=None, margin: int = RUNAWAY_MARGIN):
    fn = ctx.symbol("simple_generate")
    tok = CharTokenizer(VOCAB, EOS)
    prompt_ids = tok.encode(prompt)
    model = GenModel(prompt_ids, k, margin)
    buf = io.StringIO()
    err = None
    ret = None
    try:
        with contextlib.redirect_stdout(buf):
            ret = ctx.call(fn, model, tok, prompt, sampler)
    except CheckFailed as exc:
        if model.runaway is None:
            raise
        err = exc
    except Exception:
        if model.runaway is None:
            raise
        err = True  # the learner caught and re-raised our stop; the record still tells
    if model.runaway is not None:  # even if the learner swallowed our stop
        err = err or True
    return tok, prompt_ids, model, ret, buf.getvalue(), err


def _tokens_text(tok: CharTokenizer, ids: list[int]) -> str:
    return tok.decode([i for i in ids if i != EOS])


def _runaway_failure(case: str, tok, prompt_ids, model: GenModel) -> CheckFailed:
    p = len(prompt_ids)
    calls = model.calls
    ev = {"case": case, "model_calls": len(calls),
          "input_lengths": [len(c) for c in calls][:12], "eos_token_id": EOS,
          "eos_forced_from_length": model.stop_at}
    if all(c == prompt_ids for c in calls):
        return CheckFailed(
            f"[{case}] the model was called {len(calls)} times, every time with just the "
            f"prompt ({p} tokens): the sequence never grows, so the same step repeats forever.",
            ev, pitfall="gen-token-not-appended")
    eos_fed = max((c[p:].count(EOS) for c in calls), default=0)
    if eos_fed:
        ev["eos_tokens_fed_back"] = eos_fed
        return CheckFailed(
            f"[{case}] the model produced EOS (token {EOS}) but generation went on: it was "
            f"fed back {eos_fed} EOS token(s) and called again with {len(calls[-1])} tokens.",
            ev, pitfall="gen-eos-ignored")
    if _loses_context(prompt_ids, calls):
        return _context_failure(case, prompt_ids, calls, ev)
    return CheckFailed(
        f"[{case}] simple_generate did not stop: {len(calls)} model calls, the last with "
        f"{len(calls[-1])} tokens (it should stop after {model.k + 1} calls).", ev)


def _loses_context(prompt_ids: list[int], calls: list[list[int]]) -> bool:
    """The first call is the prompt, but every later call is shorter than the sequence so
    far and does not start with the prompt: only the newest token(s) are fed, as if the
    model remembered the rest (it has no cache in week 1)."""
    p = len(prompt_ids)
    return (len(calls) >= 2 and calls[0] == prompt_ids
            and all(c[:p] != prompt_ids and len(c) < p + i
                    for i, c in enumerate(calls[1:], 1)))


def _context_failure(case, prompt_ids, calls, ev) -> CheckFailed:
    lengths = [len(c) for c in calls][:8]
    return CheckFailed(
        f"[{case}] the first model call got the {len(prompt_ids)}-token prompt, but the later "
        f"calls got only {lengths[1:]} token(s) each, without the prompt: the model never "
        "sees the whole sequence after the first step.",
        {**ev, "input_lengths": lengths, "second_input": calls[1][:20]},
        pitfall="gen-input-not-whole-sequence")


def _generated(ctx, case: str, tok, prompt_ids, model: GenModel) -> list[int]:
    """The tokens the learner generated, from what they fed the model."""
    p = len(prompt_ids)
    if not model.calls:
        raise CheckFailed(f"[{case}] simple_generate returned without calling the model.",
                          {"case": case, "model_calls": 0})
    if _loses_context(prompt_ids, model.calls):
        raise _context_failure(case, prompt_ids, model.calls,
                               {"case": case, "model_calls": len(model.calls)})
    for i, c in enumerate(model.calls):
        if c[:p] != prompt_ids:
            raise CheckFailed(
                f"[{case}] model call {i + 1} was not given the prompt's tokens first: "
                f"expected {prompt_ids} (`tokenizer.encode(prompt, add_special_tokens=False)`)"
                f" followed by the generated tokens, got {c[:p + 4]}...",
                {"case": case, "call": i + 1, "input": c[:40], "prompt_ids": prompt_ids})
    last = model.calls[-1]
    for i, c in enumerate(model.calls):  # every call extends the previous one
        if c != last[:len(c)]:
            raise CheckFailed(
                f"[{case}] model call {i + 1} fed {c}, which is not a prefix of the final "
                f"sequence {last}: each step should re-feed the whole sequence so far.",
                {"case": case, "call": i + 1, "input": c, "final_input": last})
    return last[p:]


def _check_text(case: str, tok, prompt: str, gen: list[int], ret, out: str) -> dict:
    want = _tokens_text(tok, gen)
    strip = lambda s: "".join(str(s).split())  # noqa: E731 - the alphabet has no whitespace
    got_ret = strip(ret) if isinstance(ret, str) else None
    got_out = strip(out)
    if got_ret is not None and got_ret in (want, prompt + want):
        return {"text_returned": True}
    if got_out in (want, prompt + want):
        return {"text_printed": True}
    # The whole text so far emitted at every step (detokenizer.text, or the decoded
    # sequence, instead of the newest segment): the output starts with every prefix in turn.
    for start in ("", prompt):
        grown = "".join(start + want[:i] for i in range(1, len(want) + 1))
        if len(want) >= 2 and any(s is not None and s.startswith(grown)
                                  for s in (got_ret, got_out)):
            raise CheckFailed(
                f"[{case}] the tokens are right, but the text repeats: each step emits the "
                f"whole text so far ({grown[:40]!r}...) instead of only what is new "
                f"({want!r} in all).",
                {"case": case, "expected_text": want, "returned": repr(ret)[:200],
                 "printed": out[-200:]}, pitfall="gen-text-repeated")
    raise CheckFailed(
        f"[{case}] the tokens are right, but the text is not: expected {want!r} to be "
        f"printed (detokenizer.last_segment) or returned; returned {ret!r}, printed "
        f"{out[-80:]!r}.",
        {"case": case, "expected_text": want, "returned": repr(ret)[:200],
         "printed": out[-200:]})


def _compare(case: str, gen: list[int], want: list[int], tok, candidates: dict) -> None:
    if gen == want:
        return
    pitfall = None
    for pit, cand in candidates.items():
        if gen == cand:
            pitfall = pit
            break
    # EOS is impossible until the adapter forces it, so a run that is a strict beginning of
    # the reference stopped on its own before the model had finished.
    if pitfall is None and len(gen) < len(want) and gen == want[:len(gen)]:
        pitfall = "gen-stops-early"
    first = next((i for i, (a, b) in enumerate(zip(gen, want)) if a != b), min(len(gen), len(want)))
    raise CheckFailed(
        f"[{case}] generated {_tokens_text(tok, gen)!r} ({len(gen)} tokens), the reference "
        f"generates {_tokens_text(tok, want)!r} ({len(want)} tokens); they differ from "
        f"step {first + 1}.",
        {"case": case, "generated": gen, "expected": want, "first_difference_step": first + 1},
        pitfall=pitfall)


# --------------------------------------------------------------------------- checks


@check("generate-greedy", 1, "simple_generate matches greedy decoding (sampler=None)",
       symbols=SYMBOLS)
def generate_greedy(ctx):
    prompt, k = GREEDY_CASE
    case = f"prompt {prompt!r}, greedy, EOS after {k} tokens"
    tok, ids, model, ret, out, err = _run(ctx, prompt, k, None)
    if err is not None:
        raise _runaway_failure(case, tok, ids, model)
    gen = _generated(ctx, case, tok, ids, model)
    want = _reference(ids, k, _argmax)
    _compare(case, gen, want, tok, _distinct(
        want, {"gen-logits-wrong-position": _first_position(ids, k, _argmax)}))
    ev = {"case": case, "generated": _tokens_text(tok, gen), "model_calls": len(model.calls)}
    ev.update(_check_text(case, tok, prompt, gen, ret, out))
    return ev


@check("generate-stops-at-eos", 1, "simple_generate stops at EOS, without emitting it",
       symbols=SYMBOLS)
def generate_stops_at_eos(ctx):
    evidence = []
    for prompt, k in EOS_CASES:
        case = f"prompt {prompt!r}, EOS after {k} tokens"
        # No slack: any call past prompt + K means EOS was fed back.
        tok, ids, model, ret, out, err = _run(ctx, prompt, k, None, margin=0)
        if err is not None:
            raise _runaway_failure(case, tok, ids, model)
        gen = _generated(ctx, case, tok, ids, model)
        want = _reference(ids, k, _argmax)
        _compare(case, gen, want, tok,
                 {"gen-logits-wrong-position": _first_position(ids, k, _argmax)})
        if len(model.calls) != k + 1:
            raise CheckFailed(
                f"[{case}] the model was called {len(model.calls)} times; generating {k} "
                f"tokens and then EOS takes {k + 1}.", {"case": case,
                                                        "model_calls": len(model.calls)})
        ev = {"case": case, "model_calls": len(model.calls)}
        ev.update(_check_text(case, tok, prompt, gen, ret, out))
        evidence.append(ev)
    return {"cases": evidence}


@check("generate-uses-sampler", 1, "simple_generate picks tokens with the given sampler",
       symbols=SYMBOLS)
def generate_uses_sampler(ctx):
    prompt, k = SAMPLER_CASE
    case = f"prompt {prompt!r}, a sampler that picks the 2nd most likely token"
    sampler = RankSampler()
    tok, ids, model, ret, out, err = _run(ctx, prompt, k, sampler)
    if err is not None:
        raise _runaway_failure(case, tok, ids, model)
    gen = _generated(ctx, case, tok, ids, model)
    greedy = _reference(ids, k, _argmax)
    if sampler.calls == 0:
        raise CheckFailed(
            f"[{case}] the sampler passed to simple_generate was never called; generated "
            f"{_tokens_text(tok, gen)!r}.",
            {"case": case, "sampler_calls": 0, "generated": gen, "greedy": greedy},
            pitfall="gen-sampler-ignored" if gen == greedy else None)
    want = _reference(ids, k, _rank2)
    _compare(case, gen, want, tok, _distinct(
        want, {"gen-sampler-ignored": greedy,
               "gen-logits-wrong-position": _first_position(ids, k, _rank2)}))
    ev = {"case": case, "generated": _tokens_text(tok, gen), "sampler_calls": sampler.calls,
          "sampler_input_shapes": sampler.shapes[:2]}
    worst = max(sampler.logsumexp, key=abs)
    if abs(worst) > 1e-2:
        kind = "probabilities (values in [0, 1] summing to 1)" if sampler.saw_probs else \
            "values whose logsumexp is not 0"
        raise CheckFailed(
            f"[{case}] the right tokens, but the sampler was handed {kind} (logsumexp "
            f"{worst:.3g}): it takes log-probabilities (the last position's logits minus "
            "their logsumexp), and top-p reads probabilities off them.",
            {**ev, "sampler_input_logsumexp": round(worst, 4)},
            pitfall="gen-sampler-input-not-logprobs")
    ev.update(_check_text(case, tok, prompt, gen, ret, out))
    return ev
