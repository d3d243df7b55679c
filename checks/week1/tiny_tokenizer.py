"""A character-level tokenizer with the surface of mlx_lm's ``TokenizerWrapper`` that the
book's generation loop uses, so the day-1.6 checks need neither transformers nor a real
vocabulary.

Token ``i`` (for ``i < len(ALPHABET)``) is the character ``ALPHABET[i]``; the EOS token
decodes to the empty string (special tokens are not text). The mapping is a bijection
between non-EOS token ids and characters, so any text the learner prints or returns maps
back to exactly one token sequence.

Surface: ``encode(text, add_special_tokens=False) -> list[int]``, ``decode(ids) -> str``,
``eos_token_id`` / ``eos_token_ids``, ``vocab_size``, and ``detokenizer`` (a streaming
detokenizer: ``reset()``, ``add_token(t)``, ``finalize()``, ``last_segment``, ``text``,
``tokens``, ``offset``), like ``mlx_lm.tokenizer_utils.StreamingDetokenizer``.
"""

from __future__ import annotations

# 62 printable characters, none of them whitespace that a print() could add ("\n") or
# that a learner might strip (" "), so captured stdout maps back to tokens unambiguously.
ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _as_int_list(ids) -> list[int]:
    """Accept an int, a (nested) list/tuple of ints, an mx.array or a numpy array."""
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, (list, tuple)):
        out: list[int] = []
        for x in ids:
            out.extend(_as_int_list(x))
        return out
    return [int(ids)]


class CharDetokenizer:
    """Streaming detokenizer: ``last_segment`` is the text added since it was last read.
    Built from the tokenizer (or its ``_tokenizer``, as the book's batch.py does)."""

    def __init__(self, tokenizer: "CharTokenizer"):
        self._tok = tokenizer
        self.reset()

    def reset(self) -> None:
        self.offset = 0
        self.tokens: list[int] = []
        self._text = ""

    def add_token(self, token) -> None:
        ids = _as_int_list(token)
        self.tokens.extend(ids)
        self._text += self._tok.decode(ids)

    def finalize(self) -> None:
        pass

    @property
    def text(self) -> str:
        return self._text

    @property
    def last_segment(self) -> str:
        segment = self._text[self.offset:]
        self.offset = len(self._text)
        return segment


class CharTokenizer:
    def __init__(self, vocab_size: int, eos_token_id: int | None = None):
        if vocab_size < 2:
            raise ValueError("vocab_size must be at least 2")
        self.vocab_size = vocab_size
        self.eos_token_id = vocab_size - 1 if eos_token_id is None else eos_token_id
        n_chars = min(len(ALPHABET), vocab_size)
        chars = [c for c in ALPHABET[:n_chars]]
        self._id_to_char = {}
        j = 0
        for i in range(vocab_size):
            if i == self.eos_token_id:
                self._id_to_char[i] = ""
            elif j < len(chars):
                self._id_to_char[i] = chars[j]
                j += 1
            else:  # no printable character left: the id cannot appear in text
                self._id_to_char[i] = None
        self._char_to_id = {c: i for i, c in self._id_to_char.items() if c}
        self.eos_token = "<eos>"  # its text, as TokenizerWrapper.eos_token (not an id)
        self.eos_token_ids = {self.eos_token_id}
        self.all_special_ids = [self.eos_token_id]
        self.bos_token_id = None
        self.pad_token_id = None
        self._tokenizer = self  # what TokenizerWrapper wraps; the book builds detokenizers from it

    # ---- the TokenizerWrapper surface

    @property
    def detokenizer(self) -> CharDetokenizer:
        """A fresh, reset detokenizer per access, as mlx_lm's TokenizerWrapper gives (so
        concurrent requests each get their own)."""
        return CharDetokenizer(self)

    def encode(self, text: str, add_special_tokens: bool = True, **_kwargs) -> list[int]:
        try:
            return [self._char_to_id[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in this test vocabulary") from None

    def decode(self, ids, skip_special_tokens: bool = False, **_kwargs) -> str:
        out = []
        for i in _as_int_list(ids):
            c = self._id_to_char.get(i)
            out.append("\ufffd" if c is None else c)
        return "".join(out)

    def __call__(self, text: str, **kwargs):
        return {"input_ids": self.encode(text, **kwargs)}

    # ---- used by the check, not by the learner

    def text_to_tokens(self, text: str) -> list[int] | None:
        """The token ids of ``text``, or None if it holds a character outside the vocabulary."""
        try:
            return [self._char_to_id[c] for c in text]
        except KeyError:
            return None

    def printable_ids(self) -> list[int]:
        return [i for i, c in self._id_to_char.items() if c]
