"""``tiny-llm-tutor bench serve``: the load test on loopback. On the answer key every one of
the 8 concurrent streams completes with its token budget and the text the same prompt got
alone; the numbers are reported (batched against sequential throughput, time to first
token), never held to a time here. On the stubs the bench says which day is missing."""

from __future__ import annotations

import io
import json

import pytest

from tutor import cli, paths
from tutor.bench_serve import render, run_bench_serve


@pytest.fixture(scope="module")
def key_result(answer_key_ext) -> dict:
    return run_bench_serve(paths.answer_key_dir(), answer_key_ext, clients=8, tokens=8)


def test_eight_concurrent_clients_all_complete(key_result):
    r = key_result
    assert r["error"] is None, r["error"]
    assert r["complete"] == 8 and r["same_text"] == 8
    assert [q["completion_tokens"] for q in r["requests"]] == [8] * 8
    for run in ("sequential", "batched"):
        row = r["rows"][run]
        assert row["requests"] == 8 and row["tokens"] == 64
        assert row["tok_per_s"] > 0 and 0 < row["ttft_median_ms"] <= row["ttft_max_ms"]
    assert r["rows"]["batched"]["speedup"] == pytest.approx(
        r["rows"]["batched"]["tok_per_s"] / r["rows"]["sequential"]["tok_per_s"], rel=0.01)
    json.dumps(r)  # what --json prints


def test_the_report_names_both_runs_and_the_grown_up_servers(key_result):
    from rich.console import Console

    buf = io.StringIO()
    render(key_result, Console(file=buf, width=100, color_system=None))
    text = buf.getvalue()
    assert "sequential" in text and "batched" in text and "× sequential" in text
    assert "8 of 8 batched streams complete; 8 of 8 stream the same text" in text
    assert "mlx_lm.server" in text and "vLLM" in text


def test_on_the_stubs_the_bench_says_which_day(stub_impl, capsys):
    rc = cli.main(["bench", "serve", "--impl", str(stub_impl), "--tokens", "4", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert out["error"] == ("Your engine is not ready to serve: make_sampler is still a stub "
                            "(lesson day 1.7)")
    assert "rows" not in out


def test_the_client_count_is_bounded(stub_impl, capsys):
    rc = cli.main(["bench", "serve", "--impl", str(stub_impl), "--clients", "500"])
    assert rc == 2 and "--clients must be 1..32" in capsys.readouterr().err
