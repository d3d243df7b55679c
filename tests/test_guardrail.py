"""tutor.coach.guardrail: the solution-leak filter, measured on its corpus.

The corpus (tests/fixtures/guardrail/) holds replies that leak a working week-1
implementation and replies that must reach the learner intact. The filter must remove
the implementation from every leaking reply (recall 100%) and keep at least 95% of the
clean replies unchanged; the numbers are printed (run pytest with -s to see them).
"""

from __future__ import annotations

import ast
import re
import statistics
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from tutor import paths
from tutor.coach import guardrail
from tutor.coach.guardrail import FilterResult, filter_reply
from tutor.curriculum import load_course

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "fixtures" / "guardrail"
BOOK = HERE / "fixtures" / "book_solution" / "tiny_llm"


@pytest.fixture(scope="module")
def course():
    return load_course()


def _load(name: str) -> list[dict]:
    return yaml.safe_load((CORPUS / name).read_text(encoding="utf-8"))


def _lesson_task(course, entry):
    lesson = course.lesson(entry["day"])
    return lesson, lesson.task(entry["task"])


def _computing_lines(text: str) -> list[str]:
    """Lines of a reply that do tensor computation (what must not survive)."""
    out = []
    for ln in text.splitlines():
        code = re.sub(r"`([^`]*)`", r"\1", ln)
        score, found = guardrail.code_score(code)
        if found and score >= 1.0:
            out.append(ln)
    return out


def test_corpus_is_big_enough_and_labelled():
    leaking, clean = _load("leaking.yaml"), _load("clean.yaml")
    assert len(leaking) >= 40
    assert len(clean) >= 60
    ids = [e["id"] for e in leaking + clean]
    assert len(ids) == len(set(ids))
    course = load_course()
    for e in leaking + clean:
        lesson, task = _lesson_task(course, e)
        assert task is not None, e["id"]
        assert e["text"].strip() and e["style"].strip()
    # every week-1 task with symbols has leaking replies
    covered = {(e["day"], e["task"]) for e in leaking}
    for lesson in course.lessons:
        if lesson.week != 1:
            continue
        for t in lesson.tasks:
            if t.symbols:
                assert (lesson.id, t.id) in covered, (lesson.id, t.id)


def test_precision_and_recall_on_the_corpus(course):
    leaking, clean = _load("leaking.yaml"), _load("clean.yaml")
    tp, fn_ids, fp_ids = 0, [], []
    for e in leaking:
        lesson, task = _lesson_task(course, e)
        r = filter_reply(e["text"], lesson=lesson, task=task)
        again = filter_reply(r.text, lesson=lesson, task=task)
        survivors = [ln for ln in _computing_lines(e["text"]) if ln in r.text.splitlines()]
        if r.removed and not again.removed and not survivors:
            tp += 1
        else:
            fn_ids.append((e["id"], r.reasons, again.reasons, survivors))
    kept = 0
    for e in clean:
        lesson, task = _lesson_task(course, e)
        r = filter_reply(e["text"], lesson=lesson, task=task)
        if r.removed == 0 and r.text == e["text"]:
            kept += 1
        else:
            fp_ids.append((e["id"], r.reasons))
    fp = len(fp_ids)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(leaking)
    kept_rate = kept / len(clean)
    print(f"\nguardrail corpus: {len(leaking)} leaking, {len(clean)} clean | "
          f"precision {precision:.3f}, recall {recall:.3f}, clean kept intact {kept_rate:.3f}"
          f" (false positives: {[i for i, _ in fp_ids]})")
    assert not fn_ids, f"implementations not removed: {fn_ids}"
    assert recall == 1.0
    assert kept_rate >= 0.95, fp_ids


def test_removed_code_is_replaced_by_a_guiding_question(course):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    text = ("Here it is:\n\n```python\ndef scaled_dot_product_attention_simple(q, k, v, scale=None, "
            "mask=None):\n    s = q @ k.swapaxes(-1, -2) * (scale or q.shape[-1] ** -0.5)\n"
            "    return softmax(s, axis=-1) @ v\n```\n\nGood luck!")
    r = filter_reply(text, lesson=lesson, task=task)
    assert r.removed == 1 and r.reasons
    assert "swapaxes" not in r.text and "def " not in r.text
    assert guardrail.NUDGE_PREFIX in r.text
    assert any(q in r.text for q in task.guiding_questions)
    assert r.text.startswith("Here it is:") and r.text.rstrip().endswith("Good luck!")


def _key_segment(name: str, file: str) -> str:
    src = (paths.answer_key_dir() / file).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_source_segment(src, node)
    raise KeyError(name)


def _body(segment: str) -> list[str]:
    """The statements of a function's body, dedented, without its docstring."""
    node = ast.parse(textwrap.dedent(segment)).body[0]
    lines = textwrap.dedent(segment).splitlines()
    first = node.body[1] if isinstance(node.body[0], ast.Expr) else node.body[0]
    return textwrap.dedent("\n".join(lines[first.lineno - 1:])).splitlines()


@pytest.mark.parametrize("day,task_id,name,file", [
    ("1.4", 1, "__call__", "layer_norm.py"),
    ("1.1", 1, "scaled_dot_product_attention_simple", "attention.py"),
    ("1.3", 2, "causal_mask", "attention.py"),
    ("1.7", 1, "sample", "sampler.py"),
    ("1.2", 2, "__call__", "positional_encoding.py"),
])
def test_answer_key_lines_quoted_without_a_fence_are_caught(course, day, task_id, name, file):
    seg = _key_segment(name, file)
    body = _body(seg)
    key_lines = [ln for ln in body if ln.strip() and _computing_lines(ln)]
    assert key_lines
    lesson = course.lesson(day)
    task = lesson.task(task_id)
    # near-verbatim, unfenced, in the middle of prose
    text = "Sure, the body you need is\n" + "\n".join(body) + "\nand that is all."
    r = filter_reply(text, lesson=lesson, task=task)
    assert r.removed >= 1, r.reasons
    for ln in key_lines:
        assert ln.strip() not in r.text, ln
    assert r.text.startswith("Sure, the body you need is")
    # the same lines with every local name changed are still a copy
    renamed = re.sub(r"\b(scores|factor|xf|inv_rms|rows|cols|allowed|logits|order|keep|"
                     r"probs|x1|x2|y1|y2)\b", lambda m: m.group(1)[::-1] + "_", "\n".join(body))
    r2 = filter_reply("Try:\n" + renamed + "\nok?", lesson=lesson, task=task)
    assert r2.removed >= 1


def test_single_key_lines_inline_are_caught(course):
    lesson = course.lesson("1.1")
    for line in ("scores = (query @ key.swapaxes(-1, -2)) * factor",
                 "return softmax(scores, axis=-1) @ value"):
        r = filter_reply(f"You could write `{line}` there.", lesson=lesson, task=lesson.task(1))
        assert r.removed == 1 and line not in r.text
    emb = course.lesson("1.5")
    r = filter_reply("It's just `self.weight[x]`.", lesson=emb, task=emb.task(2))
    assert r.removed == 1
    r = filter_reply("Then `return x * mx.sigmoid(x)`.", lesson=course.lesson("1.4"),
                     task=course.lesson("1.4").task(2))
    assert r.removed == 1


def _book_symbols(course):
    tasks = {}
    for lesson in course.lessons:
        for t in lesson.tasks:
            for s in t.symbols:
                tasks.setdefault(s, (lesson, t))
    for f in sorted(BOOK.glob("*.py")):
        src = f.read_text(encoding="utf-8")
        for node in ast.parse(src).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in tasks:
                yield node.name, ast.get_source_segment(src, node), tasks[node.name]


def test_an_independent_solution_is_removed_in_every_layout(course):
    """tests/fixtures/book_solution was written independently of the answer key, in a
    different style; pasted into a reply in any layout, the filter removes it."""
    seen = 0
    for name, seg, (lesson, task) in _book_symbols(course):
        layouts = {
            "fenced": f"Here you go:\n\n```python\n{seg}\n```\n\nTry it.",
            "unfenced": f"Here you go:\n{seg}\nTry it.",
            "indented": "Here you go:\n\n" + textwrap.indent(seg, "    ") + "\n\nTry it.",
        }
        for layout, text in layouts.items():
            r = filter_reply(text, lesson=lesson, task=task)
            assert r.removed >= 1, (name, layout)
            assert not filter_reply(r.text, lesson=lesson, task=task).removed, (name, layout)
            for ln in _computing_lines(seg):
                assert ln not in r.text.splitlines(), (name, layout, ln)
        seen += 1
    assert seen >= 15


def test_fences_are_read_as_markdown_reads_them(course):
    """Fences come from the Markdown tokenizer: a block quoted with ``>`` or in a list item
    goes whole, its fence lines with it, and a block after an HTML line is still a block."""
    lesson = course.lesson("1.1")
    body = ["scores = q @ k.swapaxes(-1, -2) / math.sqrt(d)", "w = mx.softmax(scores, axis=-1)",
            "out = w @ v"]
    layouts = {
        "quoted": "> ```python\n" + "\n".join("> " + ln for ln in body) + "\n> ```",
        "list item": "1. Like this:\n\n   ```python\n" + "\n".join("   " + ln for ln in body)
                     + "\n   ```\n2. Then run it.",
        "after html": "<details>\n```python\n" + "\n".join(body) + "\n```\n</details>",
    }
    for layout, text in layouts.items():
        r = filter_reply(text, lesson=lesson, task=lesson.task(1))
        assert r.removed == 1, (layout, r.reasons)
        assert "```" not in r.text and "@" not in r.text, (layout, r.text)


def test_allowed_content_is_untouched(course):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    for text in (
        "The scores are $QK^\\top/\\sqrt{d}$ and the output is softmax(QK^T / sqrt(d)) V.",
        "Shapes: query (N, H, L, D), key (N, H, S, D), scores (N, H, L, S).",
        "Print `x.shape` and call `mx.eval(out)` before timing.",
        "1. scale the scores\n2. add the mask\n3. softmax over the keys\n4. multiply by the values",
        "```python\nprint(out.shape, out.dtype)\nmx.eval(out)\n```",
        "Is it `swapaxes` or `transpose` you want, and on which axes?",
        "```bash\ntiny-llm-tutor check day1.1\n```",
    ):
        r = filter_reply(text, lesson=lesson, task=task)
        assert r.removed == 0 and r.text == text, (text, r.reasons)


def test_allow_solution_keeps_code(course):
    lesson = course.lesson("1.4")
    text = "```python\ndef silu(x):\n    return x * mx.sigmoid(x)\n```"
    assert filter_reply(text, lesson=lesson, task=lesson.task(2)).removed == 1
    r = filter_reply(text, lesson=lesson, task=lesson.task(2), allow_solution=True)
    assert r.text == text and r.removed == 0


def test_the_learners_own_lines_may_be_quoted(course):
    lesson = course.lesson("1.1")
    mine = "    scores = query @ key.swapaxes(-1, -2)\n    return softmax(scores, axis=0) @ value\n"
    text = f"You wrote:\n\n```python\n{mine}```\n\nWhich axis does that softmax normalise?"
    assert filter_reply(text, lesson=lesson, task=lesson.task(1)).removed == 1
    r = filter_reply(text, lesson=lesson, task=lesson.task(1), learner_code=mine)
    assert r.removed == 0 and r.text == text


def test_works_without_an_answer_key(course, tmp_path):
    lesson = course.lesson("1.1")
    leak = "```python\nw = mx.softmax(q @ k.swapaxes(-1, -2) / math.sqrt(d), axis=-1)\nout = w @ v\n```"
    r = filter_reply(leak, lesson=lesson, task=lesson.task(1), answer_key_dir=tmp_path / "none")
    assert r.removed == 1
    clean = "Which axis does the softmax normalise over?"
    assert filter_reply(clean, lesson=lesson, task=lesson.task(1), answer_key_dir=tmp_path).text == clean


@pytest.mark.parametrize("text", [None, "", "   ", 42, "```", "```python\n", "`", "``` \n```",
                                  "def (((:\n  ]]]", "\x00\x01 binary \ufffd", "`" * 500,
                                  "x = (" * 2000, "    \n" * 300])
def test_never_raises(course, text):
    lesson = course.lesson("1.3")
    r = filter_reply(text, lesson=lesson, task=lesson.task(1))
    assert isinstance(r, FilterResult) and isinstance(r.text, str)
    r = filter_reply(text, lesson=None, task=None)
    assert isinstance(r, FilterResult)


def test_an_internal_error_fails_closed(course, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(guardrail, "_filter", boom)
    lesson = course.lesson("1.1")
    text = "Look:\n```python\nout = softmax(q @ k.T, axis=-1) @ v\n```\nand `mx.eval(out)`."
    r = filter_reply(text, lesson=lesson, task=lesson.task(1))
    assert "softmax(q @ k.T" not in r.text and r.removed >= 1
    assert "guardrail error" in r.reasons[0]


def test_fast_on_a_4kb_reply(course):
    lesson = course.lesson("1.1")
    task = lesson.task(1)
    texts = [e["text"] for e in _load("leaking.yaml") + _load("clean.yaml")]
    blob = "\n\n".join(texts)
    filter_reply(blob[:4096], lesson=lesson, task=task)  # builds the answer-key index once
    times = []
    for i in range(40):
        chunk = blob[i * 97:i * 97 + 4096]
        t0 = time.perf_counter()
        filter_reply(chunk, lesson=lesson, task=task)
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(f"\nguardrail on 4 KB replies: median {median * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")
    assert median < 0.020


def test_the_lessons_own_text_passes_unchanged(course):
    """Everything the lessons themselves show a learner (descriptions, questions, hints,
    concepts, pitfalls) is allowed content by definition."""
    for lesson in course.lessons:
        for task in lesson.tasks:
            texts = [task.description, *task.guiding_questions, *task.hints, *lesson.objectives]
            texts += [c.explanation for c in lesson.concepts]
            texts += [f"{p.symptom} {p.question}" for p in lesson.pitfalls]
            texts += [f"{q.prompt} {q.explanation}" for q in lesson.concept_questions]
            for text in texts:
                r = filter_reply(text, lesson=lesson, task=task)
                assert r.removed == 0 and r.text == text, (lesson.id, task.id, r.reasons, text)


def test_prepare_builds_the_index_and_never_raises(tmp_path):
    guardrail.prepare()
    guardrail.prepare(tmp_path / "missing")
    (tmp_path / "broken.py").write_text("def (:\n")
    guardrail.prepare(tmp_path)
