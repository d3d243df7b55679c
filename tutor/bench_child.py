"""The benchmark child process: builds a small random Qwen2 and times greedy decoding with
the learner's week-1 and week-2 models and with mlx_lm's own.

Started by :mod:`tutor.bench` as ``python -m tutor.bench_child``; the learner's code runs
here, never in the tutor. It speaks JSON lines on the file descriptor given by ``--fd``
(stdout belongs to the learner's prints):

    {"event": "setup", "model": {...}, "device": ..., "prompt_tokens": P, "tokens": N, ...}
    {"event": "start", "id": ROW}
    {"event": "row", "id": ROW, "status": "ok" | "not_ready" | "error", "tok_per_s": ...,
     "prefill_ms": ..., "decode_s": ..., "message": ..., "note": ...}
    {"event": "fatal", "message": ...}       (the bench itself could not start)
    {"event": "done"}

Rows (see ``tutor.bench.ROWS``): ``mlx`` mlx_lm's model with its KV cache (the reference),
``week1`` the learner's Qwen2ModelWeek1 re-fed the whole sequence every step, ``kv-cache``
the learner's Qwen2ModelWeek2 with its KV cache but MLX's dequantize + matmul in place of
the learner's quantized_linear / quantized_matmul (dense float16 weights, as in week 1),
``quantized`` the week-2 model as written (the learner's quantized matmul kernel), and
``flash`` the same with ``enable_flash_attn=True`` (with the dense weights of ``kv-cache``
when the quantized step is not ready, so flash attention is measured on its own). A row
restarted in a new child after a crash does not know the earlier rows' outcomes; it runs
as written.

:func:`serve` is the loop of any week's child (the protocol above); week 3's rows are in
:mod:`tutor.bench_week3_child`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

# The bench model: small enough for a 2-core CPU, shaped like Qwen2 (GQA 3:1, head dim 64,
# every input dimension a multiple of the group size 64, tied embeddings).
MODEL = dict(hidden_size=384, num_hidden_layers=6, intermediate_size=1024,
             num_attention_heads=6, num_key_value_heads=2, vocab_size=8192,
             rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=4096,
             tie_word_embeddings=True)
GROUP_SIZE, BITS = 64, 4
SEED = 2026
PROMPT_TOKENS = 16
WARMUP_STEPS = 2
LEARNER_ROWS = ("week1", "kv-cache", "quantized", "flash")


def _emit(fd: int, obj: dict) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _light_mlx_lm(checks_dir: Path):
    """The checks' harness (for mlx_lm's submodules without mlx_lm/__init__, and the
    light TokenizerWrapper the book's generate.py imports for its type hints)."""
    from tutor.checking.child import load_harness

    harness = load_harness(checks_dir)
    harness.install_light_tokenizer_utils()
    return harness


def build_model(harness):
    """A random Qwen2 (mlx_lm's class), 4-bit quantized, deterministic. Float parameters
    hold float16 values; they are stored as float16 on a GPU and as float32 on the CPU,
    where MLX's float16 quantized matmul is a slow fallback that would misrepresent MLX's
    own speed (the learner's models cast to float16 themselves either way)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx.utils import tree_map

    qwen2 = harness.import_mlx_lm("mlx_lm.models.qwen2")
    args = qwen2.ModelArgs(model_type="qwen2", **MODEL)
    mx.random.seed(SEED)
    model = qwen2.Model(args)
    nn.quantize(model, group_size=GROUP_SIZE, bits=BITS)
    dtype = mx.float16 if mx.default_device() == mx.gpu else mx.float32

    def cast(v):
        if not mx.issubdtype(v.dtype, mx.floating):
            return v
        return v.astype(mx.float16).astype(dtype)

    model.update(tree_map(cast, model.parameters()))
    mx.eval(model.parameters())
    return model, dtype


# --------------------------------------------------------------------------- timing


class NotReady(Exception):
    """The learner's code for this row is not there yet."""


def _greedy(logits):
    import mlx.core as mx

    return mx.argmax(logits[:, -1, :], axis=-1)


def _check_logits(logits, L: int, vocab: int, where: str):
    shape = tuple(getattr(logits, "shape", ()))
    if shape != (1, L, vocab):
        raise ValueError(f"{where} returned {type(logits).__name__} of shape {shape}, "
                         f"expected logits of shape {(1, L, vocab)}")


def time_decode(make_run, prompt, tokens: int, vocab: int) -> dict:
    """``make_run()`` -> (prefill(ids (1, P)) -> logits, step(tok (1,), offset) -> logits),
    fresh state each call. A warm-up run first (kernels, allocations), then the timed run:
    the prompt's prefill, then ``tokens`` greedy decode steps."""
    import mlx.core as mx

    P = prompt.shape[1]
    prefill, step = make_run()
    logits = prefill(prompt)
    _check_logits(logits, P, vocab, "the prefill")
    tok = _greedy(logits)
    mx.eval(tok)
    for i in range(WARMUP_STEPS):
        logits = step(tok, P + i)
        _check_logits(logits, 1, vocab, "a decode step")
        tok = _greedy(logits)
        mx.eval(tok)

    prefill, step = make_run()
    t0 = time.perf_counter()
    tok = _greedy(prefill(prompt))
    mx.eval(tok)
    t1 = time.perf_counter()
    for i in range(tokens):
        tok = _greedy(step(tok, P + i))
        mx.eval(tok)
    t2 = time.perf_counter()
    return {"prefill_ms": round((t1 - t0) * 1e3, 2), "decode_s": round(t2 - t1, 4),
            "tok_per_s": round(tokens / (t2 - t1), 2) if t2 > t1 else None}


# --------------------------------------------------------------------------- rows


def run_mlx(model, prompt, tokens, harness) -> dict:
    cache_mod = harness.import_mlx_lm("mlx_lm.models.cache")

    def make_run():
        cache = cache_mod.make_prompt_cache(model)
        return (lambda ids: model(ids, cache=cache),
                lambda tok, offset: model(tok[:, None], cache=cache))

    return time_decode(make_run, prompt, tokens, model.args.vocab_size)


def run_week1(impl, model, prompt, tokens) -> dict:
    import mlx.core as mx

    Model = _symbol(impl, "qwen2_week1", "Qwen2ModelWeek1")
    m = Model(model)

    def make_run():
        seq = []

        def prefill(ids):
            seq[:] = [ids]
            return m(ids)

        def step(tok, offset):
            seq.append(tok[:, None])
            return m(mx.concatenate(seq, axis=1))[:, -1:, :]

        return prefill, step

    return time_decode(make_run, prompt, tokens, model.args.vocab_size)


def _week2(impl, model, prompt, tokens, flash: bool) -> dict:
    Model = _symbol(impl, "qwen2_week2", "Qwen2ModelWeek2")
    m = Model(model, enable_flash_attn=True) if flash else Model(model)

    def make_run():
        if hasattr(m, "create_kv_cache"):
            cache = m.create_kv_cache()
        else:
            Cache = _symbol(impl, "kv_cache", "TinyKvFullCache")
            cache = [Cache() for _ in range(model.args.num_hidden_layers)]
        return (lambda ids: m(ids, 0, cache),
                lambda tok, offset: m(tok[:, None], offset, cache))

    return time_decode(make_run, prompt, tokens, model.args.vocab_size)


class DenseQuantizedPatch:
    """Replace the learner's quantized_linear / quantized_matmul, wherever their package
    bound them, with MLX's dequantize + a dense matmul on weights dequantized once (the
    week-1 way). Counts the calls, so the row can say whether the patch was used."""

    def __init__(self, impl):
        self.impl = impl
        self.saved: list[tuple[object, str, object]] = []
        self.dense: dict[int, tuple] = {}
        self.calls = 0

    def _weight(self, b, scales, biases, group_size, bits, dtype):
        import mlx.core as mx

        hit = self.dense.get(id(b))
        if hit is None or hit[0] is not b:
            w = mx.dequantize(b, scales, biases, group_size=group_size, bits=bits)
            hit = (b, w.astype(dtype))
            self.dense[id(b)] = hit
        return hit[1]

    def quantized_matmul(self, scales, biases, group_size, bits, a, b, transpose_b=False):
        self.calls += 1
        w = self._weight(b, scales, biases, group_size, bits, a.dtype)
        return a @ (w.T if transpose_b else w)

    def quantized_linear(self, x, w, bias=None):
        self.calls += 1
        dense = self._weight(w.weight, w.scales, w.biases, w.group_size, w.bits, x.dtype)
        out = x @ dense.T
        return out + bias if bias is not None else out

    def __enter__(self):
        prefix = self.impl.__name__ + "."
        for name, mod in list(sys.modules.items()):
            if mod is None or not (name == self.impl.__name__ or name.startswith(prefix)):
                continue
            for attr in ("quantized_linear", "quantized_matmul"):
                if callable(getattr(mod, attr, None)):
                    self.saved.append((mod, attr, getattr(mod, attr)))
                    setattr(mod, attr, getattr(self, attr))
        return self

    def __exit__(self, *exc):
        for mod, attr, orig in reversed(self.saved):
            setattr(mod, attr, orig)
        return False


def run_kv_cache(impl, model, prompt, tokens) -> dict:
    with DenseQuantizedPatch(impl) as patch:
        out = _week2(impl, model, prompt, tokens, flash=False)
    if not patch.calls:
        out["note"] = "as written: your model calls no quantized_linear"
    return out


def run_quantized(impl, model, prompt, tokens) -> dict:
    return _week2(impl, model, prompt, tokens, flash=False)


def run_flash(impl, model, prompt, tokens, quantized_ready: bool = True) -> dict:
    if quantized_ready:
        return _week2(impl, model, prompt, tokens, flash=True)
    # Flash attention measured on its own when the quantized step is not there yet.
    with DenseQuantizedPatch(impl):
        out = _week2(impl, model, prompt, tokens, flash=True)
    out["note"] = "with dense weights (your quantized matmul is not ready)"
    return out


def _symbol(impl, module: str, name: str):
    mod = getattr(impl, module, None)
    obj = getattr(mod, name, None) if mod is not None else None
    if obj is None:
        obj = getattr(impl, name, None)
    if obj is None:
        raise NotReady(f"{module}.{name} was not found in your package")
    return obj


# --------------------------------------------------------------------------- outcomes


def _one_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _learner_where(exc: BaseException, impl_dir: Path) -> str:
    from tutor.checking.child import CHECKS_PKG

    harness = sys.modules.get(f"{CHECKS_PKG}.harness")
    if harness is None:
        return ""
    frames = harness.learner_frames(exc.__traceback__, impl_dir)
    return f" ({frames[-1].splitlines()[0].strip()})" if frames else ""


def describe_failure(exc: BaseException, impl_dir: Path, ext_error: str | None) -> dict:
    """A row that could not run: ``not_ready`` when the learner has not written that
    part yet (a stub, a missing symbol or extension), ``error`` otherwise."""
    msg = str(exc) or type(exc).__name__
    if isinstance(exc, NotReady):
        return {"status": "not_ready", "message": _one_line(msg)}
    if isinstance(exc, NotImplementedError):
        if str(exc) and "stub" not in msg and "not implemented" not in msg.lower():
            msg = f"{msg}: not implemented yet"  # a bare NotImplementedError("name")
        return {"status": "not_ready", "message": _one_line(str(exc) and msg
                                                            or "not implemented yet")}
    if "still a stub" in msg:
        return {"status": "not_ready", "message": _one_line(msg)}
    if isinstance(exc, ImportError):
        if ext_error and ("tiny_llm_ext" in msg or "extensions" in msg):
            return {"status": "not_ready",
                    "message": _one_line(f"your extension is not available ({ext_error}); "
                                         "build it with `tiny-llm-tutor build-kernels`")}
        return {"status": "not_ready", "message": _one_line(msg)}
    where = _learner_where(exc, impl_dir)
    return {"status": "error", "message": _one_line(f"{type(exc).__name__}: {msg}{where}")}


def serve(argv: list[str] | None, *, add_args: Callable, setup: Callable,
          run_row: Callable, reference_rows: tuple[str, ...] = ()) -> int:
    """The child's loop for any week's bench: parse the common arguments (plus the week's,
    from ``add_args(parser)``), build the week's models with ``setup(args, harness) ->
    (state, setup fields)`` (a failure there is fatal: the environment, not the learner),
    load the learner's extension, then for each row ``run_row(row, impl, state, statuses)
    -> result fields``. ``impl`` is the learner's package, imported before the first row
    that is not in ``reference_rows`` (those run the tutor's own code and get None);
    ``statuses`` maps the rows run so far to their status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--checks", required=True)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--rows", required=True, help="comma-separated row ids, in order")
    ap.add_argument("--kernels", default="")
    add_args(ap)
    args = ap.parse_args(argv)
    from tutor.checking import lifeline

    lifeline.hold(None)  # dies with the tutor; the tutor times each row
    fd = args.fd
    impl_dir = Path(args.impl).resolve()
    rows = [r for r in args.rows.split(",") if r]

    try:
        import mlx.core as mx

        harness = _light_mlx_lm(Path(args.checks))
        state, fields = setup(args, harness)
    except BaseException as exc:  # noqa: BLE001 - the environment, not the learner
        if isinstance(exc, KeyboardInterrupt):
            raise
        _emit(fd, {"event": "fatal", "message": _one_line(f"{type(exc).__name__}: {exc}")})
        _emit(fd, {"event": "done"})
        return 0

    from tutor.checking.child import load_extension_for_run

    ext_error = load_extension_for_run(args.kernels, harness)
    device = "gpu" if mx.default_device() == mx.gpu else "cpu"
    _emit(fd, {"event": "setup", **fields, "device": device,
               "extension": ext_error or "loaded"})

    impl = None
    import_failure = None
    statuses: dict[str, str] = {}
    for row in rows:
        _emit(fd, {"event": "start", "id": row})
        try:
            if row not in reference_rows:
                if impl is None and import_failure is None:
                    try:
                        from tutor.checking.child import describe_import_error, import_impl

                        impl = import_impl(impl_dir)
                    except BaseException as exc:  # noqa: BLE001
                        if isinstance(exc, KeyboardInterrupt):
                            raise
                        import_failure = describe_import_error(exc, impl_dir, harness)["message"]
                if import_failure is not None:
                    statuses[row] = "error"
                    _emit(fd, {"event": "row", "id": row, "status": "error",
                               "message": _one_line(import_failure)})
                    continue
            out = run_row(row, impl, state, statuses)
            out = {"status": "ok", **out}
        except BaseException as exc:  # noqa: BLE001 - anything the learner's code does
            if isinstance(exc, KeyboardInterrupt):
                raise
            if row in reference_rows:
                sys.stderr.write("".join(traceback.format_exception(type(exc), exc,
                                                                    exc.__traceback__)))
                out = {"status": "error",
                       "message": _one_line(f"MLX's own path failed: {type(exc).__name__}: "
                                            f"{exc}")}
            else:
                out = describe_failure(exc, impl_dir, ext_error)
        statuses[row] = out["status"]
        _emit(fd, {"event": "row", "id": row, **out})
    _emit(fd, {"event": "done"})
    return 0


def _add_args(ap) -> None:
    ap.add_argument("--tokens", type=int, default=32)


def _setup(args, harness):
    import mlx.core as mx

    model, dtype = build_model(harness)
    prompt = mx.random.randint(0, MODEL["vocab_size"], (1, PROMPT_TOKENS),
                               key=mx.random.key(SEED + 1)).astype(mx.int32)
    fields = {"model": {**MODEL, "group_size": GROUP_SIZE, "bits": BITS},
              "reference_dtype": str(dtype).replace("mlx.core.", ""),
              "prompt_tokens": PROMPT_TOKENS, "tokens": args.tokens}
    return {"model": model, "prompt": prompt, "tokens": args.tokens, "harness": harness}, fields


def _run_row(row: str, impl, state: dict, statuses: dict) -> dict:
    model, prompt, tokens = state["model"], state["prompt"], state["tokens"]
    if row == "mlx":
        return run_mlx(model, prompt, tokens, state["harness"])
    if row == "flash":
        return run_flash(impl, model, prompt, tokens,
                         quantized_ready=statuses.get("quantized") != "not_ready")
    runner = {"week1": run_week1, "kv-cache": run_kv_cache, "quantized": run_quantized}[row]
    return runner(impl, model, prompt, tokens)


def main(argv: list[str] | None = None) -> int:
    return serve(argv, add_args=_add_args, setup=_setup, run_row=_run_row,
                 reference_rows=("mlx",))


if __name__ == "__main__":
    sys.exit(main())
