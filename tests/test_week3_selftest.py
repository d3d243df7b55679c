"""Week 3's checks, proven on known code: they pass on the answer key (with its C++
extension; Metal checks skipped with their reason), fail on the stubs, and name every
catalogued mistake (mutated copies of the answer key).

Sections: shared helpers first, then one section per day with its catalogue, its mistakes
made another way and its own tests (measurements, kernels); the proofs every day shares
(answer key passes, stubs fail, lesson and catalogue agree, each mistake diagnosed) run
from the ``SECTIONS`` table at the bottom, where a new day adds its entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from tempfile import mkdtemp

import pytest
from mutation import apply_mutation, edits_of, load_mutations, run_ahead

from tutor import paths
from tutor.checking.runner import run_day
from tutor.curriculum import load_course

TIMEOUT = 120  # generous: the suite may share two cores with other runs
EXT_PREFIX = "../answer_key_ext/"  # catalogue paths that point into the answer key's extension


# --------------------------------------------------------------------------- shared


def _statuses(result):
    return {c["id"]: (c["status"], c.get("pitfall")) for c in result["checks"]}


def _is_env_skip(c) -> bool:
    """Metal checks without an Apple GPU, real-weights checks without the checkpoint."""
    reason = c.get("skip_reason") or ""
    return c["status"] == "skipped" and ("Apple GPU" in reason or "hf download" in reason)


def _is_kernel_mistake(entry) -> bool:
    return any(e["file"].startswith(EXT_PREFIX) for e in edits_of(entry))


def _mistake_id(e) -> str:
    return e.get("_name", e["id"])


def _run_python_mistake(entry, tmp_path: Path, kernels: Path | None) -> dict:
    """The entry's day on a copy of the answer key with the entry's edits (in a folder of
    its own under ``tmp_path``: mutation.run_ahead runs several at once)."""
    pkg = apply_mutation(paths.answer_key_dir(), entry, Path(mkdtemp(dir=tmp_path)))
    return run_day(entry["day"], pkg, TIMEOUT, kernels=kernels)


def _lesson_matches(day: str, catalogue: list[dict], kernels: Path | None) -> None:
    """The checks that run are exactly those the lesson's tasks list, and the catalogue's
    ids are exactly the lesson's pitfalls (at least four)."""
    lesson = load_course().lesson(day)
    result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=kernels)
    ran = {c["id"] for c in result["checks"]}
    named = {cid for t in lesson.tasks for cid in t.checks}
    assert ran == named, (day, ran ^ named)
    pitfalls = {p.id for p in lesson.pitfalls}
    catalogued = {e["id"] for e in catalogue if e["day"] == day}
    assert catalogued == pitfalls, (day, catalogued ^ pitfalls)
    assert len(catalogued) >= 4
    ids = [e["id"] for e in catalogue]
    assert len(ids) == len(set(ids))


# --------------------------------------------------------------------------- day 3.1
# (paged KV cache: the pool, the per-layer cache, rewind, the week-3 model on paged caches)

PAGED_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_1.yaml")
# Beyond the catalogue: the same pitfalls made another way.
PAGED_EXTRA_MISTAKES = [
    # The pool forgets freed pages instead of listing them: released pages never return.
    {"id": "paged-release-keeps-pages", "day": "3.1", "_name": "freed-ids-not-listed",
     "file": "paged_kv_cache.py", "find": "        self._free.append(page_id)\n", "replace": ""},
    {"id": "paged-rewind-keeps-pages", "day": "3.1", "_name": "rewind-never-drops-pages",
     "file": "paged_kv_cache.py",
     "find": "        while len(self.page_ids) > keep:\n",
     "replace": "        while False:\n"},
    {"id": "paged-pool-per-cache", "day": "3.1", "_name": "a-pool-per-request",
     "file": "qwen2_week3.py",
     "find": "        return [TinyKvPagedCache(pool=self.page_pool) for _ in range(self.num_hidden_layers)]",
     "replace": "        pool = TinyKvPagedPool(self.page_size)\n"
                "        return [TinyKvPagedCache(pool=pool) for _ in range(self.num_hidden_layers)]"},
]
PAGED_ALL_MISTAKES = [e for e in PAGED_CATALOGUE if not _is_kernel_mistake(e)] + PAGED_EXTRA_MISTAKES


def test_paged_mistakes_are_not_misnamed(tmp_path, answer_key_ext):
    """A catalogued cache mistake names only its own pitfall: a wrong name misleads more
    than none (spot check on the two whose outputs are closest to each other's)."""
    for entry in PAGED_CATALOGUE:
        if entry["id"] not in ("paged-tail-page-not-filled", "paged-page-table-ignored"):
            continue
        result = _run_python_mistake(entry, tmp_path, answer_key_ext)
        named = {c.get("pitfall") for c in result["checks"]} - {None}
        assert named == {entry["id"]}, _statuses(result)


# --------------------------------------------------------------------------- day 3.2
# (paged attention: batch metadata, paged_attention over the kernel, the week-3 model's
# paged dispatch, continuous batching over pages). Python part; the kernel mistakes
# (catalogue entries under ../answer_key_ext/) have their own section.

ATTN_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_2.yaml")
# Beyond the catalogue: the same pitfalls made another way.
ATTN_EXTRA_MISTAKES = [
    # The single cache's own block table padded with page 0.
    {"id": "paged-table-pad-zero", "day": "3.2", "_name": "cache-table-pads-with-zero",
     "file": "paged_kv_cache.py", "find": "self.page_ids + [-1] * (width - self.num_pages)",
     "replace": "self.page_ids + [0] * (width - self.num_pages)"},
    # A request finished at its prefill releases only its first layer's cache.
    {"id": "paged-eos-at-prefill-leak", "day": "3.2", "_name": "eos-at-prefill-frees-one-layer",
     "file": "batch.py", "find": "                    for cache in pending.kv_cache:\n",
     "replace": "                    for cache in pending.kv_cache[:1]:\n"},
]
ATTN_PYTHON_MISTAKES = ([e for e in ATTN_CATALOGUE if not _is_kernel_mistake(e)]
                        + ATTN_EXTRA_MISTAKES)


# --------------------------------------------------------------------------- day 3.3
# (mixture of experts: the router, dispatch grouped by expert, the sparse MoE block, the
# Qwen2-MoE model from the week-2 pieces)

MOE_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_3.yaml")
# Beyond the catalogue: the same pitfalls made another way.
MOE_EXTRA_MISTAKES = [
    # The weights renormalised by a softmax over the chosen logits, not by a division.
    {"id": "moe-topk-renormalised", "day": "3.3", "_name": "softmax-over-chosen-logits",
     "file": "moe.py",
     "find": "    weights = mx.take_along_axis(probs, ids, axis=-1)\n",
     "replace": "    weights = mx.softmax(mx.take_along_axis(router_logits.astype(mx.float32), ids,"
                " axis=-1), axis=-1)\n"},
    # The shared expert's gate taken through a softmax over its single logit (always 1).
    {"id": "moe-shared-gate-missing", "day": "3.3", "_name": "softmax-shared-gate",
     "file": "moe.py",
     "find": "gate = mx.sigmoid(moe_linear(flat, self.w_shared_expert_gate).astype(mx.float32))",
     "replace": "gate = mx.softmax(moe_linear(flat, self.w_shared_expert_gate)"
                ".astype(mx.float32), axis=-1)"},
]
MOE_ALL_MISTAKES = MOE_CATALOGUE + MOE_EXTRA_MISTAKES


def test_moe_measurement_gives_the_stated_answer_on_the_answer_key(answer_key_ext, stub_impl):
    """The predict question's measurement, on the answer key, is the lesson's answer; on the
    stubs it is no number but the reason."""
    from tutor.checking.measuring import run_measures

    q = next(q for q in load_course().lesson("3.3").concept_questions if q.is_predict)
    [r] = run_measures("3.3", [q.measure], paths.answer_key_dir(), TIMEOUT,
                       kernels=answer_key_ext)
    assert r["status"] == "measured" and r["value"] == q.answer, r
    [r] = run_measures("3.3", [q.measure], stub_impl, TIMEOUT)
    assert r["status"] == "error" and "Not implemented" in r["reason"], r


# --------------------------------------------------------------------------- day 3.2 kernel
# (the paged_attention kernel of the answer key's C++ extension): each catalogued kernel
# mistake of day 3.2 is written into one copy of the extension's sources, rebuilt (after
# the first full build only the mutated file recompiles) and diagnosed by its own pitfall.

PA_KERNEL_MISTAKES = [e for e in ATTN_CATALOGUE if _is_kernel_mistake(e)] + [
    # The running sum not rescaled either (the catalogue's entry forgets the accumulator).
    {"id": "paged-no-rescale", "day": "3.2", "_name": "neither-sum-nor-output-rescaled",
     "edits": [{"file": EXT_PREFIX + "src/paged_attention.cpp",
                "find": "for (int e = 0; e < sh.D; ++e) orow[e] *= alpha;",
                "replace": "// (the accumulated output is not rescaled)"},
               {"file": EXT_PREFIX + "src/paged_attention.cpp",
                "find": "l[r] = l[r] * alpha + page_sum;",
                "replace": "l[r] = l[r] + page_sum;"}]},
]
PA_COST_MISTAKE = "paged-walks-table-width"  # right outputs, judged by a timing


def _write_kernel_edits(entry, ext_dir: Path) -> None:
    """``ext_dir`` back to the answer key's sources (a fresh mtime only where a file
    differs, so the build recompiles just that), then the entry's C++ edits."""
    import shutil

    from tutor.kernels_build import answer_key_source

    src = answer_key_source()
    for f in (src / "src").iterdir():
        dst = ext_dir / "src" / f.name
        if f.is_file() and dst.read_bytes() != f.read_bytes():
            shutil.copyfile(f, dst)
    texts: dict[str, str] = {}
    for e in edits_of(entry):
        if not e["file"].startswith(EXT_PREFIX):
            continue
        rel = e["file"][len(EXT_PREFIX):]
        text = texts.get(rel, (src / rel).read_text())
        n = text.count(e["find"])
        assert n == 1, f"{_mistake_id(entry)}: 'find' occurs {n} times in {rel}"
        texts[rel] = text.replace(e["find"], e["replace"])
    for rel, text in texts.items():
        (ext_dir / rel).write_text(text)


@pytest.fixture(scope="session")
def _pa_mutant_dir(tmp_path_factory) -> Path:
    import shutil

    from tutor.kernels_build import answer_key_source

    dest = tmp_path_factory.mktemp("pa_mutants") / "answer_key_ext"
    shutil.copytree(answer_key_source(), dest,
                    ignore=shutil.ignore_patterns("build", "__pycache__", "*.so", "*.metallib"))
    return dest


@pytest.fixture(scope="session", params=PA_KERNEL_MISTAKES,
                ids=[_mistake_id(e) for e in PA_KERNEL_MISTAKES])
def pa_mutant_ext(request, _pa_mutant_dir):
    """(entry, built extension folder) for one paged-attention kernel mistake at a time."""
    from tutor.kernels_build import build

    _write_kernel_edits(request.param, _pa_mutant_dir)
    result = build(_pa_mutant_dir)
    if not result.ok:
        pytest.fail(f"{_mistake_id(request.param)} did not build:\n" + "\n".join(result.messages))
    return request.param, _pa_mutant_dir


def test_pa_catalogue_has_the_kernel_mistakes():
    ids = {e["id"] for e in PA_KERNEL_MISTAKES}
    assert len({e["id"] for e in ATTN_CATALOGUE if _is_kernel_mistake(e)}) >= 2
    assert PA_COST_MISTAKE in ids


def test_pa_kernel_mistake_is_diagnosed(pa_mutant_ext):
    entry, ext = pa_mutant_ext
    result = run_day(entry["day"], paths.answer_key_dir(), TIMEOUT, kernels=ext)
    checks = {c["id"]: c for c in result["checks"]}
    if entry["id"] == PA_COST_MISTAKE:
        # Right outputs, cost set by the table's width: every correctness check passes and
        # the cost check fails naming it (or, on a very noisy machine, is skipped); it
        # never passes.
        cost = checks["paged-kernel-cost"]
        assert cost["status"] in ("fail", "skipped"), cost
        if cost["status"] == "fail":
            assert cost.get("pitfall") == PA_COST_MISTAKE, cost
        for cid, c in checks.items():
            if cid != "paged-kernel-cost":
                assert c["status"] == "pass" or _is_env_skip(c), c
        return
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    assert diagnosed == {entry["id"]}, _statuses(result)


# --------------------------------------------------------------------------- day 3.4
# (speculative decoding: greedy verification, the accept/resample rule, speculative_generate
# with two caches and rewinds; Python only, run on the checks' own models)

SPEC_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_4.yaml")
# Beyond the catalogue: the same pitfalls made another way.
SPEC_EXTRA_MISTAKES = [
    # The draft (not the target) rewound one position too many.
    {"id": "spec-rewind-off-by-one", "day": "3.4", "_name": "draft-rewound-one-too-many",
     "file": "speculative.py", "find": "                cache.rewind(at - draft_len)",
     "replace": "                cache.rewind(min(at, at - draft_len + 1))"},
    # The target keeps one rejected position.
    {"id": "spec-rewind-off-by-one", "day": "3.4", "_name": "target-rewound-one-too-few",
     "file": "speculative.py",
     "find": "                cache.rewind(offset + 1 + len(draft) - keep)",
     "replace": "                cache.rewind(max(0, offset + len(draft) - keep))"},
]
SPEC_ALL_MISTAKES = SPEC_CATALOGUE + SPEC_EXTRA_MISTAKES


def test_spec_measurement_is_within_the_answers_tolerance(stub_impl):
    """Tokens per target call measured on the answer key (one fixed 300-token run) lands
    within the predict question's tolerance of the stated average; on the stubs it is no
    number but the reason."""
    from tutor.checking.measuring import run_measures

    q = next(q for q in load_course().lesson("3.4").concept_questions if q.is_predict)
    [r] = run_measures("3.4", [q.measure], paths.answer_key_dir(), TIMEOUT)
    assert r["status"] == "measured" and abs(r["value"] - q.answer) <= q.tolerance, r
    [r] = run_measures("3.4", [q.measure], stub_impl, TIMEOUT)
    assert r["status"] == "error" and "Not implemented" in r["reason"], r


# --------------------------------------------------------------------------- day 3.5
# (retrieval-augmented generation: chunking, embeddings pooled from Qwen2 hidden states,
# cosine top-k, the cited chat-template prompt; Python only, mostly on the checks' models)

RAG_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_5.yaml")
# Beyond the catalogue: the same pitfalls made another way.
RAG_EXTRA_MISTAKES = [
    # Last-token pooling at the row's last position, written with the row length.
    {"id": "rag-pool-last-is-padding", "day": "3.5", "_name": "last-at-row-length",
     "file": "rag.py", "find": "return hidden[mx.arange(B), lengths - 1]",
     "replace": "return hidden[mx.arange(B), L - 1]"},
    # The query normalised, the index rows not.
    {"id": "rag-topk-not-normalised", "day": "3.5", "_name": "index-rows-not-normalised",
     "file": "rag.py", "find": "    scores = np.array(_unit(queries) @ _unit(index).T)",
     "replace": "    scores = np.array(_unit(queries) @ index.astype(mx.float32).T)"},
    # The index rows normalised, the query not: the order is right, the scores are not.
    {"id": "rag-topk-not-normalised", "day": "3.5", "_name": "query-not-normalised",
     "file": "rag.py", "find": "    scores = np.array(_unit(queries) @ _unit(index).T)",
     "replace": "    scores = np.array(queries.astype(mx.float32) @ _unit(index).T)"},
    # The chunks themselves where their sources belong.
    {"id": "rag-answer-returns-texts", "day": "3.5", "_name": "returns-chunks",
     "file": "rag.py", "find": "    return text, [c.source for c in picked]",
     "replace": "    return text, picked"},
]
RAG_ALL_MISTAKES = RAG_CATALOGUE + RAG_EXTRA_MISTAKES


def test_rag_measurement_gives_the_stated_answer(stub_impl):
    """The index of the week-1 lessons measured on the answer key lands within the predict
    question's tolerance of the stated bytes; on the stubs it is no number but the reason."""
    from tutor.checking.measuring import run_measures

    q = next(q for q in load_course().lesson("3.5").concept_questions if q.is_predict)
    [r] = run_measures("3.5", [q.measure], paths.answer_key_dir(), TIMEOUT)
    assert r["status"] == "measured" and abs(r["value"] - q.answer) <= q.tolerance, r
    [r] = run_measures("3.5", [q.measure], stub_impl, TIMEOUT)
    assert r["status"] == "error" and "Not implemented" in r["reason"], r


def test_rag_recall_bar_of_the_reference_on_the_course():
    """The labelled questions are answerable by retrieval: the reference ranking over the
    shipped course finds the answering lesson among its top 3 chunks for at least 80% of
    them (rag-recall-at-k judges the learner's ranking against this one)."""
    from checks.week3 import day3_5, rag_oracle

    days, index, queries = day3_5.course_index()
    order, _ = rag_oracle.ranked(index, queries, day3_5.RECALL_K)
    assert day3_5.recall(days, order) >= 0.8


# --------------------------------------------------------------------------- day 3.7
# (long context: YaRN rope speeds and temperature, the rope of a Qwen2 rope_scaling config,
# a sink + sliding-window cache, a quantized cache; Python only)

LONG_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_7.yaml")
# Beyond the catalogue: the same pitfalls made another way.
LONG_EXTRA_MISTAKES = [
    # The window keeps one position too few (it does not count the query itself twice,
    # it drops it): the other side of the off-by-one.
    {"id": "sink-window-off-by-one", "day": "3.7", "_name": "window-one-too-narrow",
     "file": "long_context.py", "find": "        self.window_size = window_size\n",
     "replace": "        self.window_size = window_size - 1\n"},
    # The temperature applied to the input of the rotation and again to its output.
    {"id": "yarn-temperature-squared", "day": "3.7", "_name": "temperature-before-and-after",
     "file": "long_context.py", "find": "        y = super().__call__(x, offset)\n",
     "replace": "        y = super().__call__(x * self.mscale, offset)\n"},
    # Only "rope_type" is read.
    {"id": "rope-config-type-key", "day": "3.7", "_name": "only-rope-type-read",
     "file": "long_context.py",
     "find": 'kind = rope_scaling.get("type") or rope_scaling.get("rope_type") or "default"',
     "replace": 'kind = rope_scaling.get("rope_type") or "default"'},
    # mx.quantize's default bits (4) whatever the cache was built with.
    {"id": "kvq-ignores-bits", "day": "3.7", "_name": "mlx-default-bits", "edits": [
        {"file": "long_context.py",
         "find": "mx.quantize(x, group_size=self.group_size, bits=self.bits)",
         "replace": "mx.quantize(x, group_size=self.group_size)"},
        {"file": "long_context.py",
         "find": "mx.dequantize(*p, group_size=self.group_size, bits=self.bits)",
         "replace": "mx.dequantize(*p, group_size=self.group_size)"}]},
]
LONG_ALL_MISTAKES = LONG_CATALOGUE + LONG_EXTRA_MISTAKES


def test_long_measurements_are_the_predicted_sizes(stub_impl):
    """KV-cache MiB at 32k positions measured on the answer key (dense and 8-bit) land
    within the predict questions' tolerance; on the stubs they are no number but the
    reason."""
    from tutor.checking.measuring import run_measures

    qs = [q for q in load_course().lesson("3.7").concept_questions if q.is_predict]
    assert len(qs) == 2
    results = run_measures("3.7", [q.measure for q in qs], paths.answer_key_dir(), TIMEOUT)
    for q, r in zip(qs, results):
        assert r["status"] == "measured" and abs(r["value"] - q.answer) <= q.tolerance, (q.id, r)
    for r in run_measures("3.7", [q.measure for q in qs], stub_impl, TIMEOUT):
        assert r["status"] == "error" and "Not implemented" in r["reason"], r


# --------------------------------------------------------------------------- day 3.6
# (tool calling and an agent loop: the tool prompt, the parser, safe tools, the loop;
# Python only, on the checks' scripted models and one tiny random model)

AGENT_CATALOGUE = load_mutations(paths.checks_dir() / "mistakes" / "day3_6.yaml")
# Beyond the catalogue: the same pitfalls made another way.
AGENT_EXTRA_MISTAKES = [
    # Any parse error empties the list of calls.
    {"id": "agent-parse-error-drops-calls", "day": "3.6", "_name": "errors-drop-every-call",
     "file": "agent.py", "find": '    return ParsedOutput("".join(content).strip(), calls, errors)',
     "replace": '    return ParsedOutput("".join(content).strip(), [] if errors else calls, errors)'},
    # One model call short of the limit.
    {"id": "agent-step-limit-off-by-one", "day": "3.6", "_name": "one-step-short",
     "file": "agent.py", "find": "for step in range(1, max_steps + 1):",
     "replace": "for step in range(1, max_steps):"},
    # An unknown tool looked up with [], so its KeyError escapes.
    {"id": "agent-tool-error-raised", "day": "3.6", "_name": "unknown-tool-keyerror",
     "file": "agent.py", "find": "    fn = functions.get(call.name)\n",
     "replace": "    fn = functions[call.name]\n"},
    # The definitions are right; the arguments of a call are escaped.
    {"id": "agent-tools-json-ascii", "day": "3.6", "_name": "arguments-escaped",
     "file": "agent.py", "find": 'json.dumps(fn["arguments"], ensure_ascii=False)',
     "replace": 'json.dumps(fn["arguments"])'},
]
AGENT_ALL_MISTAKES = AGENT_CATALOGUE + AGENT_EXTRA_MISTAKES


def test_agent_parse_oracle_agrees_with_the_hand_labels():
    """The parse rule the checks write out gives the labels of the hand-labelled corpus,
    and each catalogued parser mistake changes the outcome of some broken output."""
    from checks.week3 import day3_6

    corpus = day3_6.PARSE_WELL_FORMED + day3_6.PARSE_BROKEN
    for case, text, content, calls, errors in corpus:
        assert day3_6.parse_oracle(text) == (content, calls, errors), case
    for pitfall, variants in day3_6.PARSE_MISTAKES.items():
        for v in variants:
            assert any(day3_6.parse_oracle(t, **v) != (c, k, e)
                       for _, t, c, k, e in day3_6.PARSE_BROKEN), (pitfall, v)


def test_agent_measurement_is_the_answer(stub_impl):
    """Tool messages at the step limit, measured on the answer key, equal the predict
    question's answer; on the stubs it is no number but the reason."""
    from tutor.checking.measuring import run_measures

    q = next(q for q in load_course().lesson("3.6").concept_questions if q.is_predict)
    [r] = run_measures("3.6", [q.measure], paths.answer_key_dir(), TIMEOUT)
    assert r["status"] == "measured" and abs(r["value"] - q.answer) <= q.tolerance, r
    [r] = run_measures("3.6", [q.measure], stub_impl, TIMEOUT)
    assert r["status"] == "error" and "Not implemented" in r["reason"], r


# --------------------------------------------------------------------------- every day
# The same four proofs for every day, from each section's lists.


@dataclass(frozen=True)
class Section:
    catalogue: list  # the day's catalogue (its ids are the lesson's pitfalls)
    mistakes: list  # the mistakes run on copies of the answer key (no kernel edits)
    ext: bool = False  # the answer key runs with its C++ extension
    env_skips: bool = False  # Metal / real-weights checks may skip here with their reason
    only_name: bool = True  # a mistake names its own pitfall and no other


# A new section adds its days here.
SECTIONS = {
    "3.1": Section(PAGED_CATALOGUE, PAGED_ALL_MISTAKES, ext=True, env_skips=True,
                   only_name=False),
    "3.2": Section(ATTN_CATALOGUE, ATTN_PYTHON_MISTAKES, ext=True, env_skips=True,
                   only_name=False),
    "3.3": Section(MOE_CATALOGUE, MOE_ALL_MISTAKES, ext=True),
    "3.4": Section(SPEC_CATALOGUE, SPEC_ALL_MISTAKES),
    "3.5": Section(RAG_CATALOGUE, RAG_ALL_MISTAKES),
    "3.6": Section(AGENT_CATALOGUE, AGENT_ALL_MISTAKES),
    "3.7": Section(LONG_CATALOGUE, LONG_ALL_MISTAKES),
}
ALL_MISTAKES = [e for sec in SECTIONS.values() for e in sec.mistakes]


def _kernels(day: str, request) -> Path | None:
    return request.getfixturevalue("answer_key_ext") if SECTIONS[day].ext else None


@pytest.mark.parametrize("day", list(SECTIONS))
def test_answer_key_passes(day, request):
    result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=_kernels(day, request))
    assert result["status"] == "pass", _statuses(result)
    for c in result["checks"]:
        assert c["status"] == "pass" or (SECTIONS[day].env_skips and _is_env_skip(c)), c


@pytest.mark.parametrize("day", list(SECTIONS))
def test_stubs_fail_every_check(day, stub_impl):
    # The stubs raise before any kernel runs (3.2's paged_attention cannot run without an
    # extension either): no extension needed, every check fails.
    result = run_day(day, stub_impl, TIMEOUT)
    assert result["status"] == "fail"
    for c in result["checks"]:
        assert c["status"] in ("fail", "error") or (SECTIONS[day].env_skips and _is_env_skip(c)), c


@pytest.mark.parametrize("day", list(SECTIONS))
def test_checks_and_pitfalls_match_the_lesson(day, request):
    _lesson_matches(day, SECTIONS[day].catalogue, _kernels(day, request))


@pytest.mark.parametrize("entry", ALL_MISTAKES,
                         ids=[f"{e['day']}-{_mistake_id(e)}" for e in ALL_MISTAKES])
def test_mistake_is_diagnosed(entry, tmp_path, request):
    kernels = _kernels(entry["day"], request)
    result = run_ahead(request, entry, lambda e: _run_python_mistake(e, tmp_path, kernels))
    assert result["status"] == "fail", _statuses(result)
    diagnosed = {c.get("pitfall") for c in result["checks"]} - {None}
    if SECTIONS[entry["day"]].only_name:
        # Named, and nothing else named: a wrong name misleads more than none.
        assert diagnosed == {entry["id"]}, _statuses(result)
    else:
        assert entry["id"] in diagnosed, _statuses(result)


def test_the_sections_cover_every_day_of_the_week():
    """A day the course adds to week 3 needs a section here, or this fails instead of the
    day going unproven."""
    assert sorted(SECTIONS) == [d.id for d in load_course().week(3).days]
