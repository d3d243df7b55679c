"""Day 2.2 (and 2.3) -- quantized matmul: the Python wrappers, the C++ CPU primitive, the
Metal kernel, and the week-2 model on packed weights.

Oracle: ``mx.quantized_matmul`` run in float32 (activations, scales and biases upcast
exactly) and rounded to the activation dtype -- MLX's own CPU kernel accumulates float16 and
bfloat16 in low precision, the learner's must not. Weights come from ``mx.quantize`` of
random matrices in the activation dtype, so scales and biases have that dtype (the book's
kernel requires it). The model check compares with mlx_lm's Qwen2 (tiny random 4-bit
models, group size 64, one of them with bfloat16 scales like some checkpoints).

Diagnoses, from the output only: the catalogued kernel mistakes are modelled in numpy
(``_dequantized``): the eight values of a word read in the wrong order
(qmm-nibble-order), scale and bias exchanged (qmm-scales-biases-swapped), the group of a
column taken with the wrong size or only the first group's scale used
(qmm-group-size-wrong), the packed weight used as (N, K) instead of (K, N), i.e. not
transposed (qmm-no-transpose; square cases come first so that this shows as a wrong value
rather than a shape error). The wrapper check watches what the wrappers hand to the
extension: its ``quantized_matmul`` is replaced for the duration by a recorder that
answers with the oracle, so the wrappers are checked on their own, independently of the
kernel.

Group sizes: 64 (Qwen2's) is required; 32 and 128 must give the right result or be
rejected with an error (the book's kernel supports only 64). ``transpose_b=False`` must
give ``a @ dequantize(b)`` or be rejected with an error. Only 4 bits are checked.
"""

from __future__ import annotations

import inspect
import sys
from functools import lru_cache

import mlx.core as mx
import numpy as np

from .. import harness
from ..harness import CheckFailed, Ctx, LearnerError, Skip, check, outside_learner, to_np
from .probes import (int_offset_probe, offsets_as, row_constant_difference,
                     same_values_other_shape, same_values_rearranged, with_probe)
from .w2_oracle import log_softmax, tiny_w2


# mlx's own quantized matmul does the work these tasks teach (a forbidden API).
QMM_FORBID = "mx.quantized_matmul"

MODEL_BUILT_ON = ("mx.fast.scaled_dot_product_attention", "mx.fast.rope", "nn.RoPE",
                  "mx.fast.rms_norm", "nn.RMSNorm", "mx.fast.layer_norm", "nn.silu", "nn.SiLU",
                  "nn.MultiHeadAttention", QMM_FORBID)
BITS = 4
MODEL_LOGP = {"dtype": "float16", "rtol": 1e-2, "atol": 0.15}  # as on days 1.5 and 2.1


def _dt(dtype) -> str:
    return str(dtype).replace("mlx.core.", "")


# --------------------------------------------------------------------------- problems


class Problem:
    """One quantized matmul: a (M, N) in ``dtype``; with ``transpose`` the weight W is
    (K, N) and out = a @ W.T, else W is (N, K) and out = a @ W. ``b`` packs W row by row
    (groups along each row), scales/biases are in ``dtype``."""

    def __init__(self, M, N, K, gs, dtype, seed, transpose=True, positive=False):
        self.M, self.N, self.K, self.gs, self.dtype = M, N, K, gs, dtype
        self.transpose = transpose
        rows, cols = (K, N) if transpose else (N, K)
        ka, kw = mx.random.key(seed), mx.random.key(seed + 7919)
        if positive:  # long positive rows: a half-precision running sum drifts far
            a = mx.random.uniform(0, 1, (M, N), key=ka)
            w = mx.random.uniform(0, 1, (rows, cols), key=kw)
        else:
            a = mx.random.normal((M, N), key=ka)
            w = 0.5 * mx.random.normal((rows, cols), key=kw)
        self.a = a.astype(dtype)
        self.b, self.scales, self.biases = mx.quantize(w.astype(dtype), group_size=gs, bits=BITS)
        mx.eval(self.a, self.b, self.scales, self.biases)

    def describe(self) -> str:
        op = "a @ W.T (transpose_b=True)" if self.transpose else "a @ W (transpose_b=False)"
        return (f"M={self.M}, N={self.N}, K={self.K}, group_size={self.gs}, {_dt(self.dtype)}, "
                f"{op}")

    def want(self):
        return oracle_qmm(self.a, self.b, self.scales, self.biases, self.gs, self.transpose)

    def candidates(self) -> dict:
        return mistake_candidates(self.a, self.b, self.scales, self.biases, self.gs,
                                  self.transpose)


def oracle_qmm(a, b, scales, biases, gs, transpose, bits=BITS):
    """mx.quantized_matmul in float32, rounded to a's dtype."""
    f32 = mx.float32
    with outside_learner():
        out = mx.quantized_matmul(a.astype(f32), b, scales.astype(f32), biases.astype(f32),
                                  transpose=transpose, group_size=gs, bits=bits, stream=mx.cpu)
        out = out.astype(a.dtype)
        mx.eval(out)
    return out


# ---- numpy models of the kernel mistakes

NIBBLE_ORDERS = {"reversed": [7 - j for j in range(8)], "byte-swapped": [j ^ 1 for j in range(8)]}


def _unpack(b: np.ndarray, order=None) -> np.ndarray:
    """uint32 words (R, C/8) -> 4-bit values (R, C); value j of a word is bits 4j..4j+3
    (``order`` gives the position each of the eight values lands in, for the mistakes)."""
    b = b.astype(np.uint64)
    vals = np.stack([(b >> np.uint64(4 * j)) & np.uint64(15) for j in range(8)], axis=-1)
    if order is not None:
        vals = vals[..., np.argsort(order)]
    return vals.reshape(b.shape[0], -1).astype(np.float64)


def _dequantized(b, scales, biases, gs, *, order=None, swap=False, group=None):
    """The (R, C) weight a kernel with one of the catalogued mistakes effectively uses."""
    q = _unpack(to_np(b), order)
    s, z = to_np(scales).astype(np.float64), to_np(biases).astype(np.float64)
    R, C = q.shape
    cols = np.arange(C)
    if group is None:
        gi = cols // gs
    elif group == "first":
        gi = np.zeros(C, dtype=int)
    else:  # a fixed group size (64) whatever the layer says
        gi = cols // group
        if gi.max() >= s.shape[1]:
            raise ValueError("not applicable")
    S, Z = s[:, gi], z[:, gi]
    if swap:
        S, Z = Z, S
    return S * q + Z


def _product(a, W, transpose, dtype):
    a64 = to_np(a).astype(np.float64)
    out = a64 @ (W.T if transpose else W)
    return mx.array(out.astype(np.float32)).astype(dtype)


def mistake_candidates(a, b, scales, biases, gs, transpose) -> dict:
    dt = a.dtype

    def made(**kw):
        return lambda: _product(a, _dequantized(b, scales, biases, gs, **kw), transpose, dt)

    def not_transposed():
        W = _dequantized(b, scales, biases, gs)
        if transpose and W.shape[0] != W.shape[1]:
            raise ValueError("only visible as a shape error here")
        return _product(a, W, not transpose, dt)

    group = [made(group="first")]
    if gs != 64:
        group.append(made(group=64))
    return {
        "qmm-nibble-order": [made(order=o) for o in NIBBLE_ORDERS.values()],
        "qmm-scales-biases-swapped": [made(swap=True)],
        "qmm-group-size-wrong": group,
        "qmm-no-transpose": [not_transposed],
    }


# --------------------------------------------------------------------------- the extension


def _ext_qmm(ctx: Ctx):
    ext = ctx.extension()
    fn = getattr(ext, "quantized_matmul", None)
    if fn is None:
        raise CheckFailed(
            f"Your extension ({ext.__name__}) has no quantized_matmul: declare it in "
            "src/tiny_llm_ext.h, define it in src/quantized_matmul.cpp, bind it in bindings.cpp "
            "and rebuild with `tiny-llm-tutor build-kernels`.",
            {"extension": ext.__name__}, status="fail")
    return fn


def _call_kernel(ctx: Ctx, fn, p: Problem, stream, case: str):
    try:
        return ctx.call(fn, p.scales, p.biases, p.gs, BITS, p.a, p.b, transpose_b=p.transpose,
                        stream=stream)
    except LearnerError as e:
        if "still a stub" in e.message:
            what = e.message.split("Error: ", 1)[-1]
            raise CheckFailed(f"Not implemented yet: {what}", {"case": case},
                              status="fail") from None
        raise


def _run_cases(ctx: Ctx, fn, problems, stream, *, optional=lambda p: False) -> dict:
    """Each problem through the learner's kernel vs the oracle. ``optional`` problems may
    be rejected with an error instead (recorded as unsupported)."""
    worst, unsupported, checked = 0.0, [], 0
    for p in problems:
        case = p.describe()
        try:
            got = _call_kernel(ctx, fn, p, stream, case)
        except LearnerError as e:
            if not optional(p):
                raise
            unsupported.append({"case": case, "error": e.message[:200]})
            continue
        ctx.expect_shape(got, (p.M, p.K), "output", case)
        want = p.want()
        ev = ctx.expect_close(got, want, what="output", case=case, candidates=p.candidates(),
                              expect_dtype=_dt(p.dtype), **_tolerance(want))
        worst = max(worst, ev["max_abs_err"])
        checked += 1
    out = {"cases": checked, "max_abs_err": worst}
    if unsupported:
        out["rejected_with_an_error"] = unsupported
    return out


# Half-precision outputs: an entry of a @ W.T is a sum of N terms, so its rounding error
# scales with the size of the terms, not of the (possibly cancelling) result. A kernel that
# dequantizes each weight into float16/bfloat16 before the float32 sum is off by up to
# ~2.7 ulp of the outputs' RMS on these cases (measured); atol = 5 ulp of the RMS accepts
# that, while a running sum kept in half precision drifts by ~90 ulp on the 4096-long rows
# and every catalogued mistake is off by about the RMS itself.
HALF_EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}


def _tolerance(want) -> dict:
    dt = _dt(want.dtype)
    if dt not in HALF_EPS:
        return {}
    rtol, atol = harness.TOLERANCES[dt]
    rms = float(np.sqrt(np.mean(to_np(want).astype(np.float64) ** 2)))
    return {"dtype": dt, "rtol": rtol, "atol": max(atol, 5 * HALF_EPS[dt] * rms)}


def _optional(p: Problem) -> bool:
    return p.gs != 64 or not p.transpose


F16, BF16, F32 = mx.float16, mx.bfloat16, mx.float32


def _cpu_problems():
    return [
        # square first: a kernel that does not transpose is then wrong, not out of shape
        Problem(3, 128, 128, 64, F16, 2200),
        Problem(1, 256, 96, 64, F16, 2201),
        Problem(7, 64, 5, 64, F16, 2202),
        Problem(5, 320, 33, 64, F16, 2203),
        Problem(3, 128, 48, 32, F16, 2204),      # other group sizes: right, or an error
        Problem(2, 256, 40, 128, F16, 2205),
        Problem(3, 64, 128, 64, F16, 2206, transpose=False),  # right, or an error
    ]


@check("qmm-cpu", 2,
       "QuantizedMatmul on the CPU against MLX's quantized matmul (float16; M = 1 and odd M; "
       "several K, N and group sizes)", symbols=("QuantizedMatmul",))
def qmm_cpu(ctx: Ctx):
    fn = _ext_qmm(ctx)
    return _run_cases(ctx, fn, _cpu_problems(), mx.cpu, optional=_optional)


def _dtype_problems():
    return [
        Problem(3, 128, 64, 64, F32, 2210),
        Problem(1, 512, 17, 64, F32, 2211),
        Problem(5, 128, 64, 64, BF16, 2212),
        Problem(1, 192, 24, 64, BF16, 2213),
        # 4096-long rows of positive terms: summed in half precision they drift 5-10 %
        Problem(2, 4096, 8, 64, F16, 2214, positive=True),
        Problem(2, 4096, 8, 64, BF16, 2215, positive=True),
    ]


@check("qmm-cpu-dtypes", 2,
       "QuantizedMatmul on the CPU: float32 and bfloat16 activations, and long rows",
       symbols=("QuantizedMatmul",))
def qmm_cpu_dtypes(ctx: Ctx):
    fn = _ext_qmm(ctx)
    try:
        return _run_cases(ctx, fn, _dtype_problems(), mx.cpu)
    except CheckFailed as f:
        if f.pitfall is None and "N=4096" in f.message:
            f.message += (" Only the long rows are off: is the running sum kept in float32, "
                          "whatever the activation dtype?")
            f.args = (f.message,)
        raise


@check("qmm-metal", 3,
       "QuantizedMatmul on the Apple GPU (Metal) against MLX's quantized matmul "
       "(float16, bfloat16)",
       symbols=("QuantizedMatmul",))
def qmm_metal(ctx: Ctx):
    if not mx.metal.is_available():
        raise Skip("needs an Apple GPU (Metal): this machine has none, so the Metal kernel "
                   "cannot run here; it is checked on an Apple Silicon Mac")
    fn = _ext_qmm(ctx)
    problems = [Problem(3, 128, 128, 64, F16, 2230), Problem(1, 256, 96, 64, F16, 2231),
                Problem(7, 320, 33, 64, F16, 2232), Problem(5, 128, 64, 64, BF16, 2233),
                Problem(2, 4096, 8, 64, F16, 2234, positive=True)]
    return _run_cases(ctx, fn, problems, mx.gpu)


# --------------------------------------------------------------------------- task 1: wrappers

_SPY_SIG = inspect.Signature([
    inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    for n in ("scales", "biases", "group_size", "bits", "a", "b")] + [
    inspect.Parameter("transpose_b", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=False),
    inspect.Parameter("stream", inspect.Parameter.KEYWORD_ONLY, default=None)])


class _Recorder:
    """Stands in for the extension's quantized_matmul: records what it is handed and
    answers with the oracle (as a correct kernel would, transpose_b either way)."""

    def __init__(self):
        self.calls: list[dict] = []
        # (group_size, bits) of the weight the wrapper is working on, and the activation
        # rows it should hand over, set per case
        self.expect: tuple[int, int] | None = None
        self.expect_a = None

    def __call__(self, *args, **kwargs):
        with outside_learner():
            try:
                ba = _SPY_SIG.bind(*args, **kwargs)
            except TypeError as e:
                raise CheckFailed(f"Your wrapper called the extension's quantized_matmul with "
                                  f"arguments it does not take: {e}. Its signature is "
                                  "quantized_matmul(scales, biases, group_size, bits, a, b, "
                                  "transpose_b=False, stream=None).", {}) from None
            ba.apply_defaults()
            v = ba.arguments
            a, b = v["a"], v["b"]
            rec = {"a_shape": list(getattr(a, "shape", [])),
                   "b_shape": list(getattr(b, "shape", [])),
                   "transpose_b": bool(v["transpose_b"]), "group_size": v["group_size"],
                   "bits": v["bits"]}
            self.calls.append(rec)
            if getattr(a, "ndim", 0) != 2:
                raise CheckFailed(
                    f"Your wrapper handed the extension an `a` of shape {tuple(rec['a_shape'])}; "
                    "the kernel takes a 2-D (M, D) array: flatten the leading axes first and "
                    "restore them on the result.", {"extension_call": rec},
                    pitfall="qmm-flatten-restore")
            if self.expect_a is not None and same_values_rearranged(a, self.expect_a, 0.0, 0.0):
                raise CheckFailed(
                    f"Your wrapper handed the extension an `a` of shape {tuple(rec['a_shape'])}"
                    " holding the activations' values in another order than their rows.",
                    {"extension_call": rec}, pitfall="qmm-flatten-restore")
            if self.expect is not None and (rec["group_size"], rec["bits"]) != self.expect:
                gs, bits = self.expect
                raise CheckFailed(
                    f"Your wrapper handed the extension group_size={rec['group_size']}, "
                    f"bits={rec['bits']} for a weight quantized with group_size={gs}, "
                    f"bits={bits}.", {"extension_call": rec},
                    pitfall="qmm-layer-params-not-passed")
            try:
                return oracle_qmm(a, b, v["scales"], v["biases"], int(v["group_size"]),
                                  bool(v["transpose_b"]), int(v["bits"]))
            except ValueError as e:
                raise CheckFailed(
                    f"Your wrapper handed the extension arguments that do not fit together: "
                    f"a {tuple(rec['a_shape'])}, b {tuple(rec['b_shape'])}, "
                    f"transpose_b={rec['transpose_b']}, group_size={rec['group_size']}, "
                    f"bits={rec['bits']} ({e}).", {"extension_call": rec},
                    pitfall="qmm-no-transpose" if not rec["transpose_b"] else None) from None


class _patched:
    """Temporarily replace attributes (object, name, value), restoring them after."""

    def __init__(self, *triples):
        self.triples = triples

    def __enter__(self):
        self.saved = [(o, n, getattr(o, n, _MISSING)) for o, n, _ in self.triples]
        for o, n, v in self.triples:
            setattr(o, n, v)
        return self

    def __exit__(self, *exc):
        for o, n, old in reversed(self.saved):
            if old is _MISSING:
                try:
                    delattr(o, n)
                except AttributeError:
                    pass
            else:
                setattr(o, n, old)
        return False


_MISSING = object()


def _extension_modules(ext):
    """The module objects a wrapper may reach the extension through."""
    mods = [ext]
    for name in ("tiny_llm_ext", "extensions.tiny_llm_ext", "tiny_llm_ext_key"):
        m = sys.modules.get(name)
        if m is not None and m not in mods:
            mods.append(m)
    return mods


# (x shape, N (= I), K (= O), group size, dtype, bias, non-contiguous x)
LINEAR_CASES = [
    ((2, 7), 128, 128, 64, F16, True, False),   # square first: W and W.T have one shape
    ((5,), 128, 96, 64, F16, False, False),
    ((1, 1, 3), 64, 40, 64, F16, True, True),
    ((3, 4), 128, 64, 64, F32, True, False),
    ((2,), 192, 48, 64, BF16, True, False),
]


@check("quantized-linear", 1,
       "quantized_linear and quantized_matmul: what they hand to the extension and what they "
       "return (batch prefixes, strided views, bias, three dtypes)",
       forbid=(QMM_FORBID,), symbols=("quantized_matmul", "quantized_linear"))
def quantized_linear_check(ctx: Ctx):
    qlinear = ctx.symbol("quantize.quantized_linear")
    qmatmul = ctx.symbol("quantize.quantized_matmul")
    QW = ctx.symbol("quantize.QuantizedWeights")
    ext = ctx.extension()
    rec = _Recorder()
    worst = 0.0
    seen = []
    with _patched(*[(m, "quantized_matmul", rec) for m in _extension_modules(ext)]):
        for i, (prefix, N, K, gs, dtype, with_bias, strided) in enumerate(LINEAR_CASES):
            seed = 2240 + i
            p = Problem(int(np.prod(prefix)), N, K, gs, dtype, seed)
            if strided:  # the same values, as a transposed view
                x = mx.swapaxes(p.a.reshape(*prefix, N).swapaxes(-1, -2) + 0, -1, -2)
            else:
                x = p.a.reshape(*prefix, N)
            bias = (mx.random.normal((K,), key=mx.random.key(seed + 1)).astype(dtype)
                    if with_bias else None)
            w = ctx.call(QW, scales=p.scales, biases=p.biases, group_size=gs, bits=BITS,
                         weight=p.b)
            case = (f"x {(*prefix, N)}{' (a transposed view)' if strided else ''} {_dt(dtype)}, "
                    f"weight ({K}, {N}) group_size={gs}, {'with' if with_bias else 'no'} bias")
            n0 = len(rec.calls)
            rec.expect, rec.expect_a = (gs, BITS), p.a
            try:
                got = ctx.call(qlinear, x, w, bias) if with_bias else ctx.call(qlinear, x, w)
            except LearnerError as exc:
                # MLX's reshape refused inside the wrappers: their only reshapes are the
                # flatten and the restore
                if exc.pitfall is None and "[reshape]" in exc.message and exc.frames and \
                        exc.frames[-1].splitlines()[0].rstrip().endswith(
                            ("in quantized_matmul", "in quantized_linear")):
                    exc.pitfall = "qmm-flatten-restore"
                raise
            calls = rec.calls[n0:]
            if any(not c["transpose_b"] for c in calls):
                raise CheckFailed(
                    f"[{case}] quantized_linear asked the extension for a @ dequantize(b) "
                    "(transpose_b=False). The weight is stored (O, I), one row per output, so "
                    "x @ W.T needs transpose_b=True.", {"case": case, "extension_calls": calls},
                    pitfall="qmm-no-transpose")
            want = p.want().reshape(*prefix, K)
            if bias is not None:
                want = (want.astype(mx.float32) + bias.astype(mx.float32)).astype(dtype)
            if got is None:
                ctx.expect_shape(got, (*prefix, K), "output", case)
            rtol, atol = harness.TOLERANCES[_dt(dtype)]
            if same_values_other_shape(got, want, rtol, _tolerance(want).get("atol", atol)):
                raise CheckFailed(
                    f"[{case}] output has shape {tuple(got.shape)}, expected {(*prefix, K)}: "
                    "the right values, in another shape.", {"case": case},
                    pitfall="qmm-flatten-restore")
            if bias is not None and row_constant_difference(
                    got, want, rtol, _tolerance(want).get("atol", atol)):
                raise CheckFailed(
                    f"[{case}] output differs from the reference by one and the same vector "
                    "in every row.", {"case": case}, pitfall="qmm-bias-wrong")
            ev = ctx.expect_close(got, want, what="output", case=case,
                                  candidates=_linear_candidates(p, prefix, bias, K, want),
                                  expect_dtype=_dt(dtype), **_tolerance(want))
            worst = max(worst, ev["max_abs_err"])
            seen.append(len(calls))
        # quantized_matmul itself, a 3-D a, transpose_b=False: right, or an error.
        p = Problem(6, 64, 128, 64, F16, 2250, transpose=False)
        a3 = p.a.reshape(2, 3, 64)
        case = "quantized_matmul(..., a (2, 3, 64) float16, b packed (64, 128), transpose_b=False)"
        rec.expect, rec.expect_a = (64, BITS), p.a
        try:
            got = ctx.call(qmatmul, p.scales, p.biases, 64, BITS, a3, p.b, False)
        except LearnerError as e:
            got = None
            rejected = e.message[:200]
        if got is not None:
            rejected = None
            if got is None:
                ctx.expect_shape(got, (2, 3, 128), "output", case)
            want = p.want().reshape(2, 3, 128)
            ctx.expect_close(got, want, what="output", case=case,
                             candidates={"qmm-flatten-restore": want.reshape(6, 128)},
                             **_tolerance(want))
    ev = {"cases": len(LINEAR_CASES) + 1, "max_abs_err": worst,
          "extension_calls": rec.calls[:8]}
    if rejected:
        ev["transpose_b_false"] = f"rejected with an error: {rejected}"
    if not any(seen):
        ev["note"] = ("the wrappers never looked quantized_matmul up on the extension module at "
                      "call time (imported at the top of quantize.py?); their results were "
                      "right anyway")
    return ev


def _linear_candidates(p: Problem, prefix, bias, K, want) -> dict:
    """What the wrappers return with one of the catalogued mistakes, for this case (the
    extension stand-in answers exactly for whatever it is handed)."""
    def with_bias(out):
        out = out.astype(mx.float32)
        if bias is not None:
            out = out + bias.astype(mx.float32)
        return out.astype(p.dtype).reshape(*prefix, K)

    cands = {
        "qmm-no-transpose": lambda: _no_t(p, prefix, bias, K),
        # scales and biases handed over in each other's place, or one of them for both
        "qmm-scales-biases-swapped": [
            lambda: with_bias(oracle_qmm(p.a, p.b, p.biases, p.scales, p.gs, True)),
            lambda: with_bias(oracle_qmm(p.a, p.b, p.scales, p.scales, p.gs, True)),
            lambda: with_bias(oracle_qmm(p.a, p.b, p.biases, p.biases, p.gs, True))],
        # the kernel's 2-D result returned as it is
        "qmm-flatten-restore": [want.reshape(-1, K)],
    }
    if bias is not None:
        cands["qmm-bias-wrong"] = lambda: p.want().reshape(*prefix, K)
    return cands


def _no_t(p: Problem, prefix, bias, K):
    W = _dequantized(p.b, p.scales, p.biases, p.gs)
    if W.shape[0] != W.shape[1]:
        raise ValueError("shape error only")
    out = to_np(p.a).astype(np.float64) @ W
    if bias is not None:
        out = out + to_np(bias)
    return mx.array(out.astype(np.float32)).astype(p.dtype).reshape(*prefix, K)


# --------------------------------------------------------------------------- task 4: model

# (seed, tied, scales dtype of the checkpoint, batch, prefill length)
QMODEL_CASES = [(2260, False, "bfloat16", 2, 6), (2265, True, "float16", 1, 9)]


@lru_cache(maxsize=4)
def _qmodels(seed, tied, scales):
    return tiny_w2(seed, tied=tied, scales_dtype=getattr(mx, scales))


class _Counter:
    def __init__(self, fn):
        self.fn = fn
        self.n = 0

    def __call__(self, *args, **kwargs):
        self.n += 1
        return self.fn(*args, **kwargs)


@check("qwen2-week2-quantized", 4,
       "Qwen2ModelWeek2 runs every linear layer through quantized_linear and matches mlx_lm",
       forbid=MODEL_BUILT_ON, symbols=("qwen2_week2.Qwen2ModelWeek2",))
def qwen2_week2_quantized(ctx: Ctx):
    Model = ctx.symbol("qwen2_week2.Qwen2ModelWeek2")
    ext = ctx.extension()
    worst = 0.0
    counts = []
    for seed, tied, scales, B, P in QMODEL_CASES:
        oracle, given = _qmodels(seed, tied, scales)
        a = oracle.args
        ids = mx.random.randint(0, a.vocab_size, (B, P + 1), key=mx.random.key(seed + 1))
        full = log_softmax(oracle(ids))
        miswired = _miswired_candidates(oracle, ids)
        unbiased = _unbiased_candidates(oracle, ids)

        def scenario(variant, oracle=oracle, given=given, a=a, ids=ids, full=full,
                     miswired=miswired, unbiased=unbiased, seed=seed, tied=tied,
                     scales=scales, B=B, P=P):
            model_from = _scales_as_float16(seed, tied) if variant == "f16-scales" else given
            model = ctx.call(Model, model_from)
            caches = (ctx.call(model.create_kv_cache) if hasattr(model, "create_kv_cache") else
                      [ctx.call(ctx.symbol("TinyKvFullCache"))
                       for _ in range(a.num_hidden_layers)])
            ext_fn = getattr(ext, "quantized_matmul", None)
            ext_count = _Counter(ext_fn) if ext_fn is not None else None
            deq = _Counter(mx.dequantize)
            lin = [(m, _Counter(m.quantized_linear)) for m in _learner_modules(ctx)]
            patches = [(mx, "dequantize", deq)] + [(m, "quantized_linear", c) for m, c in lin]
            if ext_count is not None:
                patches += [(m, "quantized_matmul", ext_count) for m in _extension_modules(ext)]
            errs = []
            for i, (s, e) in enumerate(((0, P), (P, P + 1))):
                case = (f"{'tied' if tied else 'untied'} tiny 4-bit Qwen2 (hidden "
                        f"{a.hidden_size}, group size 64, {scales} scales and biases in the "
                        f"checkpoint), batch {B}, {'prefill' if i == 0 else 'decode'}: tokens "
                        f"{s}..{e - 1} at offset {s}")
                with _patched(*patches):
                    got = ctx.call(model, ids[:, s:e], offsets_as(variant, s, B), caches)
                ctx.expect_shape(got, (B, e - s, a.vocab_size), "logits", case)
                ev = ctx.expect_close(
                    log_softmax(got), full[:, s:e], what="log-softmax of the logits", case=case,
                    candidates={"qmm-model-weights-miswired": [
                        (lambda f=f, s=s, e=e: f()[:, s:e]) for f in miswired],
                        "kv-model-wiring": [
                        (lambda f=f, s=s, e=e: f()[:, s:e]) for f in _rewired(oracle, ids)],
                        "qmm-bias-wrong": [
                        (lambda f=f, s=s, e=e: f()[:, s:e]) for f in unbiased]},
                    **MODEL_LOGP)
                errs.append(ev["max_abs_err"])
            n_lin = sum(c.n for _, c in lin)
            n_ext = ext_count.n if ext_count is not None else 0
            count = {"quantized_linear_calls": n_lin, "extension_calls": n_ext,
                     "dequantize_calls": deq.n}
            if deq.n:
                raise CheckFailed(
                    f"[{case}] the logits are right, but the forward passes called "
                    f"mx.dequantize {deq.n} times: on day 2.2 every projection (and an untied "
                    "lm_head) goes through quantized_linear on the packed weights; only the "
                    "embedding table is dequantized, once, in the constructor.",
                    {"case": case, **count})
            if n_lin == 0 and n_ext == 0:
                raise CheckFailed(
                    f"[{case}] the logits are right, but the forward passes never called "
                    "quantized_linear or your extension's quantized_matmul: the linear layers "
                    "must multiply by the packed weights (no dequantized copies kept from the "
                    "constructor).", {"case": case, **count})
            return errs, count

        probes = []
        if scales != "float16":
            probes.append((
                "f16-scales", "qmm-bf16-scales-not-cast", lambda exc: True,
                f"The same model built from a checkpoint whose scales and biases were cast "
                f"from {scales} to float16 first is right.",
                "scales and biases cast to float16 first"))
        errs, count = with_probe(scenario, probes + int_offset_probe(B))
        worst = max([worst] + errs)
        counts.append(count)
    return {"cases": len(QMODEL_CASES), "max_abs_err": worst, "calls": counts}


def _scales_as_float16(seed: int, tied: bool):
    """A fresh copy of the checkpoint of ``_qmodels(seed, tied, "bfloat16")`` whose linear
    layers' scales and biases are float16 (the same values: bfloat16 converts exactly)."""
    from mlx.utils import tree_map_with_path

    _, given = tiny_w2(seed, tied=tied, scales_dtype=mx.bfloat16)
    given.update(tree_map_with_path(
        lambda p, v: v.astype(mx.float16) if v.dtype == mx.bfloat16 else v,
        given.parameters()))
    mx.eval(given.parameters())
    return given


# Projections of one layer with the same weight shape in the week-2 tiny model: a model
# that hands one of them the other's QuantizedWeights computes exactly this (its bias stays).
_SAME_SHAPE = [("self_attn", "v_proj", "k_proj"), ("self_attn", "k_proj", "v_proj"),
               ("self_attn", "q_proj", "o_proj"), ("self_attn", "o_proj", "q_proj"),
               ("mlp", "up_proj", "gate_proj"), ("mlp", "gate_proj", "up_proj")]
_QPARAMS = ("weight", "scales", "biases")


def _rewired(oracle, ids):
    """The full forward with a piece of the decoder left out (day 2.1's kv-model-wiring:
    a residual, the final norm, the MLP's activation), computed only when asked."""
    from .w2_oracle import forward_chunk, new_caches

    def variant(kw):
        return lru_cache(maxsize=1)(lambda: log_softmax(
            forward_chunk(oracle, ids, 0, new_caches(oracle), **kw)))
    return [variant(kw) for kw in ({"no_residual": "attn"}, {"no_residual": "mlp"},
                                   {"no_final_norm": True}, {"no_activation": True},
                                   {"mlp_reads_input": True}, {"one_norm": True})]


def _unbiased_candidates(oracle, ids):
    """The full forward of ``oracle`` with the bias of q, k or v (or all three) left out in
    every layer (qmm-bias-wrong in the model), computed only when a mismatch asks."""
    def variant(names):
        @lru_cache(maxsize=1)
        def fn():
            saved = []
            try:
                for layer in oracle.model.layers:
                    for n in names:
                        proj = getattr(layer.self_attn, n)
                        saved.append((proj, proj.bias))
                        proj.bias = mx.zeros_like(proj.bias)
                out = log_softmax(oracle(ids))
                mx.eval(out)
                return out
            finally:
                for proj, bias in saved:
                    proj.bias = bias
        return fn
    qkv = ("q_proj", "k_proj", "v_proj")
    return [variant(qkv)] + [variant((n,)) for n in qkv]


def _miswired_candidates(oracle, ids):
    """The full forward of ``oracle`` with one projection using another's packed weights in
    every layer, or two of them exchanged (qmm-model-weights-miswired), computed only when a
    mismatch asks."""
    def variant(part, dst, src, swap=False):
        def fn():
            saved = []
            try:
                for layer in oracle.model.layers:
                    block = getattr(layer, part)
                    d, s = getattr(block, dst), getattr(block, src)
                    if d.weight.shape != s.weight.shape:
                        raise ValueError("shapes differ: not this model's mistake")
                    saved += [(d, {n: getattr(d, n) for n in _QPARAMS}),
                              (s, {n: getattr(s, n) for n in _QPARAMS})]
                    d_params = {n: getattr(d, n) for n in _QPARAMS}
                    for n in _QPARAMS:
                        setattr(d, n, getattr(s, n))
                        if swap:
                            setattr(s, n, d_params[n])
                out = log_softmax(oracle(ids))
                mx.eval(out)
                return out
            finally:
                for d, params in reversed(saved):
                    for n, v in params.items():
                        setattr(d, n, v)
        return lru_cache(maxsize=1)(fn)

    @lru_cache(maxsize=1)
    def head_from_embedding():
        # an untied model whose output projection uses the (tied) embedding table instead
        if oracle.args.tie_word_embeddings:
            raise ValueError("tied: the same weights either way")
        oracle.args.tie_word_embeddings = True
        try:
            out = log_softmax(oracle(ids))
            mx.eval(out)
            return out
        finally:
            oracle.args.tie_word_embeddings = False

    swaps = [variant(*t, swap=True) for t in _SAME_SHAPE[::2]]
    return [variant(*t) for t in _SAME_SHAPE] + swaps + [head_from_embedding]


def _learner_modules(ctx: Ctx):
    out = []
    for name in ("quantize", "qwen2_week2"):
        m = getattr(ctx.impl, name, None)
        if m is not None and callable(getattr(m, "quantized_linear", None)):
            out.append(m)
    return out
