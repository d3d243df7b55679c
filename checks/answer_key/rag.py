"""Retrieval-augmented generation: overlapping word chunks, embeddings pooled from a causal
decoder's final hidden states over right-padded batches, cosine top-k with ties in row
order, and a chat-template prompt that numbers its sources for citation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import mlx.core as mx
import numpy as np

if TYPE_CHECKING:  # importing mlx_lm is slow; only type checkers need the name
    from .qwen2_week1 import Qwen2ModelWeek1

__all__ = [
    "Chunk",
    "RAG_SYSTEM_PROMPT",
    "chunk_text",
    "hidden_states",
    "pool_hidden_states",
    "embed_texts",
    "top_k",
    "build_prompt",
    "rag_answer",
]

RAG_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. After each statement, "
    "cite the source it comes from as [n]. If the sources do not hold the answer, say so."
)


@dataclass(frozen=True)
class Chunk:
    source: str
    text: str


def chunk_text(text: str, chunk_size: int, overlap: int) -> list[str]:
    if not 0 <= overlap < chunk_size:
        raise ValueError(f"need 0 <= overlap < chunk_size, got {overlap} and {chunk_size}")
    words = text.split()
    step = chunk_size - overlap
    chunks = []
    start = 0
    while start < len(words):
        chunks.append(" ".join(words[start:start + chunk_size]))
        if start + chunk_size >= len(words):
            break
        start += step
    return chunks


def hidden_states(model: Qwen2ModelWeek1, inputs: mx.array) -> mx.array:
    h = model.embedding(inputs)
    for block in model.layers_inner:
        h = block(h, mask="causal")
    return model.norm(h)


def pool_hidden_states(hidden: mx.array, lengths: mx.array, method: str = "mean") -> mx.array:
    hidden = hidden.astype(mx.float32)
    lengths = mx.array(lengths).astype(mx.int32)
    B, L, _ = hidden.shape
    if method == "last":
        # A decoder's state at position i has seen tokens 0..i only: the text's own last
        # token is the one that has read all of it; position L - 1 is padding when shorter.
        return hidden[mx.arange(B), lengths - 1]
    if method == "mean":
        valid = (mx.arange(L)[None, :] < lengths[:, None]).astype(mx.float32)
        return (hidden * valid[..., None]).sum(axis=1) / lengths[:, None].astype(mx.float32)
    raise ValueError(f"unknown pooling method {method!r}")


def embed_texts(
    forward: Callable[[mx.array], mx.array],
    tokenizer,
    texts: list[str],
    method: str = "mean",
    batch_size: int = 8,
) -> mx.array:
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    rows = []
    for b in range(0, len(texts), batch_size):
        ids = [list(tokenizer.encode(t)) for t in texts[b:b + batch_size]]
        longest = max(len(x) for x in ids)
        # Right padding: under the causal mask no real token attends to a pad after it,
        # so the real positions' states are those of the text alone.
        batch = mx.array([x + [pad] * (longest - len(x)) for x in ids], dtype=mx.int32)
        lengths = mx.array([len(x) for x in ids], dtype=mx.int32)
        rows.append(pool_hidden_states(forward(batch), lengths, method))
    if not rows:
        return mx.zeros((0, 0), dtype=mx.float32)
    emb = mx.concatenate(rows, axis=0)
    return emb / mx.maximum(mx.linalg.norm(emb, axis=-1, keepdims=True), 1e-12)


def _unit(x: mx.array) -> mx.array:
    x = x.astype(mx.float32)
    return x / mx.maximum(mx.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def top_k(index: mx.array, queries: mx.array, k: int) -> tuple[mx.array, mx.array]:
    queries = queries.reshape(-1, queries.shape[-1])
    scores = np.array(_unit(queries) @ _unit(index).T)
    k = min(k, scores.shape[1])
    # A stable sort of the negated scores keeps equal scores in row order.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    picked = np.take_along_axis(scores, order, axis=1)
    return mx.array(order.astype(np.int32)), mx.array(picked.astype(np.float32))


def build_prompt(tokenizer, question: str, chunks: list[Chunk]) -> str:
    sources = "\n\n".join(f"[{n}] {c.source}\n{c.text}" for n, c in enumerate(chunks, 1))
    messages = [
        {"role": "system", "content": RAG_SYSTEM_PROMPT},
        {"role": "user", "content": f"{sources}\n\nQuestion: {question}"},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def rag_answer(
    question: str,
    chunks: list[Chunk],
    index: mx.array,
    embed_query: Callable[[str], mx.array],
    tokenizer,
    generate: Callable[[str], str],
    k: int = 3,
) -> tuple[str, list[str]]:
    query = mx.array(embed_query(question))
    indices, _ = top_k(index, query.reshape(1, -1), k)
    picked = [chunks[i] for i in indices[0].tolist()]
    text = generate(build_prompt(tokenizer, question, picked))
    return text, [c.source for c in picked]
