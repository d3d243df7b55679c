"""tutor.textcode: the one code detector the session docs, the guardrail and the stream
guard share (fences and inline spans from markdown-it-py, lines of code in prose)."""

from __future__ import annotations

from tutor.textcode import (code_mask, fences, inline_spans, is_python_line, may_be_code,
                            open_fence, without_spans)


def test_fences_closed_open_and_nested():
    text = "intro\n```python\nx = 1\n```\n- item\n\n  ~~~\n  y = 2\n  ~~~\n> ```\n> z = 3\n> ```\n"
    found = fences(text)
    assert [(f.start, f.end, f.lang, f.code, f.closed) for f in found] == [
        (1, 4, "python", ("x = 1",), True),
        (6, 9, "", ("y = 2",), True),
        (9, 12, "", ("z = 3",), True),
    ]
    assert open_fence(text) is None


def test_a_fence_left_open_runs_to_the_end_with_its_blank_lines():
    text = "so:\n````py\nx = 1\n\n"
    (f,) = fences(text)
    assert not f.closed and f.markup == "````" and f.end == len(text.split("\n"))
    assert open_fence(text) == "````"
    assert open_fence(text + "````\n") is None
    assert fences("```") and not fences("```")[0].closed  # an opener alone is not closed


def test_inline_spans_as_commonmark_reads_them():
    line = r"use `a @ b`, ``x`y`` and \`not code\` or `` `"
    assert inline_spans(line) == ((4, 11, "a @ b"), (13, 20, "x`y"))
    assert without_spans("a `b` c") == "a   c"
    assert inline_spans("no code") == ()


def test_code_mask_keeps_positions_and_skips_an_open_fence():
    text = "# T\n```\n# not a heading\n```\n    # indented\nend\n```\nopen"
    masked = code_mask(text)
    assert len(masked) == len(text) and masked.count("\n") == text.count("\n")
    assert "not a heading" not in masked and "indented" not in masked
    assert masked.endswith("```\nopen") and masked.startswith("# T\n")


def test_lines_of_code_in_prose():
    assert is_python_line("scores = mx.softmax(x, axis=-1)")
    assert not is_python_line("The softmax normalises each row.")
    assert not is_python_line("softmax(x)ᵢ = exp(xᵢ) / ∑ exp(xⱼ)")  # a formula
    assert not is_python_line("Call `x.swapaxes(-1, -2)` here")  # the span is judged alone
    assert may_be_code("    anything indented") and may_be_code("out[0] += 1")
    assert not may_be_code("Plain words here.")
