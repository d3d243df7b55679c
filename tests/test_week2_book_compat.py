"""Week 2's checks against code written without them: the book-layout solution in
tests/fixtures/book_solution/tiny_llm (weeks 1-2, written independently of checks/) passes
every week-2 day with the answer key's extension, and at least 95% of the single mistakes
in mutants_week2.yaml (also written without seeing checks/ or its catalogue) fail their day.

The solution reaches the kernels the way the book does (``from extensions import
tiny_llm_ext``), which the check process provides for the workspace's extension."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from mutation import apply_mutation, load_mutations, run_each

from tutor.checking.runner import run_day
from tutor.curriculum import load_course

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "tests" / "fixtures" / "book_solution" / "tiny_llm"
MUTANTS = REPO / "tests" / "fixtures" / "book_solution" / "mutants_week2.yaml"
DAYS = [d.id for d in load_course().week(2).days]
TIMEOUT = 180  # generous: the suite may share two cores with other runs

# Legitimate rewrites of the solution that must pass too: the book's own provided code.
# Request.__init__ and Request.text in the book's src/tiny_llm/batch.py (Qwen2 era) are
# given to the learner verbatim; they build a per-request streaming detokenizer.
BOOK_PROVIDED_REQUEST = {
    "id": "book-provided-request-detokenizer",
    "day": "2.6",
    "edits": [
        {"file": "batch.py",
         "find": "        # text() decodes the token list, so requests never share a streaming "
                 "detokenizer\n        self.tokenizer = tokenizer\n        self.generated = []\n",
         "replace": "        self.detokenizer = tokenizer.detokenizer.__class__(tokenizer._tokenizer)\n"},
        {"file": "batch.py",
         "find": "        self.generated.append(token)\n",
         "replace": "        self.detokenizer.add_token(token)\n"},
        {"file": "batch.py",
         "find": "        return self.tokenizer.decode(self.generated)",
         "replace": "        return self.detokenizer.text"},
    ],
}


# The book's flash kernel takes float32 only (its C++ rejects anything else) and the book's
# model casts to float32 before calling it. Wrappers that keep that contract pass: one that
# rejects other dtypes itself, and one that hands them on to a kernel that rejects them.
FLOAT32_ONLY_FLASH = [
    {"id": "wrapper-rejects-non-float32", "day": "2.4", "file": "attention.py",
     "find": "    ext = _extension()\n    *batch, n_q_heads, L, E = query.shape\n",
     "replace": "    ext = _extension()\n"
                "    if any(t.dtype != mx.float32 for t in (query, key, value)):\n"
                "        raise RuntimeError(\"flash_attention: all input arrays must be float32\")\n"
                "    *batch, n_q_heads, L, E = query.shape\n"},
    {"id": "kernel-gets-the-callers-dtype", "day": "2.4", "edits": [
        {"file": "attention.py", "find": f"{t} = mx.contiguous({name}.astype(mx.float32)",
         "replace": f"{t} = mx.contiguous({name}"}
        for t, name in (("q", "query"), ("k", "key"), ("v", "value"))]},
]


# The book's week-2 bugs (ea4769d), written into the fixture the way the book has them; each
# must fail its day naming its pitfall. (Its loop ends once nothing waits and no slot
# decodes, even while a prompt is still in its chunked prefill.)
BOOK_BUGS = [
    {"id": "book-loop-ends-while-prefilling", "day": "2.6",
     "pitfall": "batch-loop-ends-while-prefilling", "file": "batch.py",
     "find": "if len(waiting) == 0 and idle and pending_prefill_request is None:",
     "replace": "if len(waiting) == 0 and idle:"},
]


def _problems(result) -> list:
    """Checks that neither passed nor were skipped for a reason this machine cannot help
    (no Apple GPU, weights not downloaded, timing too noisy for the perf comparison)."""
    bad = []
    for c in result["checks"]:
        if c["status"] == "pass":
            continue
        reason = (c.get("skip_reason") or "")
        if c["status"] == "skipped" and ("Apple GPU" in reason or "hf download" in reason
                                         or (c["id"].endswith("perf")
                                             and "nois" in reason.lower())):
            continue
        bad.append((c["id"], c["status"], c.get("message") or reason))
    return bad


@pytest.mark.parametrize("day", DAYS)
def test_book_style_solution_passes_week2(day, answer_key_ext):
    result = run_day(day, BOOK, TIMEOUT, kernels=answer_key_ext)
    assert result["status"] == "pass", _problems(result)
    assert not _problems(result)


@pytest.mark.parametrize("entry", BOOK_BUGS, ids=[e["id"] for e in BOOK_BUGS])
def test_book_bug_is_named(entry, answer_key_ext, tmp_path):
    result = run_day(entry["day"], apply_mutation(BOOK, entry, tmp_path), TIMEOUT,
                     kernels=answer_key_ext)
    assert result["status"] != "pass"
    named = {c.get("pitfall") for c in result["checks"] if c["status"] in ("fail", "error")}
    assert entry["pitfall"] in named, (named, _problems(result))


def test_book_provided_request_code_passes(answer_key_ext, tmp_path):
    """The Request code the book hands the learner (a detokenizer built from
    tokenizer._tokenizer) works with the checks' tokenizer."""
    pkg = apply_mutation(BOOK, BOOK_PROVIDED_REQUEST, tmp_path)
    result = run_day("2.6", pkg, TIMEOUT, kernels=answer_key_ext)
    assert result["status"] == "pass", _problems(result)


@pytest.mark.parametrize("entry", FLOAT32_ONLY_FLASH, ids=[e["id"] for e in FLOAT32_ONLY_FLASH])
def test_float32_only_flash_kernel_passes(entry, answer_key_ext, tmp_path):
    """The flash checks feed the learner's kernel float32 (or accept its float32-only error
    for the wrapper's float16 cases), as the book's contract says."""
    from tutor import paths

    pkg = apply_mutation(paths.answer_key_dir(), entry, tmp_path)
    for day in ("2.4", "2.6"):
        result = run_day(day, pkg, TIMEOUT, kernels=answer_key_ext)
        assert result["status"] == "pass", (day, _problems(result))
        assert not _problems(result), (day, _problems(result))


def test_week2_mutants_cover_every_day():
    mutants = load_mutations(MUTANTS)
    per_day = Counter(m["day"] for m in mutants)
    for day in DAYS:
        assert per_day[day] >= 4, (day, per_day[day])
    ids = [m["id"] for m in mutants]
    assert len(ids) == len(set(ids))


def test_independent_week2_mistakes_are_caught(answer_key_ext, tmp_path):
    """The bar: at least 95% of mistakes written without seeing the checks fail their day."""
    mutants = load_mutations(MUTANTS)
    results = run_each(lambda i, m: run_day(m["day"], apply_mutation(BOOK, m, tmp_path / str(i)),
                                            TIMEOUT, kernels=answer_key_ext), mutants)
    caught, missed = 0, []
    for m, result in zip(mutants, results):
        if result["status"] != "pass":
            caught += 1
        else:
            missed.append(m["id"])
    rate = caught / len(mutants)
    print(f"independent week-2 mutants caught: {caught}/{len(mutants)} = {rate:.1%}; "
          f"missed: {missed}")
    assert rate >= 0.95, missed
