"""Retrieval-augmented generation (day 3.5): cut documents into overlapping chunks, embed
them with your own Qwen2, find the chunks nearest to a question, and let the model answer
from them, citing where each piece came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import mlx.core as mx

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

# The instruction the model gets in the system turn of every RAG prompt (given: the
# wording is not the exercise, where it goes is).
RAG_SYSTEM_PROMPT = (
    "Answer the question using only the numbered sources below. After each statement, "
    "cite the source it comes from as [n]. If the sources do not hold the answer, say so."
)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``source`` names where it comes from (it is what a citation
    shows), ``text`` is the piece itself."""

    source: str
    text: str


def chunk_text(text: str, chunk_size: int, overlap: int) -> list[str]:
    """Cut ``text`` into chunks of ``chunk_size`` words, each sharing its first ``overlap``
    words with the end of the chunk before it.

    Words are what ``text.split()`` returns; a chunk is its words joined by single spaces.
    Chunk i starts at word i * (chunk_size - overlap). The last chunk is the first one that
    reaches the end of the text (it may be shorter than ``chunk_size``); no chunk lies
    wholly inside the one before it. A text of at most ``chunk_size`` words is one chunk;
    a text without words gives no chunks. Raise ``ValueError`` unless
    0 <= overlap < chunk_size.
    """
    raise NotImplementedError("chunk_text")


def hidden_states(model: Qwen2ModelWeek1, inputs: mx.array) -> mx.array:
    """The final hidden states of your week-1 Qwen2: token ids (B, L) -> (B, L, E).

    Run the parts of your own ``Qwen2ModelWeek1`` (day 1.5) that come before the LM head:
    the embedding, every transformer block with the causal mask, and the final RMSNorm.
    Do not compute the logits.
    """
    raise NotImplementedError("hidden_states")


def pool_hidden_states(hidden: mx.array, lengths: mx.array, method: str = "mean") -> mx.array:
    """One vector per text from the hidden states of a right-padded batch.

    ``hidden`` (B, L, E) holds the hidden states of B texts, text b occupying positions
    0 .. lengths[b] - 1 and padding after that; ``lengths`` (B,) are ints. ``method`` is
    ``"last"`` (the hidden state of the text's own last token) or ``"mean"`` (the average
    over the text's own tokens). Padding positions must not count. Return (B, E) float32.
    Raise ``ValueError`` for another method.
    """
    raise NotImplementedError("pool_hidden_states")


def embed_texts(
    forward: Callable[[mx.array], mx.array],
    tokenizer,
    texts: list[str],
    method: str = "mean",
    batch_size: int = 8,
) -> mx.array:
    """Embed each text as one unit-length float32 vector: (N, E) for N texts.

    ``forward`` maps token ids (B, L) to final hidden states (B, L, E), for instance
    ``lambda ids: hidden_states(model, ids)`` with your model. Encode each text with
    ``tokenizer.encode(text)`` (every text gives at least one token), run the texts in
    batches of at most ``batch_size``, each batch padded on the right to its longest text
    (with ``tokenizer.pad_token_id``, or ``tokenizer.eos_token_id`` when that is None),
    pool with ``pool_hidden_states`` and ``method``, and scale every row to length 1.
    A text's vector must not depend on the other texts of its batch.
    """
    raise NotImplementedError("embed_texts")


def top_k(index: mx.array, queries: mx.array, k: int) -> tuple[mx.array, mx.array]:
    """The k rows of ``index`` most similar to each query, by cosine similarity.

    ``index`` (N, E) and ``queries`` (Q, E) are float vectors of any length (normalise
    them here). Return ``(indices (Q, k') int32, scores (Q, k') float32)`` with
    k' = min(k, N): for each query its rows from the most to the least similar, and their
    cosine similarities. Rows with equal scores come in increasing row order, so the
    result is the same on every run and every machine.
    """
    raise NotImplementedError("top_k")


def build_prompt(tokenizer, question: str, chunks: list[Chunk]) -> str:
    """The prompt text for answering ``question`` from ``chunks`` (most relevant first).

    Two messages go through the tokenizer's own chat template
    (``tokenizer.apply_chat_template(..., tokenize=False, ...)``), with the prompt ending
    where the assistant's answer begins:

    - a system message whose content is ``RAG_SYSTEM_PROMPT``;
    - a user message: the sources, each written as ``[n] <source>`` on one line and its
      text on the next, n counting from 1 in the order of ``chunks``, separated by one
      blank line; then a blank line and ``Question: <question>``.

    Return the prompt as a string.
    """
    raise NotImplementedError("build_prompt")


def rag_answer(
    question: str,
    chunks: list[Chunk],
    index: mx.array,
    embed_query: Callable[[str], mx.array],
    tokenizer,
    generate: Callable[[str], str],
    k: int = 3,
) -> tuple[str, list[str]]:
    """Answer ``question`` from the ``k`` chunks nearest to it.

    ``index`` (N, E) holds the embedding of ``chunks[i]`` in row i; ``embed_query`` maps
    the question to its vector (E,) or (1, E). Retrieve with ``top_k``, build the prompt
    with ``build_prompt`` from the retrieved chunks in their rank order, and call
    ``generate(prompt)`` once (your engine, for instance ``lambda p:
    simple_generate_with_kv_cache(model, tokenizer, p)``). Return the generated text and
    the sources of the chunks it was given, in the order of the prompt's numbers.
    """
    raise NotImplementedError("rag_answer")
