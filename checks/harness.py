"""The toolkit every hidden check is written with.

A check is a function registered with :func:`check`; it receives a :class:`Ctx`, looks up
the learner's symbols through it, calls them through it (so the learner's exceptions and
forbidden library calls are attributed to the learner), and compares their output with an
independent oracle through :meth:`Ctx.expect_close`, naming the catalogued mistake whose
output the learner's matches.

This module runs only inside the check child process, never inside the tutor.

Tolerances (``TOLERANCES``) are per dtype, applied as ``|got - want| <= atol + rtol*|want|``
on values converted to float64:

* float32: rtol 1e-4, atol 1e-5 -- a different summation order is fine, a real mistake is not;
* float16: rtol 2e-2, atol 2e-3 -- the storage precision of half (about 3 decimal digits);
* bfloat16: rtol 5e-2, atol 1e-2.

A check may loosen them where the oracle itself computes in another precision (documented
where it happens).

Diagnosis: a mismatching output is compared with the outputs of catalogued mistakes (the
check's candidates). One names its pitfall only if it matches within tolerance, differs
from the reference, explains the output much better than the reference does, and no other
pitfall fits about as well: a wrong name misleads more than none. When nothing is named,
the message says how the output differs (a constant factor or offset, the indices that
differ along an axis, axes exchanged or reordered, a shape with the same elements).
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import re
import sys
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

TOLERANCES = {
    "float32": (1e-4, 1e-5),
    "float16": (2e-2, 2e-3),
    "bfloat16": (5e-2, 1e-2),
}

# --------------------------------------------------------------------------- registry


@dataclass
class CheckSpec:
    day: str
    id: str
    task: int
    title: str
    fn: Callable[["Ctx"], Any]
    forbid: tuple[str, ...] = ()
    symbols: tuple[str, ...] = ()


REGISTRY: dict[str, list[CheckSpec]] = {}

# The C++ extension the package under test uses, loaded by the child before the package:
# {"module": the imported extension} or {"error": why it could not be imported}.
EXTENSION: dict[str, Any] = {}


_DAY_MODULE = re.compile(r"(?:^|\.)week(\d+)\.day(\d+)_(\d+)$")


def day_of_module(name: str) -> str:
    """The day a checks module holds, from its name: ``checks.week2.day2_6`` (or the child's
    ``_tutor_checks.week2.day2_6``) holds day ``2.6``."""
    m = _DAY_MODULE.search(name)
    if m is None or m.group(1) != m.group(2):
        raise ValueError(f"checks are declared in modules named weekW.dayW_D (like "
                         f"checks.week2.day2_6), not in {name!r}")
    return f"{m.group(2)}.{m.group(3)}"


def check(id: str, task: int, title: str, forbid: tuple[str, ...] = (),
          symbols: tuple[str, ...] = ()):
    """Register a check of task ``task`` for the day of the module the decorated function is
    defined in (see :func:`day_of_module`). ``forbid`` names library APIs the task teaches
    (see ``FORBIDDEN``); ``symbols`` names the learner symbols whose source is scanned for
    them."""

    def deco(fn):
        day = day_of_module(fn.__module__)
        REGISTRY.setdefault(day, []).append(
            CheckSpec(day, id, task, title, fn, tuple(forbid), tuple(symbols)))
        return fn

    return deco


@dataclass
class MeasureSpec:
    day: str
    id: str
    unit: str
    fn: Callable[["Ctx"], Any]


# Measurements of "predict, then measure" questions, per day: each runs the learner's code
# on the configuration a question states and returns one number.
MEASURES: dict[str, list[MeasureSpec]] = {}


def measure(id: str, unit: str = ""):
    """Register a measurement for the day of the module the decorated function is defined
    in (see :func:`day_of_module`). The function takes the same :class:`Ctx` as a check,
    runs the learner's code through it (``ctx.symbol``, ``ctx.call``) on exactly the
    configuration of the lesson's ``kind: predict`` question whose ``measure`` is ``id``,
    and returns a number. A stub or a crash just raises: the runner reports it as "could
    not measure" with the reason, never as a number. The id comes first, as a literal:
    the lesson validator reads it from the module's text."""

    def deco(fn):
        day = day_of_module(fn.__module__)
        MEASURES.setdefault(day, []).append(MeasureSpec(day, id, unit, fn))
        return fn

    return deco


# --------------------------------------------------------------------------- outcomes


class CheckFailed(Exception):
    """The learner's output is wrong. ``pitfall`` names a catalogued mistake when one matched."""

    def __init__(self, message: str, evidence: dict | None = None, pitfall: str | None = None,
                 status: str = "fail"):
        super().__init__(message)
        self.message = message
        self.evidence = evidence or {}
        self.pitfall = pitfall
        self.status = status


class Skip(Exception):
    """The check cannot run here; the reason says what it needs."""


class LearnerError(Exception):
    """The learner's code raised; carries a message built from the learner's frames only."""

    def __init__(self, message: str, frames: list[str], status: str = "error",
                 pitfall: str | None = None):
        super().__init__(message)
        self.message = message
        self.frames = frames
        self.status = status
        # A crash can be as telling as a wrong value: a check that recognises what made
        # the learner's code raise names the catalogued mistake here.
        self.pitfall = pitfall


# --------------------------------------------------------------------------- forbidden APIs

# name -> (module path, attribute) that the tripwire wraps. The learner's code may not
# reach these while a check that forbids them runs.
FORBIDDEN = {
    "mx.fast.scaled_dot_product_attention": ("mlx.core.fast", "scaled_dot_product_attention"),
    "mx.fast.rope": ("mlx.core.fast", "rope"),
    "mx.fast.rms_norm": ("mlx.core.fast", "rms_norm"),
    "mx.fast.layer_norm": ("mlx.core.fast", "layer_norm"),
    "nn.RoPE": ("mlx.nn", "RoPE"),
    "nn.RMSNorm": ("mlx.nn", "RMSNorm"),
    "nn.silu": ("mlx.nn", "silu"),
    "nn.SiLU": ("mlx.nn", "SiLU"),
    "nn.MultiHeadAttention": ("mlx.nn", "MultiHeadAttention"),
    "mx.quantized_matmul": ("mlx.core", "quantized_matmul"),
    # day 3.3: the fused per-expert matmuls that mlx_lm's SwitchGLU dispatches with
    "mx.gather_mm": ("mlx.core", "gather_mm"),
    "mx.gather_qmm": ("mlx.core", "gather_qmm"),
}

_state = threading.local()


def _learner_running() -> bool:
    return getattr(_state, "learner_depth", 0) > 0


def _note_forbidden(name: str) -> None:
    hits = getattr(_state, "forbidden_hits", None)
    if hits is not None and name in getattr(_state, "forbid", ()):
        hits.append(name)


class outside_learner:
    """Context manager for check code that runs while a learner call is on the stack (an
    adapter or callback the check hands to the learner): library calls made inside it are
    the check's own, so they do not trip the forbidden-API wires."""

    def __enter__(self):
        self._depth = getattr(_state, "learner_depth", 0)
        _state.learner_depth = 0
        return self

    def __exit__(self, *exc):
        _state.learner_depth = self._depth
        return False


def install_tripwires() -> None:
    """Wrap the library APIs in ``FORBIDDEN``. Must run before the learner's package is
    imported, so that ``from mlx.core.fast import rope`` binds the wrapper too."""
    import importlib

    for name, (modname, attr) in FORBIDDEN.items():
        mod = importlib.import_module(modname)
        orig = getattr(mod, attr, None)
        if orig is None or getattr(orig, "_tutor_tripwire", False):
            continue
        if isinstance(orig, type):
            wrapped = _wrap_class(orig, name)
        else:
            wrapped = _wrap_function(orig, name)
        setattr(mod, attr, wrapped)
        if modname == "mlx.nn":
            # mlx.nn re-exports layers from submodules; the activations module is where
            # nn.SiLU looks silu up.
            act = sys.modules.get("mlx.nn.layers.activations")
            if act is not None and getattr(act, attr, None) is orig:
                setattr(act, attr, wrapped)


def _wrap_function(orig, name):
    def tripwire(*args, **kwargs):
        if _learner_running():
            _note_forbidden(name)
        return orig(*args, **kwargs)

    tripwire._tutor_tripwire = True
    tripwire.__name__ = getattr(orig, "__name__", name)
    tripwire.__doc__ = getattr(orig, "__doc__", None)
    return tripwire


def _wrap_class(orig, name):
    def __init__(self, *args, **kwargs):
        if _learner_running():
            _note_forbidden(name)
        orig.__init__(self, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        if _learner_running():
            _note_forbidden(name)
        return orig.__call__(self, *args, **kwargs)

    cls = type(orig.__name__, (orig,), {"__init__": __init__, "__call__": __call__,
                                       "_tutor_tripwire": True, "__module__": orig.__module__})
    return cls


# Source-level names that count as the same forbidden API (aliases a learner may write).
_SOURCE_NAMES = {
    "mx.fast.scaled_dot_product_attention": ("fast.scaled_dot_product_attention",),
    "mx.fast.rope": ("fast.rope",),
    "mx.fast.rms_norm": ("fast.rms_norm",),
    "nn.RoPE": ("nn.RoPE",),
    "nn.RMSNorm": ("nn.RMSNorm",),
    "nn.silu": ("nn.silu",),
    "nn.SiLU": ("nn.SiLU",),
    "nn.MultiHeadAttention": ("nn.MultiHeadAttention",),
    "mx.quantized_matmul": ("mx.quantized_matmul", "core.quantized_matmul"),
    "mx.gather_mm": ("mx.gather_mm", "core.gather_mm"),
    "mx.gather_qmm": ("mx.gather_qmm", "core.gather_qmm"),
}

# mlx_lm may appear in type hints (the book's own stubs import TokenizerWrapper), but no
# model, layer, sampler or generation code of mlx_lm may do the learner's work.
_MLX_LM_ALLOWED = ("mlx_lm.tokenizer_utils",)


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


_SCAN_CACHE: dict = {}


def scan_source(obj: Any, forbid: tuple[str, ...]) -> list[str]:
    """Forbidden API names that appear in ``obj``'s source (function or class). Cached per
    object within the (short-lived) check process: finding a class's source parses its
    whole module, and a day looks the same class up in several checks."""
    try:
        key = (obj, tuple(forbid))
        hit = _SCAN_CACHE.get(key)
    except TypeError:  # an unhashable object: scan it every time
        return _scan_source(obj, forbid)
    if hit is None:
        hit = _SCAN_CACHE[key] = _scan_source(obj, forbid)
    return list(hit)


def _scan_source(obj: Any, forbid: tuple[str, ...]) -> list[str]:
    try:
        src = inspect.getsource(obj)
    except (OSError, TypeError):
        return []
    try:
        tree = ast.parse(_dedent(src))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node) or ""
            for name in forbid:
                for alias in _SOURCE_NAMES.get(name, ()):
                    if dotted == alias or dotted.endswith("." + alias):
                        found.append(name)
    return sorted(set(found))


def _dedent(src: str) -> str:
    import textwrap

    return textwrap.dedent(src)


def scan_mlx_lm_imports(path: Path) -> list[str]:
    """``mlx_lm`` modules imported by a learner file, other than type-hint-only ones.
    Cached per file version (every symbol lookup scans its file)."""
    try:
        st = path.stat()
    except OSError:
        return []
    return list(_scan_mlx_lm_imports(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=256)
def _scan_mlx_lm_imports(path_str: str, _mtime_ns: int, _size: int) -> tuple[str, ...]:
    path = Path(path_str)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, SyntaxError):
        return ()
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mlx_lm":
                names = [f"mlx_lm.{a.name}" for a in node.names]
            else:
                names = [node.module]
        for n in names:
            if (n == "mlx_lm" or n.startswith("mlx_lm.")) and not n.startswith(_MLX_LM_ALLOWED):
                found.append(n)
    return tuple(sorted(set(found)))


# --------------------------------------------------------------------------- oracles' helpers


def import_mlx_lm(modname: str):
    """Import an ``mlx_lm`` submodule without running ``mlx_lm/__init__`` (which pulls in
    transformers and costs about a second). The submodules are mlx_lm's real code."""
    import importlib
    import importlib.util

    if "mlx_lm" not in sys.modules:
        spec = importlib.util.find_spec("mlx_lm")
        if spec is None or not spec.submodule_search_locations:
            raise Skip("mlx-lm is not installed; install it with `pip install mlx-lm`")
        pkg = types.ModuleType("mlx_lm")
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__spec__ = spec
        pkg.__file__ = spec.origin
        sys.modules["mlx_lm"] = pkg
    return importlib.import_module(modname)


def install_light_tokenizer_utils() -> None:
    """Let ``from mlx_lm.tokenizer_utils import TokenizerWrapper`` -- a type-hint import the
    book's own ``generate.py`` stub has -- cost nothing. The real module imports
    transformers (about a second, on every day's check); it is loaded only if the
    learner's code uses anything else from it, or builds a TokenizerWrapper itself."""
    name = "mlx_lm.tokenizer_utils"
    if name in sys.modules:
        return
    try:
        import_mlx_lm("mlx_lm")
    except Skip:
        return

    def load_real():
        import importlib.util

        sys.modules.pop(name, None)
        spec = importlib.util.find_spec(name)
        real = importlib.util.module_from_spec(spec)
        sys.modules[name] = real
        spec.loader.exec_module(real)
        return real

    class TokenizerWrapper:  # stand-in for annotations
        def __new__(cls, *args, **kwargs):
            return load_real().TokenizerWrapper(*args, **kwargs)

    class _Lazy(types.ModuleType):
        def __getattr__(self, attr):
            if attr == "TokenizerWrapper":
                return TokenizerWrapper
            if attr.startswith("__"):
                raise AttributeError(attr)
            return getattr(load_real(), attr)

    sys.modules[name] = _Lazy(name)


def hf_snapshot(repo_id: str) -> Path | None:
    """The local snapshot directory of a Hugging Face repo, if it is fully in the cache."""
    from tutor.hfcache import snapshot

    return snapshot(repo_id)


def to_np(x) -> np.ndarray:
    import mlx.core as mx

    if isinstance(x, mx.array):
        if x.dtype == mx.bfloat16:
            x = x.astype(mx.float32)
        return np.array(x)
    return np.asarray(x)


def dtype_name(x) -> str:
    import mlx.core as mx

    if isinstance(x, mx.array):
        return str(x.dtype).replace("mlx.core.", "")
    return str(np.asarray(x).dtype)


def dtype_str(dtype) -> str:
    """"float16" for mx.float16, and so on (for case descriptions and tolerances)."""
    return str(dtype).replace("mlx.core.", "")


def merge_evidence(evs: list[dict]) -> dict:
    """The evidence of a check that passed several cases."""
    return {"cases": len(evs), "max_abs_err": max((e.get("max_abs_err", 0.0) for e in evs),
                                                   default=0.0)}


def _shape(x) -> list[int]:
    return list(getattr(x, "shape", np.shape(x)))


# --------------------------------------------------------------------------- the context


@dataclass
class Ctx:
    impl: types.ModuleType
    impl_dir: Path
    spec: CheckSpec
    notes: dict = field(default_factory=dict)

    # ---- symbols

    def symbol(self, dotted: str):
        """A learner symbol the way the book's tests find it: ``linear`` (top level) or
        ``qwen2_week1.Qwen2MLP`` (through its module)."""
        obj: Any = self.impl
        walked = []
        for part in dotted.split("."):
            walked.append(part)
            if not hasattr(obj, part):
                mod = dotted.split(".")[0] if "." in dotted else None
                where = f" (in {mod}.py)" if mod else ""
                raise CheckFailed(
                    f"`{dotted}` was not found in the package under test{where}. "
                    "Keep the book's module and symbol names.",
                    {"missing": ".".join(walked)}, status="error")
            obj = getattr(obj, part)
        self._scan(obj, dotted)
        return obj

    def _scan(self, obj, dotted: str) -> None:
        forbid = self.spec.forbid
        if forbid:
            hits = scan_source(obj, forbid)
            if hits:
                raise self._forbidden_failure(dotted, hits)
        src = _source_file(obj)
        if src is not None and _is_under(src, self.impl_dir):
            mods = scan_mlx_lm_imports(src)
            if mods:
                raise CheckFailed(
                    f"{src.name} imports {', '.join(mods)}: mlx_lm's models and helpers do the "
                    "work this course asks you to write. Use only mlx.core (and your own code).",
                    {"file": src.name, "imports": mods})

    def _forbidden_failure(self, dotted: str, hits: list[str]) -> CheckFailed:
        return CheckFailed(
            f"`{dotted}` calls {', '.join(hits)}. This lesson is about building that yourself "
            "from basic MLX operations, so the library's own version does not count.",
            {"forbidden_calls": hits})

    def extension(self):
        """The learner's built C++ extension (``tiny_llm_ext``), or a failed check saying
        how to build it."""
        if EXTENSION.get("module") is not None:
            return EXTENSION["module"]
        why = EXTENSION.get("error") or "no kernels folder was given to the checks"
        raise CheckFailed(f"Your C++ extension is not available ({why}). Build it with "
                          "`tiny-llm-tutor build-kernels` in your workspace.",
                          {"extension": why}, status="error")

    # ---- calling learner code

    def call(self, fn: Callable, *args, **kwargs):
        """Run learner code: its exceptions become results that show only its own frames,
        and forbidden library calls made while it runs fail the check."""
        _state.learner_depth = getattr(_state, "learner_depth", 0) + 1
        _state.forbid = self.spec.forbid
        _state.forbidden_hits = hits = []
        try:
            out = fn(*args, **kwargs)
            out = _force(out)
        except (CheckFailed, Skip, LearnerError):
            raise
        except NotImplementedError as exc:
            msg = str(exc) or "not implemented yet"
            raise CheckFailed(f"Not implemented yet: {msg}", {}, status="fail") from None
        except RecursionError:
            raise self._learner_error(sys.exc_info(), "hit Python's recursion limit") from None
        except BaseException as exc:  # noqa: BLE001 - SystemExit from learner code too
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise self._learner_error(sys.exc_info()) from None
        finally:
            _state.learner_depth -= 1
        if hits:
            name = getattr(fn, "__qualname__", getattr(fn, "__name__", "your code"))
            raise self._forbidden_failure(name, sorted(set(hits)))
        return out

    def _learner_error(self, exc_info, what: str | None = None) -> LearnerError:
        etype, exc, tb = exc_info
        frames = learner_frames(tb, self.impl_dir)
        where = ""
        if frames:
            where = f" ({frames[-1].splitlines()[0].strip()})"
        text = what or f"{etype.__name__}: {exc}"
        if isinstance(exc, SystemExit):
            text = f"called sys.exit({exc.code!r})"
        return LearnerError(f"Your code raised {text}{where}", frames)

    # ---- comparisons

    def expect_shape(self, got, want_shape, what: str = "output", case: str = "") -> None:
        if got is None:  # a stub's `pass` body; np.shape(None) would read as shape ()
            raise CheckFailed(f"{_case(case)}{what} is None, expected an array of shape "
                              f"{tuple(want_shape)}.", {"what": what, "type": "NoneType",
                                                        "case": case})
        got_shape = _shape(got)
        if list(got_shape) != list(want_shape):
            raise CheckFailed(
                f"{_case(case)}{what} has shape {tuple(got_shape)}, expected {tuple(want_shape)}.",
                {"what": what, "shape": got_shape, "expected_shape": list(want_shape),
                 "case": case})

    def expect_close(self, got, want, *, what: str = "output", case: str = "",
                     dtype: str | None = None, rtol: float | None = None,
                     atol: float | None = None,
                     candidates: dict[str, Any] | None = None,
                     expect_dtype: str | None = None,
                     axes: tuple[str, ...] | None = None,
                     map_axes: tuple[int, int] | None = None) -> dict:
        """Compare with the oracle. On a mismatch, the candidates (pitfall id -> output of
        that mistake, or a zero-argument function computing it; a list/tuple of outputs for
        several variants of one mistake) name the mistake whose output the learner's
        matches; when none does, the message says how the output differs (``axes`` names
        the output's axes for that). ``map_axes`` picks the two axes the difference map
        draws (default: the last two); the comparison ignores it. Returns the evidence of a
        pass (max errors)."""
        if not hasattr(got, "shape"):
            raise CheckFailed(f"{_case(case)}{what} is a {type(got).__name__}, expected an mx.array.",
                              {"what": what, "type": type(got).__name__, "case": case})
        dtype = dtype or dtype_name(want)
        r, a = TOLERANCES.get(dtype, TOLERANCES["float32"])
        rtol = r if rtol is None else rtol
        atol = a if atol is None else atol
        g, w = to_np(got).astype(np.float64), to_np(want).astype(np.float64)
        ev = {"what": what, "case": case, "dtype": dtype_name(got), "shape": list(g.shape),
              "expected_shape": list(w.shape), "tolerance": {"rtol": rtol, "atol": atol}}
        if expect_dtype and dtype_name(got) != expect_dtype:
            raise CheckFailed(
                f"{_case(case)}{what} has dtype {dtype_name(got)}, expected {expect_dtype}.",
                ev)
        if g.shape != w.shape:
            pit = _match_candidates(g, candidates, rtol, atol)
            msg = f"{_case(case)}{what} has shape {tuple(g.shape)}, expected {tuple(w.shape)}."
            if pit is None:
                msg += " " + describe_shape_difference(g.shape, w.shape)
            raise CheckFailed(msg, ev, pitfall=pit)
        ok, stats = _compare(g, w, rtol, atol)
        ev.update(stats)
        if ok:
            return ev
        pit = _match_candidates(g, candidates, rtol, atol, want=w)
        first = stats["first_mismatch"]
        where = (f"first at index {tuple(first['index'])}: got {first['got']:.4g}, "
                 f"expected {first['expected']:.4g}")
        msg = (f"{_case(case)}{what} differs from the reference: {stats['mismatched']} of "
               f"{stats['of']} values outside tolerance ({where}).")
        if stats.get("nan"):
            msg += " It has NaN or inf where the reference is finite."
        if pit is None:
            how = describe_difference(g, w, rtol, atol, axes)
            if how:
                msg += " " + how
                ev["difference"] = how
        raise CheckFailed(msg, ev, pitfall=pit)

    def fail(self, message: str, evidence: dict | None = None, pitfall: str | None = None):
        raise CheckFailed(message, evidence, pitfall)


def _case(case: str) -> str:
    return f"[{case}] " if case else ""


def _force(out):
    """Evaluate lazy MLX results inside the learner call, so errors raised at evaluation
    time are attributed to the learner's code."""
    try:
        import mlx.core as mx
    except ImportError:  # pragma: no cover
        return out
    arrays = []

    def collect(x):
        if isinstance(x, mx.array):
            arrays.append(x)
        elif isinstance(x, (list, tuple)):
            for y in x:
                collect(y)

    collect(out)
    if arrays:
        mx.eval(*arrays)
    return out


def _compare(g: np.ndarray, w: np.ndarray, rtol: float, atol: float) -> tuple[bool, dict]:
    finite_w = np.isfinite(w)
    # Non-finite expected values match only themselves: the same inf, or NaN for NaN (a
    # catalogued mistake's output may hold NaN, e.g. a fully masked attention row).
    same_inf = (~finite_w) & ((g == w) | (np.isnan(g) & np.isnan(w)))
    # inf - inf is NaN here, not a warning: numpy's warnings would land in the check's output.
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(g - w)
        bound = atol + rtol * np.abs(w)
        bad = ~((diff <= bound) | same_inf)
    nan = bool(np.any(~np.isfinite(g) & finite_w))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(finite_w & np.isfinite(g), diff, 0.0)
        rel = np.where(finite_w & np.isfinite(g),
                       diff / np.maximum(np.abs(w), max(atol, 1e-30)), 0.0)
    stats = {
        "max_abs_err": float(d.max()) if d.size else 0.0,
        "max_rel_err": float(rel.max()) if rel.size else 0.0,
        "mismatched": int(bad.sum()),
        "of": int(bad.size),
    }
    if nan:
        stats["nan"] = True
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        stats["first_mismatch"] = {"index": list(idx), "got": float(g[idx]),
                                   "expected": float(w[idx])}
    return not bad.any(), stats


def _variants(cand):
    """The outputs of one catalogued mistake. A list or tuple holds several forms of the
    same mistake (either residual missing, heads mixed up in one of several ways); each
    form may be an array or a zero-argument function, and a form that does not apply to
    these inputs (it raises) is left out."""
    try:
        c = cand() if callable(cand) else cand
    except Exception:
        return
    for v in (c if isinstance(c, (list, tuple)) else [c]):
        try:
            yield to_np(v() if callable(v) else v).astype(np.float64)
        except Exception:
            continue


def _gap(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square distance over the entries finite in both; inf when the two disagree
    on where the non-finite values are (NaN against a number, -inf against 0)."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    with np.errstate(invalid="ignore"):
        same_nonfinite = (~fa & ~fb) & ((a == b) | (np.isnan(a) & np.isnan(b)))
    if np.any((fa != fb) | ((~fa & ~fb) & ~same_nonfinite)):
        return float("inf")
    both = fa & fb
    if not both.any():
        return 0.0
    return float(np.sqrt(np.mean(np.square(a[both] - b[both]))))


# A candidate names a mistake only if it explains the learner's output much better than the
# reference does (its distance at most this fraction of the reference's), and only if it
# beats every other mistake that also fits by the same margin: two mistakes that coincide
# on these inputs are not told apart by guessing.
EXPLAINS = 0.25
BEATS = 0.2


def _match_candidates(g: np.ndarray, candidates: dict[str, Any] | None, rtol: float,
                      atol: float, want: np.ndarray | None = None) -> str | None:
    """The catalogued mistake whose output the learner's output matches, if any.

    A candidate that is itself within tolerance of the reference (the mistake does not show
    on these inputs) never names anything; with the reference given, a candidate must also
    explain the difference (see ``EXPLAINS``)."""
    if not candidates:
        return None
    ref_gap = None
    if want is not None and want.shape == g.shape:
        ref_gap = _gap(g, want)
    fits: dict[str, float] = {}
    for pitfall, cand in candidates.items():
        for c in _variants(cand):
            if c.shape != g.shape:
                continue
            ok, _ = _compare(g, c, rtol, atol)
            if not ok:
                continue
            if ref_gap is not None:
                if c.shape == want.shape and _compare(c, want, rtol, atol)[0]:
                    continue
                gap = _gap(g, c)
                if not (gap <= EXPLAINS * ref_gap):
                    continue
            else:
                gap = _gap(g, c)
            if pitfall not in fits or gap < fits[pitfall]:
                fits[pitfall] = gap
    if not fits:
        return None
    ranked = sorted(fits.items(), key=lambda kv: kv[1])
    if len(ranked) > 1 and not ranked[0][1] <= BEATS * ranked[1][1]:
        return None
    return ranked[0][0]


# --------------------------------------------------------------------------- what differs


def describe_difference(g: np.ndarray, w: np.ndarray, rtol: float, atol: float,
                        axes: tuple[str, ...] | None = None) -> str:
    """One or two sentences on how ``g`` differs from ``w`` (same shape) when no catalogued
    mistake explains it: off by a constant factor or offset, confined to some indices along
    an axis, the reference with two axes exchanged or one reversed. Empty if nothing simple
    fits. Evidence only: it says where and how, never why."""
    try:
        return " ".join(_describe(g, w, rtol, atol, axes))
    except Exception:  # a description must never turn a failed check into a crash
        return ""


def _axis_name(axes, i: int, ndim: int) -> str:
    if axes and len(axes) == ndim and axes[i]:
        return axes[i]
    return f"axis {i}"


def _describe(g, w, rtol, atol, axes) -> list[str]:
    out: list[str] = []
    fin = np.isfinite(w)
    if np.all(np.isfinite(g)) and fin.all() and g.size:
        ww = float(np.sum(w * w))
        if np.all(np.abs(g) <= atol):
            return ["Your output is zero (to within tolerance) everywhere."]
        if ww > 0:
            c = float(np.sum(g * w) / ww)
            if abs(c - 1.0) > 1e-3 and _compare(g, c * w, rtol, atol)[0]:
                if abs(c + 1.0) < 1e-2:
                    return ["Every value has the reference's magnitude with the sign flipped."]
                return [f"Every value is about {c:.4g} times the reference value."]
        d = float(np.median(g - w))
        if abs(d) > atol and _compare(g, w + d, rtol, atol)[0]:
            return [f"Every value is shifted by about {d:.4g} from the reference."]
        for i in reversed(range(g.ndim)):  # the last axis first: per-row factors are typical
            if g.shape[i] < 2 or g.size == g.shape[i]:
                continue
            ww_i = np.sum(w * w, axis=i, keepdims=True)
            c = np.sum(g * w, axis=i, keepdims=True) / np.where(ww_i > 0, ww_i, 1.0)
            if _compare(g, c * w, rtol, atol)[0]:
                return [f"Each vector along {_axis_name(axes, i, g.ndim)} equals the "
                        "reference's times a factor of its own (between "
                        f"{float(c.min()):.3g} and {float(c.max()):.3g})."]
    if g.ndim >= 2:
        for i in range(g.ndim):
            for j in range(i + 1, g.ndim):
                if g.shape[i] == g.shape[j] and g.shape[i] > 1:
                    if _compare(g, np.swapaxes(w, i, j), rtol, atol)[0]:
                        return [f"It equals the reference with {_axis_name(axes, i, g.ndim)} "
                                f"and {_axis_name(axes, j, g.ndim)} exchanged."]
    for i in range(g.ndim):
        if g.shape[i] > 1 and _compare(g, np.flip(w, axis=i), rtol, atol)[0]:
            return [f"It equals the reference reversed along {_axis_name(axes, i, g.ndim)}."]
        perm = _permutation(g, w, i, rtol, atol)
        if perm is not None:
            shown = ", ".join(str(p) for p in perm[:16]) + (", ..." if len(perm) > 16 else "")
            return [f"It equals the reference with the indices along "
                    f"{_axis_name(axes, i, g.ndim)} in another order: index k of yours holds "
                    f"the reference's index [{shown}][k]."]
    _, stats = _compare(g, w, rtol, atol)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(g - w)
        same_nonfinite = ~np.isfinite(w) & ((g == w) | (np.isnan(g) & np.isnan(w)))
        bad = ~((diff <= atol + rtol * np.abs(w)) | same_nonfinite)
    spots = []
    for i in range(g.ndim):
        n = g.shape[i]
        if n <= 1:
            continue
        other = tuple(k for k in range(g.ndim) if k != i)
        hit = np.nonzero(bad.any(axis=other) if other else bad)[0]
        if 0 < len(hit) < n:
            spots.append((len(hit) / n, i, [int(h) for h in hit]))
    for _, i, hit in sorted(spots)[:2]:
        n = g.shape[i]
        shown = ", ".join(str(h) for h in hit[:8]) + (", ..." if len(hit) > 8 else "")
        name = _axis_name(axes, i, g.ndim)
        which = f"index {shown} differs" if len(hit) == 1 else f"indices {shown} differ"
        out.append(f"Along {name} (size {n}) only {which}; the other {n - len(hit)} match.")
    if not spots and np.all(np.isfinite(g)) and fin.all():
        for i in range(g.ndim):
            if g.shape[i] < 2 or g.size == g.shape[i]:
                continue
            off = np.mean(g - w, axis=i, keepdims=True)
            if _compare(g, w + off, rtol, atol)[0]:
                out.append(f"The difference from the reference is the same at every index "
                           f"along {_axis_name(axes, i, g.ndim)}: an offset that depends only "
                           "on the other axes.")
                break
    if not np.all(np.isfinite(g[np.isfinite(w)])):
        k = int(np.sum(~np.isfinite(g) & fin))
        out.append(f"{k} value(s) are NaN or inf where the reference is finite.")
    return out


def _permutation(g, w, axis: int, rtol: float, atol: float) -> list[int] | None:
    """The order of the reference's slices along ``axis`` that gives ``g``, when ``g`` is a
    reordering of them (and not the identity); None otherwise. Small axes only."""
    n = g.shape[axis]
    if n < 2 or n > 64:
        return None
    gs, ws = np.moveaxis(g, axis, 0), np.moveaxis(w, axis, 0)
    perm = []
    for k in range(n):
        hit = next((j for j in range(n) if j not in perm
                    and _compare(gs[k], ws[j], rtol, atol)[0]), None)
        if hit is None:
            return None
        perm.append(hit)
    return None if perm == list(range(n)) else perm


def describe_shape_difference(g_shape, w_shape) -> str:
    """What a wrong shape has in common with the expected one."""
    g_shape, w_shape = tuple(g_shape), tuple(w_shape)
    if sorted(g_shape) == sorted(w_shape):
        return "It has the expected axis sizes, in another order."
    if int(np.prod(g_shape)) == int(np.prod(w_shape)):
        return "It holds the expected number of elements, in another shape."
    if len(g_shape) == len(w_shape):
        diff = [i for i, (a, b) in enumerate(zip(g_shape, w_shape)) if a != b]
        return "Axis " + ", ".join(f"{i} has size {g_shape[i]} (expected {w_shape[i]})"
                                   for i in diff) + "."
    return f"It has {len(g_shape)} axes, expected {len(w_shape)}."


# --------------------------------------------------------------------------- tracebacks


def _source_file(obj) -> Path | None:
    try:
        f = inspect.getsourcefile(obj)
    except TypeError:
        return None
    return Path(f).resolve() if f else None


def _is_under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def learner_frames(tb, impl_dir: Path, limit: int = 8) -> list[str]:
    """Formatted traceback frames that belong to the learner's package, nothing else."""
    out = []
    for fs in traceback.extract_tb(tb):
        p = Path(fs.filename)
        if not _is_under(p, impl_dir):
            continue
        rel = p.resolve().relative_to(impl_dir.resolve().parent)
        line = fs.line or linecache.getline(fs.filename, fs.lineno).strip()
        out.append(f"{rel}, line {fs.lineno}, in {fs.name}\n    {line}")
    return out[-limit:]
