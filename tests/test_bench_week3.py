"""``tiny-llm-tutor bench week3``: every random-model row on the answer key, with figures
that follow from the workload (pages for these lengths, every page returned, every request
with its planned tokens, speculative output equal to plain greedy); "not ready" rows on
the stubs; the real-weights rows skipped with the download command, and run on a fake
Hugging Face cache. Numbers are reported, never held to a time."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fake_hf import REPO_ID, make_fake_hub
from tutor import paths
from tutor.bench_week3 import ROWS, render, run_bench_week3
from tutor.hfcache import QWEN2_REPOS

EXE = Path(sys.executable).parent / "tiny-llm-tutor"
if not EXE.exists():  # pragma: no cover - a non-venv install
    EXE = Path(shutil.which("tiny-llm-tutor") or "tiny-llm-tutor")
RANDOM_ROWS = ["pages", "batch-week2", "batch-paged", "spec"]
REAL_ROWS = ["real-serving", "real-spec"]


def tutor(*args, cwd: Path, env: dict | None = None):
    env = {**os.environ, "COLUMNS": "100", **(env or {})}
    env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    return subprocess.run([str(EXE), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=600)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    hub = tmp_path / "empty_hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    return hub


@pytest.fixture(scope="module")
def key_result(answer_key_ext, tmp_path_factory) -> dict:
    hub = tmp_path_factory.mktemp("empty_hub")
    old = os.environ.get("HF_HUB_CACHE")
    os.environ["HF_HUB_CACHE"] = str(hub)  # the child inherits it: the real rows skip
    try:
        return run_bench_week3(paths.answer_key_dir(), answer_key_ext, repeats=1)
    finally:
        if old is None:
            os.environ.pop("HF_HUB_CACHE", None)
        else:
            os.environ["HF_HUB_CACHE"] = old


def test_answer_key_every_random_row_runs(key_result):
    rows = {r["id"]: r for r in key_result["rows"]}
    assert [r["id"] for r in key_result["rows"]] == [rid for rid, _ in ROWS]
    for rid in RANDOM_ROWS:
        assert rows[rid]["status"] == "ok", rows[rid]
    assert key_result["extension"] == "loaded" and key_result["bench"] == "week3"

    pages = rows["pages"]
    assert pages["pages"] == pages["expected_pages"] > 0, pages
    assert pages["leaked_pages"] == 0
    # mixed lengths: the padded batch holds more than the pages, the pages more than the
    # tokens (a partly filled last page per request and layer)
    assert pages["dense_mib"] > pages["paged_mib"] > 0
    assert pages["dense_over_paged"] > 1

    for rid in ("batch-week2", "batch-paged"):
        r = rows[rid]
        assert r["wrong_outputs"] == 0, r
        assert r["generated"] == sum(n - p for n, p in zip(
            key_result["lengths"], key_result["prompt_lengths"])), r
        assert r["tok_per_s"] > 0
    paged = rows["batch-paged"]
    assert 0 < paged["peak_pages"] <= pages["pages"]
    assert paged["speedup_vs_week2"] > 0
    assert "still in use" not in paged["note"]

    spec = rows["spec"]
    assert 0 < spec["acceptance"] <= 1, spec
    assert spec["tokens_per_call"] >= 1 and spec["speedup"] > 0
    assert "differs" not in spec["note"], spec


def test_the_real_rows_skip_with_the_download_command(key_result):
    rows = {r["id"]: r for r in key_result["rows"]}
    assert rows["real-serving"]["status"] == "skipped"
    assert f"hf download {QWEN2_REPOS['qwen2-0.5b']}" in rows["real-serving"]["message"]
    msg = rows["real-spec"]["message"]
    assert rows["real-spec"]["status"] == "skipped"
    assert f"hf download {QWEN2_REPOS['qwen2-1.5b']}" in msg
    assert f"hf download {QWEN2_REPOS['qwen2-0.5b']}" in msg


def test_the_tables_show_every_row(key_result):
    from rich.console import Console

    console = Console(file=io.StringIO(), width=100, color_system=None)
    render(key_result, console)
    text = console.file.getvalue()
    for label in ("random Qwen2", "week 2 batching", "paged continuous batching",
                  "Qwen2-0.5B-Instruct", "Qwen2 0.5B → 1.5B", "dense ÷ paged", "tok/call"):
        assert label in text
    assert "not ready" not in text and "skipped: " in text


def test_the_real_rows_run_on_a_fake_cache(tmp_path, monkeypatch, answer_key_ext):
    """The fake 0.5B snapshot stands in for both checkpoints (the 1.5B one is a copy):
    the rows run end to end; the draft is the target, so every proposal is accepted."""
    hub = make_fake_hub(tmp_path)
    src = hub / ("models--" + REPO_ID.replace("/", "--"))
    shutil.copytree(src, hub / ("models--" + QWEN2_REPOS["qwen2-1.5b"].replace("/", "--")))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    result = run_bench_week3(paths.answer_key_dir(), answer_key_ext, rows=REAL_ROWS)
    rows = {r["id"]: r for r in result["rows"]}
    assert list(rows) == REAL_ROWS
    serving = rows["real-serving"]
    assert serving["status"] == "ok", serving
    assert serving["pages"]["pages"] == serving["pages"]["expected_pages"] > 0
    assert serving["pages"]["leaked_pages"] == 0
    for part in ("week2", "paged"):
        assert serving[part]["wrong_outputs"] == 0 and serving[part]["tok_per_s"] > 0
    spec = rows["real-spec"]
    assert spec["status"] == "ok", spec
    assert spec["acceptance"] == 1.0 and "differs" not in spec["note"]


def test_a_crash_costs_only_its_row(tmp_path, empty_hub, answer_key_ext):
    """speculative_generate kills its process: the row says so, and the row after it
    still runs in a restarted child."""
    pkg = tmp_path / "answer_key"
    shutil.copytree(paths.answer_key_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    spec = pkg / "speculative.py"
    spec.write_text(spec.read_text() + (
        "\n\ndef speculative_generate(*a, max_tokens=None, **k):\n"
        "    import os\n\n    os._exit(3)\n"))
    result = run_bench_week3(pkg, answer_key_ext, repeats=1, rows=["spec", "pages"])
    rows = {r["id"]: r for r in result["rows"]}
    assert rows["spec"]["status"] == "crashed", rows["spec"]
    assert "exited with code 3" in rows["spec"]["message"]
    assert rows["pages"]["status"] == "ok", rows["pages"]


def test_stubs_are_not_ready_and_the_bench_still_finishes(tmp_path, empty_hub):
    r = tutor("init", "ws", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    r = tutor("bench", "week3", "--json", cwd=ws)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # one JSON object, nothing else on stdout
    assert result["bench"] == "week3" and result["error"] is None
    assert Path(result["impl"]) == (ws / "impl").resolve()
    rows = {row["id"]: row for row in result["rows"]}
    for rid in RANDOM_ROWS:
        assert rows[rid]["status"] == "not_ready", rows[rid]
        assert "still a stub" in rows[rid]["message"] and "\n" not in rows[rid]["message"]
    for rid in REAL_ROWS:
        assert rows[rid]["status"] == "skipped", rows[rid]

    table = tutor("bench", "week3", cwd=ws)
    assert table.returncode == 0, table.stderr
    assert "not ready: " in table.stdout and "hf download" in table.stdout


def test_bench_names_both_weeks(tmp_path):
    r = tutor("bench", "week1", "--impl", str(paths.answer_key_dir()), cwd=tmp_path)
    assert r.returncode == 2
    assert "bench week2" in r.stderr and "bench week3" in r.stderr
