"""What the session docs need to know about Markdown, from a real parser (markdown-it-py,
installed with Rich) rather than more regexes: where the learner's code is, and the
lead sentence and list of a lesson's concept text."""

from __future__ import annotations

import re
from functools import lru_cache

_NEWLINE = re.compile(r"\r\n|\r|\n")  # markdown-it's own line breaks, so line numbers agree
_CLOSING_FENCE = re.compile(r"^[\s>]*(`{3,}|~{3,})\s*$")


@lru_cache(maxsize=1)
def _parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark")


def code_mask(text: str) -> str:
    """``text`` with every character inside a code fence or an indented code block turned
    into a space (line breaks kept), so positions and line numbers stay the same and
    nothing in code looks like a marker or a heading.

    A fence left open runs to the end of the file in Markdown; it is not masked here, so
    a learner's missing ``` never hides the tutor's blocks below it (they would be
    inserted again on every write)."""
    starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
    lines = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    out = list(text)
    for tok in _parser().parse(text):
        if tok.type not in ("fence", "code_block") or not tok.map:
            continue
        first, end = tok.map
        if tok.type == "fence" and not _closes(lines[end - 1] if end - 1 < len(lines) else "",
                                               tok.markup):
            continue
        for i in range(first, min(end, len(lines))):
            for k in range(starts[i], starts[i] + len(lines[i])):
                if out[k] not in "\r\n":
                    out[k] = " "
    return "".join(out)


def _closes(line: str, markup: str) -> bool:
    m = _CLOSING_FENCE.match(line)
    return bool(m) and m.group(1)[0] == markup[0] and len(m.group(1)) >= len(markup)


@lru_cache(maxsize=256)  # the same few lesson texts on every save
def lead_and_list(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The first paragraph of ``text`` and the (marker, text) items of its first list:
    ``("Two layouts:", [("-", "traditional"), ("-", "half-split")])``. A numbered
    list keeps its numbers ("1." ...). Nested lists stay out: one level fits a bullet."""
    lead, items = "", []
    tokens = _parser().parse(text or "")
    kind = None  # the open top-level list
    for i, tok in enumerate(tokens):
        if tok.level == 0 and tok.type in ("bullet_list_open", "ordered_list_open"):
            kind = tok.type
        elif tok.level == 0 and tok.type in ("bullet_list_close", "ordered_list_close"):
            break
        elif kind is None and tok.type == "inline" and tok.level == 1 and not lead:
            lead = tok.content  # the first paragraph, before any list
        elif kind and tok.type == "list_item_open" and tok.level == 1:
            marker = f"{tok.info}{tok.markup}" if kind == "ordered_list_open" else "-"
            para = tokens[i + 2] if i + 2 < len(tokens) and tokens[i + 1].type == "paragraph_open" else None
            items.append((marker, para.content if para is not None else ""))
    return lead, tuple(items)
