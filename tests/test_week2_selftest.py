"""Week 2's checks, proven on known code: they pass on the answer key (with its C++
extension; Metal checks skipped with their reason), fail on the stubs (with the learner's
skeleton extension), and name every catalogued mistake -- Python mistakes as mutated copies
of the answer key, kernel mistakes as rebuilt copies of the answer key's extension.

Sections: shared fixtures and helpers first, then one section per pair of days. Keep each
day's tests in its own functions and parameter lists.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from tempfile import mkdtemp

import pytest
from mutation import apply_mutation, edits_of, load_mutations, run_ahead

from tutor import paths
from tutor.checking.runner import run_day
from tutor.curriculum import load_course

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # generous: the suite may share two cores with other runs
EXT_PREFIX = "../answer_key_ext/"  # catalogue paths that point into the answer key's extension


# --------------------------------------------------------------------------- shared


@pytest.fixture(scope="session")
def learner_skeleton_ext(learner_workspace) -> Path:
    """The learner's kernels/ skeleton (axpby works, the week's kernels are stubs), built
    once per session with build-kernels (shared with the kernel tests: conftest)."""
    return learner_workspace / "kernels"


def _statuses(result):
    return {c["id"]: (c["status"], c.get("pitfall")) for c in result["checks"]}


def _is_metal_skip(c) -> bool:
    return c["status"] == "skipped" and "Apple GPU" in (c.get("skip_reason") or "")


def _is_weights_skip(c) -> bool:
    """A real-weights check (qwen2-0.5b-*) without the checkpoint in the local cache; they
    run on a fake cache in tests/test_real_weights.py."""
    return (c["status"] == "skipped" and c["id"].startswith("qwen2-0.5b-")
            and "hf download" in (c.get("skip_reason") or ""))


def _is_env_skip(c) -> bool:
    return _is_metal_skip(c) or _is_weights_skip(c)


def _is_kernel_mistake(entry) -> bool:
    return any(e["file"].startswith(EXT_PREFIX) for e in edits_of(entry))


def _apply_kernel_edits(entry, ext_dir: Path) -> None:
    """Write the entry's C++ edits into ``ext_dir`` (a copy of the answer key's extension),
    each file starting from the pristine answer key source."""
    from tutor.kernels_build import answer_key_source

    src = answer_key_source()
    texts: dict[str, str] = {}
    for e in edits_of(entry):
        if not e["file"].startswith(EXT_PREFIX):
            continue
        rel = e["file"][len(EXT_PREFIX):]
        text = texts.get(rel, (src / rel).read_text())
        n = text.count(e["find"])
        assert n == 1, f"{entry['id']}: 'find' occurs {n} times in {rel}"
        texts[rel] = text.replace(e["find"], e["replace"])
    for rel, text in texts.items():
        (ext_dir / rel).write_text(text)


def _python_part(entry) -> dict:
    return {**entry, "edits": [e for e in edits_of(entry) if not e["file"].startswith(EXT_PREFIX)]}


def _run_python_mistake(entry, tmp_path: Path, kernels: Path) -> dict:
    """The entry's day on a copy of the answer key with the entry's Python edits (in a
    folder of its own under ``tmp_path``: mutation.run_ahead runs several at once)."""
    pkg = apply_mutation(paths.answer_key_dir(), _python_part(entry), Path(mkdtemp(dir=tmp_path)))
    return run_day(entry["day"], pkg, TIMEOUT, kernels=kernels)


# --------------------------------------------------------------------------- days 2.1 and 2.2
# (KV cache; quantized matmul: wrappers, CPU kernel, Metal kernel, model integration)

KVQ_DAYS = ["2.1", "2.2"]
KVQ_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day2_1.yaml",
                               paths.checks_dir() / "mistakes" / "day2_2.yaml")
KVQ_PYTHON_MISTAKES = [e for e in KVQ_CATALOGUE if not _is_kernel_mistake(e)]
# Beyond the catalogue: the same pitfalls made another way, to keep the checks honest.
KVQ_EXTRA_PYTHON_MISTAKES = [
    {"id": "kv-offset-not-advanced", "day": "2.1", "_name": "generate-offset-stuck",
     "file": "generate.py", "find": "            offset += 1\n", "replace": "\n"},
    {"id": "kv-offset-not-advanced", "day": "2.1", "_name": "cache-offset-before-update",
     "file": "kv_cache.py",
     "find": "        self.offset += key.shape[2]\n        return keys, values, self.offset, mask",
     "replace": "        self.offset += key.shape[2]\n"
                "        return keys, values, self.offset - key.shape[2], mask"},
    {"id": "kv-rope-q-or-k-skipped", "day": "2.1", "_name": "queries-unrotated",
     "file": "qwen2_week2.py", "find": "q = self.rope(q, offset=positions)",
     "replace": "q = q  # not rotated"},
    {"id": "kv-rope-offset-ignored", "day": "2.1", "_name": "keys-rotated-from-zero",
     "file": "qwen2_week2.py", "find": "k = self.rope(k, offset=positions)",
     "replace": "k = self.rope(k, offset=_rope_offsets(0, B, L))"},
    {"id": "kv-mask-wrong-for-decode", "day": "2.1", "_name": "square-mask-crash",
     "file": "attention.py", "find": "scores = scores + causal_mask(L, S, scores.dtype)",
     "replace": "scores = scores + causal_mask(L, L, scores.dtype)"},
    {"id": "qmm-flatten-restore", "day": "2.2", "_name": "flatten-reshape-crash",
     "file": "quantize.py", "find": "a2 = mx.contiguous(a.reshape(-1, D))",
     "replace": "a2 = mx.contiguous(a.reshape(a.shape[-2], D))"},
    {"id": "kv-attention-scale-wrong", "day": "2.1", "_name": "no-scale",
     "file": "qwen2_week2.py", "find": "self.scale = 1.0 / math.sqrt(self.head_dim)",
     "replace": "self.scale = 1.0"},
    {"id": "qmm-flatten-restore", "day": "2.2", "_name": "activations-not-flattened",
     "file": "quantize.py", "find": "a2 = mx.contiguous(a.reshape(-1, D))",
     "replace": "a2 = mx.contiguous(a)"},
    {"id": "qmm-model-weights-miswired", "day": "2.2", "_name": "up-uses-gate-weights",
     "file": "qwen2_week2.py", "find": "quantized_linear(x, self.w_up)",
     "replace": "quantized_linear(x, self.w_gate)"},
    {"id": "qmm-model-weights-miswired", "day": "2.2", "_name": "untied-head-from-embedding",
     "file": "qwen2_week2.py",
     "find": "        if args.tie_word_embeddings:\n            self.w_lm_head = None",
     "replace": "        if True:\n            self.w_lm_head = None"},
    {"id": "qmm-bias-wrong", "day": "2.2", "_name": "model-drops-query-bias",
     "file": "qwen2_week2.py", "find": "quantized_linear(x, self.wq, self.bq)",
     "replace": "quantized_linear(x, self.wq)"},
] + [
    # The book's own int-offset mistake (catalogued on day 2.6) crashes the batch-of-two
    # model checks of the earlier days too; they name it as well.
    {**e, "day": day, "_name": f"{e['id']}-on-day-{day}"}
    for e in load_mutations(paths.checks_dir() / "mistakes" / "day2_6.yaml")
    if e["id"] == "rope-int-offset-one-slice" for day in ("2.1", "2.2")
]
KVQ_KERNEL_MISTAKES = [e for e in KVQ_CATALOGUE if _is_kernel_mistake(e)] + [
    {"id": "qmm-group-size-wrong", "day": "2.2", "_name": "first-group-scale-only",
     "file": EXT_PREFIX + "src/quantized_matmul.cpp",
     "find": "const float s = row_scales[g], z = row_biases[g];",
     "replace": "const float s = row_scales[0], z = row_biases[0];"},
    {"id": "qmm-no-transpose", "day": "2.2", "_name": "kernel-ignores-transpose",
     "file": EXT_PREFIX + "src/quantized_matmul.cpp",
     "find": "tb = transpose_b_]() mutable {", "replace": "tb = false]() mutable {"},
]


def _mistake_id(e) -> str:
    return e.get("_name", e["id"])


@pytest.mark.parametrize("day", KVQ_DAYS)
def test_kvq_answer_key_passes(day, answer_key_ext):
    result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=answer_key_ext)
    assert result["status"] == "pass", _statuses(result)
    for c in result["checks"]:
        assert c["status"] == "pass" or _is_env_skip(c), c


@pytest.mark.parametrize("day", KVQ_DAYS)
def test_kvq_stubs_fail_every_check(day, stub_impl, learner_skeleton_ext):
    result = run_day(day, stub_impl, TIMEOUT, kernels=learner_skeleton_ext)
    assert result["status"] == "fail"
    for c in result["checks"]:
        assert c["status"] in ("fail", "error") or _is_env_skip(c), c


def test_kvq_checks_and_pitfalls_match_the_lessons(answer_key_ext):
    course = load_course()
    for day in KVQ_DAYS:
        lesson = course.lesson(day)
        result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=answer_key_ext)
        ran = {c["id"] for c in result["checks"]}
        named = {cid for t in lesson.tasks for cid in t.checks}
        assert ran == named, (day, ran ^ named)
        pitfalls = {p.id for p in lesson.pitfalls}
        catalogued = {e["id"] for e in KVQ_CATALOGUE if e["day"] == day}
        assert catalogued == pitfalls, (day, catalogued ^ pitfalls)
        assert len(catalogued) >= 4
    ids = [e["id"] for e in KVQ_CATALOGUE]
    assert len(ids) == len(set(ids))


KVQ_ALL_PYTHON_MISTAKES = KVQ_PYTHON_MISTAKES + KVQ_EXTRA_PYTHON_MISTAKES


@pytest.mark.parametrize("entry", KVQ_ALL_PYTHON_MISTAKES,
                         ids=[_mistake_id(e) for e in KVQ_ALL_PYTHON_MISTAKES])
def test_kvq_python_mistake_is_diagnosed(entry, tmp_path, answer_key_ext, request):
    result = run_ahead(request, entry, lambda e: _run_python_mistake(e, tmp_path, answer_key_ext))
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert entry["id"] in diagnosed, _statuses(result)


@pytest.fixture(scope="session")
def _qmm_mutant_dir(tmp_path_factory) -> Path:
    """A copy of the answer key's extension sources that the kernel mistakes are written
    into one after another; after the first full build each rebuild only recompiles the
    mutated file (a few seconds)."""
    from tutor.kernels_build import answer_key_source

    dest = tmp_path_factory.mktemp("qmm_mutants") / "answer_key_ext"
    shutil.copytree(answer_key_source(), dest,
                    ignore=shutil.ignore_patterns("build", "__pycache__", "*.so", "*.metallib"))
    return dest


@pytest.fixture(scope="session", params=KVQ_KERNEL_MISTAKES,
                ids=[_mistake_id(e) for e in KVQ_KERNEL_MISTAKES])
def qmm_mutant_ext(request, _qmm_mutant_dir):
    """(entry, built extension folder) for one kernel mistake at a time."""
    from tutor.kernels_build import answer_key_source, build

    entry = request.param
    src = answer_key_source()
    for f in (src / "src").iterdir():  # start from the pristine sources every time
        dst = _qmm_mutant_dir / "src" / f.name
        if f.is_file() and dst.read_bytes() != f.read_bytes():
            shutil.copyfile(f, dst)  # a fresh mtime, so the build notices
    _apply_kernel_edits(entry, _qmm_mutant_dir)
    result = build(_qmm_mutant_dir)
    if not result.ok:
        pytest.fail(f"{_mistake_id(entry)} did not build:\n" + "\n".join(result.messages))
    return entry, _qmm_mutant_dir


def test_kvq_kernel_mistake_is_diagnosed(qmm_mutant_ext, tmp_path):
    entry, ext = qmm_mutant_ext
    pkg = apply_mutation(paths.answer_key_dir(), _python_part(entry), tmp_path)
    result = run_day(entry["day"], pkg, TIMEOUT, kernels=ext)
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert entry["id"] in diagnosed, _statuses(result)


# --------------------------------------------------------------------------- days 2.4 and 2.6
# (flash attention: wrapper, CPU kernel with the causal fast path, Metal, model; batching:
# per-row RoPE offsets and batch masks, BatchingKvCache, batch_generate, chunked prefill)

FB_DAYS = ["2.4", "2.6"]
FB_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day2_4.yaml",
                              paths.checks_dir() / "mistakes" / "day2_6.yaml")
# Beyond the catalogue: the same pitfalls made another way (in the wrapper instead of the
# kernel, in RoPE instead of the attention, in the model instead of the cache).
FB_EXTRA_PYTHON_MISTAKES = [
    {"id": "flash-scale-missing", "day": "2.4", "_name": "wrapper-drops-scale",
     "file": "attention.py", "find": "        scale=factor,\n        is_causal=is_causal,",
     "replace": "        is_causal=is_causal,"},
    {"id": "flash-causal-offset-forgotten", "day": "2.4", "_name": "wrapper-top-left-mask",
     "file": "attention.py", "find": "full_mask = causal_mask(L, S, mx.float32)",
     "replace": "full_mask = mx.triu(mx.full((L, S), -mx.inf), k=1)"},
    {"id": "batch-rope-offsets-shared", "day": "2.6", "_name": "rope-uses-first-slice",
     "file": "positional_encoding.py",
     "find": "starts = mx.array([self._start(s, length) for s in offsets], dtype=mx.float32)",
     "replace": "starts = mx.array([self._start(offsets[0], length) for s in offsets], "
                "dtype=mx.float32)"},
    {"id": "batch-padded-slot-unmasked", "day": "2.6", "_name": "model-ignores-cache-mask",
     "file": "qwen2_week2.py",
     "find": "k, v, _, mask = cache.update_and_fetch(k, v, mask_length=L, mask=mask)",
     "replace": "k, v, _, _ignored = cache.update_and_fetch(k, v, mask_length=L, mask=mask)"},
    {"id": "batch-padded-slot-unmasked", "day": "2.6", "_name": "empty-slot-visible",
     "file": "kv_cache.py",
     "find": "masks.append(mx.full((mask_length, S), -mx.inf, dtype=mx.float32))",
     "replace": "masks.append(mx.zeros((mask_length, S), dtype=mx.float32))"},
    {"id": "flash-scale-wrong", "day": "2.4", "_name": "default-scale-one-over-d",
     "file": "attention.py", "find": "factor = _default_scale(E, scale)",
     "replace": "factor = 1.0 / E if scale is None else scale"},
    {"id": "flash-one-batch-axis", "day": "2.4", "_name": "query-unpacked-as-4d",
     "file": "attention.py", "find": "    *batch, n_q_heads, L, E = query.shape\n"
                                     "    n_kv_heads, S = key.shape[-3], key.shape[-2]\n"
                                     "    factor = _default_scale(E, scale)",
     "replace": "    B, n_q_heads, L, E = query.shape\n    batch = [B]\n"
                "    _, n_kv_heads, S, _ = key.shape\n    factor = _default_scale(E, scale)"},
    {"id": "batch-stale-decode-token", "day": "2.6", "_name": "feeds-prompt-tail",
     "file": "batch.py",
     "find": "tokens = [r.next_token if r is not None else 0 for r in slots]",
     "replace": "tokens = [int(r.prefill_tokens[-1].item()) if r is not None else 0 "
                "for r in slots]"},
    # Offsets that never advance: the scheduler would run until the check's time budget;
    # the checks' model stops it and the check names what it saw.
    {"id": "batch-decode-offset-wrong", "day": "2.6", "_name": "decode-offset-stands-still",
     "file": "batch.py", "find": "        if update_offset:\n            self.offset += 1\n",
     "replace": ""},
    # ... with a batching cache that, like the book's, does not refuse to grow past
    # max_seq_len: nothing ever stops the scheduler.
    {"id": "batch-decode-offset-wrong", "day": "2.6", "_name": "decode-offset-never-ends",
     "edits": [{"file": "batch.py",
                "find": "        if update_offset:\n            self.offset += 1\n", "replace": ""},
               {"file": "kv_cache.py",
                "find": "        assert S <= self.max_seq_len, f\"sequence of {S} exceeds max_seq_len "
                        "{self.max_seq_len}\"\n", "replace": ""}]},
    {"id": "flash-inputs-mixed-up", "day": "2.4", "_name": "model-attends-keys-as-values",
     "file": "qwen2_week2.py",
     "find": "            k.astype(mx.float32),\n            v.astype(mx.float32),\n",
     "replace": "            k.astype(mx.float32),\n            k.astype(mx.float32),\n"},
    {"id": "flash-mask-wrong", "day": "2.4", "_name": "causal-mask-made-up",
     "file": "attention.py",
     "find": "    elif mask is None:\n        full_mask = mx.zeros((L, S), dtype=mx.float32)",
     "replace": "    elif mask is None:\n        full_mask = causal_mask(L, S, mx.float32)"},
    {"id": "flash-flatten-restore", "day": "2.4", "_name": "output-heads-and-length-exchanged",
     "file": "attention.py",
     "find": "return out.reshape(*batch, n_q_heads, L, E).astype(query.dtype)",
     "replace": "return out.reshape(*batch, L, n_q_heads, E).swapaxes(-2, -3).astype(query.dtype)"},
    {"id": "batch-padded-slot-unmasked", "day": "2.6", "_name": "padding-hidden-with-minus-one",
     "file": "kv_cache.py",
     "find": "hidden = mx.full((mask_length, pad), -mx.inf, dtype=mx.float32)",
     "replace": "hidden = mx.full((mask_length, pad), -1.0, dtype=mx.float32)"},
    {"id": "flash-flatten-restore", "day": "2.4", "_name": "query-flattened-heads-last",
     "file": "attention.py",
     "find": "q = mx.contiguous(query.astype(mx.float32).reshape(-1, L, E))",
     "replace": "q = mx.contiguous(query.astype(mx.float32).swapaxes(-2, -3).reshape(-1, L, E))"},
    {"id": "batch-decode-offset-wrong", "day": "2.6", "_name": "decode-at-position-zero",
     "file": "batch.py",
     "find": "offsets = [r.offset if r is not None else 0 for r in slots]",
     "replace": "offsets = [0 for r in slots]"},
    {"id": "chunk-boundaries-wrong", "day": "2.6", "_name": "whole-prompt-in-one-chunk",
     "file": "batch.py", "find": "n = min(self.prefill_max_step, total - self.offset)",
     "replace": "n = total - self.offset"},
] + [
    {**e, "day": "2.4", "_name": f"{e['id']}-on-day-2.4"}
    for e in load_mutations(paths.checks_dir() / "mistakes" / "day2_6.yaml")
    if e["id"] == "rope-int-offset-one-slice"
]
FB_PYTHON_MISTAKES = [e for e in FB_CATALOGUE if not _is_kernel_mistake(e)]
FB_KERNEL_MISTAKES = [e for e in FB_CATALOGUE if _is_kernel_mistake(e)] + [
    {"id": "flash-no-rescale", "day": "2.4", "_name": "only-the-sum-rescaled",
     "file": EXT_PREFIX + "src/flash_attention.cpp",
     "find": "for (int e = 0; e < E; ++e) orow[e] *= alpha;", "replace": "// no rescale"},
    {"id": "flash-kv-head-mapping", "day": "2.4", "_name": "kv-row-ignores-batch",
     "file": EXT_PREFIX + "src/flash_attention.cpp",
     "find": "const int kv = n / ratio;", "replace": "const int kv = (n % num_heads) / ratio;"},
]
# A correct kernel that computes every tile (no causal fast path at all): the perf check
# must not pass it.
FB_NO_TILE_SKIPPING = {
    "id": None, "day": "2.4", "_name": "no-tile-skipping",
    "edits": [{"file": EXT_PREFIX + "src/flash_attention.cpp",
               "find": "if (c0 > r1 - 1 + offset) break;", "replace": "// computes every tile"},
              {"file": EXT_PREFIX + "src/flash_attention.cpp",
               "find": "read_mask = (c1 - 1) > r0 + offset;", "replace": "// reads every mask"},
              {"file": EXT_PREFIX + "src/flash_attention.cpp",
               "find": "if (is_causal && col > row + offset) {", "replace": "if (false) {"},
              {"file": EXT_PREFIX + "src/flash_attention.cpp",
               "find": "if (p == 0.0f) continue;", "replace": "// no shortcut"}]}


def _fb_allowed_skip(c) -> bool:
    """Metal checks, and the perf check when timing is inconclusive (its documented rule)."""
    reason = c.get("skip_reason") or ""
    return _is_env_skip(c) or (c["id"] == "flash-cpu-perf" and c["status"] == "skipped"
                                 and "timing inconclusive" in reason)


@pytest.mark.parametrize("day", FB_DAYS)
def test_fb_answer_key_passes(day, answer_key_ext):
    result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=answer_key_ext)
    assert result["status"] == "pass", _statuses(result)
    for c in result["checks"]:
        assert c["status"] == "pass" or _fb_allowed_skip(c), c


@pytest.mark.parametrize("day", FB_DAYS)
def test_fb_stubs_fail_every_check(day, stub_impl, learner_skeleton_ext):
    result = run_day(day, stub_impl, TIMEOUT, kernels=learner_skeleton_ext)
    assert result["status"] == "fail"
    for c in result["checks"]:
        assert c["status"] in ("fail", "error") or _is_env_skip(c), c


def test_fb_checks_and_pitfalls_match_the_lessons(answer_key_ext):
    course = load_course()
    for day in FB_DAYS:
        lesson = course.lesson(day)
        result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=answer_key_ext)
        ran = {c["id"] for c in result["checks"]}
        named = {cid for t in lesson.tasks for cid in t.checks}
        assert ran == named, (day, ran ^ named)
        pitfalls = {p.id for p in lesson.pitfalls}
        catalogued = {e["id"] for e in FB_CATALOGUE if e["day"] == day}
        assert catalogued == pitfalls, (day, catalogued ^ pitfalls)
        assert len(catalogued) >= 4
    ids = [e["id"] for e in FB_CATALOGUE]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("entry", FB_PYTHON_MISTAKES + FB_EXTRA_PYTHON_MISTAKES,
                         ids=[_mistake_id(e) for e in FB_PYTHON_MISTAKES + FB_EXTRA_PYTHON_MISTAKES])
def test_fb_python_mistake_is_diagnosed(entry, tmp_path, answer_key_ext, request):
    result = run_ahead(request, entry, lambda e: _run_python_mistake(e, tmp_path, answer_key_ext))
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert entry["id"] in diagnosed, _statuses(result)


@pytest.fixture(scope="session")
def _flash_mutant_dir(_qmm_mutant_dir) -> Path:
    """The copy the quantized-matmul mistakes are built in: every mistake starts from the
    pristine sources (all of src/) before its edits, so one copy serves both sections and
    only its first build is a full one (about 20 s saved); each later build recompiles
    the files that changed."""
    return _qmm_mutant_dir


def _build_flash_mutant(entry, ext_dir: Path) -> Path:
    from tutor.kernels_build import answer_key_source, build

    src = answer_key_source()
    for f in (src / "src").iterdir():  # start from the pristine sources every time
        dst = ext_dir / "src" / f.name
        if f.is_file() and dst.read_bytes() != f.read_bytes():
            shutil.copyfile(f, dst)  # a fresh mtime, so the build notices
    _apply_kernel_edits(entry, ext_dir)
    result = build(ext_dir)
    if not result.ok:
        pytest.fail(f"{_mistake_id(entry)} did not build:\n" + "\n".join(result.messages))
    return ext_dir


@pytest.fixture(scope="session", params=FB_KERNEL_MISTAKES,
                ids=[_mistake_id(e) for e in FB_KERNEL_MISTAKES])
def flash_mutant_ext(request, _flash_mutant_dir):
    """(entry, built extension folder) for one flash kernel mistake at a time."""
    return request.param, _build_flash_mutant(request.param, _flash_mutant_dir)


def test_fb_kernel_mistake_is_diagnosed(flash_mutant_ext, tmp_path):
    entry, ext = flash_mutant_ext
    pkg = apply_mutation(paths.answer_key_dir(), _python_part(entry), tmp_path)
    result = run_day(entry["day"], pkg, TIMEOUT, kernels=ext)
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert entry["id"] in diagnosed, _statuses(result)


def test_fb_perf_check_does_not_pass_a_kernel_without_tile_skipping(_flash_mutant_dir):
    """Correct output, no causal fast path: every correctness check passes and the perf
    check fails (or, on a very noisy machine, is skipped) -- it never passes."""
    ext = _build_flash_mutant(FB_NO_TILE_SKIPPING, _flash_mutant_dir)
    result = run_day("2.4", paths.answer_key_dir(), TIMEOUT, kernels=ext)
    perf = {c["id"]: c for c in result["checks"]}["flash-cpu-perf"]
    assert perf["status"] in ("fail", "skipped"), perf
    for c in result["checks"]:
        if c["id"] != "flash-cpu-perf":
            assert c["status"] == "pass" or _is_metal_skip(c), c


# --------------------------------------------------------------------------- every day


def test_the_sections_cover_every_day_of_the_week():
    """A day the course adds to week 2 needs a section here (its kernels decide which
    fixtures it runs with), or this fails instead of the day going unproven."""
    assert sorted(KVQ_DAYS + FB_DAYS) == [d.id for d in load_course().week(2).days]
