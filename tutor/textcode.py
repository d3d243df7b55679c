"""Where the code is in a text, found one way for every part of the tutor that asks: the
session docs (which must not read a heading or a marker inside the learner's code), the
coach's guardrail (which judges the code in a reply) and its stream guard (which holds
back unfinished code).

- Fenced and indented code blocks, and inline code spans, come from a real Markdown
  tokenizer (markdown-it-py, installed with Rich), not from more regexes.
- The custom part is only what Markdown cannot say: which unfenced lines of prose are
  Python (:func:`is_python_line`, strict: the guardrail judges them;
  :func:`may_be_code`, loose: the stream guard waits for them to end), built on the
  shared shapes below (an assignment's target, a formula, a comment).

A leaf module: it imports nothing of tutor, so every layer may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "Fence", "fences", "open_fence", "code_mask", "inline_spans", "without_spans",
    "FENCE_LINE", "ASSIGN_TARGET", "strip_comment", "is_formula", "unmark",
    "is_python_line", "may_be_code",
]


@lru_cache(maxsize=2)
def markdown(inline: bool = True):
    """The shared CommonMark parser; with ``inline=False`` it reads the blocks only (their
    inline tokens keep their text but are not parsed further: faster, for finding fences).

    Raw HTML blocks are off: a tutor reads HTML in Markdown as text, and a fence after a
    ``<details>`` line must stay a fence, not be hidden in the HTML."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").disable("html_block")
    return md if inline else md.disable("inline")


# --------------------------------------------------------------------------- blocks

_NEWLINE = re.compile(r"\r\n|\r|\n")  # markdown-it's own line breaks, so line numbers agree
_CLOSING_FENCE = re.compile(r"^[\s>]*(`{3,}|~{3,})\s*$")
# Any line that looks like a fence, at any indent: for the fail-closed paths that must
# not depend on the parser (the guardrail's fallback) and for ending a run of prose code.
FENCE_LINE = re.compile(r"^\s*(`{3,}|~{3,})(.*)$")


@dataclass(frozen=True)
class Fence:
    """A fenced code block (also one inside a list item or a quote)."""
    start: int  # the opening fence's line (0-based)
    end: int  # one past the last line: past the closing fence when ``closed``
    markup: str  # the opening fence: ``` or ~~~~ ...
    lang: str  # the info string's first word, lower-case ("" when none)
    code: tuple[str, ...]  # the lines inside, the block's indent and quote marks removed
    closed: bool


def _lines(text: str) -> tuple[list[int], list[str]]:
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
    return starts, [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


def _closes(line: str, markup: str) -> bool:
    m = _CLOSING_FENCE.match(line)
    return bool(m) and m.group(1)[0] == markup[0] and len(m.group(1)) >= len(markup)


def _blocks(text: str, lines: list[str]):
    """(token, closed) for every fence and indented code block, in order."""
    for tok in markdown(inline=False).parse(text):
        if tok.type not in ("fence", "code_block") or not tok.map:
            continue
        first, end = tok.map
        closed = tok.type == "code_block" or end - 1 > first and _closes(
            lines[end - 1] if end - 1 < len(lines) else "", tok.markup)
        yield tok, closed


def fences(text: str) -> list[Fence]:
    """The fenced code blocks of ``text``. A fence left open runs to the end of its
    container (the text, a list item, a quote), as Markdown reads it."""
    _, lines = _lines(text)
    out = []
    for tok, closed in _blocks(text, lines):
        if tok.type != "fence":
            continue
        first, end = tok.map
        if not closed and all(not ln.strip() for ln in lines[end:]):
            end = len(lines)  # open at the end of the text: its trailing blank lines are in it
        code = tok.content.split("\n")
        if code and code[-1] == "":
            code.pop()
        info = tok.info.strip().lower()
        out.append(Fence(first, end, tok.markup, info.split(" ")[0] if info else "",
                         tuple(code), closed))
    return out


def open_fence(text: str) -> str | None:
    """The opening markup of a fence ``text`` leaves open at its end, or None."""
    found = fences(text)
    if found and not found[-1].closed:
        return found[-1].markup
    return None


def code_mask(text: str) -> str:
    """``text`` with every character inside a code fence or an indented code block turned
    into a space (line breaks kept), so positions and line numbers stay the same and
    nothing in code looks like a marker or a heading.

    A fence left open runs to the end of the file in Markdown; it is not masked here, so
    a learner's missing ``` never hides the tutor's blocks below it (they would be
    inserted again on every write)."""
    starts, lines = _lines(text)
    out = list(text)
    for tok, closed in _blocks(text, lines):
        if not closed:
            continue
        first, end = tok.map
        for i in range(first, min(end, len(lines))):
            for k in range(starts[i], starts[i] + len(lines[i])):
                if out[k] not in "\r\n":
                    out[k] = " "
    return "".join(out)


# --------------------------------------------------------------------------- inline spans

_TICKS = re.compile(r"(?<!`)`+(?!`)")


@lru_cache(maxsize=2048)  # a streamed reply is filtered again at every release
def inline_spans(line: str) -> tuple[tuple[int, int, str], ...]:
    """The inline code spans of one line as CommonMark reads them (escaped backticks and
    unmatched runs are not spans): ``(start, end, code)``, ``end`` past the closing
    backticks, ``code`` stripped."""
    if "`" not in line:
        return ()
    spans: list[tuple[int, int, str]] = []
    pos = 0
    for tok in markdown().parseInline(line)[0].children or ():
        if tok.type != "code_inline":
            continue
        for m in _TICKS.finditer(line, pos):  # the parser keeps no columns: find it
            if len(m.group()) != len(tok.markup):
                continue
            close = next((c for c in _TICKS.finditer(line, m.end())
                          if len(c.group()) == len(tok.markup)), None)
            if close is None:
                break
            raw = line[m.end():close.start()]
            if _span_content(raw) == tok.content:
                spans.append((m.start(), close.end(), raw.strip()))
                pos = close.end()
                break
    return tuple(spans)


def _span_content(raw: str) -> str:
    if len(raw) > 1 and raw[0] == raw[-1] == " " and raw.strip():
        return raw[1:-1]
    return raw


def without_spans(line: str) -> str:
    """``line`` with each inline code span replaced by a space."""
    for a, b, _ in reversed(inline_spans(line)):
        line = line[:a] + " " + line[b:]
    return line


# --------------------------------------------------------------------------- unfenced code

# The target of a Python assignment: names and attributes, one subscript, tuple targets.
ASSIGN_TARGET = r"[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?:\s*,\s*[A-Za-z_][\w.]*)*"

_UNICODE_MATH = re.compile(r"[√·²³ᵀ∑Σ∞≈≤≥−×∝∈⊙]")
_FORMULA = re.compile(r"[√·²³ᵀ∑Σ∞θφσ≈≤≥−×∝∈ⁱ⁻₀₁₂]|\^|\\(frac|sqrt|mathrm|text|top|cdot|left|right|sum|exp|operatorname)\b")
# Unmistakable Python (or C++ calling a library).
STRONG = re.compile(
    r"\b(?:mx|np|torch|jnp|nn|math)(?:\.|::)\w"  # library calls (Python or C++)
    r"|\bself\.\w"
    r"|[\w)\]]\.[A-Za-z_]\w*\("  # method call
    r"|\(\s*[^()]*?\b[A-Za-z_]\w*=(?!=)[^\s)]"  # keyword argument
    r"|\w\[[^\]\n]*:[^\]\n]*\]"  # slicing
    r"|\[\s*None\b|\[\s*\.\.\.\s*,"
    r"|[\w)\]]\s*@\s*[\w(]"  # matmul operator
    r"|[\w)\]]\.T\b|\*\*|[-+*/@]=(?!=)|==|!="
    r"|^\s*(?:def|class)\s+\w+|^\s*lambda\b|\blambda\s+\w*\s*:"
    r"|^\s*(?:from\s+\S+\s+)?import\s+\w"
    r"|-\s*(?:mx|np|torch)\.inf\b|float\(\s*['\"]-inf"
)
BLOCK_HEADER = re.compile(r"^\s*(?:for\s.+\sin\s.+|while\s.+|if\s.+|elif\s.+|else|try|except.*|with\s.+|finally)\s*:\s*(\S.*)?$")
RETURN = re.compile(r"^\s*(?:return|yield)\s+\S")
ASSIGN_CALL = re.compile(rf"^\s*{ASSIGN_TARGET}\s*=(?!=)\s*.*[A-Za-z_]\w*\s*\(")
LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*+])\s+")
_BOLD = re.compile(r"\*\*([A-Za-z`][^*\n]*?)\*\*")


def strip_comment(line: str) -> str:
    """``line`` without its ``#`` comment (a ``#`` inside quotes stays)."""
    if "#" not in line:
        return line
    out, quote = [], None
    for ch in line:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        out.append(ch)
    return "".join(out)


def is_formula(line: str) -> bool:
    """Math, not code: Unicode math symbols (which no Python line contains outside a
    comment or a string), or ASCII/LaTeX math marks with no unmistakable Python."""
    bare = strip_comment(line)
    if _UNICODE_MATH.search(re.sub(r"([\"']).*?\1", "", bare)):
        return True
    return bool(_FORMULA.search(bare)) and not STRONG.search(bare)


def unmark(line: str) -> str:
    """Prose without markdown emphasis (``**bold**`` is not Python's power operator)."""
    return _BOLD.sub(r"\1", line) if "**" in line else line


def is_python_line(line: str, *, fenced: bool = False) -> bool:
    """Is this line (outside a fence, or a list-marked line inside one) Python? Strict:
    unmistakable Python, never a formula; inline code spans are left out (they are code
    of their own)."""
    s = line.strip() if fenced else unmark(line).strip()
    if "`" in s:
        s = without_spans(s).strip()
    if not s:
        return False
    if is_formula(s):
        return False
    if fenced and not LIST_MARKER.match(line):
        return True
    if STRONG.search(s):
        return True
    if BLOCK_HEADER.match(s) or RETURN.match(s):
        return True
    return bool(ASSIGN_CALL.match(s))


_MAYBE_CODE = [
    re.compile(r"^\s*(?:def|class|async\s+def)\s+\w"),
    re.compile(r"^\s*(?:import\s+\w|from\s+[\w.]+\s+import\b)"),
    re.compile(r"^\s*(?:return|yield|raise|assert|del|pass|break|continue)\b"),
    re.compile(r"^\s*(?:for|while|if|elif|with|except)\b.*:\s*(?:#.*)?$"),
    re.compile(r"^\s*(?:else|try|finally)\s*:"),
    re.compile(r"^\s*@\w"),
    re.compile(r"^\s*>>>"),
    re.compile(rf"^\s*{ASSIGN_TARGET}\s*(?:[-+*/@%]|//|\*\*)?=(?!=)\s*\S"),
    re.compile(r"^\s*[\w.]+\(.*\)\s*$"),
    re.compile(r"\b(?:mx|np|nn|torch|mlx)\.\w"),
    re.compile(r"[;{}]\s*$"),
]


def may_be_code(line: str) -> bool:
    """Could this line be code? Loose: anything indented like a code block or shaped like
    a statement, so that a streamed reply holds it back until the run of code ends."""
    if not line.strip():
        return False
    if line.startswith(("    ", "\t")):
        return True
    return any(rx.search(line) for rx in _MAYBE_CODE)
