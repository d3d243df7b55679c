"""``tiny-llm-tutor bench week3``: what paging and speculation buy, measured on the
learner's own engine.

A random Qwen2 (built in the benchmark process, nothing downloaded) serves a fixed
workload of requests with mixed prompt and output lengths: the KV memory of the learner's
page pool against a padded dense batch, the throughput of paged continuous batching against
week 2's batching on the same requests and weights, and speculative decoding's acceptance
and speed-up over plain greedy decoding. The same on Qwen2-0.5B/1.5B-Instruct when they are
in the local Hugging Face cache (skipped with the download command otherwise).

The rows run in :mod:`tutor.bench_week3_child` through :func:`tutor.bench.run_rows`: the
same isolation, time budget per row and restarts as ``bench week2``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tutor.bench import ROW_TIMEOUT_S, run_rows

ROWS = [
    ("pages", "random Qwen2: pages against a padded batch"),
    ("batch-week2", "week 2 batching"),
    ("batch-paged", "paged continuous batching"),
    ("spec", "speculative decoding"),
    ("real-serving", "Qwen2-0.5B-Instruct"),
    ("real-spec", "Qwen2-0.5B drafting for Qwen2-1.5B-Instruct"),
]
LEARNER_ROWS = [r for r, _ in ROWS]
RUN_ORDER = LEARNER_ROWS
LEGEND = [
    "pages: every request resident at once in your page pool (Qwen2ModelWeek3, one cache "
    "per request, the prompt then the generated part as a second chunk); pages in use × "
    "page bytes, against a dense batch padded to the longest request (requests × longest "
    "× layers × K and V × KV heads × head dim × the bytes of your pages' dtype)",
    "week 2 batching: your batch_generate with Qwen2ModelWeek2 (BatchingKvCache over "
    "per-request caches); paged: the same scheduler with Qwen2ModelWeek3. Generated tokens "
    "per second over the whole workload, prefills included",
    "each request's length is fixed by the workload: the model computes its logits as "
    "usual and the next token is steered to count down to end-of-sequence, so both "
    "schedulers do the same work",
    "speculative decoding: your speculative_generate with Qwen2ModelWeek2 for both models; "
    "the target is a deeper random Qwen2 (same shapes), the draft its first layer (same "
    "embedding, norm and head); the target's later layers are scaled down, so the two "
    "agree often, as a trained draft and its target do (random models of their own agree "
    "almost never); the speed-up is against the target's plain greedy decoding with its "
    "KV cache",
]
_STATUS_STYLE = {"not_ready": "yellow", "skipped": "yellow", "error": "red",
                 "timeout": "red", "crashed": "red"}


def run_bench_week3(impl: Path, kernels: Path | None = None, repeats: int | None = None,
                    python: str | None = None, row_timeout_s: float = ROW_TIMEOUT_S,
                    rows: list[str] | None = None,
                    on_event: Callable[[dict], None] | None = None) -> dict:
    """Run the rows (all, or ``rows``); return the result object (``bench week3 --json``)."""
    impl = Path(impl).resolve()
    t0 = time.monotonic()
    order = [r for r in RUN_ORDER if rows is None or r in rows]
    args = ["--repeats", str(repeats)] if repeats else []
    results, setup, fatal = run_rows("tutor.bench_week3_child", impl, kernels, order, args,
                                     python=python, row_timeout_s=row_timeout_s,
                                     on_event=on_event)
    out_rows = []
    for rid, label in ROWS:
        if rid not in order:
            continue
        r = dict(results.get(rid) or {"status": "error", "message": fatal or "not run"})
        r.pop("event", None)
        out_rows.append({"id": rid, "label": label, **r, "status": r.get("status", "error")})
    by_id = {r["id"]: r for r in out_rows}
    w2, paged = by_id.get("batch-week2"), by_id.get("batch-paged")
    if paged is not None:
        paged["speedup_vs_week2"] = _ratio(paged, w2)
    return {
        "bench": "week3",
        "impl": str(impl),
        "kernels": str(Path(kernels).resolve()) if kernels else None,
        **{k: v for k, v in setup.items() if k != "event"},
        "rows": out_rows,
        "error": fatal,
        "duration_s": round(time.monotonic() - t0, 2),
    }


def _ratio(a: dict | None, b: dict | None) -> float | None:
    ok = a and b and a.get("status") == "ok" and b.get("status") == "ok"
    if not ok or not a.get("tok_per_s") or not b.get("tok_per_s"):
        return None
    return round(a["tok_per_s"] / b["tok_per_s"], 2)


# --------------------------------------------------------------------------- output


def _fmt(x, spec: str, suffix: str = "") -> str:
    return "—" if x is None else f"{x:{spec}}{suffix}"


class _Section:
    """One table and the notes printed under it (the table keeps to the figures, so it
    fits an 80-column terminal; a row that did not run says why in its note)."""

    def __init__(self, title: str, columns: list[str]):
        from rich.markup import escape
        from rich.table import Table

        self.table = Table(title=escape(title), title_justify="left")
        for i, col in enumerate(columns):
            self.table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
        self.n = len(columns) - 1
        self.notes: list[str] = []

    def row(self, label: str, r: dict, status: str, fill: Callable[[], list[str]]) -> None:
        from rich.markup import escape

        style = _STATUS_STYLE.get(status)
        if status == "ok":
            cells, note = fill(), r.get("note") or ""
        else:
            word = status.replace("_", " ")
            cells = [f"[{style}]{word}[/]" if style else word] + ["—"] * (self.n - 1)
            note = f"{word}: {r.get('message') or ''}"
        self.table.add_row(escape(label), *cells)
        if note:
            note = escape(f"{label}: {note}")
            self.notes.append(f"[{style}]{note}[/]" if style else f"[dim]{note}[/dim]")

    def print(self, console) -> None:
        if self.table.row_count:
            console.print(self.table)
            for note in self.notes:
                console.print(f"  {note}")


def render(result: dict, console) -> None:
    """Three tables (KV memory, throughput, speculative decoding), then a legend."""
    from rich.markup import escape

    m = result.get("model") or {}
    device = {"gpu": "GPU (Metal)", "cpu": "CPU"}.get(result.get("device"), "?")
    lengths = result.get("lengths") or []
    workload = (f"{result.get('requests', '?')} requests of {min(lengths)}–{max(lengths)} "
                f"positions" if lengths else "the workload")
    console.print(escape(
        f"Week 3 on {device}: random {m.get('bits', '?')}-bit Qwen2 (hidden "
        f"{m.get('hidden_size', '?')}, {m.get('num_hidden_layers', '?')} layers, "
        f"{m.get('num_key_value_heads', '?')} KV heads), {workload}, page size "
        f"{result.get('page_size', '?')}"))
    by_id = {r["id"]: r for r in result["rows"]}
    real = by_id.get("real-serving") or {}
    real_ok = real.get("status") == "ok"

    mem = _Section("KV memory: your page pool against a padded dense batch",
                   ["model", "requests", "pages", "paged", "padded dense", "dense ÷ paged"])

    def mem_fill(p):
        return lambda: [str(p.get("requests")), str(p.get("pages")),
                        _fmt(p.get("paged_mib"), ".2f", " MiB"),
                        _fmt(p.get("dense_mib"), ".2f", " MiB"),
                        _fmt(p.get("dense_over_paged"), ".2f", "×")]

    if "pages" in by_id:
        r = by_id["pages"]
        mem.row("random Qwen2", r, r["status"], mem_fill(r))
    if real:
        p = real.get("pages") or {}
        mem.row("Qwen2-0.5B-Instruct", p if real_ok else real, real["status"], mem_fill(p))
    mem.print(console)

    thr = _Section("Throughput, same requests",
                   ["engine", "tok/s", "× week 2"])

    def thr_row(label, r, status, base, is_base=False):
        thr.row(label, r, status, lambda: [
            _fmt(r.get("tok_per_s"), ".1f"),
            _fmt(1.0 if is_base else _ratio(r, base), ".2f", "×")])

    for rid in ("batch-week2", "batch-paged"):
        if rid in by_id:
            r = by_id[rid]
            thr_row(dict(ROWS)[rid], r, r["status"], by_id.get("batch-week2"),
                    is_base=rid == "batch-week2")
    if real:
        thr.table.add_section()
        if real_ok:
            w2 = {**(real.get("week2") or {}), "status": "ok"}
            pg = {**(real.get("paged") or {}), "status": "ok"}
            thr_row("Qwen2-0.5B, week 2 batching", w2, "ok", None, is_base=True)
            thr_row("Qwen2-0.5B, paged", pg, "ok", w2)
        else:  # why is under the memory table
            thr_row("Qwen2-0.5B-Instruct", {"message": "as above"}, real["status"], None)
    thr.print(console)

    spec = _Section("Speculative decoding against plain greedy decoding of the target",
                    ["draft → target", "accepted", "tok/call", "plain tok/s", "spec tok/s",
                     "speed-up"])
    for rid, label in (("spec", f"random, {result.get('draft_layers', '?')} → "
                                f"{result.get('spec_layers', '?')} layers"),
                       ("real-spec", "Qwen2 0.5B → 1.5B")):
        if rid in by_id:
            r = by_id[rid]
            spec.row(label, r, r["status"], lambda r=r: [
                _fmt(r.get("acceptance"), ".0%"), _fmt(r.get("tokens_per_call"), ".2f"),
                _fmt(r.get("plain_tok_per_s"), ".1f"), _fmt(r.get("tok_per_s"), ".1f"),
                _fmt(r.get("speedup"), ".2f", "×")])
    spec.print(console)

    for line in LEGEND:
        console.print(f"[dim]{escape(line)}.[/dim]")
    if result.get("error"):
        console.print(f"[red]The benchmark could not run: {escape(result['error'])}[/red]")
    ext = result.get("extension")
    if ext and ext != "loaded":
        console.print(f"[dim]Your extension: {escape(str(ext).rstrip('.'))}.[/dim]")
