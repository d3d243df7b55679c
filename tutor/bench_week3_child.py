"""The child process of ``tiny-llm-tutor bench week3``: the learner's week-3 engine on a
random Qwen2 (and on Qwen2-0.5B/1.5B-Instruct when they are in the local Hugging Face
cache). Started by :mod:`tutor.bench_week3` as ``python -m tutor.bench_week3_child``; it
speaks the protocol of :mod:`tutor.bench_child` (whose loop, :func:`serve`, it uses).

Rows (see ``tutor.bench_week3.ROWS``):

* ``pages``: every request of the workload resident at once in the learner's page pool
  (``Qwen2ModelWeek3``, one cache per request), pages in use x page bytes against a padded
  dense batch (requests x longest request x layers x K and V x H_kv x D x dtype bytes);
  then every request released, and the pages that did not come back counted.
* ``batch-week2`` / ``batch-paged``: the learner's ``batch_generate`` over the workload with
  ``Qwen2ModelWeek2`` (week 2's batching) and with ``Qwen2ModelWeek3`` (paged), generated
  tokens per second, the median of a few runs.
* ``spec``: the learner's ``speculative_generate`` with a truncated copy of the target as
  the draft, against plain greedy decoding of the target (the learner's week-2 model with
  its KV cache); acceptance, tokens per target call, speed-up (medians).
* ``real-serving`` / ``real-spec``: the same on Qwen2-0.5B-Instruct, and Qwen2-0.5B as the
  draft of Qwen2-1.5B-Instruct; skipped with the download command when not cached.

Every request's length is fixed by a script on top of the model's logits
(:class:`Scripted`): the prompt's last token says how many tokens to generate, and each
generated token counts down to end-of-sequence. The model computes its full logits at every
step as usual; only the choice of the next token is steered, so both batching rows do the
same work and every request has the planned length.
"""

from __future__ import annotations

import inspect
import statistics
import sys
import time

from tutor import hfcache
from tutor.bench_child import NotReady, _symbol, serve

# The random model: head dim 64, GQA 2:1, every input dimension a multiple of the group
# size 64, an untied head (a tied random Qwen2 echoes its input: any draft would agree).
MODEL = dict(hidden_size=256, num_hidden_layers=8, intermediate_size=768,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=4096,
             rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=4096,
             tie_word_embeddings=False)
GROUP_SIZE, BITS = 64, 4
SEED = 2026
# Speculative decoding: a deeper target (where a draft pays: the per-call overhead of a
# small model on a CPU would otherwise hide the draft's saving), and its first layer (with
# its embedding, final norm and head) as the draft. The target's other layers have their
# output projections scaled down, so they nudge its choices instead of replacing them:
# about seven proposals in ten are accepted, as with a trained draft (on unscaled random
# layers the two agree almost never).
SPEC_LAYERS = 16
DRAFT_LAYERS = 1
LATER_LAYER_SCALE = 0.01

# The serving workload: requests of mixed prompt and output lengths (fixed seed).
REQUESTS = 16
PROMPT_LEN = (4, 64)
OUTPUT_LEN = (4, 40)
WORKLOAD_SEED = 7
PAGE_SIZE = 16
BATCH_SIZE = 8
PREFILL_STEP = 32
REPEATS = 3  # timed runs per row; the median is reported

SPEC_TOKENS = 32
SPEC_PROPOSAL = 4
SPEC_PROMPT_LEN = 16

# Real weights: a smaller workload (24 and 28 layers on a CPU).
REAL_SERVING_REPO = hfcache.QWEN2_REPOS["qwen2-0.5b"]
REAL_TARGET_REPO = hfcache.QWEN2_REPOS["qwen2-1.5b"]
REAL_REQUESTS, REAL_OUTPUT_LEN, REAL_BATCH = 6, (4, 16), 3
REAL_SPEC_TOKENS = 24
REAL_PROMPT = ("Paged attention keeps each request's keys and values in fixed-size pages, "
               "so a server can")


def download_command(repo: str) -> str:
    return f"`hf download {repo}`"


# --------------------------------------------------------------------------- tokens


class IdTokenizer:
    """Text is token ids written out ("17 4 93"): the learner's scheduler and speculative
    loop get a tokenizer with the surface they use (encode, decode, eos_token_id, a
    detokenizer) and any token id round-trips."""

    def __init__(self, eos_token_id: int):
        self.eos_token_id = eos_token_id
        self.eos_token_ids = {eos_token_id}
        self._tokenizer = self

    def encode(self, text: str, add_special_tokens: bool = True, **_kw) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids, skip_special_tokens: bool = False, **_kw) -> str:
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        return " ".join(str(int(t)) for t in ([ids] if isinstance(ids, int) else ids))

    @property
    def detokenizer(self):
        return _IdDetokenizer(self)


class _IdDetokenizer:
    def __init__(self, tok: IdTokenizer):
        self._tok = tok
        self.reset()

    def reset(self):
        self.tokens: list[int] = []
        self.offset = 0

    def add_token(self, token):
        self.tokens.append(int(token))

    def finalize(self):
        pass

    @property
    def text(self) -> str:
        return self._tok.decode(self.tokens)

    @property
    def last_segment(self) -> str:
        text = self.text
        seg, self.offset = text[self.offset:], len(text)
        return seg


def text_of(ids: list[int]) -> str:
    return " ".join(str(t) for t in ids)


class Workload:
    """Requests of planned lengths for a model of ``vocab`` tokens with end-of-sequence
    ``eos``. Token ``base + n + 1`` at the end of a prompt asks for n generated tokens
    (``base + n`` down to ``base + 1``, then end-of-sequence); the prompt's other tokens
    are random ids below ``base``."""

    def __init__(self, vocab: int, eos: int, requests: int, prompt_len, output_len, seed: int):
        import numpy as np

        self.eos = eos
        self.max_out = output_len[1]
        self.base = vocab // 2 - self.max_out - 2
        rng = np.random.default_rng(seed)
        self.prompts: list[list[int]] = []
        self.outputs: list[int] = []
        for _ in range(requests):
            p = int(rng.integers(prompt_len[0], prompt_len[1] + 1))
            n = int(rng.integers(output_len[0], output_len[1] + 1))
            body = [int(t) for t in rng.integers(0, self.base, p - 1)]
            body = [t + 1 if t == eos else t for t in body]
            self.prompts.append(body + [self.base + n + 1])
            self.outputs.append(n)

    @property
    def lengths(self) -> list[int]:
        """Positions each request holds when it finishes: prompt + generated tokens."""
        return [len(p) + n for p, n in zip(self.prompts, self.outputs)]

    def subset(self, indices: list[int]) -> "Workload":
        part = Workload.__new__(Workload)
        part.__dict__.update(self.__dict__, prompts=[self.prompts[i] for i in indices],
                             outputs=[self.outputs[i] for i in indices])
        return part

    def expected_text(self, i: int) -> str:
        return text_of([self.base + k for k in range(self.outputs[i], 0, -1)])


class Scripted:
    """Steer a learner model's next-token choice by the workload's script (see
    :class:`Workload`), and watch its page pool. ``Scripted.wrap(model, workload)`` swaps
    the instance's class for a subclass of its own class, so ``isinstance`` and every
    attribute still hold; each call runs the learner's forward unchanged, then lifts the
    scripted token's logit on the last position of each row whose last input token is a
    script token."""

    @staticmethod
    def wrap(model, workload: Workload):
        import mlx.core as mx

        cls = type(model)
        state = {"peak_pages": 0}

        def __call__(self, inputs, offset, cache, *args, **kwargs):
            logits = cls.__call__(self, inputs, offset, cache, *args, **kwargs)
            pool = find_pool(self)
            if pool is not None:
                state["peak_pages"] = max(state["peak_pages"], pages_in_use(pool))
            last = inputs[:, -1].astype(mx.int32)
            n = last - workload.base - 1
            scripted = (n >= 0) & (n <= workload.max_out)
            target = mx.where(n > 0, last - 1, workload.eos)
            target = mx.where(scripted, target, -1)
            V = logits.shape[-1]
            hit = mx.arange(V)[None, :] == target[:, None]
            tail = mx.where(hit, mx.array(1e4, logits.dtype), logits[:, -1, :])
            return mx.concatenate([logits[:, :-1, :], tail[:, None, :]], axis=1)

        model.__class__ = type(cls.__name__, (cls,), {"__call__": __call__})
        return state


def find_pool(model):
    """The learner's page pool: an attribute of the model with the pool's surface."""
    for value in vars(model).values():
        if hasattr(value, "num_free_pages") and hasattr(value, "allocate_page"):
            return value
    return None


def pages_in_use(pool) -> int:
    return int(pool.num_pages) - int(pool.num_free_pages)


# --------------------------------------------------------------------------- models


def build_model(harness, layers: int, later_scale: float = 1.0):
    """A random mlx_lm Qwen2 of ``layers`` layers (4-bit, float16 values); the output
    projections of every layer after the draft's are scaled by ``later_scale``."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_map

    qwen2 = harness.import_mlx_lm("mlx_lm.models.qwen2")
    args = qwen2.ModelArgs(model_type="qwen2", **{**MODEL, "num_hidden_layers": layers})
    mx.random.seed(SEED)
    model = qwen2.Model(args)
    if later_scale != 1.0:
        for layer in model.model.layers[DRAFT_LAYERS:]:
            layer.self_attn.o_proj.weight = later_scale * layer.self_attn.o_proj.weight
            layer.mlp.down_proj.weight = later_scale * layer.mlp.down_proj.weight
    nn.quantize(model, group_size=GROUP_SIZE, bits=BITS)
    dtype = mx.float16 if mx.default_device() == mx.gpu else mx.float32

    def cast(v):
        return v.astype(mx.float16).astype(dtype) if mx.issubdtype(v.dtype, mx.floating) else v

    model.update(tree_map(cast, model.parameters()))
    mx.eval(model.parameters())
    return model


def truncated(qwen2, model, layers: int):
    """The first ``layers`` layers of ``model`` as a model of their own (shared arrays)."""
    args = qwen2.ModelArgs(**{**vars(model.args), "num_hidden_layers": layers})
    draft = qwen2.Model(args)
    draft.model.embed_tokens = model.model.embed_tokens
    draft.model.layers = model.model.layers[:layers]
    draft.model.norm = model.model.norm
    if not args.tie_word_embeddings:
        draft.lm_head = model.lm_head
    return draft


def kv_geometry(mlx_model) -> tuple[int, int, int]:
    """(layers, H_kv, D) of an mlx_lm Qwen2."""
    a = mlx_model.args
    return (a.num_hidden_layers, a.num_key_value_heads,
            a.hidden_size // a.num_attention_heads)


def load_real(path):
    import os

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from tutor.checking.child import CHECKS_PKG

    harness = sys.modules[f"{CHECKS_PKG}.harness"]
    model, _ = harness.import_mlx_lm("mlx_lm.utils").load_model(path)
    return model


def real_eos(path) -> int:
    import json

    eos = json.loads((path / "config.json").read_text()).get("eos_token_id", 0)
    return int(eos[0] if isinstance(eos, list) else eos)


def real_prompt_ids(path, vocab: int, eos: int) -> list[int]:
    """REAL_PROMPT in the checkpoint's own tokens when its tokenizer loads, else a fixed
    run of ids (the measurement holds either way; the text only makes it more typical)."""
    try:
        from transformers import AutoTokenizer

        ids = AutoTokenizer.from_pretrained(str(path)).encode(REAL_PROMPT)
        if ids and all(0 <= i < vocab and i != eos for i in ids):
            return [int(i) for i in ids]
    except Exception:  # noqa: BLE001 - a missing or odd tokenizer: fall back to ids
        pass
    return [(17 * k + 11) % (vocab // 2) for k in range(SPEC_PROMPT_LEN)]


# --------------------------------------------------------------------------- rows


def measure_pages(impl, mlx_model, workload: Workload) -> dict:
    """Every request of the workload resident at once in the learner's pool."""
    import mlx.core as mx

    Model = _symbol(impl, "qwen2_week3", "Qwen2ModelWeek3")
    m = Model(mlx_model, page_size=PAGE_SIZE)
    caches = [m.create_kv_cache() for _ in workload.prompts]
    pool = find_pool(m)
    if pool is None:
        pool = find_pool(caches[0][0])
    if pool is None:
        raise NotReady("no page pool found on Qwen2ModelWeek3 or its layer caches (an "
                       "attribute with num_pages, num_free_pages and allocate_page)")
    for cache, prompt, n in zip(caches, workload.prompts, workload.outputs):
        # The prompt, then the generated part as one more chunk: the same positions a
        # generation leaves in the cache (the tokens do not change the page count).
        out = [workload.base + k for k in range(n, 0, -1)]
        for start, chunk in ((0, prompt), (len(prompt), out)):
            logits = m(mx.array([chunk], dtype=mx.int32), start, cache)
            mx.eval(logits)
    used = pages_in_use(pool)
    layers, H, D = kv_geometry(mlx_model)
    page_bytes, dtype_note = _page_bytes(pool, caches[0][0], H, D)
    token_bytes = page_bytes // PAGE_SIZE  # K and V of one position in one layer
    lengths = workload.lengths
    expected = layers * sum(-(-n // PAGE_SIZE) for n in lengths)
    dense = len(lengths) * max(lengths) * layers * token_bytes
    paged = used * page_bytes
    for cache in caches:
        for layer_cache in cache:
            layer_cache.release()
    leaked = pages_in_use(pool)
    notes = [f"{used} pages of {PAGE_SIZE} positions"]
    if used != expected:
        notes.append(f"these lengths need {expected} pages")
    notes.append(f"{sum(lengths) * layers * token_bytes / paged:.0%} of the paged bytes hold "
                 "tokens" if paged else "no pages in use")
    notes.append("every page back in the pool after release" if leaked == 0
                 else f"{leaked} pages still in use after every request was released")
    if dtype_note:
        notes.append(dtype_note)
    mib = 1 << 20
    return {"requests": len(lengths), "pages": used, "expected_pages": expected,
            "leaked_pages": leaked, "page_bytes": page_bytes,
            "paged_mib": round(paged / mib, 3), "dense_mib": round(dense / mib, 3),
            "dense_over_paged": round(dense / paged, 2) if paged else None,
            "note": "; ".join(notes)}


def _page_bytes(pool, layer_cache, H: int, D: int) -> tuple[int, str]:
    """Bytes of one page, K and V, in the pool's own dtype (read back from a page)."""
    try:
        table = layer_cache.block_table()
        page_id = int(table.reshape(-1)[0].item())
        k, v = pool.read_page(page_id)
        return int(k.nbytes + v.nbytes), ""
    except Exception:  # noqa: BLE001 - a pool without read_page/block_table yet
        return (2 * H * PAGE_SIZE * D * 4,
                "page bytes assume float32 (your pages could not be read back)")


def _batch_run(batch_generate, m, tok, workload: Workload, batch_size: int) -> tuple[float, dict]:
    """One run of the learner's scheduler over the workload: (seconds, texts by index)."""
    import contextlib
    import io

    prompts = [text_of(p) for p in workload.prompts]
    max_seq = max(workload.lengths) + 8
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        results = batch_generate(m, tok, prompts, max_seq_len=max_seq,
                                 batch_size=batch_size, prefill_step=PREFILL_STEP)
    seconds = time.perf_counter() - t0
    return seconds, {int(i): text for i, text in results}


def measure_batching(impl, mlx_model, workload: Workload, paged: bool,
                     batch_size: int = BATCH_SIZE, repeats: int = REPEATS) -> dict:
    batch_generate = _symbol(impl, "batch", "batch_generate")
    if paged:
        m = _symbol(impl, "qwen2_week3", "Qwen2ModelWeek3")(mlx_model, page_size=PAGE_SIZE)
    else:
        m = _symbol(impl, "qwen2_week2", "Qwen2ModelWeek2")(mlx_model)
    state = Scripted.wrap(m, workload)
    tok = IdTokenizer(workload.eos)
    # Warm-up on the two shortest requests (kernels, allocations), untimed.
    short = sorted(range(len(workload.prompts)), key=lambda i: workload.lengths[i])[:2]
    _batch_run(batch_generate, m, tok, workload.subset(short), batch_size)
    state["peak_pages"] = 0
    times, texts = [], {}
    for _ in range(repeats):
        seconds, texts = _batch_run(batch_generate, m, tok, workload, batch_size)
        times.append(seconds)
    seconds = statistics.median(times)
    generated = sum(len(t.split()) for t in texts.values())
    wrong = [i for i in range(len(workload.prompts)) if texts.get(i) != workload.expected_text(i)]
    notes = [f"{len(workload.prompts)} requests, {batch_size} slots, median of {repeats} runs"]
    if wrong:
        notes.append(f"{len(wrong)} of {len(workload.prompts)} requests did not get their "
                     f"planned tokens (e.g. request {wrong[0]})")
    out = {"tok_per_s": round(generated / seconds, 2) if seconds > 0 else None,
           "seconds": round(seconds, 3), "generated": generated, "wrong_outputs": len(wrong)}
    if paged:
        pool = find_pool(m)
        if pool is not None:
            out["peak_pages"] = state["peak_pages"]
            notes.append(f"at most {state['peak_pages']} pages in use")
            if pages_in_use(pool):
                notes.append(f"{pages_in_use(pool)} pages still in use after every request "
                             "finished")
    out["note"] = "; ".join(notes)
    return out


def _greedy_plain(m, ids: list[int], tokens: int, eos: int) -> list[int]:
    """The target's own greedy decoding with its KV cache (the learner's week-2 model)."""
    import mlx.core as mx

    cache = m.create_kv_cache()
    logits = m(mx.array([ids], dtype=mx.int32), 0, cache)
    tok = int(mx.argmax(logits[0, -1]).item())
    out, offset = [], len(ids)
    while tok != eos and len(out) < tokens:
        out.append(tok)
        if len(out) == tokens:
            break
        logits = m(mx.array([[tok]], dtype=mx.int32), offset, cache)
        tok = int(mx.argmax(logits[0, -1]).item())
        offset += 1
    for c in cache:
        if hasattr(c, "release"):
            c.release()
    return out


def _counted(model) -> dict:
    """Count a model's forward calls (the instance's class swapped for a counting one)."""
    cls = type(model)
    counter = {"calls": 0}

    def __call__(self, *args, **kwargs):
        counter["calls"] += 1
        return cls.__call__(self, *args, **kwargs)

    model.__class__ = type(cls.__name__, (cls,), {"__call__": __call__})
    return counter


def measure_speculative(impl, target_mlx, draft_mlx, ids: list[int], eos: int, tokens: int,
                        repeats: int = REPEATS) -> dict:
    spec = _symbol(impl, "speculative", "speculative_generate")
    Model = _symbol(impl, "qwen2_week2", "Qwen2ModelWeek2")
    target, draft = Model(target_mlx), Model(draft_mlx)
    tok = IdTokenizer(eos)
    prompt = text_of(ids)
    params = inspect.signature(spec).parameters
    if "max_tokens" not in params:
        raise NotReady("speculative_generate has no max_tokens parameter: the bench needs "
                       "a bounded generation (a random model may never stop)")
    takes_stats = "stats" in params

    def run_spec():
        stats: dict = {}
        kwargs = {"proposal_length": SPEC_PROPOSAL, "max_tokens": tokens}
        if takes_stats:
            kwargs["stats"] = stats
        text = spec(draft, target, tok, tok, prompt, **kwargs)
        return text, stats

    # Warm-up, untimed: both paths once.
    plain = _greedy_plain(target, ids, tokens, eos)
    run_spec()
    calls = _counted(target)
    plain_s, spec_s = [], []
    text, stats, target_calls = "", {}, 0
    for _ in range(repeats):  # interleaved, so a noisy neighbour hits both alike
        t0 = time.perf_counter()
        plain = _greedy_plain(target, ids, tokens, eos)
        plain_s.append(time.perf_counter() - t0)
        calls["calls"] = 0
        t0 = time.perf_counter()
        text, stats = run_spec()
        spec_s.append(time.perf_counter() - t0)
        target_calls = calls["calls"]
    got = [int(t) for t in text.split()]
    plain_t, spec_t = statistics.median(plain_s), statistics.median(spec_s)
    notes = [f"draft proposes {SPEC_PROPOSAL}, {len(got)} tokens, median of {repeats} runs"]
    if got != plain:
        notes.append("the text differs from the target's own greedy text")
    rate = stats.get("acceptance_rate")
    if rate is None and stats.get("proposed"):
        rate = stats.get("accepted", 0) / stats["proposed"]
    if rate is None:
        notes.append("acceptance not reported (speculative_generate fills `stats`)")
    return {"acceptance": round(float(rate), 3) if rate is not None else None,
            "tokens_per_call": round(len(got) / target_calls, 2) if target_calls else None,
            "target_calls": target_calls,
            "plain_tok_per_s": round(len(plain) / plain_t, 2) if plain_t > 0 else None,
            "tok_per_s": round(len(got) / spec_t, 2) if spec_t > 0 else None,
            "speedup": round(plain_t / spec_t * len(got) / max(len(plain), 1), 2)
            if spec_t > 0 else None,
            "note": "; ".join(notes)}


class Skipped(Exception):
    """The row cannot run on this machine (weights not in the cache)."""


def _snapshots(*repos: str) -> list:
    """The local snapshots of ``repos``, or Skipped naming every one that is missing."""
    paths = [hfcache.snapshot(repo) for repo in repos]
    missing = [repo for repo, path in zip(repos, paths) if path is None]
    if missing:
        names = " and ".join(repo.split("/")[1] for repo in missing)
        cmds = "; ".join(download_command(repo) for repo in missing)
        raise Skipped(f"{names} {'is' if len(missing) == 1 else 'are'} not in the local "
                      f"Hugging Face cache: {cmds}")
    return paths


def run_real_serving(impl) -> dict:
    (path,) = _snapshots(REAL_SERVING_REPO)
    model = load_real(path)
    eos = real_eos(path)
    workload = Workload(model.args.vocab_size, eos, REAL_REQUESTS, (4, 24), REAL_OUTPUT_LEN,
                        WORKLOAD_SEED)
    pages = measure_pages(impl, model, workload)
    week2 = measure_batching(impl, model, workload, paged=False, batch_size=REAL_BATCH,
                             repeats=1)
    paged = measure_batching(impl, model, workload, paged=True, batch_size=REAL_BATCH,
                             repeats=1)
    return {"pages": pages, "week2": week2, "paged": paged,
            "speedup": round(paged["tok_per_s"] / week2["tok_per_s"], 2)
            if paged["tok_per_s"] and week2["tok_per_s"] else None}


def run_real_spec(impl) -> dict:
    draft_path, target_path = _snapshots(REAL_SERVING_REPO, REAL_TARGET_REPO)
    draft, target = load_real(draft_path), load_real(target_path)
    if draft.args.vocab_size != target.args.vocab_size:
        raise RuntimeError("the draft and the target checkpoints have different vocabularies")
    eos = real_eos(target_path)
    ids = real_prompt_ids(target_path, target.args.vocab_size, eos)
    return measure_speculative(impl, target, draft, ids, eos, REAL_SPEC_TOKENS, repeats=1)


# --------------------------------------------------------------------------- the loop


def _add_args(ap) -> None:
    ap.add_argument("--repeats", type=int, default=REPEATS)


def _setup(args, harness):
    import mlx.core as mx

    serving = build_model(harness, MODEL["num_hidden_layers"])
    target = build_model(harness, SPEC_LAYERS, LATER_LAYER_SCALE)
    draft = truncated(harness.import_mlx_lm("mlx_lm.models.qwen2"), target, DRAFT_LAYERS)
    vocab = MODEL["vocab_size"]
    workload = Workload(vocab, vocab - 1, REQUESTS, PROMPT_LEN, OUTPUT_LEN, WORKLOAD_SEED)
    spec_ids = mx.random.randint(0, vocab - 1, (SPEC_PROMPT_LEN,),
                                 key=mx.random.key(SEED + 1)).tolist()
    fields = {"model": {**MODEL, "group_size": GROUP_SIZE, "bits": BITS},
              "spec_layers": SPEC_LAYERS, "draft_layers": DRAFT_LAYERS,
              "later_layer_scale": LATER_LAYER_SCALE,
              "requests": REQUESTS, "lengths": workload.lengths,
              "prompt_lengths": [len(p) for p in workload.prompts], "page_size": PAGE_SIZE,
              "batch_size": BATCH_SIZE, "prefill_step": PREFILL_STEP,
              "spec_tokens": SPEC_TOKENS, "proposal_length": SPEC_PROPOSAL,
              "repeats": args.repeats}
    state = {"serving": serving, "target": target, "draft": draft, "workload": workload,
             "spec_ids": spec_ids, "repeats": args.repeats}
    return state, fields


def _run_row(row: str, impl, state: dict, statuses: dict) -> dict:
    try:
        if row == "pages":
            return measure_pages(impl, state["serving"], state["workload"])
        if row in ("batch-week2", "batch-paged"):
            return measure_batching(impl, state["serving"], state["workload"],
                                    paged=row == "batch-paged", repeats=state["repeats"])
        if row == "spec":
            return measure_speculative(impl, state["target"], state["draft"], state["spec_ids"],
                                       MODEL["vocab_size"] - 1, SPEC_TOKENS,
                                       repeats=state["repeats"])
        if row == "real-serving":
            return run_real_serving(impl)
        if row == "real-spec":
            return run_real_spec(impl)
    except Skipped as exc:
        return {"status": "skipped", "message": str(exc)}
    raise ValueError(f"no row {row!r}")


def main(argv: list[str] | None = None) -> int:
    return serve(argv, add_args=_add_args, setup=_setup, run_row=_run_row)


if __name__ == "__main__":
    sys.exit(main())
