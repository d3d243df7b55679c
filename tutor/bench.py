"""``tiny-llm-tutor bench week2``: the week's payoff in tokens per second.

The learner's decode throughput on a small random Qwen2 (built in the benchmark process,
nothing downloaded), one row per step of the week -- the week-1 loop without a cache, the
KV cache, the quantized matmul kernel, flash attention -- with speed-ups over the week-1
loop, and mlx_lm's own model with its KV cache on the same weights as the reference.

The learner's code runs in a child process (:mod:`tutor.bench_child`) with the check
runner's isolation: its own process group, an environment without keys or tokens, its
prints drained and capped, a time budget per row. A row that crashes or runs out of time
is reported as such and the child is restarted for the rows that remain. A step that is
not written yet shows as ``not ready: <why>``; the bench still finishes.

:func:`run_rows` is that parent side for any week's child; ``bench week3``
(:mod:`tutor.bench_week3`) runs its own rows through it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from tutor import paths
from tutor.checking.isolated import describe_exit, popen_isolated
from tutor.checking.output import CappedOutput, drain
from tutor.checking.procs import reap_group
from tutor.checking.runner import json_events

# (id, label), in the order of the table; the reference runs first (RUN_ORDER), on a fresh
# process, before any learner code.
ROWS = [
    ("week1", "week 1, no cache"),
    ("kv-cache", "+ KV cache"),
    ("quantized", "+ quantized matmul"),
    ("flash", "+ flash attention"),
    ("mlx", "MLX (mlx_lm)"),
]
# What each row runs, printed under the table.
LEGEND = {
    "week1": "Qwen2ModelWeek1, the whole sequence fed again for every new token",
    "kv-cache": "Qwen2ModelWeek2 with its KV cache; your quantized_linear swapped for MLX's "
                "dequantize + a dense float16 matmul",
    "quantized": "Qwen2ModelWeek2 as you wrote it: your quantized matmul kernel",
    "flash": "the same with enable_flash_attn=True: your flash attention kernel",
    "mlx": "mlx_lm's own Qwen2 with its KV cache, on the same weights",
}
RUN_ORDER = ["mlx", "week1", "kv-cache", "quantized", "flash"]
LEARNER_ROWS = [r for r, _ in ROWS if r != "mlx"]
ROW_TIMEOUT_S = 300.0
SETUP_TIMEOUT_S = 120.0
DEFAULT_TOKENS = 32


def run_rows(child: str, impl: Path, kernels: Path | None, run_order: list[str],
             child_args: list[str], python: str | None = None,
             row_timeout_s: float = ROW_TIMEOUT_S,
             on_event: Callable[[dict], None] | None = None) -> tuple[dict, dict, str | None]:
    """Run ``run_order``'s rows in the child module ``child`` (``python -m child``, see
    :func:`tutor.bench_child.serve`), restarting it after a crash or a timeout for the rows
    that remain. Returns ``(results by row id, the setup event, the fatal message or
    None)``; a row the child never reported gets a result saying why."""
    results: dict[str, dict] = {}
    setup: dict = {}
    fatal: str | None = None
    remaining = list(run_order)
    while remaining and fatal is None:
        proc, out, events = _spawn(child, impl, kernels, child_args, remaining, python)
        current: str | None = None
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        stopped: str | None = None
        try:
            for ev in json_events(events, lambda: deadline):
                kind = ev.get("event")
                if kind == "setup":
                    setup = ev
                    if on_event:
                        on_event(ev)
                elif kind == "fatal":
                    fatal = ev.get("message") or "the benchmark could not start"
                elif kind == "start":
                    current = ev["id"]
                    deadline = time.monotonic() + row_timeout_s
                    if on_event:
                        on_event(ev)
                elif kind == "row":
                    results[ev["id"]] = ev
                    if ev["id"] in remaining:
                        remaining.remove(ev["id"])
                    current = None
                    if on_event:
                        on_event(ev)
                elif kind == "timeout":
                    stopped = "timeout"
                elif kind == "done":
                    break
        finally:
            reap_group(proc)
            events.close()
        if fatal is not None or not remaining:
            break
        # The child stopped before reporting every row: a timeout, or a crash.
        if current is None:
            why = ("did not finish setting up" if stopped == "timeout"
                   else f"{describe_exit(proc.returncode)} between rows")
            for r in remaining:
                results[r] = {"id": r, "status": "error",
                              "message": f"not run: the benchmark process {why}"}
            remaining = []
            break
        if stopped == "timeout":
            results[current] = {"id": current, "status": "timeout",
                                "message": f"did not finish within {row_timeout_s:g} s"}
        else:
            how = describe_exit(proc.returncode)
            results[current] = {"id": current, "status": "crashed",
                                "message": f"the benchmark process {how} (a crash in native "
                                           "code, or os._exit / abort)"}
        tail = out.text().strip()
        if tail:
            results[current]["output"] = tail
        remaining.remove(current)
        if on_event:
            on_event({"event": "row", **results[current]})
    return results, setup, fatal


def run_bench(impl: Path, kernels: Path | None = None, tokens: int = DEFAULT_TOKENS,
              python: str | None = None, row_timeout_s: float = ROW_TIMEOUT_S,
              on_event: Callable[[dict], None] | None = None) -> dict:
    """Run every row; return the result object (what ``bench week2 --json`` prints)."""
    impl = Path(impl).resolve()
    t0 = time.monotonic()
    results, setup, fatal = run_rows("tutor.bench_child", impl, kernels, RUN_ORDER,
                                     ["--tokens", str(tokens)], python=python,
                                     row_timeout_s=row_timeout_s, on_event=on_event)
    rows = []
    for rid, label in ROWS:
        r = results.get(rid) or {"status": "error", "message": fatal or "not run"}
        rows.append({"id": rid, "label": label, "status": r.get("status", "error"),
                     "tok_per_s": r.get("tok_per_s"), "prefill_ms": r.get("prefill_ms"),
                     "decode_s": r.get("decode_s"), "message": r.get("message"),
                     "note": r.get("note"), **({"output": r["output"]} if r.get("output") else {})})
    by_id = {r["id"]: r for r in rows}
    base = by_id["week1"]["tok_per_s"] if by_id["week1"]["status"] == "ok" else None
    ref = by_id["mlx"]["tok_per_s"] if by_id["mlx"]["status"] == "ok" else None
    for r in rows:
        ok = r["status"] == "ok" and r["tok_per_s"]
        r["speedup_vs_week1"] = round(r["tok_per_s"] / base, 2) if ok and base else None
        r["vs_mlx"] = round(r["tok_per_s"] / ref, 3) if ok and ref else None
    return {
        "bench": "week2",
        "impl": str(impl),
        "kernels": str(Path(kernels).resolve()) if kernels else None,
        "device": setup.get("device"),
        "model": setup.get("model"),
        "reference_dtype": setup.get("reference_dtype"),
        "extension": setup.get("extension"),
        "prompt_tokens": setup.get("prompt_tokens"),
        "tokens": tokens,
        "rows": rows,
        "error": fatal,
        "duration_s": round(time.monotonic() - t0, 2),
    }


def _spawn(child: str, impl: Path, kernels: Path | None, child_args: list[str],
           rows: list[str], python: str | None):
    rfd, wfd = os.pipe()
    cmd = [python or sys.executable, "-m", child, "--impl", str(impl),
           "--checks", str(paths.checks_dir()), "--fd", str(wfd), *child_args,
           "--rows", ",".join(rows)]
    if kernels is not None:
        cmd += ["--kernels", str(Path(kernels).resolve())]
    proc = popen_isolated(cmd, wfd, impl.parent)
    out = CappedOutput()
    drain(proc.stdout, out)
    return proc, out, os.fdopen(rfd, "rb", buffering=0)


# --------------------------------------------------------------------------- output


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


_STATUS_STYLE = {"not_ready": "yellow", "error": "red", "timeout": "red", "crashed": "red"}


def render(result: dict, console) -> None:
    """The table, one row per step of the week and the MLX reference, then a legend."""
    from rich.markup import escape
    from rich.table import Table

    m = result.get("model") or {}
    device = {"gpu": "GPU (Metal)", "cpu": "CPU"}.get(result.get("device"), "?")
    title = (f"Week 2 decode speed, {device}: random {m.get('bits', '?')}-bit Qwen2 (hidden "
             f"{m.get('hidden_size', '?')}, {m.get('num_hidden_layers', '?')} layers, vocab "
             f"{m.get('vocab_size', '?')}), {result.get('prompt_tokens') or '?'}-token prompt, "
             f"{result['tokens']} new tokens")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("tok/s", justify="right")
    table.add_column("× week 1", justify="right")
    table.add_column("× MLX", justify="right")
    table.add_column("prefill", justify="right")
    table.add_column("notes", overflow="fold")
    for r in result["rows"]:
        if r["id"] == "mlx":
            table.add_section()
        status = r["status"]
        if status == "ok":
            note = r.get("note") or ""
            cells = [_fmt(r["tok_per_s"], ".1f"), _fmt(r["speedup_vs_week1"], ".1f", "×"),
                     _fmt(r["vs_mlx"], ".2f", "×"), _fmt(r["prefill_ms"], ".0f", " ms")]
        else:
            note = f"{status.replace('_', ' ')}: {r.get('message') or ''}"
            cells = ["—"] * 4
        style = _STATUS_STYLE.get(status)
        note = f"[{style}]{escape(note)}[/]" if style else escape(note)
        label = f"[dim]{escape(r['label'])}[/dim]" if r["id"] == "mlx" else escape(r["label"])
        table.add_row(label, *cells, note)
    console.print(table)
    for rid, label in ROWS:
        console.print(f"[dim]{escape(label)}: {escape(LEGEND[rid])}.[/dim]")
    if result.get("error"):
        console.print(f"[red]The benchmark could not run: {escape(result['error'])}[/red]")
    ext = result.get("extension")
    if ext and ext != "loaded":
        console.print(f"[dim]Your extension: {escape(str(ext))}.[/dim]")
    if result.get("device") == "cpu":
        console.print("[dim]On the CPU the MLX reference runs in float32: MLX's float16 "
                      "quantized matmul is a slow fallback there. Your models run as you "
                      "wrote them (float16 in the course).[/dim]")
