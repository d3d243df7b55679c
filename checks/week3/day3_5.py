"""Day 3.5 -- retrieval-augmented generation: overlapping chunks (``chunk_text``), embeddings
from the learner's own Qwen2 (``hidden_states``, ``pool_hidden_states``, ``embed_texts``),
cosine top-k with ties in row order (``top_k``), and a cited prompt through the chat
template (``build_prompt``, ``rag_answer``).

Oracles: the chunker, pooling and ranking written out in numpy/Python (``rag_oracle``);
``mlx_lm``'s Qwen2 for hidden states (its inner model's output, and its layers run by hand
for the state before the final norm or without the causal mask), and as the ``forward`` of ``embed_texts``, each text
run alone, unpadded, as the reference for the batched, padded embedding; the tokenizer's
own ``apply_chat_template`` (a transformers tokenizer carrying a Qwen2-style template built
here) for the prompt.

Isolation: ``embed_texts`` runs on mlx_lm's model, not the learner's; the retrieval checks
use the checks' chunks and a deterministic hashed tf-idf embedding; ``rag_answer`` gets the
checks' index, query embedding and a recording ``generate``. So each check judges one
part. Only rag-hidden-states builds the learner's ``Qwen2ModelWeek1`` (day 1.5).

Ties: the exact top-k cases use vectors whose entries are 0 or a power of two, all rows of
one length, so every norm, quotient and dot product is exact in float32 in any summation
order (and equal cosines stay equal under an inexact normalisation such as an epsilon
added to the norm): tied scores are tied bit for bit, and the row order of ties is judged
exactly. On the
course corpus (rag-recall-at-k) a ranking is accepted when its scores are the oracle's
top-k scores within 1e-5 (float32 against float64 may swap near-ties, not real ranks).

Tolerances: hidden states of the learner's float16 model against mlx_lm's float32 ones,
rtol and atol 2e-2 (as day 1.5's blocks: about ten half-precision roundings on values of
order one; correct code is off by 5e-3); pooling of float16 states, 2e-3 (a mean summed
in half precision before the cast to float32 is not a mistake of this day); embeddings, float32 batched against float32 alone, atol 1e-4 (another matmul
shape sums in another order). Time: about 3 s for the day on the answer key (4 s wall
with the child's start); importing transformers for the chat-template tokenizer is a good
part of it.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from ..harness import CheckFailed, check, measure, merge_evidence
from . import rag_oracle as ro

CHUNK = "rag.chunk_text"
HIDDEN = "rag.hidden_states"
POOL = "rag.pool_hidden_states"
EMBED = "rag.embed_texts"
TOPK = "rag.top_k"
PROMPT = "rag.build_prompt"
ANSWER = "rag.rag_answer"
CHUNK_CLS = "rag.Chunk"

SYSTEM = ("Answer the question using only the numbered sources below. After each statement, "
          "cite the source it comes from as [n]. If the sources do not hold the answer, say so.")


def _named(got, cands: dict) -> str | None:
    """The one pitfall whose output (or one of whose variants, given as a tuple) equals
    ``got``."""
    hits = [pit for pit, out in cands.items()
            if any(v == got for v in (out if isinstance(out, tuple) else (out,)))]
    return hits[0] if len(hits) == 1 else None


# --------------------------------------------------------------------------- task 1


def _words(n: int) -> str:
    """n distinct words with assorted whitespace between them (split() must see words)."""
    seps = [" ", "  ", "\n", "\t", " \n "]
    return "".join(f"w{i}" + seps[i % len(seps)] for i in range(n))


# (words, chunk_size, overlap)
CHUNK_CASES = [(20, 8, 3), (23, 6, 0), (9, 8, 2), (8, 8, 2), (5, 8, 2), (0, 4, 1),
               (30, 10, 9), (41, 12, 4)]


def _raises_value_error(fn, *args) -> bool:
    try:
        fn(*args)
    except ValueError:
        return True
    return False


@check("rag-chunk-overlap", 1,
       "chunk_text: chunks of chunk_size words, each overlapping the one before, to the end",
       symbols=(CHUNK,))
def rag_chunk_overlap(ctx):
    fn = ctx.symbol(CHUNK)
    counts = []
    for n, size, overlap in CHUNK_CASES:
        text = _words(n)
        case = f"{n} words, chunk_size={size}, overlap={overlap}"
        got = ctx.call(fn, text, size, overlap)
        want = ro.chunk_words(text, size, overlap)
        if not isinstance(got, list) or got != want:
            cands = {"rag-chunk-no-overlap": ro.chunk_words(text, size, overlap, step=size),
                     "rag-chunk-tail-dropped": ro.chunk_words(text, size, overlap,
                                                              keep_tail=False),
                     "rag-chunk-extra-tail": ro.chunk_words(text, size, overlap,
                                                            stop_at_end=False),
                     # the right starts, each chunk a word short or long: the end moved
                     # once (the stop rule sees it too), or only in the slice
                     "rag-chunk-size-off-by-one": tuple(
                         c for d in (-1, 1) for c in (
                             ro.chunk_words(text, size + d, overlap, step=size - overlap),
                             ro.chunk_words(text, size, overlap, width=size + d)))}
            cands = {p: (tuple(v for v in c if v != want) if isinstance(c, tuple) else c)
                     for p, c in cands.items()}
            cands = {p: c for p, c in cands.items() if c != want and c != ()}
            firsts = lambda cs: [c.split()[0] + ".." + c.split()[-1] if c.strip() else c
                                 for c in cs] if isinstance(cs, list) else cs
            raise CheckFailed(
                f"[{case}] got {len(got) if isinstance(got, list) else type(got).__name__} "
                f"chunks {firsts(got)!s:.300}, expected {len(want)}: {firsts(want)} (each "
                "shown as its first..last word).",
                {"case": case, "got": got if isinstance(got, list) else repr(got),
                 "expected": want}, pitfall=_named(got, cands))
        counts.append(len(got))
    for size, overlap in [(4, 4), (4, 5), (4, -1)]:
        if not ctx.call(_raises_value_error, fn, _words(10), size, overlap):
            raise CheckFailed(f"chunk_text(text, chunk_size={size}, overlap={overlap}) did not "
                              "raise ValueError: the chunks would not move forward (or the "
                              "overlap makes no sense).", {"chunk_size": size,
                                                           "overlap": overlap})
    return {"cases": len(CHUNK_CASES), "chunks": counts}


# --------------------------------------------------------------------------- task 2


def _mlx_lm_hidden(model, ids: mx.array, *, final_norm: bool = True,
                   causal: bool = True) -> mx.array:
    """mlx_lm's Qwen2: its inner model's output, or its layers run by hand without the
    final norm or without the causal mask."""
    inner = model.model
    if final_norm and causal:
        return inner(ids)
    from ..harness import import_mlx_lm

    base = import_mlx_lm("mlx_lm.models.base")
    h = inner.embed_tokens(ids)
    mask = base.create_attention_mask(h, None) if causal else None
    for layer in inner.layers:
        h = layer(h, mask, None)
    return inner.norm(h) if final_norm else h


# half-precision hidden states against float32 ones (see the module's docstring)
HIDDEN_TOL = {"rtol": 2e-2, "atol": 2e-2}


@check("rag-hidden-states", 2,
       "hidden_states: your Qwen2's final hidden states match mlx_lm's, before the LM head",
       symbols=(HIDDEN,))
def rag_hidden_states(ctx):
    from ..week1.tiny_models import tiny_qwen2

    fn = ctx.symbol(HIDDEN)
    Model = ctx.symbol("qwen2_week1.Qwen2ModelWeek1")
    m = tiny_qwen2(seed=350, tie_word_embeddings=True)
    ours = ctx.call(Model, m)
    E, V = m.args.hidden_size, m.args.vocab_size
    evs = []
    for shape, seed in [((2, 9), 351), ((1, 5), 352)]:
        ids = mx.random.randint(0, V, shape, key=mx.random.key(seed))
        case = f"token ids {shape}, a tiny 2-layer Qwen2 (hidden {E}, vocab {V})"
        got = ctx.call(fn, ours, ids)
        if getattr(got, "shape", None) is not None and tuple(got.shape) == (*shape, V):
            raise CheckFailed(f"[{case}] hidden_states returned shape {tuple(got.shape)}: the "
                              f"last axis is the vocabulary ({V}), so these are logits; the "
                              f"hidden states are {E} wide.", {"case": case})
        want = _mlx_lm_hidden(m, ids)
        evs.append(ctx.expect_close(
            got, want, what="final hidden states", case=case, dtype="float16", **HIDDEN_TOL,
            axes=("batch", "position", "hidden"),
            candidates={"rag-hidden-no-final-norm":
                        lambda i=ids: _mlx_lm_hidden(m, i, final_norm=False),
                        "rag-hidden-no-causal-mask":
                        lambda i=ids: _mlx_lm_hidden(m, i, causal=False)}))
    return merge_evidence(evs)


POOL_CASES = [((3, 6, 8), [6, 2, 4]), ((2, 5, 4), [1, 5])]
# float16 states of size about 1: a mean summed in half precision before the cast is off by
# about 1e-3; the catalogued mistakes by about 0.5
POOL_TOL = {"rtol": 2e-3, "atol": 2e-3}


@check("rag-pool-padding", 2,
       "pool_hidden_states: last-token and mean pooling count only each text's own tokens",
       symbols=(POOL,))
def rag_pool_padding(ctx):
    fn = ctx.symbol(POOL)
    rng = np.random.default_rng(353)
    evs = []
    for shape, lengths in POOL_CASES:
        hidden = rng.normal(0, 1, shape).astype(np.float16)
        for method in ("last", "mean"):
            case = f"hidden {shape} float16, lengths {lengths}, method {method!r}"
            got = ctx.call(fn, mx.array(hidden), mx.array(lengths, dtype=mx.int32), method)
            want = ro.pool(hidden, lengths, method)
            cands = ({"rag-pool-last-is-padding": ro.pool(hidden, lengths, method,
                                                          padded_last=True)}
                     if method == "last" else
                     {"rag-pool-mean-over-padding": ro.pool(hidden, lengths, method,
                                                            mean_over_all=True)})
            evs.append(ctx.expect_close(got, want, what="pooled vectors", case=case,
                                        dtype="float32", expect_dtype="float32",
                                        candidates=cands, axes=("text", "hidden"),
                                        **POOL_TOL))
    if not ctx.call(_raises_value_error, fn, mx.zeros((1, 2, 4)), mx.array([2]), "max"):
        raise CheckFailed("pool_hidden_states(..., method='max') did not raise ValueError.",
                          {"method": "max"})
    return merge_evidence(evs)


EMBED_TEXTS = ["the cache", "pages hold keys and values for every layer", "why",
               "a draft proposes and the target checks", "softmax over the last axis",
               "one two three four five six seven eight nine ten", "experts"]
# batched float32 against float32 alone: another matmul shape, another summation order
EMBED_TOL = {"rtol": 1e-4, "atol": 1e-4}


def _batches(tok, texts, size, left=False):
    out = []
    for b in range(0, len(texts), size):
        ids = [tok.encode(t) for t in texts[b:b + size]]
        n = max(len(x) for x in ids)
        pad = [[tok.eos_token_id] * (n - len(x)) for x in ids]
        rows = [p + x if left else x + p for x, p in zip(ids, pad)]
        out.append((mx.array(rows, dtype=mx.int32), [len(x) for x in ids]))
    return out


@check("rag-embed-batch", 2,
       "embed_texts: each text's unit vector from mlx_lm's Qwen2 states, as if it ran alone",
       symbols=(EMBED,))
def rag_embed_batch(ctx):
    from ..week1.tiny_models import tiny_qwen2

    fn = ctx.symbol(EMBED)
    m = tiny_qwen2(seed=354, quantize=False, vocab=97)
    tok = ro.WordTokenizer(97)
    forward = m.model  # ids (B, L) -> final hidden states (B, L, E)
    evs = []
    for method, bs in [("mean", 3), ("last", 4)]:
        case = (f"{len(EMBED_TEXTS)} texts of 1 to 10 words, batch_size={bs}, "
                f"method {method!r}, mlx_lm's tiny Qwen2 as forward")
        got = ctx.call(fn, forward, tok, EMBED_TEXTS, method, bs)
        want = ro.unit_rows(np.concatenate([
            ro.pool(np.array(forward(mx.array([tok.encode(t)]))), [len(tok.encode(t))],
                    method) for t in EMBED_TEXTS]))

        def mistaken(left=False, **flags):
            rows = [ro.pool(np.array(forward(ids)), lens, method, **flags)
                    for ids, lens in _batches(tok, EMBED_TEXTS, bs, left)]
            return np.concatenate(rows)

        cands = {"rag-embed-not-normalised": lambda: mistaken(),
                 "rag-embed-left-padded": lambda: ro.unit_rows(mistaken(left=True))}
        if method == "last":
            cands["rag-pool-last-is-padding"] = lambda: ro.unit_rows(mistaken(padded_last=True))
        else:
            cands["rag-pool-mean-over-padding"] = lambda: ro.unit_rows(
                mistaken(mean_over_all=True))
        evs.append(ctx.expect_close(got, want, what="embeddings", case=case, dtype="float32",
                                    expect_dtype="float32", candidates=cands,
                                    axes=("text", "hidden"), **EMBED_TOL))
    return merge_evidence(evs)


# --------------------------------------------------------------------------- task 3


def _exact_vectors(rng, n: int, dim: int, scale: float) -> np.ndarray:
    """Rows with four entries of +-0.5 (length 1) times ``scale``, a power of two: norms,
    quotients and dot products are exact in float32."""
    out = np.zeros((n, dim), dtype=np.float32)
    for i in range(n):
        at = rng.choice(dim, size=4, replace=False)
        out[i, at] = rng.choice([-0.5, 0.5], size=4)
    return out * np.float32(scale)


def _topk_cases():
    rng = np.random.default_rng(355)
    # Every row of the tied case has the same length, so a normalisation that is not
    # exact (a small epsilon added to the norm, say) still leaves equal cosines equal.
    index = _exact_vectors(rng, 24, 8, 2.0)
    queries = _exact_vectors(rng, 5, 8, 4.0)
    # Exact duplicates, one of them along a query: ties at the very top.
    index[21] = index[3]
    index[9] = index[14] = queries[0] / 2
    rand_index = rng.normal(0, 1, (40, 16)).astype(np.float32) * rng.uniform(
        0.2, 5.0, (40, 1)).astype(np.float32)
    rand_q = rng.normal(0, 1, (3, 16)).astype(np.float32)
    return [
        ("24 rows of length 2 with many tied scores (entries 0 or 1), 5 queries, k=6",
         index, queries, 6),
        ("the same rows, one query, k=30 (more than there are rows)", index, queries[:1], 30),
        ("40 random rows of lengths 0.2 to 5, 3 queries, k=5", rand_index, rand_q, 5),
    ]


def _run_topk(ctx, fn, index, queries, k, case):
    got = ctx.call(fn, mx.array(index), mx.array(queries), k)
    try:
        idx, scores = got
        idx_np = np.array(idx)
        scores_np = np.array(scores)
    except (TypeError, ValueError):
        raise CheckFailed(f"[{case}] top_k returned {type(got).__name__}; expected a pair "
                          "(indices (Q, k) int32, scores (Q, k) float32).",
                          {"case": case}) from None
    return idx, scores, idx_np, scores_np


@check("rag-topk-exact", 3,
       "top_k: the nearest rows by cosine similarity, best first, ties in row order",
       symbols=(TOPK,))
def rag_topk_exact(ctx):
    fn = ctx.symbol(TOPK)
    evs = []
    for case, index, queries, k in _topk_cases():
        idx, scores, _, _ = _run_topk(ctx, fn, index, queries, k, case)
        want_i, want_s = ro.ranked(index, queries, k)
        cands = {
            "rag-topk-not-normalised": ro.ranked(index, queries, k, normalise=False)[0],
            "rag-topk-ties-reversed": ro.ranked(index, queries, k, ties="reversed")[0]}
        cands = {p: c for p, c in cands.items() if not np.array_equal(c, want_i)}
        evs.append(ctx.expect_close(idx, want_i.astype(np.float64), what="row indices",
                                    case=case, rtol=0, atol=0, candidates=cands,
                                    axes=("query", "rank")))
        # The ranking is right here, so an unnormalised side shows only in the scores: a
        # query left at its length scales all its scores alike.
        evs.append(ctx.expect_close(scores, want_s, what="cosine similarities", case=case,
                                    dtype="float32", axes=("query", "rank"), candidates={
                                        "rag-topk-not-normalised": [
                                            ro.ranked(index, queries, k, normalise=side)[1]
                                            for side in (False, "index", "queries")]}))
    return merge_evidence(evs)


RECALL_SIZE, RECALL_OVERLAP, RECALL_K = 96, 24, 3


def course_index():
    """The shipped course, chunked by the checks' chunker, embedded by hashed tf-idf: the
    chunks' lesson ids, the index rows and the labelled questions' vectors."""
    from tutor.corpus import course_documents

    texts, days = [], []
    for doc in course_documents():
        for c in ro.chunk_words(doc.text, RECALL_SIZE, RECALL_OVERLAP):
            texts.append(c)
            days.append(doc.source.split()[1])
    emb = ro.HashedTfidf(texts)
    return days, emb(texts), emb([q for q, _ in ro.LABELLED_QUESTIONS])


def recall(days, order) -> float:
    hits = [label in {days[i] for i in row}
            for row, (_, label) in zip(order, ro.LABELLED_QUESTIONS)]
    return sum(hits) / len(hits)


@check("rag-recall-at-k", 3,
       "top_k on the course's own lessons: labelled questions find their lesson",
       symbols=(TOPK,))
def rag_recall_at_k(ctx):
    fn = ctx.symbol(TOPK)
    days, index, queries = course_index()
    k = RECALL_K
    case = (f"{len(days)} chunks of the course's lessons ({RECALL_SIZE} words, overlap "
            f"{RECALL_OVERLAP}), hashed tf-idf vectors, {len(queries)} labelled questions, k={k}")
    _, _, got_i, _ = _run_topk(ctx, fn, index, queries, k, case)
    want_i, want_s = ro.ranked(index, queries, k)
    want_recall = recall(days, want_i)
    ev = {"case": case, "recall_at_k_reference": round(want_recall, 3)}
    if got_i.shape != want_i.shape:
        raise CheckFailed(f"[{case}] top_k returned indices of shape {got_i.shape}, expected "
                          f"{want_i.shape}.", ev)
    got_i = got_i.astype(np.int64)
    sims = ro.unit_rows(queries) @ ro.unit_rows(index).T
    got_s = np.take_along_axis(sims, np.clip(got_i, 0, len(days) - 1), axis=1)
    # An equally good ranking: the same scores, rank by rank, within float32 near-ties.
    ok = (got_i.min() >= 0 and got_i.max() < len(days)
          and np.all(np.abs(got_s - want_s) <= 1e-5))
    got_recall = recall(days, np.clip(got_i, 0, len(days) - 1))
    ev["recall_at_k"] = round(got_recall, 3)
    if not ok:
        bad = int(np.argmax(np.any(np.abs(got_s - want_s) > 1e-5, axis=1)))
        q, label = ro.LABELLED_QUESTIONS[bad]
        cands = {"rag-topk-not-normalised": ro.ranked(index, queries, k, normalise=False)[0],
                 "rag-topk-ties-reversed": ro.ranked(index, queries, k, ties="reversed")[0]}
        pit = next((p for p, c in cands.items()
                    if not np.array_equal(c, want_i) and np.array_equal(c, got_i)), None)
        raise CheckFailed(
            f"[{case}] recall@{k} is {got_recall:.2f}, the reference ranking reaches "
            f"{want_recall:.2f}. For {q!r} (answered in day {label}) your rows are "
            f"{got_i[bad].tolist()} (lessons {[days[i] for i in got_i[bad]]}, cosine "
            f"{np.round(got_s[bad], 4).tolist()}); the most similar are "
            f"{want_i[bad].tolist()} (cosine {np.round(want_s[bad], 4).tolist()}).",
            ev, pitfall=pit)
    return ev


# --------------------------------------------------------------------------- task 4


PROMPT_CASES = [
    ("What does rewind do?", [("day 3.1 Paged KV Cache", "rewind drops the last n positions"),
                              ("day 3.4 Speculative Decoding", "both caches are rewound"),
                              ("day 2.1 Key-Value Cache", "the cache grows by one per step")]),
    ("Why scale the scores?", [("day 1.1 Attention", "scores are divided by sqrt(D)")]),
]


def _messages(question, chunks):
    sources = "\n\n".join(f"[{n}] {s}\n{t}" for n, (s, t) in enumerate(chunks, 1))
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"{sources}\n\nQuestion: {question}"}]


def _reference_prompt(tok, question, chunks):
    return tok.apply_chat_template(_messages(question, chunks), tokenize=False,
                                   add_generation_prompt=True)


def _prompt_pitfall(got: str, want: str) -> str | None:
    if not isinstance(got, str):
        return None
    if want.endswith(ro.GENERATION_PROMPT) and got == want[:-len(ro.GENERATION_PROMPT)]:
        return "rag-prompt-no-generation-prompt"
    if got.startswith(ro.DEFAULT_SYSTEM) and SYSTEM in got:
        return "rag-prompt-no-system-message"
    return None


def _diff_at(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _check_prompt(got, want, case, ev):
    if got == want:
        return
    if not isinstance(got, str):
        raise CheckFailed(f"[{case}] the prompt is a {type(got).__name__}, expected the "
                          "template's text (a str).", ev)
    at = _diff_at(got, want)
    raise CheckFailed(
        f"[{case}] the prompt differs from the tokenizer's chat template at character {at}: "
        f"got ...{got[max(0, at - 40):at + 60]!r}, expected ...{want[max(0, at - 40):at + 60]!r}"
        f" (lengths {len(got)} and {len(want)}).",
        {**ev, "got": got, "expected": want}, pitfall=_prompt_pitfall(got, want))


@check("rag-prompt-template", 4,
       "build_prompt: numbered sources and the question through the tokenizer's chat template",
       symbols=(PROMPT,))
def rag_prompt_template(ctx):
    fn = ctx.symbol(PROMPT)
    Chunk = ctx.symbol(CHUNK_CLS)
    tok = ro.chat_tokenizer()
    for question, chunks in PROMPT_CASES:
        case = f"question {question!r}, {len(chunks)} source(s)"
        got = ctx.call(fn, tok, question, [Chunk(s, t) for s, t in chunks])
        _check_prompt(got, _reference_prompt(tok, question, chunks), case, {"case": case})
    return {"cases": len(PROMPT_CASES)}


ANSWER_CHUNKS = [
    ("day 3.1 Paged KV Cache", "a page table maps each request's positions to pages"),
    ("day 3.3 Mixture of Experts", "the router picks the top experts for each token"),
    ("day 3.1 Paged KV Cache", "freed pages go back to the pool for other requests"),
    ("day 1.2 RoPE", "rotary encoding rotates pairs of dimensions by position"),
    ("day 3.4 Speculative Decoding", "the target checks the draft's proposed tokens"),
    ("day 2.1 Key-Value Cache", "the cache keeps keys and values of every layer"),
]
ANSWER_QUESTIONS = [("how does the page table map positions to pages in the pool", 2),
                    ("which experts does the router pick for a token", 3)]


def _holds_texts(sources, picked) -> bool:
    """The retrieved chunks' texts, or the chunks themselves, where their sources belong
    (a chunk's text is never its source in ANSWER_CHUNKS, so this is no right answer)."""
    try:
        got = list(sources)
    except TypeError:
        return False
    texts = [t for _, t in picked]
    as_chunks = [getattr(c, "text", None) for c in got]
    return got == texts or (as_chunks == texts
                            and [getattr(c, "source", None) for c in got]
                            == [s for s, _ in picked])


@check("rag-answer-end-to-end", 4,
       "rag_answer: retrieve, prompt with the retrieved sources in rank order, generate once",
       symbols=(ANSWER,))
def rag_answer_end_to_end(ctx):
    fn = ctx.symbol(ANSWER)
    Chunk = ctx.symbol(CHUNK_CLS)
    tok = ro.chat_tokenizer()
    emb = ro.HashedTfidf([t for _, t in ANSWER_CHUNKS])
    index = emb([t for _, t in ANSWER_CHUNKS])
    runs = []
    for question, k in ANSWER_QUESTIONS:
        case = f"question {question!r}, {len(ANSWER_CHUNKS)} chunks, k={k}"
        prompts: list[str] = []

        def generate(prompt):
            prompts.append(prompt)
            return f"answer number {len(prompts)}"

        got = ctx.call(fn, question, [Chunk(s, t) for s, t in ANSWER_CHUNKS],
                       mx.array(index), lambda q: mx.array(emb([q])[0]), tok, generate, k)
        order, _ = ro.ranked(index, emb([question]), k)
        picked = [ANSWER_CHUNKS[i] for i in order[0]]
        ev = {"case": case, "generate_calls": len(prompts),
              "expected_sources": [s for s, _ in picked]}
        if len(prompts) != 1:
            raise CheckFailed(f"[{case}] generate was called {len(prompts)} times; one call "
                              "with the whole prompt is expected.", ev)
        _check_prompt(prompts[0], _reference_prompt(tok, question, picked), case, ev)
        try:
            text, sources = got
        except (TypeError, ValueError):
            raise CheckFailed(f"[{case}] rag_answer returned {type(got).__name__}; expected "
                              "a pair (text, sources).", ev) from None
        if text != "answer number 1" or list(sources) != [s for s, _ in picked]:
            raise CheckFailed(f"[{case}] rag_answer returned ({text!r}, {sources!r}); expected "
                              f"the generated text 'answer number 1' and the sources "
                              f"{[s for s, _ in picked]} (the prompt's [1], [2], ...).", ev,
                              pitfall=("rag-answer-returns-texts"
                                       if text == "answer number 1"
                                       and _holds_texts(sources, picked) else None))
        runs.append(ev)
    return {"cases": len(runs)}


# --------------------------------------------------------------------------- predict

MEASURE_SIZE, MEASURE_OVERLAP, MEASURE_HIDDEN = 128, 32, 896


@measure("index-bytes", unit="bytes")
def measure_index_bytes(ctx):
    """The learner's chunk_text over each week-1 lesson of the shipped corpus (128 words,
    overlap 32), embedded by the learner's embed_texts with a forward whose hidden size is
    Qwen2-0.5B's (896; a random table lookup stands in for the model, the index's size
    does not depend on its values): the bytes of the index array."""
    from tutor.corpus import course_documents

    chunk, embed = ctx.symbol(CHUNK), ctx.symbol(EMBED)
    texts = [c for doc in course_documents((1,))
             for c in ctx.call(chunk, doc.text, MEASURE_SIZE, MEASURE_OVERLAP)]
    table = mx.random.normal((512, MEASURE_HIDDEN), key=mx.random.key(356))
    tok = ro.WordTokenizer(512)
    index = ctx.call(embed, lambda ids: table[ids], tok, texts, "mean", 16)
    return float(index.nbytes)


__all__ = ["course_index", "recall"]
