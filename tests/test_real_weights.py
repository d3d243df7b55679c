"""The real-weights checks (``qwen2-0.5b-weights`` on day 1.5, ``qwen2-0.5b-decode`` on 2.1,
``qwen2-0.5b-batch`` on 2.6), run against a fake Hugging Face cache: a tiny random 4-bit
Qwen2 saved in the MLX format under the real repo's name (tests/fake_hf.py), loaded by
mlx_lm's own loader in the check process. The answer key passes; a catalogued mistake
fails with its diagnosis; without the snapshot the checks are skipped with the command
that downloads it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_hf import REPO_ID, make_fake_hub
from mutation import apply_mutation, load_mutations

from tutor import paths
from tutor.checking.runner import run_day

TIMEOUT = 120

# (day, check id, a catalogued mistake of that day the check must name)
CASES = [
    ("1.5", "qwen2-0.5b-weights", "model-final-norm-missing"),
    ("2.1", "qwen2-0.5b-decode", "kv-rope-offset-ignored"),
    ("2.1", "qwen2-0.5b-decode", "kv-mask-wrong-for-decode"),
    ("2.6", "qwen2-0.5b-batch", "batch-rope-offsets-shared"),
    ("2.6", "qwen2-0.5b-batch", "batch-padded-slot-unmasked"),
    ("2.6", "qwen2-0.5b-batch", "batch-left-aligned"),
]


@pytest.fixture(scope="session")
def fake_hub(tmp_path_factory) -> Path:
    return make_fake_hub(tmp_path_factory.mktemp("fake_hf"))


@pytest.fixture
def with_fake_hub(fake_hub, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(fake_hub))
    return fake_hub


def _kernels(day: str, request):
    return request.getfixturevalue("answer_key_ext") if day.startswith("2.") else None


def _check(result: dict, cid: str) -> dict:
    return {c["id"]: c for c in result["checks"]}[cid]


def _mistake(day: str, pitfall: str) -> dict:
    cat = load_mutations(paths.checks_dir() / "mistakes" / f"day{day.replace('.', '_')}.yaml")
    return next(e for e in cat if e["id"] == pitfall)


@pytest.mark.parametrize("day,cid", sorted({(d, c) for d, c, _ in CASES}))
def test_answer_key_passes_on_the_fake_checkpoint(day, cid, with_fake_hub, request):
    result = run_day(day, paths.answer_key_dir(), TIMEOUT, kernels=_kernels(day, request))
    c = _check(result, cid)
    assert c["status"] == "pass", c
    assert result["status"] == "pass", [(x["id"], x["status"]) for x in result["checks"]]
    if day != "1.5":
        assert c["evidence"]["model"] == REPO_ID


@pytest.mark.parametrize("day,cid,pitfall", CASES, ids=[f"{c}-{p}" for _, c, p in CASES])
def test_catalogued_mistake_fails_on_the_fake_checkpoint(day, cid, pitfall, with_fake_hub,
                                                         tmp_path, request):
    pkg = apply_mutation(paths.answer_key_dir(), _mistake(day, pitfall), tmp_path)
    result = run_day(day, pkg, TIMEOUT, kernels=_kernels(day, request))
    c = _check(result, cid)
    assert c["status"] == "fail", c
    assert c["pitfall"] == pitfall, c


def test_skipped_with_the_download_command_without_the_checkpoint(tmp_path, monkeypatch,
                                                                  answer_key_ext):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    result = run_day("2.1", paths.answer_key_dir(), TIMEOUT, kernels=answer_key_ext)
    c = _check(result, "qwen2-0.5b-decode")
    assert c["status"] == "skipped"
    assert "hf download Qwen/Qwen2-0.5B-Instruct-MLX" in c["skip_reason"]
    assert result["status"] == "pass"  # a skipped check never fails the day
