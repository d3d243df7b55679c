"""Day 1.5 -- the Qwen2 decoder block, the embedding and the week-1 model.

Oracles: mlx_lm's qwen2.TransformerBlock (random weights, norm weights not ones), a 4-bit
quantized nn.Embedding, and tiny random 4-bit quantized mlx_lm Qwen2 models (tied and
untied heads; see tiny_models.py). Mistakes are modelled by rewiring mlx_lm's own modules
(``_block``), so each catalogued mistake has an exact oracle-side output to match.

Precision: the learner runs the block and the model in float16 (the book casts every weight
to float16); the oracles run in float32 on the very same (float16-representable or
quantized) weights, and the float16 comparisons are loosened accordingly (see the
constants below). The book itself uses rtol 1e-1 for these; ours are tighter but keep a
wide margin over float16 noise while every catalogued mistake stays far outside.
"""

from __future__ import annotations

import os

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map

from ..harness import Ctx, Skip, check, hf_snapshot, import_mlx_lm
from .tiny_models import dense_weight, qwen2_forward, qwen2_module, tiny_qwen2

# Everything the block and the model are built from must be the learner's own.
BUILT_ON = ("mx.fast.scaled_dot_product_attention", "mx.fast.rope", "nn.RoPE",
            "mx.fast.rms_norm", "nn.RMSNorm", "mx.fast.layer_norm", "nn.silu", "nn.SiLU",
            "nn.MultiHeadAttention")

# float16 block output vs a float32 oracle: about 10 float16 roundings in sequence, on
# values of order 1-5. Measured worst error of correct code: ~4e-3 abs.
BLOCK_F16 = {"rtol": 2e-2, "atol": 2e-2}
# Log-probabilities of the tiny 2-layer models (values -25..0), float16 vs float32 oracle.
# Measured worst error of correct code: ~4e-2 abs; the mistakes move them by several nats.
MODEL_LOGP = {"rtol": 1e-2, "atol": 0.15}


def _dt(dtype) -> str:
    return "float16" if dtype == mx.float16 else "float32"


# --------------------------------------------------------------------------- shared


def _block(layer, x, mask, *, attn_residual=True, mlp_residual=True, norms="12",
           mlp_norm=True, resid="xh", placement="pre", mlp_in="h", mlp_add="h",
           use_mask=True, attn=None, mlp=None, order="attn-first"):
    """An mlx_lm TransformerBlock's forward pass with optional, catalogued mistakes.
    ``norms`` names the norm used before attention and before the MLP: "12" is right,
    "21" swapped, "11"/"22" one norm used in both places. ``resid``: what each residual
    adds back ("x"/"h" right, "n" the normalised sub-layer input). ``placement``: "pre"
    (right), "post" (each norm after its residual add) or "out" (each norm on its
    sub-layer's output). ``mlp_in`` / ``mlp_add``: the stream the MLP half reads and adds
    back ("h" right, "x" the block input, "r" the attention output). ``attn`` / ``mlp``
    replace the layer's sub-layers (a miswired model). ``order``: "mlp-first" runs the MLP
    half before the attention half, each with its own norm, "mlp-first-norms-in-place" the
    same with the norms left where they were."""
    pick = {"1": layer.input_layernorm, "2": layer.post_attention_layernorm}
    n1, n2 = pick[norms[0]], pick[norms[1]]
    attn = attn or layer.self_attn
    mlp = mlp or layer.mlp
    if order != "attn-first":
        first, second = (n2, n1) if order == "mlp-first" else (n1, n2)
        h = x + mlp(first(x))
        return h + attn(second(h), mask)
    pre = placement == "pre"
    a_in = n1(x) if pre else x
    r = attn(a_in, mask if use_mask else None)
    if placement == "out":
        r = n1(r)
    base = a_in if resid[0] == "n" else x
    h = base + r if attn_residual else r
    if placement == "post":
        h = n1(h)
    src = {"h": h, "x": x, "r": r}[mlp_in]
    m_in = n2(src) if (mlp_norm and pre) else src
    m = mlp(m_in)
    if placement == "out":
        m = n2(m)
    base = m_in if resid[1] == "n" else {"h": h, "x": x}[mlp_add]
    out = base + m if mlp_residual else m
    return n2(out) if placement == "post" else out


BLOCK_MISTAKES = {
    "block-missing-residual": ({"attn_residual": False}, {"mlp_residual": False}),
    # swapped, or one of the two used in both places: the same confusion about which is which
    "block-norms-swapped": ({"norms": "21"}, {"norms": "11"}, {"norms": "22"}),
    "block-mlp-unnormalized": ({"mlp_norm": False},),
    "block-residual-from-norm": ({"resid": "nh"}, {"resid": "xn"}, {"resid": "nn"}),
    "block-norm-placement": ({"placement": "post"}, {"placement": "out"}),
    "block-mlp-wrong-input": ({"mlp_in": "x"}, {"mlp_in": "r"}, {"mlp_add": "x"}),
    "block-mask-dropped": ({"use_mask": False},),
    "block-sublayers-swapped": ({"order": "mlp-first"}, {"order": "mlp-first-norms-in-place"}),
}


def _attn(attn, x, mask, *, wiring=(), base=None):
    """mlx_lm's qwen2 Attention forward written out, with its projections taken from the
    wrong slots (``wiring``: (slot, source) pairs among "q", "k", "v" for the weights and
    "bq", "bk", "bv" for the biases) or RoPE at another base."""
    B, L, _ = x.shape
    lin = {n: getattr(attn, f"{n}_proj") for n in "qkvo"}
    w = {n: (lambda t, f=lin[n]: f(t) - f.bias) for n in "qkv"}
    b = {f"b{n}": lin[n].bias for n in "qkv"}
    w.update({dst: w[src] for dst, src in wiring if not dst.startswith("b")})
    b.update({dst: b[src] for dst, src in wiring if dst.startswith("b")})
    q, k, v = (w[n](x) + b[f"b{n}"] for n in "qkv")

    def heads(t, n):
        return t.reshape(B, L, n, -1).transpose(0, 2, 1, 3)

    q, k, v = heads(q, attn.n_heads), heads(k, attn.n_kv_heads), heads(v, attn.n_kv_heads)
    if base is None:
        q, k = attn.rope(q), attn.rope(k)
    else:
        d = q.shape[-1]
        q, k = (mx.fast.rope(t, d, traditional=False, base=base, scale=1.0, offset=0)
                for t in (q, k))
    out = mx.fast.scaled_dot_product_attention(q, k, v, scale=attn.scale, mask=mask)
    return lin["o"](out.transpose(0, 2, 1, 3).reshape(B, L, -1))


def _mlp(mlp, x, *, wiring=()):
    """mlx_lm's qwen2 MLP with the gate or up projection taken from the other slot."""
    p = {"gate": mlp.gate_proj, "up": mlp.up_proj}
    p.update({dst: p[src] for dst, src in wiring})
    return mlp.down_proj(nn.silu(p["gate"](x)) * p["up"](x))


# A layer's weights loaded into the wrong slots: k and v (same shapes) each right,
# exchanged or one copied over the other, for the weights and the biases separately; the
# gate or up weight copied over the other.
_KV_WAYS = {"right": (), "swapped": (("k", "v"), ("v", "k")), "k<-v": (("k", "v"),),
            "v<-k": (("v", "k"),)}
ATTN_WIRINGS = [ww + tuple(("b" + a, "b" + b) for a, b in bb)
                for ww in _KV_WAYS.values() for bb in _KV_WAYS.values() if ww or bb]
MLP_WIRINGS = [(("gate", "up"),), (("up", "gate"),)]


def _log_softmax(x: mx.array) -> mx.array:
    x = x.astype(mx.float32)
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------- task 1: block

BLOCK_CFG = dict(hidden=40, heads=4, kv_heads=2, intermediate=72, eps=1e-6, theta=10000,
                 max_seq_len=64)


def _mlx_block():
    q = qwen2_module()
    c = BLOCK_CFG
    args = q.ModelArgs(model_type="qwen2", hidden_size=c["hidden"], num_hidden_layers=1,
                       intermediate_size=c["intermediate"], num_attention_heads=c["heads"],
                       num_key_value_heads=c["kv_heads"], rms_norm_eps=c["eps"],
                       vocab_size=100, rope_theta=c["theta"],
                       max_position_embeddings=c["max_seq_len"])
    mx.random.seed(150)
    blk = q.TransformerBlock(args)
    blk.input_layernorm.weight = mx.random.uniform(0.5, 1.5, (c["hidden"],))
    blk.post_attention_layernorm.weight = mx.random.uniform(0.5, 1.5, (c["hidden"],))
    # Round every weight to float16 once, so float16 and float32 cases share exact weights.
    blk.update(tree_map(lambda p: p.astype(mx.float16).astype(mx.float32),
                                 blk.parameters()))
    mx.eval(blk.parameters())
    return blk


def _block_weights(blk, dtype) -> dict:
    a, m = blk.self_attn, blk.mlp
    w = dict(wq=a.q_proj.weight, wk=a.k_proj.weight, wv=a.v_proj.weight, wo=a.o_proj.weight,
             bq=a.q_proj.bias, bk=a.k_proj.bias, bv=a.v_proj.bias,
             w_gate=m.gate_proj.weight, w_up=m.up_proj.weight, w_down=m.down_proj.weight,
             w_input_layernorm=blk.input_layernorm.weight,
             w_post_attention_layernorm=blk.post_attention_layernorm.weight)
    return {k: v.astype(dtype) for k, v in w.items()}


@check("qwen2-block", 1, "Qwen2TransformerBlock matches mlx_lm's qwen2.TransformerBlock",
       forbid=BUILT_ON, symbols=("qwen2_week1.Qwen2TransformerBlock",))
def qwen2_block(ctx: Ctx):
    Block = ctx.symbol("qwen2_week1.Qwen2TransformerBlock")
    blk = _mlx_block()
    c = BLOCK_CFG
    cases = [((2, 7), mx.float32, None), ((2, 7), mx.float32, "causal"),
             ((1, 6), mx.float16, None), ((2, 7), mx.float16, "causal")]
    built = {}
    worst = 0.0
    for i, ((b, l), dtype, mask) in enumerate(cases):
        if dtype not in built:
            built[dtype] = ctx.call(
                Block, c["heads"], c["kv_heads"], c["hidden"], c["intermediate"], c["eps"],
                **_block_weights(blk, dtype), max_seq_len=c["max_seq_len"], theta=c["theta"])
        x = (2.0 * mx.random.normal((b, l, c["hidden"]), key=mx.random.key(151 + i)))
        x = x.astype(dtype)
        x32 = x.astype(mx.float32)
        got = ctx.call(built[dtype], x, mask)
        want = blk(x32, mask)
        cands = {pit: (lambda vs=vs: [_block(blk, x32, mask, **v) for v in vs])
                 for pit, vs in BLOCK_MISTAKES.items()}
        cands["model-weights-mixed-up"] = lambda: [
            _block(blk, x32, mask, attn=lambda t, mm, wr=wr: _attn(blk.self_attn, t, mm,
                                                                   wiring=wr))
            for wr in ATTN_WIRINGS] + [
            _block(blk, x32, mask, mlp=lambda t, wr=wr: _mlp(blk.mlp, t, wiring=wr))
            for wr in MLP_WIRINGS]
        tol = BLOCK_F16 if dtype == mx.float16 else {}
        case = (f"x ({b}, {l}, {c['hidden']}), {c['heads']} heads / {c['kv_heads']} kv heads, "
                f"mask={mask!r}, {_dt(dtype)}")
        ctx.expect_shape(got, (b, l, c["hidden"]), "block output", case)
        ev = ctx.expect_close(got, want, what="block output", case=case, candidates=cands,
                              dtype=_dt(dtype), axes=("batch", "position", "feature"), **tol)
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(cases), "max_abs_err": worst}


# --------------------------------------------------------------------------- task 2: embedding

EMB_V, EMB_E = 301, 64


def _quantized_embedding():
    mx.random.seed(155)
    emb = nn.Embedding(EMB_V, EMB_E)
    emb.weight = mx.random.normal((EMB_V, EMB_E))
    q = emb.to_quantized(group_size=32, bits=4)
    mx.eval(q.parameters())
    return q


def _wrong_lookups(w, ids):
    """Row lookups that lose the ids' shape or index the wrong axis: the rows for the
    flattened ids, single elements of the flattened table, a column lookup when the ids
    fit, or the rows come out transposed."""
    flat = ids.reshape(-1)
    outs = [w[flat], w.reshape(-1)[ids], mx.swapaxes(w[ids], -1, -2)]
    if int(mx.max(ids)) < w.shape[1]:
        outs += [w[:, ids], mx.take(w, ids, axis=1)]
    return outs


@check("embedding", 2, "Embedding looks rows up like a quantized mlx embedding",
       symbols=("Embedding",))
def embedding(ctx: Ctx):
    Embedding = ctx.symbol("Embedding")
    q = _quantized_embedding()
    cases = [((1, 10), mx.float16), ((2, 3, 4), mx.float16), ((7,), mx.float32)]
    built = {}
    for i, (shape, dtype) in enumerate(cases):
        if dtype not in built:
            built[dtype] = ctx.call(Embedding, EMB_V, EMB_E, dense_weight(q, dtype))
        ids = mx.random.randint(0, EMB_V, shape, key=mx.random.key(156 + i))
        ids = mx.concatenate([ids.flatten()[:-1], ids.flatten()[:1]]).reshape(shape)  # a repeat
        got = ctx.call(built[dtype], ids)
        want = q(ids)
        case = f"token ids {shape}, vocab {EMB_V}, dim {EMB_E}, {_dt(dtype)} weights"
        ctx.expect_close(got, want, what="embedding", case=case, dtype=_dt(dtype),
                         candidates={"embedding-lookup-wrong": lambda ids=ids, dtype=dtype:
                                     _wrong_lookups(dense_weight(q, dtype), ids)})
    return {"cases": len(cases)}


@check("embedding-as-linear", 2,
       "Embedding.as_linear matches the quantized embedding's as_linear",
       symbols=("Embedding",))
def embedding_as_linear(ctx: Ctx):
    Embedding = ctx.symbol("Embedding")
    q = _quantized_embedding()
    # (x shape, weight dtype, x dtype). float16 weights are the float32 dequantized ones
    # rounded to half: each logit (a 64-term dot product of values ~1) carries that rounding,
    # about 1e-2 at worst, hence atol 3e-2 there (the book uses 1e-1).
    cases = [((1, 10), mx.float16, mx.float32), ((2, 3), mx.float16, mx.float16),
             ((5,), mx.float32, mx.float32)]
    built = {}
    worst = 0.0
    for i, (prefix, wdt, xdt) in enumerate(cases):
        if wdt not in built:
            built[wdt] = ctx.call(Embedding, EMB_V, EMB_E, dense_weight(q, wdt))
        x = mx.random.uniform(-1, 1, (*prefix, EMB_E), key=mx.random.key(160 + i)).astype(xdt)
        got = ctx.call(built[wdt].as_linear, x)
        want = q.as_linear(x.astype(mx.float32))
        case = f"x {(*prefix, EMB_E)} {_dt(xdt)}, {_dt(wdt)} weights, vocab {EMB_V}"
        tol = {"dtype": "float16", "atol": 3e-2} if mx.float16 in (wdt, xdt) else {}
        ev = ctx.expect_close(got, want, what="logits", case=case, **tol)
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(cases), "max_abs_err": worst}


# --------------------------------------------------------------------------- task 3: model


def _model_candidates(model, ids) -> dict:
    def fwd(**kw):
        return _log_softmax(qwen2_forward(model, ids, **kw))

    cands = {pit: (lambda vs=vs: [fwd(block=lambda l, h, m, v=v: _block(l, h, m, **v))
                                  for v in vs])
             for pit, vs in BLOCK_MISTAKES.items()}
    first_layer, last_layer = model.model.layers[0], model.model.layers[-1]
    cands["block-mask-dropped"] = lambda: [fwd(causal=False)] + [
        fwd(block=lambda l, h, m, keep=keep: l(h, m if l is keep else None))
        for keep in (first_layer, last_layer)]
    cands["model-final-norm-missing"] = lambda: fwd(final_norm=False)
    if not model.args.tie_word_embeddings:
        cands["model-lm-head-ignored"] = lambda: fwd(tied_head=True)
    theta = model.args.rope_theta
    cands["model-config-not-passed"] = lambda: [
        fwd(block=lambda l, h, m, b=b: _block(l, h, m, attn=lambda x, mm: _attn(
            l.self_attn, x, mm, base=b))) for b in (1e6, 1e4) if b != theta]
    cands["model-weights-mixed-up"] = lambda: [
        fwd(block=lambda l, h, m, wr=wr: _block(l, h, m, attn=lambda x, mm: _attn(
            l.self_attn, x, mm, wiring=wr))) for wr in ATTN_WIRINGS] + [
        fwd(block=lambda l, h, m, wr=wr: _block(l, h, m, mlp=lambda x: _mlp(
            l.mlp, x, wiring=wr))) for wr in MLP_WIRINGS]
    first = model.model.layers[0]
    norm = model.model.norm
    cands["model-final-norm-misplaced"] = lambda: [
        fwd(block=lambda l, h, m: norm(l(h, m)), final_norm=False),
        fwd(block=lambda l, h, m: norm(l(h, m)), final_norm=True),
        fwd(block=lambda l, h, m: l(norm(h) if l is first else h, m), final_norm=False),
        fwd(block=lambda l, h, m: l(norm(h) if l is first else h, m), final_norm=True)]
    cands["model-layers-miswired"] = lambda: [
        fwd(chain=False), fwd(layers=lambda ls: ls[:1]), fwd(layers=lambda ls: ls[::-1]),
        fwd(layers=lambda ls: ls[:1] * len(ls)), fwd(layers=lambda ls: ls[-1:] * len(ls))]
    return cands


def _check_model(ctx: Ctx, model, inputs, tol: dict, what: str) -> dict:
    Model = ctx.symbol("qwen2_week1.Qwen2ModelWeek1")
    ours = ctx.call(Model, model)
    a = model.args
    worst = 0.0
    for ids in inputs:
        case = (f"{what}, token ids {tuple(ids.shape)}, {a.num_hidden_layers} layers, "
                f"hidden {a.hidden_size}, vocab {a.vocab_size}, "
                f"{'tied' if a.tie_word_embeddings else 'untied'} head")
        got = ctx.call(ours, ids)
        ctx.expect_shape(got, (*ids.shape, a.vocab_size), "logits", case)
        want = _log_softmax(model(ids))
        ev = ctx.expect_close(_log_softmax(got), want, what="log-softmax of the logits",
                              case=case, candidates=_model_candidates(model, ids),
                              axes=("batch", "position", "vocabulary"), **tol)
        worst = max(worst, ev["max_abs_err"])
    return {"cases": len(inputs), "max_abs_err": worst}


def _tiny_inputs(vocab: int, seed: int):
    return [mx.random.randint(0, vocab, (1, 10), key=mx.random.key(seed)),
            mx.random.randint(0, vocab, (2, 7), key=mx.random.key(seed + 1))]


@check("qwen2-model", 3,
       "Qwen2ModelWeek1 matches a tiny quantized mlx_lm Qwen2 (tied embeddings)",
       forbid=BUILT_ON, symbols=("qwen2_week1.Qwen2ModelWeek1",))
def qwen2_model(ctx: Ctx):
    model = tiny_qwen2(seed=170, tie_word_embeddings=True)
    return _check_model(ctx, model, _tiny_inputs(model.args.vocab_size, 171), MODEL_LOGP,
                        "tiny random 4-bit Qwen2")


@check("qwen2-model-untied", 3,
       "Qwen2ModelWeek1 with a separate lm_head (untied, like Qwen2-7B)",
       forbid=BUILT_ON, symbols=("qwen2_week1.Qwen2ModelWeek1",))
def qwen2_model_untied(ctx: Ctx):
    model = tiny_qwen2(seed=175, tie_word_embeddings=False)
    return _check_model(ctx, model, _tiny_inputs(model.args.vocab_size, 176), MODEL_LOGP,
                        "tiny random 4-bit Qwen2")


REAL_REPO = "Qwen/Qwen2-0.5B-Instruct-MLX"
# 24 float16 layers against mlx_lm's own forward: the book compares with rtol 1e-1; per-position
# log-probabilities also get atol 0.5 (as the book's week-2 model tests do) so that likely tokens
# (log-prob near 0) are not held to a tighter bound than float16 can keep over 24 layers.
REAL_LOGP = {"dtype": "float16", "rtol": 1e-1, "atol": 0.5}


@check("qwen2-0.5b-weights", 3, "Qwen2ModelWeek1 on the real Qwen2-0.5B-Instruct weights",
       forbid=BUILT_ON, symbols=("qwen2_week1.Qwen2ModelWeek1",))
def qwen2_real_weights(ctx: Ctx):
    path = hf_snapshot(REAL_REPO)
    if path is None:
        raise Skip("Qwen2-0.5B-Instruct-MLX is not in the local Hugging Face cache: `hf download "
                   "Qwen/Qwen2-0.5B-Instruct-MLX` gets it (about 300 MB)")
    ctx.symbol("qwen2_week1.Qwen2ModelWeek1")  # a missing symbol is an error before loading
    # mlx_lm.utils imports transformers, which prints a note about PyTorch; keep it quiet.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    utils = import_mlx_lm("mlx_lm.utils")
    model, _ = utils.load_model(path)
    ids = mx.random.randint(0, model.args.vocab_size, (1, 10), key=mx.random.key(180))
    return _check_model(ctx, model, [ids], REAL_LOGP, "Qwen2-0.5B-Instruct (4-bit)")
