"""Day 3.7 -- long context: YaRN-scaled RoPE (``yarn_inv_freq``, ``yarn_mscale``,
``YarnRoPE``), the RoPE a Qwen2 config's ``rope_scaling`` asks for (``rope_from_config``),
a KV cache that keeps sink tokens and a sliding window (``TinyKvSinkCache``) and a KV cache
stored quantized (``TinyKvQuantizedCache``).

Oracles: ``mlx_lm.models.rope_utils`` (its ``YarnRoPE`` speeds and temperature, the rope
``initialize_rope`` builds from a config) run through ``mx.fast.rope``; ``mlx_lm``'s Qwen2
forward pass on a tiny random float32 model whose config carries a YaRN ``rope_scaling``
(each layer's rope replaced by the learner's, through an adapter for the layout);
``mlx_lm``'s ``RotatingKVCache(max_size, keep=)`` for single-token decoding behind a
sink + window cache (its keys come back rotated, so outputs are compared after attention,
which does not depend on the order of the keys); the visibility rule written out in numpy
for prefill chunks (mlx_lm's rotating cache does not keep its sinks visible to a chunk
longer than its window, so it cannot judge chunks); ``mlx_lm``'s ``QuantizedKVCache`` and
``mx.dequantize`` for the quantized cache's values and bytes.

Isolation: the cache checks feed the learner's caches the checks' own keys and values and
attend with the checks' own attention (float32, MLX ops); the config check uses mlx_lm's
model with only the rope taken from the learner.

Tolerances: the harness defaults, except the RoPE outputs at positions in the thousands
(angles of thousands of radians in float32 carry errors near 1e-4 between two correct
implementations: atol 2e-3 there) and the model logits (atol 1e-3: two layers of float32
on top of those angles).

Time: about 2 s for the day on the answer key.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from ..harness import (
    TOLERANCES,
    CheckFailed,
    LearnerError,
    check,
    import_mlx_lm,
    measure,
    merge_evidence,
    outside_learner,
    to_np,
)

INV_FREQ = "long_context.yarn_inv_freq"
MSCALE = "long_context.yarn_mscale"
YARN = "long_context.YarnRoPE"
FROM_CONFIG = "long_context.rope_from_config"
SINK = "long_context.TinyKvSinkCache"
QUANT = "long_context.TinyKvQuantizedCache"
FULL = "kv_cache.TinyKvFullCache"

ROPE_FORBID = ("mx.fast.rope", "nn.RoPE")


def _rope_utils():
    return import_mlx_lm("mlx_lm.models.rope_utils")


# --------------------------------------------------------------------------- task 1


def oracle_inv_freq(dims, base, factor, orig, beta_fast=32.0, beta_slow=1.0):
    """mlx_lm's YaRN speeds: its ``_freqs`` are periods (what mx.fast.rope divides by)."""
    r = _rope_utils().YarnRoPE(dims, base=base, scaling_factor=factor,
                               original_max_position_embeddings=orig,
                               beta_fast=beta_fast, beta_slow=beta_slow)
    return 1.0 / np.array(r._freqs, dtype=np.float64), float(r.mscale)


def _ramp(dims, base, orig, beta_fast, beta_slow):
    def index(turns):
        return dims * math.log(orig / (turns * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(index(beta_fast)), 0)
    high = min(math.ceil(index(beta_slow)), dims - 1)
    if low == high:
        high += 0.001
    return np.clip((np.arange(dims // 2) - low) / (high - low), 0.0, 1.0)


def mistaken_inv_freq(kind, dims, base, factor, orig, beta_fast=32.0, beta_slow=1.0):
    """The speeds each catalogued mistake gives (numpy, float64)."""
    plain = float(base) ** (-np.arange(0, dims, 2) / dims)
    ramp = _ramp(dims, base, orig, beta_fast, beta_slow)
    if kind == "yarn-ramp-reversed":
        return plain * ramp + plain / factor * (1 - ramp)
    if kind == "yarn-all-pairs-interpolated":
        return plain / factor
    if kind == "yarn-speed-times-factor":
        return plain * (1 - ramp) + plain * factor * ramp
    raise ValueError(kind)


FREQ_MISTAKES = ("yarn-ramp-reversed", "yarn-all-pairs-interpolated", "yarn-speed-times-factor")

# (dims, base, factor, original length, beta_fast, beta_slow): Qwen2.5's own YaRN config
# at two head sizes, a small model whose lower bound clamps at 0, and custom betas.
FREQ_CASES = [
    (64, 1_000_000.0, 4.0, 32768, 32.0, 1.0),
    (128, 1_000_000.0, 4.0, 32768, 32.0, 1.0),
    (16, 10000.0, 8.0, 64, 32.0, 1.0),
    (32, 10000.0, 2.0, 2048, 16.0, 2.0),
]


@check("yarn-frequencies", 1, "yarn_inv_freq: each pair's rotation speed under YaRN",
       forbid=ROPE_FORBID, symbols=(INV_FREQ,))
def yarn_frequencies(ctx):
    fn = ctx.symbol(INV_FREQ)
    evs = []
    for dims, base, factor, orig, bf, bs in FREQ_CASES:
        case = (f"dims {dims}, base {base:g}, factor {factor:g}, original length {orig}, "
                f"beta_fast {bf:g}, beta_slow {bs:g}")
        got = ctx.call(fn, dims, base, factor, orig, bf, bs)
        ctx.expect_shape(got, (dims // 2,), what="speeds", case=case)
        want, _ = oracle_inv_freq(dims, base, factor, orig, bf, bs)
        try:
            evs.append(ctx.expect_close(
                got, want, what="speeds", case=case, dtype="float32",
                candidates={k: (lambda k=k, a=(dims, base, factor, orig, bf, bs):
                                mistaken_inv_freq(k, *a)) for k in FREQ_MISTAKES}))
        except CheckFailed as exc:
            if exc.pitfall is None and _ramp_misplaced(got, want, dims, base, factor):
                exc.pitfall = "yarn-ramp-bounds-misplaced"
            raise
    return merge_evidence(evs)


def _ramp_misplaced(got, want, dims, base, factor):
    """Whether the speeds are YaRN's blend with a ramp that starts or ends at the wrong
    pairs: the ramp they imply (0 keeps a pair's speed, 1 divides it by the factor) is 0
    at the first pair, past halfway at the last, never falls, stays within [0, 1], and
    differs from the right one."""
    plain = float(base) ** (-np.arange(0, dims, 2) / dims)
    g = np.asarray(got, dtype=np.float64).reshape(-1)
    if factor <= 1 or g.shape != plain.shape or not np.all(np.isfinite(g)):
        return False
    slowed = plain - plain / factor
    ramp, right = (plain - g) / slowed, (plain - np.asarray(want, np.float64)) / slowed
    slack = 1e-3  # float32 speeds, relative to a pair's whole range
    return bool(abs(ramp[0]) < slack and ramp[-1] > 0.5
                and np.all(ramp > -slack) and np.all(ramp < 1 + slack)
                and np.all(np.diff(ramp) > -slack) and np.max(np.abs(ramp - right)) > 10 * slack)


@check("yarn-temperature", 1, "yarn_mscale: the temperature YaRN applies to queries and keys",
       symbols=(MSCALE,))
def yarn_temperature(ctx):
    fn = ctx.symbol(MSCALE)
    evs = []
    for factor in (1.0, 2.0, 4.0, 8.0, 32.0):
        _, want = oracle_inv_freq(64, 1_000_000.0, factor, 32768)
        got = ctx.call(fn, factor)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise CheckFailed(f"[factor {factor:g}] yarn_mscale returned {got!r}; expected a "
                              "number.", {"case": f"factor {factor:g}"}) from None
        evs.append(ctx.expect_close(
            np.array([got]), np.array([want]), what="temperature", case=f"factor {factor:g}",
            dtype="float32",
            candidates={"yarn-temperature-squared": np.array([want * want])}))
    return merge_evidence(evs)


def oracle_rope(x, inv_freq, mscale, positions, traditional):
    """RoPE through mx.fast.rope with the given speeds, times the temperature.
    x (N, L, H, D); positions: one start per row (a list of N ints) or one for all."""
    N, L, H, D = x.shape
    freqs = mx.array(1.0 / np.asarray(inv_freq, dtype=np.float64), dtype=mx.float32)
    xt = x.astype(mx.float32).transpose(0, 2, 1, 3)
    rows = []
    for n in range(N):
        start = positions[n] if isinstance(positions, list) else positions
        rows.append(mx.fast.rope(xt[n:n + 1], D, traditional=traditional, base=None, scale=1.0,
                                 offset=start, freqs=freqs))
    y = mx.concatenate(rows, axis=0).transpose(0, 2, 1, 3) * mscale
    return y


# (N, L, H, D, base, factor, original length, traditional, offsets, dtype)
ROTATION_CASES = [
    (2, 6, 3, 16, 10000.0, 8.0, 64, False, None, mx.float32),
    (1, 5, 2, 64, 1_000_000.0, 4.0, 32768, False, 5000, mx.float32),
    (3, 4, 2, 32, 10000.0, 4.0, 512, False, [0, 700, 1900], mx.float32),
    (2, 3, 2, 16, 10000.0, 8.0, 64, True, 300, mx.float32),
    (1, 4, 4, 64, 1_000_000.0, 4.0, 32768, False, 40000, mx.float16),
]


def _offset_arg(offsets, L):
    if offsets is None:
        return None
    if isinstance(offsets, list):
        return [slice(o, o + L) for o in offsets]
    return slice(offsets, offsets + L)


@check("yarn-rope-rotation", 1, "YarnRoPE rotates and scales queries and keys like mlx_lm's "
       "YaRN rope", forbid=ROPE_FORBID, symbols=(YARN,))
def yarn_rope_rotation(ctx):
    Yarn = ctx.symbol(YARN)
    evs = []
    for i, (N, L, H, D, base, factor, orig, trad, offs, dtype) in enumerate(ROTATION_CASES):
        x = mx.random.normal((N, L, H, D), key=mx.random.key(3700 + i)).astype(dtype)
        seq_len = 65536
        where = "positions from 0" if offs is None else f"starts {offs}"
        case = (f"x {tuple(x.shape)} {str(dtype).split('.')[-1]}, base {base:g}, factor "
                f"{factor:g}, original length {orig}, traditional={trad}, {where}")
        rope = ctx.call(Yarn, D, seq_len, base, trad, factor, orig)
        got = ctx.call(rope, x, _offset_arg(offs, L))
        inv, msc = oracle_inv_freq(D, base, factor, orig)
        starts = 0 if offs is None else offs
        want = oracle_rope(x, inv, msc, starts, trad)
        big = max(starts if isinstance(starts, list) else [starts]) > 100
        cands = {k: (lambda k=k, a=(D, base, factor, orig), s=starts, m=msc, xx=x, t=trad:
                     oracle_rope(xx, mistaken_inv_freq(k, *a), m, s, t)) for k in FREQ_MISTAKES}
        cands["yarn-temperature-missing"] = (lambda xx=x, v=inv, s=starts, t=trad:
                                             oracle_rope(xx, v, 1.0, s, t))
        cands["yarn-temperature-squared"] = (lambda xx=x, v=inv, s=starts, t=trad, m=msc:
                                             oracle_rope(xx, v, m * m, s, t))
        evs.append(ctx.expect_close(
            got, want.astype(dtype), what="rotated x", case=case,
            atol=2e-3 if big and dtype == mx.float32 else None, candidates=cands,
            expect_dtype=str(dtype).split(".")[-1]))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 2


TINY = dict(hidden_size=64, num_hidden_layers=2, intermediate_size=96, num_attention_heads=4,
            num_key_value_heads=2, rms_norm_eps=1e-6, vocab_size=61, rope_theta=10000.0,
            max_position_embeddings=256, tie_word_embeddings=True)
HEAD_DIM = 16
SEQ_LEN = 256


def _tiny_qwen2(rope_scaling, seed=37):
    qwen2 = import_mlx_lm("mlx_lm.models.qwen2")
    mx.random.seed(seed)
    model = qwen2.Model(qwen2.ModelArgs(model_type="qwen2", rope_scaling=rope_scaling, **TINY))
    mx.eval(model.parameters())
    return model


class _RopeAdapter:
    """mlx_lm's attention calls ``rope(x (B, H, L, D), offset=int)``; the course's RoPE takes
    (B, L, H, D) and a slice."""

    def __init__(self, rope, call):
        self.rope, self.call = rope, call

    def __call__(self, x, offset=0):
        L = x.shape[2]
        y = self.call(self.rope, x.transpose(0, 2, 1, 3), slice(int(offset), int(offset) + L))
        return y.transpose(0, 2, 1, 3)


def _logits(model, tokens, ropes=None, call=lambda r, x, s: r(x, s)):
    """Prefill then two single-token steps, with ``ropes`` (one per layer, or one for all)
    in place of mlx_lm's own; returns every position's logits."""
    cache_mod = import_mlx_lm("mlx_lm.models.cache")
    saved = [layer.self_attn.rope for layer in model.model.layers]
    try:
        if ropes is not None:
            for layer in model.model.layers:
                layer.self_attn.rope = _RopeAdapter(ropes, call)
        cache = cache_mod.make_prompt_cache(model)
        outs = [model(tokens[None, :-2], cache=cache)]
        for t in (-2, -1):
            outs.append(model(tokens[None, t:t + 1] if t == -2 else tokens[None, t:], cache=cache))
        return mx.concatenate(outs, axis=1)
    finally:
        for layer, r in zip(model.model.layers, saved):
            layer.self_attn.rope = r


def _oracle_yarn(orig, factor, extra=None):
    extra = extra or {}
    return _rope_utils().YarnRoPE(HEAD_DIM, base=TINY["rope_theta"], scaling_factor=factor,
                                  original_max_position_embeddings=orig, **extra)


# (case, rope_scaling): both spellings of the type key; betas given in the config.
CONFIG_CASES = [
    ("'type': 'yarn'", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 48}),
    ("'rope_type': 'yarn'", {"rope_type": "yarn", "factor": 4.0,
                             "original_max_position_embeddings": 48}),
    ("betas in the config", {"type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64,
                             "beta_fast": 8.0, "beta_slow": 2.0}),
]


def _mlx_rope_call(r, x, s):
    # mlx_lm's own ropes (candidates): (B, H, L, D) layout and an int offset.
    return r(x.transpose(0, 2, 1, 3), offset=s.start).transpose(0, 2, 1, 3)


@check("rope-config-qwen2-yarn", 2, "rope_from_config: mlx_lm's Qwen2 with a YaRN "
       "rope_scaling gives the same logits with your rope", forbid=ROPE_FORBID,
       symbols=(FROM_CONFIG,))
def rope_config_qwen2_yarn(ctx):
    fn = ctx.symbol(FROM_CONFIG)
    tokens = mx.array(np.random.default_rng(3702).integers(0, TINY["vocab_size"], 150))
    evs = []
    for name, scaling in CONFIG_CASES:
        model = _tiny_qwen2(dict(scaling))
        want = _logits(model, tokens)
        try:
            rope = ctx.call(fn, HEAD_DIM, SEQ_LEN, TINY["rope_theta"], False, dict(scaling))
        except LearnerError as exc:
            if _refuses_one_spelling(ctx, fn, scaling, exc):
                exc.message = (f"[{name}] rope_from_config refused a YaRN config it accepts "
                               f"under the other spelling of the type key: {exc.message}")
                exc.pitfall = "rope-config-type-key"
            raise
        got = _logits(model, tokens, rope, lambda r, x, s: ctx.call(r, x, s))
        factor = scaling["factor"]
        orig = scaling["original_max_position_embeddings"]
        betas = {k: scaling[k] for k in ("beta_fast", "beta_slow") if k in scaling}
        plain = _rope_utils().initialize_rope(HEAD_DIM, TINY["rope_theta"], False, None)
        case = f"{name}: factor {factor:g}, original length {orig}, 150 tokens"
        cands = {
            "rope-config-type-key": lambda: _logits(model, tokens, plain, _mlx_rope_call),
            "rope-config-original-length": lambda f=factor, b=betas: _logits(
                model, tokens, _oracle_yarn(SEQ_LEN, f, b), _mlx_rope_call),
        }
        if betas:
            cands["rope-config-betas-ignored"] = lambda f=factor, o=orig: _logits(
                model, tokens, _oracle_yarn(o, f), _mlx_rope_call)
        evs.append(ctx.expect_close(got, want, what="logits", case=case, atol=1e-3,
                                    candidates=cands))
    return merge_evidence(evs)


def _raised_value_error(exc):
    return exc.message.startswith("Your code raised ValueError")


def _refuses_one_spelling(ctx, fn, scaling, exc):
    """A ValueError for a YaRN config whose type is written under one key, when the same
    config with the type under the other key is accepted."""
    if not _raised_value_error(exc) or not ({"type", "rope_type"} & set(scaling)):
        return False
    other = {("rope_type" if k == "type" else "type" if k == "rope_type" else k): v
             for k, v in scaling.items()}
    try:
        ctx.call(fn, HEAD_DIM, SEQ_LEN, TINY["rope_theta"], False, other)
    except (LearnerError, CheckFailed):
        return False
    return True


@check("rope-config-plain-and-errors", 2, "rope_from_config: no scaling gives plain RoPE, "
       "unsupported or incomplete scaling is refused", forbid=ROPE_FORBID,
       symbols=(FROM_CONFIG,))
def rope_config_plain_and_errors(ctx):
    fn = ctx.symbol(FROM_CONFIG)
    tokens = mx.array(np.random.default_rng(3703).integers(0, TINY["vocab_size"], 40))
    model = _tiny_qwen2(None)
    want = _logits(model, tokens)
    evs = []
    for name, scaling in (("rope_scaling None", None),
                          ("'type': 'default'", {"type": "default"})):
        try:
            rope = ctx.call(fn, HEAD_DIM, SEQ_LEN, TINY["rope_theta"], False, scaling)
        except LearnerError as exc:
            if scaling is not None and _raised_value_error(exc):
                exc.message = (f"[{name}] rope_from_config refused a config that asks for "
                               f"plain RoPE: {exc.message}")
                exc.pitfall = "rope-config-default-refused"
            raise
        got = _logits(model, tokens, rope, lambda r, x, s: ctx.call(r, x, s))
        evs.append(ctx.expect_close(got, want, what="logits", case=name, atol=1e-3))
    for name, scaling in (("type 'dynamic'", {"type": "dynamic", "factor": 2.0}),
                          ("yarn without factor", {"type": "yarn",
                                                   "original_max_position_embeddings": 64}),
                          ("yarn without original_max_position_embeddings",
                           {"type": "yarn", "factor": 2.0})):
        try:
            ctx.call(fn, HEAD_DIM, SEQ_LEN, TINY["rope_theta"], False, scaling)
        except Exception as exc:  # noqa: BLE001 - the learner's error, judged by its type
            raw = getattr(exc, "__cause__", None) or exc
            if "ValueError" in str(exc) or isinstance(raw, ValueError):
                continue
            raise CheckFailed(f"[{name}] rope_from_config raised {exc}; expected a ValueError.",
                              {"case": name}) from None
        raise CheckFailed(f"[{name}] rope_from_config returned a rope; expected a ValueError "
                          "(a config the engine cannot honour must not run silently).",
                          {"case": name})
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 3


def _attend(q, k, v, mask=None):
    """Plain softmax attention in float32 (the checks' own), q (B, H, L, D)."""
    q, k, v = (t.astype(mx.float32) for t in (q, k, v))
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask.astype(mx.float32)
    return mx.softmax(scores, axis=-1) @ v


def visible_oracle(keys_np, values_np, q, first, sink, window):
    """Attention of the L queries at positions first.. over every position seen so far
    (keys_np (B, H, T, D) hold the whole history), with the sink + window rule."""
    L = q.shape[2]
    T = first + L
    k = mx.array(keys_np[:, :, :T])
    v = mx.array(values_np[:, :, :T])
    p = np.arange(T)[None, :]
    qp = np.arange(first, T)[:, None]
    ok = (p <= qp) & ((p < sink) | (p > qp - window))
    mask = mx.array(np.where(ok, 0.0, -np.inf).astype(np.float32))
    return _attend(q, k, v, mask)


def _learner_mask(ctx, mask, L, S, case):
    if mask is None:
        return None
    if isinstance(mask, str) or not hasattr(mask, "shape"):
        raise CheckFailed(f"[{case}] the cache returned the mask {mask!r}; expected a float32 "
                          f"(L, S) = ({L}, {S}) array of 0 and -inf.", {"case": case})
    try:
        return mx.broadcast_to(mask.astype(mx.float32), (1, 1, L, S))
    except ValueError:
        raise CheckFailed(f"[{case}] the cache returned a mask of shape {tuple(mask.shape)} for "
                          f"{L} queries over {S} keys; expected ({L}, {S}).",
                          {"case": case, "shape": list(mask.shape)}) from None


def _sink_run(ctx, Cache, sink, window, chunks, seed, oracle="numpy"):
    """Feed the learner's cache the chunks; after each, attend with the learner's keys,
    values and mask and compare with the oracle (and the catalogued mistakes)."""
    B, H, D = 1, 2, 8
    T = sum(chunks)
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(B, H, T, D)).astype(np.float32)
    values = rng.normal(size=(B, H, T, D)).astype(np.float32)
    queries = rng.normal(size=(B, H, T, D)).astype(np.float32)
    cache = ctx.call(Cache, sink, window)
    rot = None
    if oracle == "mlx_lm":
        rot = import_mlx_lm("mlx_lm.models.cache").RotatingKVCache(max_size=sink + window,
                                                                    keep=sink)
    evs, first = [], 0
    for step, L in enumerate(chunks):
        k, v = mx.array(keys[:, :, first:first + L]), mx.array(values[:, :, first:first + L])
        q = mx.array(queries[:, :, first:first + L])
        case = (f"sink_size {sink}, window_size {window}, chunks {chunks}: chunk {step} "
                f"({L} at position {first})")
        out = ctx.call(cache.update_and_fetch, k, v, L, None)
        try:
            gk, gv, off, gmask = out
        except (TypeError, ValueError):
            raise CheckFailed(f"[{case}] update_and_fetch returned {type(out).__name__}; "
                              "expected (keys, values, offset, mask).", {"case": case}) from None
        held_after = min(first + L, sink + window)
        if not isinstance(off, (int, np.integer)) or int(off) != first + L:
            pit = ("sink-offset-counts-cached" if isinstance(off, (int, np.integer))
                   and int(off) != first + L and int(off) in (gk.shape[2], held_after) else None)
            ctx.fail(f"[{case}] the returned offset is {off!r}; expected {first + L}, the "
                     "number of positions seen so far.", {"case": case, "offset": repr(off)},
                     pitfall=pit)
        S = gk.shape[2]
        mask = _learner_mask(ctx, gmask, L, S, case)
        got = _attend(q, gk, gv, mask)
        if rot is not None and L == 1:
            rk, rv = rot.update_and_fetch(k, v)
            want = _attend(q, rk, rv)
        else:
            if rot is not None:
                rot.update_and_fetch(k, v)
            want = visible_oracle(keys, values, q, first, sink, window)
        def widths(ws, q=q, f=first, got=got):
            return lambda: _rows_of_widths(got, keys, values, q, f, sink, ws)

        cands = {
            "sink-not-kept": lambda q=q, f=first: visible_oracle(keys, values, q, f, 0, window),
            "sink-window-off-by-one": widths((window, window + 1, window - 1)),
        }
        if sink >= 3:
            # Below three sinks, a window short by the sinks is also one short.
            cands["sink-window-counts-sinks"] = widths((window, window - sink + 1,
                                                        window - sink))
        if L > 1:
            # A single query may see every key it is given; only a chunk needs a mask.
            cands["sink-prefill-no-mask"] = lambda q=q, kk=gk, vv=gv: _attend(q, kk, vv)
        evs.append(ctx.expect_close(got, want, what="attention output", case=case,
                                    candidates=cands))
        first += L
    return cache, evs


def _rows_of_widths(got, keys_np, values_np, q, first, sink, widths):
    """Each query's row of the oracle with the first window width in ``widths`` (the right
    one first) under which that row is the learner's: the learner's output when every
    query saw a window of one of these widths (the cache can give a chunk's queries
    different widths, e.g. a mask one wider than the keys it keeps)."""
    g = to_np(got).astype(np.float64)
    rtol, atol = TOLERANCES["float32"]
    rows = [to_np(visible_oracle(keys_np, values_np, q, first, sink, max(w, 1)))
            .astype(np.float64) for w in widths]
    out = rows[0].copy()
    for i in range(g.shape[2]):
        for r in rows:
            if np.allclose(g[:, :, i], r[:, :, i], rtol=rtol, atol=atol):
                out[:, :, i] = r[:, :, i]
                break
    return out


SINK_DECODE = [(4, 12, [5] + [1] * 40), (1, 6, [3] + [1] * 25), (2, 9, [11] + [1] * 20)]
SINK_CHUNKS = [(3, 5, [7, 1, 12, 3, 1, 9]), (2, 16, [20, 20, 1, 5]), (4, 6, [2, 1, 1, 10])]


@check("sink-cache-decode", 3, "TinyKvSinkCache: decoding token by token attends like "
       "mlx_lm's rotating cache that keeps its first tokens", symbols=(SINK,))
def sink_cache_decode(ctx):
    Cache = ctx.symbol(SINK)
    evs = []
    for i, (sink, window, chunks) in enumerate(SINK_DECODE):
        # The first chunk is a prefill: mlx_lm's rotating cache concatenates it whole and
        # is only the oracle for the single-token steps (the numpy rule judges the chunk).
        _, e = _sink_run(ctx, Cache, sink, window, chunks, 3710 + i, oracle="mlx_lm")
        evs += e
    return merge_evidence(evs)


@check("sink-cache-prefill", 3, "TinyKvSinkCache: chunks longer than one token see the sinks "
       "and their own window, never a later token", symbols=(SINK,))
def sink_cache_prefill(ctx):
    Cache = ctx.symbol(SINK)
    evs = []
    for i, (sink, window, chunks) in enumerate(SINK_CHUNKS):
        _, e = _sink_run(ctx, Cache, sink, window, chunks, 3720 + i)
        evs += e
    return merge_evidence(evs)


@check("sink-cache-bounded", 3, "TinyKvSinkCache: the memory it holds stops growing at the "
       "sinks plus the window", symbols=(SINK,))
def sink_cache_bounded(ctx):
    Cache = ctx.symbol(SINK)
    sink, window, B, H, D = 4, 32, 1, 2, 16
    per_position = 2 * B * H * D * 2  # keys and values, float16
    cache = ctx.call(Cache, sink, window)
    rng = np.random.default_rng(3730)
    seen = 0
    for L in [20, 30, 1, 1, 50] + [1] * 60 + [7, 1]:
        k = mx.array(rng.normal(size=(B, H, L, D)).astype(np.float16))
        v = mx.array(rng.normal(size=(B, H, L, D)).astype(np.float16))
        ctx.call(cache.update_and_fetch, k, v, L, None)
        seen += L
        held = seen if seen <= sink + window else sink + window
        got = ctx.call(lambda: cache.nbytes)
        want = held * per_position
        if int(got) != want:
            case = f"sink_size {sink}, window_size {window}, float16, after {seen} positions"
            pit = None
            if int(got) >= seen * per_position and seen > sink + window + 1:
                pit = "sink-cache-grows"
            elif int(got) in (want + per_position, want - per_position):
                pit = "sink-window-off-by-one"
            ctx.fail(f"[{case}] nbytes is {int(got)}; expected {want} ({held} positions of "
                     f"{per_position} bytes: keys and values).",
                     {"case": case, "nbytes": int(got), "expected": want}, pitfall=pit)
    return {"positions_seen": seen, "bytes_held": want}


# --------------------------------------------------------------------------- task 4


def _quant_oracle(group_size, bits, chunks):
    rot = import_mlx_lm("mlx_lm.models.cache").QuantizedKVCache(group_size=group_size, bits=bits)
    outs = []
    for k, v in chunks:
        qk, qv = rot.update_and_fetch(k, v)
        outs.append((mx.dequantize(*qk, group_size=group_size, bits=bits).astype(k.dtype),
                     mx.dequantize(*qv, group_size=group_size, bits=bits).astype(v.dtype),
                     sum(a.nbytes for a in qk) + sum(a.nbytes for a in qv)))
    return outs


# Settings a cache that ignores its own may use instead: 64/8, or mx.quantize's default bits.
FIXED_QUANT = ((64, 8), (64, 4))

# (group_size, bits, dtype, D, chunk lengths)
QUANT_CASES = [
    (64, 8, mx.float16, 64, [5, 1, 1, 9]),
    (32, 4, mx.float16, 64, [3, 1, 12]),
    (64, 4, mx.float32, 128, [1, 6, 1]),
]


def _quant_chunks(D, dtype, lengths, seed):
    rng = np.random.default_rng(seed)
    return [(mx.array(rng.normal(size=(1, 2, L, D))).astype(dtype),
             mx.array(rng.normal(size=(1, 2, L, D))).astype(dtype)) for L in lengths]


@check("kvq-matches-mlx-lm", 4, "TinyKvQuantizedCache: the keys and values it gives back are "
       "those of mlx_lm's quantized cache", symbols=(QUANT,))
def kvq_matches_mlx_lm(ctx):
    Cache = ctx.symbol(QUANT)
    evs = []
    for i, (gs, bits, dtype, D, lengths) in enumerate(QUANT_CASES):
        chunks = _quant_chunks(D, dtype, lengths, 3740 + i)
        want = _quant_oracle(gs, bits, chunks)
        # What a cache that ignores its settings gives: its own fixed 64/8, or MLX's default
        # bits (4), whichever differs from what it was built with.
        fixed = [_quant_oracle(g, b, chunks) for g, b in FIXED_QUANT if (g, b) != (gs, bits)]
        cache = ctx.call(Cache, gs, bits)
        seen = 0
        for step, ((k, v), (wk, wv, _)) in enumerate(zip(chunks, want)):
            seen += k.shape[2]
            dname = str(dtype).split(".")[-1]
            case = (f"group_size {gs}, bits {bits}, {dname}, D {D}, chunks {lengths}: "
                    f"after chunk {step}")
            L = k.shape[2]
            # The course's model passes "causal" for a chunk; a mask array must come back too.
            given = None if L == 1 else "causal" if i % 2 == 0 else _causal(L, seen)
            out = ctx.call(cache.update_and_fetch, k, v, L, given)
            try:
                gk, gv, off, gmask = out
            except (TypeError, ValueError):
                raise CheckFailed(f"[{case}] update_and_fetch returned {type(out).__name__}; "
                                  "expected (keys, values, offset, mask).", {"case": case}) from None
            history_k = mx.concatenate([c[0] for c in chunks[:step + 1]], axis=2)
            history_v = mx.concatenate([c[1] for c in chunks[:step + 1]], axis=2)
            for j, (what, g, w, h) in enumerate((("keys", gk, wk, history_k),
                                                 ("values", gv, wv, history_v))):
                cands = {"kvq-stores-dense": h,
                         "kvq-ignores-bits": [f[step][j] for f in fixed]}
                evs.append(ctx.expect_close(g, w, what=what, case=case, expect_dtype=dname,
                                            candidates=cands))
            if not isinstance(off, (int, np.integer)) or int(off) != seen:
                ctx.fail(f"[{case}] the returned offset is {off!r}; expected {seen}, the "
                         "number of positions stored so far.", {"case": case, "offset": repr(off)},
                         pitfall="kvq-offset-not-positions" if isinstance(off, (int, np.integer))
                         else None)
            _expect_mask_passed_on(ctx, gmask, given, L, seen, case)
    return merge_evidence(evs)


def _causal(L, S):
    q = np.arange(S - L, S)[:, None]
    return mx.array(np.where(np.arange(S)[None, :] <= q, 0.0, -np.inf).astype(np.float32))


def _expect_mask_passed_on(ctx, got, given, L, S, case):
    """The mask the quantized cache was given comes back (the causal mask written out as
    an array is as good as "causal")."""
    if given is None:
        return
    if isinstance(given, str) and isinstance(got, str) and got == given:
        return
    if hasattr(got, "shape") and got.size == L * S:
        ctx.expect_close(got.astype(mx.float32).reshape(L, S), _causal(L, S), what="mask",
                         case=case)
        return
    gave = repr(given) if isinstance(given, str) else f"a ({L}, {S}) causal array"
    back = (f"an array of shape {tuple(got.shape)}" if hasattr(got, "shape") else repr(got))
    ctx.fail(f"[{case}] update_and_fetch was given the mask {gave} for {L} new positions and "
             f"returned {back}; expected the mask it was given.",
             {"case": case, "mask": back},
             pitfall="kvq-mask-dropped" if got is None else None)


@check("kvq-bytes", 4, "TinyKvQuantizedCache: nbytes counts the packed integers, scales and "
       "biases it holds", symbols=(QUANT,))
def kvq_bytes(ctx):
    Cache = ctx.symbol(QUANT)
    for i, (gs, bits, dtype, D, lengths) in enumerate(QUANT_CASES):
        chunks = _quant_chunks(D, dtype, lengths, 3750 + i)
        want = _quant_oracle(gs, bits, chunks)
        cache = ctx.call(Cache, gs, bits)
        seen = 0
        item = 2 if dtype == mx.float16 else 4
        for step, ((k, v), (_, _, nbytes)) in enumerate(zip(chunks, want)):
            ctx.call(cache.update_and_fetch, k, v, k.shape[2], None)
            seen += k.shape[2]
            got = int(ctx.call(lambda: cache.nbytes))
            if got == nbytes:
                continue
            vectors = 2 * 2 * seen  # keys and values, 2 heads
            dense = vectors * D * item
            f32_scales = vectors * (D * bits // 8 + 2 * (D // gs) * 4)
            fixed = {vectors * (D * b // 8 + 2 * (D // g) * item)
                     for g, b in FIXED_QUANT if (g, b) != (gs, bits)}
            pit = {dense: "kvq-stores-dense", f32_scales: "kvq-scales-float32"}.get(got)
            if pit is None and got in fixed:
                pit = "kvq-ignores-bits"
            dname = str(dtype).split(".")[-1]
            case = f"group_size {gs}, bits {bits}, {dname}, D {D}, after {seen} positions"
            ctx.fail(f"[{case}] nbytes is {got}; expected {nbytes}.",
                     {"case": case, "nbytes": got, "expected": nbytes}, pitfall=pit)
    return {"cases": len(QUANT_CASES)}


# --------------------------------------------------------------------------- predict


# Qwen2-0.5B's attention: 24 layers, 2 KV heads of 64 dims, float16; 32k positions.
MEASURE_LAYERS, MEASURE_HEADS, MEASURE_DIM, MEASURE_TOKENS, MEASURE_CHUNK = 24, 2, 64, 32768, 4096


def _fill(ctx, cache):
    """Fill one layer's cache with 32k float16 positions, in chunks; returns what the last
    update gave back."""
    out = None
    for i in range(MEASURE_TOKENS // MEASURE_CHUNK):
        with outside_learner():
            k = mx.random.normal((1, MEASURE_HEADS, MEASURE_CHUNK, MEASURE_DIM),
                                 key=mx.random.key(3760 + i)).astype(mx.float16)
        out = ctx.call(cache.update_and_fetch, k, k, MEASURE_CHUNK, None)
    return out


@measure("kv-mib-32k-dense", unit="MiB")
def measure_kv_mib_32k_dense(ctx):
    """The learner's day-2.1 TinyKvFullCache, one layer filled with 32,768 float16
    positions (2 KV heads of 64): the bytes of the keys and values it gives back, times 24
    layers, in MiB."""
    cache = ctx.call(ctx.symbol(FULL))
    keys, values, _, _ = _fill(ctx, cache)
    return (keys.nbytes + values.nbytes) * MEASURE_LAYERS / 2**20


@measure("kv-mib-32k-int8", unit="MiB")
def measure_kv_mib_32k_int8(ctx):
    """The learner's TinyKvQuantizedCache (group_size 64, bits 8), one layer filled with
    32,768 float16 positions: its nbytes times 24 layers, in MiB."""
    cache = ctx.call(ctx.symbol(QUANT), 64, 8)
    _fill(ctx, cache)
    return int(ctx.call(lambda: cache.nbytes)) * MEASURE_LAYERS / 2**20


__all__ = ["oracle_inv_freq", "mistaken_inv_freq", "visible_oracle"]
