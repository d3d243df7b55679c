"""``tiny-llm-tutor bench week2``: every row on the answer key, "not ready" rows on the
stubs, the JSON object, and the child's isolation (a crash or an endless loop costs one
row). Numbers are reported, never asserted against a time."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tutor import paths
from tutor.bench import LEARNER_ROWS, ROWS, render, run_bench

EXE = Path(sys.executable).parent / "tiny-llm-tutor"
if not EXE.exists():  # pragma: no cover - a non-venv install
    EXE = Path(shutil.which("tiny-llm-tutor") or "tiny-llm-tutor")
TOKENS = 3  # enough to time a few decode steps; the bench's own default is 32


def tutor(*args, cwd: Path):
    env = {**os.environ, "COLUMNS": "120"}
    env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    return subprocess.run([str(EXE), *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def key_result(answer_key_ext) -> dict:
    return run_bench(paths.answer_key_dir(), answer_key_ext, tokens=TOKENS)


def test_answer_key_every_row_runs(key_result):
    rows = {r["id"]: r for r in key_result["rows"]}
    assert [r["id"] for r in key_result["rows"]] == [rid for rid, _ in ROWS]
    for rid, r in rows.items():
        assert r["status"] == "ok", r
        assert r["tok_per_s"] > 0 and r["prefill_ms"] > 0, r
        assert r["speedup_vs_week1"] > 0 and r["vs_mlx"] > 0, r
    assert rows["week1"]["speedup_vs_week1"] == 1.0
    assert rows["mlx"]["vs_mlx"] == 1.0
    assert key_result["tokens"] == TOKENS and key_result["prompt_tokens"] > 0
    assert key_result["model"]["bits"] == 4 and key_result["extension"] == "loaded"
    assert key_result["device"] in ("cpu", "gpu")


def test_the_table_shows_every_row(key_result):
    from rich.console import Console

    console = Console(file=io.StringIO(), width=120, color_system=None)
    render(key_result, console)
    text = console.file.getvalue()
    for _, label in ROWS:
        assert label in text
    assert "tok/s" in text and "× week 1" in text and "not ready" not in text


def test_stubs_are_not_ready_and_the_bench_still_finishes(tmp_path):
    r = tutor("init", "ws", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    r = tutor("bench", "week2", "--tokens", "2", "--json", cwd=ws)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # one JSON object, nothing else on stdout
    assert result["bench"] == "week2"
    assert Path(result["impl"]) == (ws / "impl").resolve()
    rows = {row["id"]: row for row in result["rows"]}
    for rid in LEARNER_ROWS:
        assert rows[rid]["status"] == "not_ready", rows[rid]
        assert rows[rid]["message"] and "\n" not in rows[rid]["message"]
        assert rows[rid]["tok_per_s"] is None
    assert "still a stub" in rows["week1"]["message"]
    assert rows["mlx"]["status"] == "ok" and rows["mlx"]["tok_per_s"] > 0

    table = tutor("bench", "week2", "--tokens", "2", cwd=ws)
    assert table.returncode == 0, table.stderr
    assert "not ready: " in table.stdout and "MLX (mlx_lm)" in table.stdout


def test_a_crash_or_a_hang_costs_only_its_row(tmp_path, answer_key_ext):
    """Week 1's model kills its process; the flash model never returns: the other rows
    are still measured, in restarted children."""
    pkg = tmp_path / "answer_key"
    shutil.copytree(paths.answer_key_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    w1 = pkg / "qwen2_week1.py"
    w1.write_text(w1.read_text() + "\n\ndef _crash(self, *a, **k):\n    import os\n\n"
                  "    os._exit(3)\n\n\nQwen2ModelWeek1.__call__ = _crash\n")
    w2 = pkg / "qwen2_week2.py"
    w2.write_text(w2.read_text() + (
        "\n\n_init = Qwen2ModelWeek2.__init__\n\n\n"
        "def _hang(self, mlx_model, enable_flash_attn=False):\n"
        "    while enable_flash_attn:\n        pass\n"
        "    _init(self, mlx_model, enable_flash_attn)\n\n\n"
        "Qwen2ModelWeek2.__init__ = _hang\n"))
    result = run_bench(pkg, answer_key_ext, tokens=2, row_timeout_s=8)
    rows = {r["id"]: r for r in result["rows"]}
    assert rows["week1"]["status"] == "crashed", rows["week1"]
    assert "exited with code 3" in rows["week1"]["message"]
    assert rows["flash"]["status"] == "timeout", rows["flash"]
    for rid in ("kv-cache", "quantized", "mlx"):
        assert rows[rid]["status"] == "ok" and rows[rid]["tok_per_s"] > 0, rows[rid]
        assert rows[rid]["speedup_vs_week1"] is None  # no week-1 baseline to compare with


def test_only_week2_has_a_bench(tmp_path):
    r = tutor("bench", "week1", "--impl", str(paths.answer_key_dir()), cwd=tmp_path)
    assert r.returncode == 2
    assert "bench week2" in r.stderr
