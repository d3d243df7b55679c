"""What day 3.5's checks run the learner's RAG code with: a word tokenizer, a Qwen2-style
chat-template tokenizer built on the spot, a deterministic hashed tf-idf embedding, the
course's own lessons as a corpus with labelled questions, and the reference computations
(chunking, pooling, top-k) written out in numpy."""

from __future__ import annotations

import math
import os
import re
import zlib

import numpy as np

# ----------------------------------------------------------------------- tokenizers


class WordTokenizer:
    """Words to ids by a stable hash (crc32), never 0: id 0 is EOS. No pad token, so a
    batch pads with EOS (the docstring's rule); any pad id gives the same real states."""

    def __init__(self, vocab: int):
        self.vocab_size = vocab
        self.eos_token_id = 0
        self.pad_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [1 + zlib.crc32(w.encode()) % (self.vocab_size - 1) for w in text.split()]


# A Qwen2-style (ChatML) template in our own Jinja: a default system turn when the
# conversation has none, every message framed by im_start/im_end, and the assistant's
# opening when a generation prompt is asked for.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "{% for m in messages %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DEFAULT_SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
GENERATION_PROMPT = "<|im_start|>assistant\n"


def chat_tokenizer():
    """A transformers fast tokenizer (word level, a dozen words) carrying CHAT_TEMPLATE:
    its ``apply_chat_template`` is the reference for the prompt."""
    # transformers warns that PyTorch is absent; only its tokenizer is used here
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<|endoftext|>", "<|im_start|>", "<|im_end|>", "system", "user",
             "assistant", "question", "source"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)},
                                     unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


# ----------------------------------------------------------------------- chunking


def chunk_words(text: str, size: int, overlap: int, *, step: int | None = None,
                keep_tail: bool = True, stop_at_end: bool = True,
                width: int | None = None) -> list[str]:
    """The reference chunker; the keyword arguments make the catalogued mistakes: another
    ``step``, the words after the last full chunk dropped (``keep_tail=False``), chunks
    started until the text runs out (``stop_at_end=False``), chunks of ``width`` words
    while the stop rule still counts ``size``."""
    words = text.split()
    step = size - overlap if step is None else step
    width = size if width is None else width
    out: list[str] = []
    if not keep_tail:
        for s in range(0, max(len(words) - size + 1, 0), step):
            out.append(" ".join(words[s:s + width]))
        return out
    s = 0
    while s < len(words):
        out.append(" ".join(words[s:s + width]))
        if stop_at_end and s + size >= len(words):
            break
        s += step
    return out


# ----------------------------------------------------------------------- pooling


def pool(hidden: np.ndarray, lengths, method: str, *, padded_last=False,
         mean_over_all=False) -> np.ndarray:
    """Pooling of a right-padded batch in float64; the flags make the catalogued mistakes
    (the last position of the padded batch, the mean over every position)."""
    h = np.asarray(hidden, dtype=np.float64)
    B, L, _ = h.shape
    out = []
    for b in range(B):
        n = int(lengths[b])
        if method == "last":
            out.append(h[b, L - 1] if padded_last else h[b, n - 1])
        else:
            out.append(h[b].mean(axis=0) if mean_over_all else h[b, :n].mean(axis=0))
    return np.stack(out)


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


# ----------------------------------------------------------------------- retrieval


def ranked(index: np.ndarray, queries: np.ndarray, k: int, *, normalise=True,
           ties="row order") -> tuple[np.ndarray, np.ndarray]:
    """Top-k by cosine similarity in float64 (``normalise=False``: raw dot products;
    ``"index"`` or ``"queries"``: only that side scaled to length 1);
    ``ties="reversed"`` puts equal scores in decreasing row order."""
    a = (unit_rows(index) if normalise in (True, "index")
         else np.asarray(index, np.float64))
    q = (unit_rows(queries) if normalise in (True, "queries")
         else np.asarray(queries, np.float64))
    s = q @ a.T
    k = min(k, s.shape[1])
    if ties == "reversed":
        order = np.argsort(s, axis=1, kind="stable")[:, ::-1][:, :k]
    else:
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


# ----------------------------------------------------------------------- hashed tf-idf

STOP = set("""a an and are as at be by can do does each for from how in into is it its of on
one or that the their then this to what when where which while who why with without you your
after before not no all""".split())
DIM = 1024


def terms(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP]


class HashedTfidf:
    """A deterministic bag-of-words embedding: (1 + log tf) * idf per hashed bucket, idf
    from the chunks it is fitted on. Rows are left unnormalised on purpose: their lengths
    differ, so a retrieval that skips normalising ranks differently."""

    def __init__(self, texts: list[str]):
        df: dict[str, int] = {}
        for t in texts:
            for w in set(terms(t)):
                df[w] = df.get(w, 0) + 1
        n = len(texts)
        self.idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}
        self.default_idf = math.log(1 + n) + 1.0

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            tf: dict[str, int] = {}
            for w in terms(t):
                tf[w] = tf.get(w, 0) + 1
            for w, c in tf.items():
                out[i, zlib.crc32(w.encode()) % DIM] += (1 + math.log(c)) * self.idf.get(
                    w, self.default_idf)
        return out


# (question, the lesson that answers it): one or more per lesson of weeks 1 to 3.
LABELLED_QUESTIONS = [
    ("Why are attention scores scaled by the square root of the head dimension before the "
     "softmax?", "1.1"),
    ("How does rotary positional encoding rotate pairs of dimensions by a frequency that "
     "depends on the position?", "1.2"),
    ("How do several query heads share one key and value head in grouped query attention?",
     "1.3"),
    ("What does RMSNorm divide by, and how does the SwiGLU gate work in the MLP?", "1.4"),
    ("How are the embedding, transformer blocks, final norm and lm head assembled into "
     "the Qwen2 model?", "1.5"),
    ("How does the generation loop prefill the prompt and decode tokens until EOS?", "1.6"),
    ("How do temperature, top-k and top-p change how the next token is sampled?", "1.7"),
    ("What does the key value cache store for each layer, and why is decoding faster "
     "with it?", "2.1"),
    ("How are int4 weights dequantized with per-group scales and biases in the quantized "
     "matmul?", "2.2"),
    ("How does flash attention keep a running maximum and sum over tiles with an online "
     "softmax?", "2.4"),
    ("How does continuous batching admit new requests while others decode, with chunked "
     "prefill?", "2.6"),
    ("How does a page table map a request's positions to pages of the pool, and what "
     "happens when pages are freed?", "3.1"),
    ("How does the paged attention kernel read keys and values through the page table?",
     "3.2"),
    ("How does the router choose the top experts for each token in a mixture of experts?",
     "3.3"),
    ("How does the target model verify the draft model's proposed tokens in speculative "
     "decoding?", "3.4"),
]
