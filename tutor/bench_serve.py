"""``tiny-llm-tutor bench serve``: what continuous batching buys a server, measured over
HTTP on loopback.

The learner's engine is started behind ``tiny-llm-tutor serve`` (:mod:`tutor.serve`) on a
random Qwen2 written to a temporary folder (nothing downloaded), or on ``--model``. The
same requests are sent twice: one client at a time (sequential), then N streaming clients
at once (batched by the engine). Reported: generated tokens per second over the whole
run, and time to first token (TTFT) per request. Every request is greedy
(``temperature 0``) and generates exactly its token budget (``ignore_eos``), so both runs
do the same work and must stream the same text for each prompt.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from tutor.bench_week3 import _fmt, _Section
from tutor.serve import ServeError, start_server

# The random model: shaped like the week-3 bench's (head dim 64, GQA 2:1, every input
# dimension a multiple of the group size), fewer layers so a run stays short on a CPU.
MODEL = dict(hidden_size=256, num_hidden_layers=4, intermediate_size=768,
             num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
             rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=2048,
             tie_word_embeddings=False)
GROUP_SIZE, BITS = 64, 4
SEED = 2026
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
    "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
MAX_CLIENTS = 32
MAX_TOKENS = 256
DEFAULT_CLIENTS = 8
DEFAULT_TOKENS = 32
TIMEOUT_S = 300.0
LEGEND = [
    "sequential: one streaming client at a time; batched: every client at once, the "
    "engine decoding all the requests in flight in one batch (your BatchingKvCache over "
    "your paged caches)",
    "tok/s: generated tokens over the run's wall time (prefills included); TTFT: from "
    "sending a request to its first streamed text",
    "every request is greedy and generates exactly its token budget (ignore_eos), so both "
    "runs do the same work and stream the same text for each prompt",
]


def write_random_model(out: Path, seed: int = SEED) -> Path:
    """A random 4-bit Qwen2 with a word-level tokenizer and a chat template, in the folder
    layout ``mlx_lm.load`` reads."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = SPECIALS + [f"w{i}" for i in range(MODEL["vocab_size"] - len(SPECIALS) - 1)]
    vocab = {w: i for i, w in enumerate(words + ["<unk>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=["<|im_start|>"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    args = qwen2.ModelArgs(model_type="qwen2", **MODEL)
    mx.random.seed(seed)
    model = qwen2.Model(args)
    nn.quantize(model, group_size=GROUP_SIZE, bits=BITS)
    weights = dict(tree_flatten(model.parameters()))
    mx.eval(weights)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    config = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **MODEL,
              "quantization": {"group_size": GROUP_SIZE, "bits": BITS}}
    (out / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return out


def prompts(n: int, seed: int = 7) -> list[str]:
    """``n`` different user messages of 8 to 40 words of the random model's vocabulary."""
    import random

    rng = random.Random(seed)
    limit = MODEL["vocab_size"] - len(SPECIALS) - 1
    return [" ".join(f"w{rng.randrange(limit)}" for _ in range(rng.randint(8, 40)))
            for _ in range(n)]


async def _one(client, prompt: str, tokens: int) -> dict:
    sent = time.perf_counter()
    first = None
    parts: list[str] = []
    usage = None
    finish = None
    stream = await client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": prompt}], stream=True,
        max_tokens=tokens, temperature=0.0, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices[:1]:
            text = choice.delta.content
            if text:
                if first is None:
                    first = time.perf_counter()
                parts.append(text)
            if choice.finish_reason:
                finish = choice.finish_reason
    return {"text": "".join(parts), "ttft_s": None if first is None else first - sent,
            "completion_tokens": usage.completion_tokens if usage else None,
            "finish_reason": finish}


def _summary(results: list[dict], wall: float) -> dict:
    toks = sum(r["completion_tokens"] or 0 for r in results)
    ttfts = [r["ttft_s"] for r in results if r["ttft_s"] is not None]
    return {"status": "ok", "requests": len(results), "tokens": toks,
            "wall_s": round(wall, 3), "tok_per_s": round(toks / wall, 2) if wall > 0 else None,
            "ttft_median_ms": round(statistics.median(ttfts) * 1e3, 1) if ttfts else None,
            "ttft_max_ms": round(max(ttfts) * 1e3, 1) if ttfts else None}


async def _load(base_url: str, msgs: list[str], tokens: int, timeout_s: float) -> dict:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0,
                                timeout=timeout_s)
    try:
        await _one(client, msgs[0], 4)  # warm-up: kernels, allocations
        t0 = time.perf_counter()
        seq = [await _one(client, m, tokens) for m in msgs]
        seq_wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        par = await asyncio.gather(*[_one(client, m, tokens) for m in msgs])
        par_wall = time.perf_counter() - t0
    finally:
        await client.close()
    rows = {"sequential": _summary(seq, seq_wall), "batched": _summary(par, par_wall)}
    same = sum(a["text"] == b["text"] for a, b in zip(seq, par))
    complete = sum(r["finish_reason"] == "length" and r["completion_tokens"] == tokens
                   for r in par)
    return {"rows": rows, "same_text": same, "complete": complete, "batched": par}


def run_bench_serve(impl: Path, kernels: Path | None = None, clients: int = DEFAULT_CLIENTS,
                    tokens: int = DEFAULT_TOKENS, model: str | None = None,
                    timeout_s: float = TIMEOUT_S, python: str | None = None) -> dict:
    """Start the server on the learner's engine, run the sequential then the batched load,
    stop it; return the result object (``bench serve --json``)."""
    clients = max(1, min(clients, MAX_CLIENTS))
    tokens = max(1, min(tokens, MAX_TOKENS))
    impl = Path(impl).resolve()
    t0 = time.monotonic()
    out: dict = {"bench": "serve", "impl": str(impl), "clients": clients, "tokens": tokens,
                 "model": model or "random Qwen2", "error": None}
    with tempfile.TemporaryDirectory(prefix="tiny-llm-serve-") as tmp:
        try:
            folder = model or str(write_random_model(Path(tmp) / "model"))
            server = start_server(impl, folder, kernels, port=0, max_batch=clients,
                                  python=python)
        except ServeError as exc:
            out["error"] = str(exc)
            out["duration_s"] = round(time.monotonic() - t0, 2)
            return out
        out["model_config"] = MODEL if model is None else None
        out["device"] = server.engine.info.get("device")
        try:
            load = asyncio.run(asyncio.wait_for(
                _load(server.base_url, prompts(clients), tokens, timeout_s), timeout_s))
        except Exception as exc:  # noqa: BLE001 - a timeout, a broken stream, the engine died
            tail = server.engine.output.text().strip().splitlines()[-1:]
            out["error"] = (f"the load test failed: {type(exc).__name__}: {exc}"
                            + (f" (engine: {tail[0]})" if tail else ""))
            load = None
        finally:
            server.stop()
    if load is not None:
        rows = load["rows"]
        seq, par = rows["sequential"], rows["batched"]
        if seq["tok_per_s"] and par["tok_per_s"]:
            par["speedup"] = round(par["tok_per_s"] / seq["tok_per_s"], 2)
        out.update(rows=rows, same_text=load["same_text"], complete=load["complete"],
                   requests=[{k: r[k] for k in ("ttft_s", "completion_tokens", "finish_reason")}
                             for r in load["batched"]])
    out["duration_s"] = round(time.monotonic() - t0, 2)
    return out


def render(result: dict, console) -> None:
    from rich.markup import escape

    m = result.get("model_config")
    what = (f"random 4-bit Qwen2 (hidden {m['hidden_size']}, {m['num_hidden_layers']} "
            f"layers)" if m else str(result.get("model")))
    device = {"gpu": "GPU (Metal)", "cpu": "CPU"}.get(result.get("device"), "?")
    console.print(escape(f"Serving on {device}: {what}, {result['clients']} requests of "
                         f"{result['tokens']} tokens each, over HTTP on 127.0.0.1"))
    if result.get("error"):
        console.print(f"[red]The benchmark could not run: {escape(result['error'])}[/red]")
        return
    sec = _Section("Throughput and time to first token",
                   ["run", "clients", "tok/s", "× sequential", "TTFT median", "TTFT max"])
    rows = result["rows"]
    for rid, clients in (("sequential", 1), ("batched", result["clients"])):
        r = rows[rid]
        sec.row(rid, r, r["status"], lambda r=r, c=clients, rid=rid: [
            str(c), _fmt(r["tok_per_s"], ".1f"),
            _fmt(1.0 if rid == "sequential" else r.get("speedup"), ".2f", "×"),
            _fmt(r["ttft_median_ms"], ".0f", " ms"), _fmt(r["ttft_max_ms"], ".0f", " ms")])
    sec.print(console)
    n = result["clients"]
    style = "green" if result["complete"] == n and result["same_text"] == n else "red"
    console.print(f"[{style}]{result['complete']} of {n} batched streams complete; "
                  f"{result['same_text']} of {n} stream the same text as sequentially.[/]")
    for line in LEGEND:
        console.print(f"[dim]{escape(line)}.[/dim]")
    console.print("[dim]Outgrown this server? mlx_lm.server (Apple silicon) and vLLM (GPU "
                  "servers) serve the same API, built for production.[/dim]")
