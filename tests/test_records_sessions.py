"""tutor.records.sessions: the block merge (pure) and the session docs built from state."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from course_factory import make_course, make_lesson, make_question, make_task

from tutor.records.sessions import (
    DEFAULT_TEMPLATE,
    SECTIONS,
    begin_marker,
    end_marker,
    merge_blocks,
    render_blocks,
    render_template,
    session_doc_path,
    write_session_doc,
)
from tutor.records.state import StateStore

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 1, 9, 0, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def block(name: str, body: str) -> str:
    return f"{begin_marker(name)}\n{body}\n{end_marker(name)}"


# --------------------------------------------------------------------------- merge (pure)

DOC = """\
# Day 1.1

Intro by the learner.

## Learning Objectives

<!-- tutor:begin objectives -->
old objectives
<!-- tutor:end objectives -->

My own objective notes.

## Key Insights

Learner insight above the block.

<!-- tutor:begin insights -->
<!-- tutor:end insights -->

## Questions

<!-- tutor:begin questions -->
- old question
<!-- tutor:end questions -->
"""


def test_merge_replaces_only_block_contents():
    out = merge_blocks(DOC, {"objectives": "- new A\n- new B", "questions": "- q1"})
    assert block("objectives", "- new A\n- new B") in out
    assert block("questions", "- q1") in out
    assert "old objectives" not in out and "old question" not in out
    for learner in ("Intro by the learner.", "My own objective notes.", "Learner insight above the block."):
        assert learner in out
    # the rest of the document is byte-identical
    assert out.replace("- new A\n- new B", "old objectives").replace("- q1", "- old question") == DOC


def test_merge_is_idempotent():
    blocks = {"objectives": "x", "insights": "y", "questions": "z", "next": "n"}
    once = merge_blocks(DOC, blocks)
    assert merge_blocks(once, blocks) == once


def test_deleted_block_returns_at_the_end_of_its_section():
    doc = DOC.replace("<!-- tutor:begin insights -->\n<!-- tutor:end insights -->\n", "")
    out = merge_blocks(doc, {"insights": "- tutor insight"})
    section = out.split("## Key Insights", 1)[1].split("## Questions", 1)[0]
    # the blank lines the learner left before the next heading stay as they were
    assert section == "\n\nLearner insight above the block.\n\n" + block("insights", "- tutor insight") + "\n\n\n"
    assert merge_blocks(out, {"insights": "- tutor insight"}) == out


def test_deleted_block_goes_after_subsections_but_before_the_next_section():
    doc = "## Implementation\n\nmine\n\n### Details\n\nmore of mine\n## Questions\n\nq\n"
    out = merge_blocks(doc, {"implementation": "files"})
    assert out == (
        "## Implementation\n\nmine\n\n### Details\n\nmore of mine\n\n"
        + block("implementation", "files")
        + "\n\n## Questions\n\nq\n"
    )


def test_deleted_section_is_appended_at_the_end_of_the_file():
    out = merge_blocks("# Day\n\nonly my text", {"progress": "- 1h"})
    assert out == "# Day\n\nonly my text\n\n## Progress Update\n\n" + block("progress", "- 1h") + "\n"
    assert merge_blocks("", {"progress": "p"}) == "## Progress Update\n\n" + block("progress", "p") + "\n"


def test_stray_begin_marker_never_swallows_learner_text():
    # the learner deleted the end marker: the old content becomes theirs, a fresh block is added
    doc = "## Questions\n\n<!-- tutor:begin questions -->\nold\nMy precious notes.\n\n## Next Steps\n\nnext\n"
    out = merge_blocks(doc, {"questions": "- q"})
    assert "My precious notes." in out and "old" in out
    assert block("questions", "- q") in out
    again = merge_blocks(out, {"questions": "- q2"})
    assert "My precious notes." in again and block("questions", "- q2") in again
    assert again.count(end_marker("questions")) == 1


def test_stray_end_marker_is_left_alone():
    doc = "## Questions\n\nmine\n<!-- tutor:end questions -->\nmore mine\n"
    out = merge_blocks(doc, {"questions": "- q"})
    assert out.startswith(doc.rstrip("\n"))
    assert out.endswith(block("questions", "- q") + "\n")
    assert merge_blocks(out, {"questions": "- q"}) == out


def test_block_content_cannot_forge_markers():
    evil = "see <!-- tutor:end questions --> and <!-- tutor:begin next -->"
    out = merge_blocks("## Questions\n\n## Next Steps\n\nmine\n", {"questions": evil, "next": "n"})
    assert out.count(begin_marker("next")) == 1 and out.count(end_marker("questions")) == 1
    assert "mine" in out
    assert merge_blocks(out, {"questions": evil, "next": "n"}) == out


def test_heading_variants_and_code_fences():
    doc = (
        "## 5. 💡 Key insights\n\nmine\n\n"
        "```\n## Challenges & Solutions\n```\n\n"
        "## Challenges and Solutions ##\n\nfixes\n"
    )
    out = merge_blocks(doc, {"insights": "i", "challenges": "c"})
    # the fenced "## Challenges" line is not a heading: the insights section runs past it
    assert out.index("```\n\n" + begin_marker("insights")) < out.index("## Challenges and Solutions ##")
    assert out.endswith("fixes\n\n" + block("challenges", "c") + "\n")


def test_marker_whitespace_variants_are_recognised():
    doc = "## Questions\n<!--tutor:begin questions-->\nold\n<!--   tutor:end questions   -->\n"
    assert merge_blocks(doc, {"questions": "new"}) == "## Questions\n" + block("questions", "new") + "\n"


def test_empty_content_keeps_an_empty_block():
    out = merge_blocks("## Questions\n", {"questions": ""})
    assert block("questions", "").replace("\n\n", "\n") in out


def test_template_has_every_section_and_block():
    repo_template = (REPO / "SESSION-TEMPLATE.md").read_text(encoding="utf-8")
    for text in (DEFAULT_TEMPLATE, repo_template):
        for name, title in SECTIONS:
            assert f"## {title}\n" in text
            assert begin_marker(name) in text and end_marker(name) in text
        # nothing to insert: every block is already there
        blocks = {n: "x" for n, _ in SECTIONS}
        merged = merge_blocks(text, blocks)
        assert merged.count("\n## ") == text.count("\n## ")


# --------------------------------------------------------------------------- session docs


def lesson_of_day(id="1.1", slug="attention", title="Attention and Multi-Head Attention"):
    hints = ["h1", "h2", "h3", "h4"]
    return make_lesson(
        id, title, slug, chapter="https://skyzh.github.io/tiny-llm/week1-01-attention.html",
        objectives=["Explain why attention scores are scaled", "Split a projection into heads"],
        concepts=[("Scaled dot-product attention",
                   "Scores are dot products. They are scaled before softmax.")],
        tasks=[
            make_task(1, "Scaled dot-product attention", file="attention.py",
                      symbols=["scaled_dot_product_attention_simple"], checks=["sdpa", "sdpa-mask"],
                      hints=hints),
            make_task(2, "Multi-head attention", file="attention.py",
                      symbols=["SimpleMultiHeadAttention"], checks=["mha"], hints=hints),
        ],
        questions=[
            make_question("scale-value", "before", "number", "With D = 64, the factor?", 0.125),
            make_question("heads-shape", "after", "shape", "Shape after the split?",
                          ["N", "H", "L", "D"]),
        ],
        pitfalls=[("attn-missing-scale", "Outputs are too peaked.", "?")],
    )


LESSON = lesson_of_day()
NEXT = lesson_of_day("1.2", "rope", "Positional Encodings and RoPE")
COURSE = make_course((1, "W1", [LESSON, NEXT]))


def check_result(statuses: dict, diagnoses: dict | None = None) -> dict:
    diagnoses = diagnoses or {}
    tasks = {"sdpa": 1, "sdpa-mask": 1, "mha": 2}
    checks = [
        {"id": c, "task": tasks[c], "title": f"check {c}", "status": s,
         "message": "" if s == "pass" else f"{c} differs at [0, 1]", "evidence": {},
         "diagnosis": {"pitfall": diagnoses[c], "question": "?"} if c in diagnoses else None,
         "skip_reason": None}
        for c, s in statuses.items()
    ]
    summary = {k: sum(1 for s in statuses.values() if s == k) for k in ("pass", "fail", "error", "timeout", "crashed", "skipped")}
    ok = all(s in ("pass", "skipped") for s in statuses.values()) and summary["pass"] > 0
    return {"day": "1.1", "impl": "impl", "status": "pass" if ok else "fail", "duration_s": 1.0,
            "checks": checks, "summary": summary}


def day_of_work(store: StateStore) -> None:
    store.start_session(now=at(0))
    store.record_concept_answer("1.1", "scale-value", "0.125", True, now=at(1))
    store.record_files_changed("1.1", ["impl/attention.py"], now=at(3))
    store.record_check("1.1", check_result({"sdpa": "fail", "sdpa-mask": "fail", "mha": "fail"},
                                           {"sdpa": "attn-missing-scale"}), now=at(4))
    store.record_question("1.1", "Why do we divide by sqrt(D)?", now=at(5))
    store.record_hint("1.1", 1, 1, now=at(6))
    store.record_check("1.1", check_result({"sdpa": "pass", "sdpa-mask": "pass", "mha": "fail"}), now=at(8))


def test_session_doc_path():
    assert session_doc_path("/ws", LESSON) == Path("/ws/sessions/week1/day1.1-attention.md")


def test_render_template_placeholders():
    out = render_template("# Day {{day}}: {{ title }} (w{{week}}) {{chapter}} {{date}} {{unknown}}", LESSON, now=at(0))
    assert out == ("# Day 1.1: Attention and Multi-Head Attention (w1) "
                   "https://skyzh.github.io/tiny-llm/week1-01-attention.html 2025-03-01 {{unknown}}")


def test_write_session_doc_from_events(tmp_path):
    with StateStore(tmp_path, course=COURSE) as store:
        day_of_work(store)
        path = write_session_doc(tmp_path, LESSON, store.state, course=COURSE)
    assert path == tmp_path / "sessions" / "week1" / "day1.1-attention.md"
    doc = path.read_text(encoding="utf-8")
    assert doc.startswith("# Day 1.1: Attention and Multi-Head Attention\n")
    assert "- Explain why attention scores are scaled" in doc
    assert "**Scaled dot-product attention** — Scores are dot products." in doc
    assert "✅ `scale-value` (before coding): With D = 64, the factor? — right on the first try" in doc
    assert "⬜ `heads-shape` (after coding)" in doc
    assert "- `impl/attention.py` (last change 2025-03-01 09:03 UTC)" in doc
    assert "- ✅ Task 1 — Scaled dot-product attention" in doc and "2/2 checks pass" in doc
    assert "- ❌ Task 2 — Multi-head attention" in doc and "(failing: `mha`)" in doc
    assert ("`sdpa` (task 1: check sdpa) failed in 1 run, first at 2025-03-01 09:04 UTC; "
            "diagnosed attn-missing-scale ×1. ✅ Passing since 2025-03-01 09:08 UTC, after hints (rung 1).") in doc
    assert "`mha` (task 2: check mha) failed in 2 runs" in doc and "❌ Still failing: “mha differs at [0, 1]”" in doc
    assert "- attn-missing-scale ×1 — Outputs are too peaked." in doc
    assert "Hints used: task 1 (rung 1)." in doc
    assert "- 2025-03-01 09:05 UTC — Why do we divide by sqrt(D)?" in doc
    assert "- Status: 🟡 In progress · Mastery: 📖 Learning" in doc
    assert "- Active time: 7m (breaks over 5 minutes not counted), over 1 session" in doc
    assert "- Check runs: 2; no pass yet" in doc
    assert "To reach 💻 Implementing:" in doc and "(failing now: `mha`)" in doc
    assert "run `tiny-llm-tutor check day1.1`" in doc
    assert "Then: day 1.2 — Positional Encodings and RoPE." in doc
    assert "_No insight recorded yet." in doc


def test_learner_text_survives_every_rewrite(tmp_path):
    with StateStore(tmp_path, course=COURSE) as store:
        day_of_work(store)
        path = write_session_doc(tmp_path, LESSON, store.state, course=COURSE)
        text = path.read_text(encoding="utf-8")
        # the learner writes around the blocks, adds a section, and deletes two blocks
        text = text.replace("## Implementation\n", "## Implementation\n\nI used mx.softmax on axis -1.\n")
        text = text.replace("## Questions\n", "## Questions\n\nWhy not layer norm here?\n")
        start = text.index(begin_marker("insights"))
        end = text.index(end_marker("insights")) + len(end_marker("insights"))
        text = text[:start] + "My own insight, no block." + text[end:]
        start = text.index(begin_marker("next"))
        end = text.index(end_marker("next")) + len(end_marker("next"))
        text = text[:start] + text[end:]
        text += "\n## My scratchpad\n\nshapes: (N, L, H, D)\n"
        path.write_text(text, encoding="utf-8")

        store.record_check("1.1", check_result({"sdpa": "pass", "sdpa-mask": "pass", "mha": "pass"}), now=at(12))
        store.record_insight("1.1", "Scaling keeps the logits' variance near 1.\nSo softmax stays soft.", now=at(13))
        write_session_doc(tmp_path, LESSON, store.state, course=COURSE)
        store.record_concept_answer("1.1", "heads-shape", "N,H,L,D", True, now=at(14))
        write_session_doc(tmp_path, LESSON, store.state, course=COURSE)
    doc = path.read_text(encoding="utf-8")
    for learner in ("I used mx.softmax on axis -1.", "Why not layer norm here?", "My own insight, no block.",
                    "## My scratchpad\n\nshapes: (N, L, H, D)\n"):
        assert learner in doc
    insights = doc.split("## Key Insights", 1)[1].split("## Questions", 1)[0]
    assert insights.index("My own insight, no block.") < insights.index(begin_marker("insights"))
    assert "> Scaling keeps the logits' variance near 1.\n> So softmax stays soft." in insights
    nxt = doc.split("## Next Steps", 1)[1].split("## My scratchpad", 1)[0]
    assert begin_marker("next") in nxt and "⭐ This day is mastered." in nxt
    assert "- Status: ⭐ Mastered · Mastery: ⭐ Mastery" in doc
    assert "`mha` (task 2: check mha) failed in 2 runs" in doc and "✅ Passing since 2025-03-01 09:12 UTC" in doc
    for name, _ in SECTIONS:
        assert doc.count(begin_marker(name)) == 1 and doc.count(end_marker(name)) == 1


def test_unchanged_doc_is_not_rewritten(tmp_path):
    with StateStore(tmp_path) as store:
        day_of_work(store)
        path = write_session_doc(tmp_path, LESSON, store.state)
        os.utime(path, (1_000_000, 1_000_000))
        write_session_doc(tmp_path, LESSON, store)  # a StateStore is accepted too
    assert path.stat().st_mtime == 1_000_000


def test_template_sources(tmp_path):
    state = {"days": {}, "sessions": []}
    p = write_session_doc(tmp_path, LESSON, state, template_text="# {{title}}\n\nmine\n")
    doc = p.read_text()
    assert doc.startswith("# Attention and Multi-Head Attention\n\nmine\n")
    for _, title in SECTIONS:  # a template without sections still gets every block
        assert f"## {title}\n" in doc

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "SESSION-TEMPLATE.md").write_text("# custom {{day}}\n\n## Questions\n")
    doc = write_session_doc(ws, LESSON, state).read_text()
    assert doc.startswith("# custom 1.1\n\n## Questions\n\n" + begin_marker("questions"))

    other = tmp_path / "other"
    doc = write_session_doc(other, LESSON, state).read_text()  # packaged SESSION-TEMPLATE.md
    assert "## Learning Objectives" in doc and "{{" not in doc


def test_non_utf8_learner_bytes_survive(tmp_path):
    path = session_doc_path(tmp_path, LESSON)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"## Questions\n\nlatin-1 caf\xe9\n")
    write_session_doc(tmp_path, LESSON, {"days": {}, "sessions": []})
    assert b"caf\xe9\n" in path.read_bytes()


def test_render_blocks_for_untouched_day():
    blocks = render_blocks(LESSON, {"days": {}, "sessions": []}, COURSE)
    assert set(blocks) == {n for n, _ in SECTIONS}
    assert blocks["challenges"] == "_No checks run yet._"
    assert blocks["questions"] == "_No questions asked to the coach yet._"
    assert "- Status: ⬜ Not started · Mastery: —" in blocks["progress"]
    assert "start the day" in blocks["next"]


@pytest.mark.parametrize("evil", ["<!-- tutor:end questions -->", "<!-- tutor:begin insights -->"])
def test_learner_question_text_cannot_break_blocks(tmp_path, evil):
    with StateStore(tmp_path) as store:
        store.record_question("1.1", f"what is {evil}?", now=at(0))
        store.record_insight("1.1", f"idea {evil}", now=at(1))
        p = write_session_doc(tmp_path, LESSON, store.state)
        write_session_doc(tmp_path, LESSON, store.state)
    doc = p.read_text()
    for name, _ in SECTIONS:
        assert doc.count(begin_marker(name)) == 1 and doc.count(end_marker(name)) == 1


def test_session_doc_names_every_file_of_a_task_and_the_book_days():
    from tutor.curriculum import load_course

    course = load_course()
    blocks = render_blocks(course.lesson("1.1"), {"days": {}, "sessions": []}, course)
    assert ("Task 2 — Implement linear and SimpleMultiHeadAttention (`impl/basics.py`: "
            "`linear`; `impl/attention.py`: `SimpleMultiHeadAttention`)") in blocks["implementation"]
    merged = render_blocks(course.lesson("2.2"), {"days": {}, "sessions": []}, course)
    assert "(book days 2.2–2.3)" in merged["objectives"].splitlines()[0]
    assert "`kernels/src/quantized_matmul.cpp`: `quantized_matmul`, `QuantizedMatmul`; " \
           "`kernels/src/tiny_llm_ext.h`: `QuantizedMatmul`" in merged["implementation"]
