"""What the session docs need to know about Markdown, from a real parser (markdown-it-py,
installed with Rich, shared through :mod:`tutor.textcode`) rather than more regexes:
where the learner's code is (:func:`code_mask`, the same code detector the coach uses),
and the lead sentence and list of a lesson's concept text."""

from __future__ import annotations

from functools import lru_cache

from tutor.textcode import code_mask, markdown

__all__ = ["code_mask", "lead_and_list"]


@lru_cache(maxsize=256)  # the same few lesson texts on every save
def lead_and_list(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The first paragraph of ``text`` and the (marker, text) items of its first list:
    ``("Two layouts:", [("-", "traditional"), ("-", "half-split")])``. A numbered
    list keeps its numbers ("1." ...). Nested lists stay out: one level fits a bullet."""
    lead, items = "", []
    tokens = markdown(inline=False).parse(text or "")  # an inline token's text is enough
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
