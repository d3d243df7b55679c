"""The check child process: imports the package under test and runs one or more days' checks.

Started by :mod:`tutor.checking.runner` as ``python -m tutor.checking.child``. It speaks
JSON lines on the file descriptor given by ``--fd`` (never on stdout, which belongs to the
learner's prints):

    {"event": "day", "day": "1.3"}                      (then, for that day:)
    {"event": "plan", "checks": [{"id", "task", "title"}, ...]}
    {"event": "start", "id": ...}
    {"event": "result", "id": ..., "status": ..., "message": ..., "evidence": ..., "pitfall": ...}
    {"event": "import_error", "message": ..., "frames": [...]}
    {"event": "day_done", "day": "1.3"}
    {"event": "done"}                                    (after the last day)

With ``--measure ID,ID`` (one day) it runs those measurements of "predict, then measure"
questions (``@measure`` in the day's checks module) instead of its checks:

    {"event": "measures", "ids": [...]}                 (the ones it will run, in order)
    {"event": "start", "id": ...}
    {"event": "measured", "id", "status": "measured"|"error"|"skipped", "value", "unit", "reason"}
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

from tutor.checking import lifeline
from tutor.checking.output import mark

CHECKS_PKG = "_tutor_checks"


def _emit(fd: int, obj: dict) -> None:
    data = (json.dumps(obj, default=_jsonable) + "\n").encode()
    while data:
        n = os.write(fd, data)
        data = data[n:]


def _jsonable(x):
    try:
        import numpy as np

        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, np.ndarray):
            return x.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(x)


def load_checks_package(checks_dir: Path):
    if CHECKS_PKG in sys.modules:
        return sys.modules[CHECKS_PKG]
    spec = importlib.util.spec_from_file_location(
        CHECKS_PKG, checks_dir / "__init__.py", submodule_search_locations=[str(checks_dir)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[CHECKS_PKG] = mod
    spec.loader.exec_module(mod)
    return mod


def load_harness(checks_dir: Path):
    """The checks' harness module (``checks/harness.py``), the checks package loaded from
    ``checks_dir`` first."""
    load_checks_package(checks_dir)
    return importlib.import_module(f"{CHECKS_PKG}.harness")


def day_module(day: str) -> str:
    week, d = day.split(".")
    return f"{CHECKS_PKG}.week{week}.day{week}_{d}"


def import_impl(impl_dir: Path):
    """Import the package under test by its own directory name, so absolute self-imports
    (``from tiny_llm.basics import linear``) work as well as relative ones."""
    name = impl_dir.name if impl_dir.name.isidentifier() else "tiny_llm"
    parent = str(impl_dir.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    if name in sys.modules:  # a stdlib or installed module of the same name must not win
        del sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, impl_dir / "__init__.py", submodule_search_locations=[str(impl_dir)])
    if spec is None:
        raise ImportError(f"{impl_dir} is not a Python package (no __init__.py)")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def load_extension_for_run(kernels: Path | None, harness) -> str | None:
    """For the bench and serve children: load the learner's build from ``kernels`` (if
    given) with :func:`load_extension`; the reason it is not there, None when it loaded."""
    if not kernels:
        return "no kernels folder"
    load_extension(Path(kernels), harness)
    return harness.EXTENSION.get("error")


def load_extension(kernels: Path, harness) -> None:
    """Import the built C++ extension from ``kernels`` before the package under test, so
    ``from tiny_llm_ext import ...`` (and the book's ``from extensions import
    tiny_llm_ext``) find the learner's build. A missing or broken build is remembered for
    the checks that need it (``Ctx.extension``); week-1 checks never notice."""
    import types

    from tutor.checking.extension import import_extension

    try:
        ext = import_extension(kernels)
    except BaseException as exc:  # noqa: BLE001 - any failure is the learner's build
        if isinstance(exc, KeyboardInterrupt):
            raise
        harness.EXTENSION["error"] = f"{type(exc).__name__}: {exc}"
        return
    harness.EXTENSION["module"] = ext
    # Whatever the build's own name, solutions find it the ways the course writes it:
    # `import tiny_llm_ext` and the book's `from extensions import tiny_llm_ext`.
    sys.modules.setdefault("tiny_llm_ext", ext)
    if "extensions" not in sys.modules:
        compat = types.ModuleType("extensions")
        compat.tiny_llm_ext = ext
        sys.modules["extensions"] = compat
        sys.modules["extensions.tiny_llm_ext"] = ext


def describe_import_error(exc: BaseException, impl_dir: Path, harness) -> dict:
    if isinstance(exc, SyntaxError) and exc.filename:
        p = Path(exc.filename)
        try:
            rel = p.resolve().relative_to(impl_dir.resolve().parent)
        except ValueError:
            rel = p.name
        text = (exc.text or "").rstrip("\n")
        frames = [f"{rel}, line {exc.lineno}\n    {text.strip()}"] if text else []
        return {"message": f"{type(exc).__name__} in {rel}, line {exc.lineno}: {exc.msg}",
                "frames": frames}
    frames = harness.learner_frames(exc.__traceback__, impl_dir)
    where = f" ({frames[-1].splitlines()[0]})" if frames else ""
    return {"message": f"Importing your package failed: {type(exc).__name__}: {exc}{where}",
            "frames": frames}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", required=True, help="a day id, or several separated by commas")
    ap.add_argument("--impl", required=True)
    ap.add_argument("--checks", required=True)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--only", default="", help="comma-separated check ids of the first day")
    ap.add_argument("--kernels", default="", help="folder with the built C++ extension")
    ap.add_argument("--measure", default="",
                    help="comma-separated measurement ids to run (of the one day) instead of checks")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds this process may live at most (its days' budgets)")
    args = ap.parse_args(argv)
    # Before anything slow: from here on this process dies with the tutor.
    lifeline.hold(args.budget)
    fd = args.fd
    impl_dir = Path(args.impl).resolve()

    harness = load_harness(Path(args.checks))
    harness.install_tripwires()
    harness.install_light_tokenizer_utils()
    package = _Package(impl_dir, harness, Path(args.kernels) if args.kernels else None)
    only = [s for s in args.only.split(",") if s]
    if args.measure:
        day = args.day.split(",")[0]
        _emit(fd, {"event": "day", "day": day})
        run_measures(fd, harness, package, day, [m for m in args.measure.split(",") if m])
        _emit(fd, {"event": "day_done", "day": day})
        _emit(fd, {"event": "done"})
        return 0
    for i, day in enumerate(d for d in args.day.split(",") if d):
        _emit(fd, {"event": "day", "day": day})
        run_day(fd, harness, package, day, only if i == 0 else [])
        _emit(fd, {"event": "day_done", "day": day})
    _emit(fd, {"event": "done"})
    return 0


class _Package:
    """The package under test, imported once (with the extension first) on first use; an
    import error is remembered and reported for every day."""

    def __init__(self, impl_dir: Path, harness, kernels: Path | None):
        self.impl_dir, self.harness, self.kernels = impl_dir, harness, kernels
        self.module = None
        self.error: dict | None = None
        self._tried = False

    def load(self):
        if not self._tried:
            self._tried = True
            if self.kernels is not None:
                load_extension(self.kernels, self.harness)
            try:
                self.module = import_impl(self.impl_dir)
            except BaseException as exc:  # noqa: BLE001 - anything the learner's import does
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self.error = describe_import_error(exc, self.impl_dir, self.harness)
        return self.module


def run_day(fd: int, harness, package: _Package, day: str, only: list[str]) -> None:
    try:
        importlib.import_module(day_module(day))
    except ModuleNotFoundError as exc:
        wanted = day_module(day)
        if not exc.name or not (wanted == exc.name or wanted.startswith(exc.name + ".")):
            raise
        _emit(fd, {"event": "plan", "checks": []})
        week, d = day.split(".")
        _emit(fd, {"event": "no_checks", "module": f"checks/week{week}/day{week}_{d}.py"})
        return
    specs = harness.REGISTRY.get(day, [])
    if only:
        specs = [s for s in specs if s.id in only]
    _emit(fd, {"event": "plan",
               "checks": [{"id": s.id, "task": s.task, "title": s.title} for s in specs]})
    impl = package.load()
    if package.error is not None:
        _emit(fd, {"event": "import_error", **package.error})
        return
    for spec in specs:
        mark(f"start {day} {spec.id}")  # what is printed from here on is this check's
        _emit(fd, {"event": "start", "id": spec.id})
        t0 = time.perf_counter()
        result = run_one(harness, impl, package.impl_dir, spec)
        result["duration_s"] = round(time.perf_counter() - t0, 4)
        mark("end")
        _emit(fd, {"event": "result", "id": spec.id, **result})


def run_measures(fd: int, harness, package: _Package, day: str, ids: list[str]) -> None:
    """Run the measurements ``ids`` of ``day`` on the package under test, one event each."""
    _emit(fd, {"event": "measures", "ids": ids})

    def report(mid, status, reason="", value=None, unit=""):
        _emit(fd, {"event": "measured", "id": mid, "status": status, "value": value,
                   "unit": unit, "reason": reason})

    try:
        importlib.import_module(day_module(day))
    except ModuleNotFoundError as exc:
        wanted = day_module(day)
        if not exc.name or not (wanted == exc.name or wanted.startswith(exc.name + ".")):
            raise
        week, d = day.split(".")
        for mid in ids:
            report(mid, "error", f"Day {day} has no checks module (checks/week{week}/"
                                 f"day{week}_{d}.py is missing from this tutor)")
        return
    specs = {m.id: m for m in getattr(harness, "MEASURES", {}).get(day, [])}
    impl = package.load()
    for mid in ids:
        spec = specs.get(mid)
        if spec is None:
            report(mid, "error", f"Day {day}'s checks declare no measurement {mid!r}")
            continue
        if package.error is not None:
            report(mid, "error", _one_line(package.error["message"]), unit=spec.unit)
            continue
        mark(f"start {day} {mid}")
        _emit(fd, {"event": "start", "id": mid})
        status, value, reason = measure_one(harness, impl, package.impl_dir, spec)
        mark("end")
        report(mid, status, reason, value, spec.unit)


def measure_one(harness, impl, impl_dir: Path, spec) -> tuple[str, float | None, str]:
    """(status, value, reason) of one measurement. Only a finite number the learner's code
    produced is "measured"; anything else says in one line why there is no number."""
    # The measurement runs with the same Ctx as a check: a check's spec without forbidden
    # APIs (measuring is not judging how the code is written).
    ctx = harness.Ctx(impl=impl, impl_dir=impl_dir,
                      spec=harness.CheckSpec(spec.day, spec.id, 0, spec.id, spec.fn))
    try:
        value = spec.fn(ctx)
    except BaseException as exc:  # noqa: BLE001 - anything the learner's code does
        if isinstance(exc, KeyboardInterrupt):
            raise
        status, reason = _why_not_measured(harness, impl_dir, exc)
        return status, None, _one_line(reason)
    else:
        try:
            if isinstance(value, bool) or value is None:
                raise TypeError
            number = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError, AttributeError):
            return "error", None, (f"The measurement gave {type(value).__name__} "
                                   f"{str(value)[:60]!r}, not a number (the tutor's fault)")
        if number != number or number in (float("inf"), float("-inf")):
            return "error", None, f"Your code gave {number}, not a finite number"
        return "measured", number, ""


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _why_not_measured(harness, impl_dir: Path, exc: BaseException) -> tuple[str, str]:
    """("skipped" or "error", why) for a measurement that raised ``exc``."""
    if isinstance(exc, harness.Skip):
        return "skipped", str(exc)
    if isinstance(exc, (harness.CheckFailed, harness.LearnerError)):
        return "error", exc.message  # ctx.symbol / ctx.call already said it for the learner
    if isinstance(exc, NotImplementedError):
        return "error", f"Not implemented yet: {exc}".rstrip(": ")
    frames = harness.learner_frames(exc.__traceback__, impl_dir)
    if frames:
        return "error", (f"Your code raised {type(exc).__name__}: {exc} "
                         f"({frames[-1].splitlines()[0]})")
    sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
    return "error", f"The measurement itself broke ({type(exc).__name__}: {exc})"


def run_one(harness, impl, impl_dir: Path, spec) -> dict:
    from tutor.checking import diffmap

    ctx = harness.Ctx(impl=impl, impl_dir=impl_dir, spec=spec)
    diffmap.watch(ctx, harness)
    try:
        evidence = spec.fn(ctx) or {}
        return {"status": "pass", "message": "", "evidence": evidence, "pitfall": None}
    except harness.Skip as s:
        return {"status": "skipped", "message": str(s), "evidence": {}, "pitfall": None,
                "skip_reason": str(s)}
    except harness.CheckFailed as f:
        return {"status": f.status, "message": f.message, "evidence": f.evidence,
                "pitfall": f.pitfall}
    except harness.LearnerError as e:
        return {"status": e.status, "message": e.message, "evidence": {"traceback": e.frames},
                "pitfall": getattr(e, "pitfall", None)}
    except NotImplementedError as exc:
        return {"status": "fail", "message": f"Not implemented yet: {exc}", "evidence": {},
                "pitfall": None}
    except BaseException as exc:  # noqa: BLE001 - a bug in a check, or learner code run outside ctx.call
        if isinstance(exc, KeyboardInterrupt):
            raise
        frames = harness.learner_frames(exc.__traceback__, impl_dir)
        if frames:
            return {"status": "error",
                    "message": f"Your code raised {type(exc).__name__}: {exc} "
                               f"({frames[-1].splitlines()[0]})",
                    "evidence": {"traceback": frames}, "pitfall": None}
        # The check itself broke: say so without showing its source.
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        return {"status": "error",
                "message": f"The check could not complete ({type(exc).__name__}: {exc}). "
                           "Make sure your outputs are mx.arrays of the documented shapes.",
                "evidence": {}, "pitfall": None}


if __name__ == "__main__":
    sys.exit(main())
