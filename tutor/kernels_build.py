"""Building the learner's MLX extension (``kernels/``) and the answer key's.

``build(kernels_dir)`` configures and builds a CMake project in place: the build tree is
``<dir>/build`` (full log in ``build/build.log``) and the Python module lands in the
package folder next to ``__init__.py`` (``tiny_llm_ext/`` for the learner,
``tiny_llm_ext_key/`` for the answer key). Before it starts it makes sure of the three
things that break an MLX extension build most often:

* CMake >= 3.27: the system's if new enough, else the one from PyPI's ``cmake`` package;
* a C++ compiler;
* a nanobind with the same ABI as the one the installed ``mlx`` was built with. The
  extension shares MLX's Python types (``NB_DOMAIN mlx``); with another nanobind it
  builds fine and then every call fails with "incompatible function arguments".

Compiler errors come back as ``file:line:col: message`` with the first one first.
``import_extension(kernels_dir)`` (from :mod:`tutor.checking.extension`) imports the
built package from that folder.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Importing a build is the check child's business, a layer below: what it finds is what
# a build must have made.
from tutor.checking.extension import built_module, find_package, no_package
from tutor.checking.procs import run_group

CMAKE_MIN = (3, 27)
BUILD_TIMEOUT_S = 900

# nanobind's internals version -> the nanobind release to install for it. The ABI key
# is read from the mlx binary itself; this table only names the pip command.
# (Verified against the nanobind wheels: 2.4.0 -> 15, 2.8-2.9 -> 16, 2.10 -> 17,
# 2.11 -> 18, 2.12 -> 19, 2.13-2.14 -> 20, 2.15 -> 21, 3.0.1-3.1.0 -> 22; and the
# mlx wheels: 0.29.x -> 15, 0.30.x -> 17, 0.31.x -> 19, 0.32.0-0.32.1 -> 20,
# 0.32.2 -> 21, 0.32.3-0.32.4 -> 22.)
NANOBIND_FOR_INTERNALS = {
    15: "2.4.0", 16: "2.9.2", 17: "2.10.2", 18: "2.11.0", 19: "2.12.0",
    20: "2.13.0", 21: "2.15.0", 22: "3.1.0",
}


@dataclass
class CompilerMessage:
    file: str
    line: int
    col: int | None
    kind: str  # error | warning | linker | cmake
    text: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}" + (f":{self.col}" if self.col else "") if self.line \
            else self.file
        return f"{where}: {self.kind}: {self.text}" if where else f"{self.kind}: {self.text}"


@dataclass
class BuildResult:
    ok: bool
    messages: list[str]
    log_path: Path | None
    seconds: float
    errors: list[CompilerMessage] = field(default_factory=list)
    module: Path | None = None


class BuildSetupError(Exception):
    """The toolchain is not ready; the message says what to run."""


# --------------------------------------------------------------------------- toolchain


def _pip(spec: str) -> str:
    return f"{sys.executable} -m pip install '{spec}'"


def _cmake_version(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"version (\d+)\.(\d+)(?:\.(\d+))?", out.stdout or "")
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def find_cmake() -> tuple[str, tuple[int, ...]]:
    """The cmake to use: ``$CMAKE`` or the system's if >= 3.27, else PyPI's cmake."""
    tried = []
    candidates = []
    if os.environ.get("CMAKE"):
        candidates.append(os.environ["CMAKE"])
    if shutil.which("cmake"):
        candidates.append(shutil.which("cmake"))
    try:
        import cmake as cmake_pkg  # PyPI's cmake: the binary ships inside the package

        exe = "cmake.exe" if os.name == "nt" else "cmake"
        candidates.append(str(Path(cmake_pkg.CMAKE_BIN_DIR) / exe))
    except (ImportError, AttributeError):
        pass
    for path in candidates:
        ver = _cmake_version(path)
        if ver is None:
            continue
        if ver[:2] >= CMAKE_MIN:
            return path, ver
        tried.append(f"{'.'.join(map(str, ver))} at {path}")
    found = f" (found {', '.join(tried)})" if tried else ""
    raise BuildSetupError(
        f"CMake {CMAKE_MIN[0]}.{CMAKE_MIN[1]} or newer is needed to build the kernels{found}. "
        f"Install it into this Python: {_pip('cmake>=3.27')}")


def find_compiler() -> str:
    cxx = os.environ.get("CXX")
    if cxx:
        first = cxx.split()[0]
        if shutil.which(first):
            return cxx
        raise BuildSetupError(f"CXX is set to {cxx!r}, which is not an executable.")
    for name in ("c++", "clang++", "g++"):
        path = shutil.which(name)
        if path:
            return path
    if sys.platform == "darwin":
        fix = "install Apple's command line tools: xcode-select --install"
    else:
        fix = ("install one, e.g. `sudo apt install g++` (Debian/Ubuntu) or "
               "`sudo dnf install gcc-c++` (Fedora)")
    raise BuildSetupError(f"No C++ compiler found (tried c++, clang++, g++); {fix}.")


def _mlx_core_binary() -> Path | None:
    spec = importlib.util.find_spec("mlx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        for p in sorted(Path(loc).glob("core*.so")) + sorted(Path(loc).glob("core*.pyd")):
            return p
    return None


_KEY_RE = re.compile(rb"(nanobind_[a-z0-9_]+_v\d+(?:_stable)?|v\d+_[a-z]+_[a-z0-9_]+)")


def nanobind_key_of(binary: Path) -> str | None:
    """The nanobind internals key compiled into an extension module (its ABI tag)."""
    try:
        data = binary.read_bytes()
    except OSError:
        return None
    keys = {m.decode() for m in _KEY_RE.findall(data)}
    keys = {k for k in keys if re.search(r"(^v\d+_)|(_v\d+(_stable)?$)", k)}
    return sorted(keys)[0] if keys else None


def _internals_version(key: str | None) -> int | None:
    m = re.search(r"_v(\d+)(?:_stable)?$", key or "") or re.match(r"v(\d+)_", key or "")
    return int(m.group(1)) if m else None


def mlx_nanobind_key() -> str | None:
    binary = _mlx_core_binary()
    return nanobind_key_of(binary) if binary else None


def installed_nanobind() -> tuple[str | None, int | None]:
    """(version, internals ABI version) of the installed nanobind package."""
    try:
        ver = md.version("nanobind")
    except md.PackageNotFoundError:
        return None, None
    spec = importlib.util.find_spec("nanobind")
    if spec is None or not spec.submodule_search_locations:
        return ver, None
    src = Path(list(spec.submodule_search_locations)[0]) / "src"
    for name in ("nb_internals.h", "nb_abi.h", "nb_internals.cpp"):
        p = src / name
        if p.is_file():
            m = re.search(r"define\s+NB_INTERNALS_VERSION\s+(\d+)", p.read_text(errors="replace"))
            if m:
                return ver, int(m.group(1))
    return ver, None


def check_nanobind() -> tuple[str, list[str]]:
    """Raises BuildSetupError unless the installed nanobind matches mlx's. Returns the
    mlx key and any extra compiler flags the match needs."""
    try:
        mlx_ver = md.version("mlx")
    except md.PackageNotFoundError:
        raise BuildSetupError("MLX is not installed: " + _pip(
            "mlx" if sys.platform == "darwin" else "mlx[cpu]")) from None
    key = mlx_nanobind_key()
    want = _internals_version(key)
    nb_ver, nb_internals = installed_nanobind()
    suggestion = NANOBIND_FOR_INTERNALS.get(want or -1)
    fix = _pip(f"nanobind=={suggestion}") if suggestion else \
        f"install the nanobind release that mlx {mlx_ver} was built with"
    if nb_ver is None:
        raise BuildSetupError(f"nanobind is not installed (the kernels' Python bindings need the "
                              f"one mlx {mlx_ver} was built with). Run: {fix}")
    if want is not None and nb_internals is not None and want != nb_internals:
        raise BuildSetupError(
            f"nanobind {nb_ver} (ABI v{nb_internals}) does not match mlx {mlx_ver}, which was "
            f"built with nanobind ABI v{want}: the extension would build but every call would "
            f"fail with 'incompatible function arguments'. Run: {fix}")
    flags = []
    # Old-style keys name the GCC C++ ABI (e.g. mlx 0.29: cxxabi1016); GCC >= 13's
    # default differs, so ask for the same one.
    m = re.search(r"gcc_libstdcpp_cxxabi10(\d\d)", key or "")
    if m:
        flags.append(f"-fabi-version={int(m.group(1))}")
    return key or "", flags


# --------------------------------------------------------------------------- errors

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CC_RE = re.compile(
    r"^(?P<file>[^\s:][^:\n]*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s+"
    r"(?P<kind>fatal error|error|warning):\s*(?P<msg>.*)$")
_CMAKE_RE = re.compile(r"^CMake Error at (?P<file>[^:\n]+):(?P<line>\d+)\s*(?:\((?P<cmd>[^)]*)\))?:")
_LD_UNDEF_RE = re.compile(r"undefined reference to [`'](?P<sym>[^'`]+)'")
_LD_MAC_RE = re.compile(r'^\s*"(?P<sym>[^"]+)", referenced from:')


def _rel(path: str, root: Path) -> str:
    try:
        p = Path(path)
        if not p.is_absolute():
            return path
        return str(p.resolve().relative_to(root.resolve()))
    except (ValueError, OSError):
        return path


def parse_compiler_output(text: str, root: Path) -> list[CompilerMessage]:
    """Errors (and warnings) from GCC/Clang/ld/CMake output, in the order they appear,
    duplicates (the same header error from several files) dropped."""
    out: list[CompilerMessage] = []
    seen = set()
    lines = [_ANSI.sub("", ln) for ln in text.splitlines()]
    for i, ln in enumerate(lines):
        msg = None
        m = _CC_RE.match(ln)
        if m:
            kind = "error" if "error" in m.group("kind") else "warning"
            msg = CompilerMessage(_rel(m.group("file"), root), int(m.group("line")),
                                  int(m.group("col")) if m.group("col") else None, kind,
                                  m.group("msg").strip())
        elif (m := _CMAKE_RE.match(ln)):
            detail = []
            for nxt in lines[i + 1:i + 10]:
                if nxt.strip() and not nxt.startswith(" "):
                    break
                if nxt.strip():
                    detail.append(_rel(nxt.strip(), root))
            msg = CompilerMessage(_rel(m.group("file"), root), int(m.group("line")), None, "error",
                                  " ".join(detail) or "CMake error")
        elif (m := _LD_UNDEF_RE.search(ln)) or (m := _LD_MAC_RE.match(ln)):
            msg = CompilerMessage("", 0, None, "error",
                                  f"undefined reference to {m.group('sym')} (the linker: declared "
                                  "and called, but no definition is compiled in; is its .cpp in "
                                  "CMakeLists.txt's target_sources?)")
        elif ln.startswith("CMake Error:"):
            msg = CompilerMessage("", 0, None, "error", ln[len("CMake Error:"):].strip())
        if msg is None:
            continue
        ident = (msg.file, msg.line, msg.col, msg.kind, msg.text)
        if ident not in seen:
            seen.add(ident)
            out.append(msg)
    return out


# --------------------------------------------------------------------------- build


def _package_dir(src: Path) -> Path:
    pkg = find_package(src)
    if pkg is None:
        raise BuildSetupError(no_package(src))
    return pkg


def _generator() -> tuple[str | None, dict]:
    if shutil.which("ninja"):
        return "Ninja", {}
    try:
        import ninja as ninja_pkg

        path = Path(ninja_pkg.BIN_DIR) / ("ninja.exe" if os.name == "nt" else "ninja")
        if path.is_file():
            return "Ninja", {"CMAKE_MAKE_PROGRAM": str(path)}
    except (ImportError, AttributeError):
        pass
    return None, {}


def _cache_value(build_dir: Path, key: str) -> str | None:
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return None
    m = re.search(rf"^{re.escape(key)}:[A-Z]+=(.*)$", cache.read_text(errors="replace"), re.M)
    return m.group(1).strip() if m else None


def build(kernels_dir: Path, *, clean: bool = False, jobs: int | None = None,
          timeout: float = BUILD_TIMEOUT_S) -> BuildResult:
    """Configure and build the CMake project in ``kernels_dir`` in place."""
    t0 = time.perf_counter()
    src = Path(kernels_dir).expanduser().resolve()
    build_dir = src / "build"
    log_path = build_dir / "build.log"

    def done(ok, messages, errors=(), module=None, log=True):
        return BuildResult(ok, list(messages), log_path if log and log_path.exists() else None,
                           time.perf_counter() - t0, list(errors), module)

    if not (src / "CMakeLists.txt").is_file():
        return done(False, [f"{src} has no CMakeLists.txt; point --dir at your kernels/ folder."],
                    log=False)
    try:
        pkg = _package_dir(src)
        cmake, cmake_ver = find_cmake()
        cxx = find_compiler()
        mlx_key, extra_flags = check_nanobind()
    except BuildSetupError as exc:
        return done(False, [str(exc)], log=False)

    generator, gen_defs = _generator()
    cached = _cache_value(build_dir, "CMAKE_GENERATOR")
    cached_python = _cache_value(build_dir, "Python_EXECUTABLE")
    stale = bool(cached) and (cached != (generator or cached) or
                              (cached_python is not None and cached_python != sys.executable))
    if clean or stale:
        shutil.rmtree(build_dir, ignore_errors=True)
        for old in list(pkg.glob("_ext*.so")) + list(pkg.glob("*.metallib")):
            old.unlink(missing_ok=True)
        cached = None
    build_dir.mkdir(parents=True, exist_ok=True)

    env = dict(os.environ)
    env.setdefault("CXX", cxx)
    env["CLICOLOR"] = "0"
    env.pop("CLICOLOR_FORCE", None)
    configure = [cmake, "-S", str(src), "-B", str(build_dir),
                 "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}",
                 "-DCMAKE_COLOR_DIAGNOSTICS=OFF"]
    if generator and not cached:
        configure += ["-G", generator]
    configure += [f"-D{k}={v}" for k, v in gen_defs.items()]
    if extra_flags:
        configure.append(f"-DCMAKE_CXX_FLAGS={' '.join(extra_flags)}")
    jobs = jobs or max(1, os.cpu_count() or 1)
    compile_cmd = [cmake, "--build", str(build_dir), "--parallel", str(jobs)]

    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# cmake {'.'.join(map(str, cmake_ver))} ({cmake}); compiler {cxx}; "
                  f"mlx nanobind key {mlx_key}\n")
        for step, cmd in (("configure", configure), ("build", compile_cmd)):
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            try:
                # A group, so a timeout ends cmake's compilers too, not cmake alone.
                proc = run_group(cmd, timeout, cwd=src, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, errors="replace")
            except subprocess.TimeoutExpired:
                log.write(f"\n# {step} timed out after {timeout:.0f} s\n")
                return done(False, [f"The kernel {step} timed out after {timeout:.0f} s; "
                                    f"see {log_path}"])
            log.write(proc.stdout)
            if proc.returncode != 0:
                errors = parse_compiler_output(proc.stdout, src)
                hard = [e for e in errors if e.kind == "error"]
                if not hard:
                    tail = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()][-5:]
                    messages = [f"The {step} step failed (exit {proc.returncode}):", *tail]
                else:
                    messages = [e.render() for e in hard[:10]]
                    if len(hard) > 10:
                        messages.append(f"... and {len(hard) - 10} more errors")
                messages.append(f"Full log: {log_path}")
                return done(False, messages, hard)

    module = built_module(pkg)
    if module is None:
        return done(False, [f"The build finished but no _ext module appeared in {pkg}; "
                            f"see {log_path}"])
    problem = _smoke_import(pkg, env, timeout)
    if problem:
        return done(False, [problem, f"Full log: {log_path}"], module=module)
    built_key = nanobind_key_of(module)
    if mlx_key and built_key and built_key != mlx_key:
        return done(False, [
            f"The module was built with nanobind ABI {built_key}, but mlx uses {mlx_key}: "
            f"calls would fail with 'incompatible function arguments'. Install the matching "
            f"nanobind and rebuild with --clean."], module=module)
    secs = time.perf_counter() - t0
    return BuildResult(True, [f"Built {pkg.name} in {secs:.1f} s: {_rel(str(module), src.parent)}"],
                       log_path, secs, [], module)


def _demangle(symbol: str) -> str:
    tool = shutil.which("c++filt")
    if not tool:
        return symbol
    try:
        out = subprocess.run([tool, symbol], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return symbol
    return out.stdout.strip() or symbol


def _smoke_import(pkg: Path, env: dict, timeout: float) -> str | None:
    """Import the fresh build in a child Python. On Linux a shared module links even
    with undefined symbols (a function declared, called and never defined); that only
    shows when it is loaded, so load it here and report it as a build problem."""
    code = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); "
            "importlib.import_module(sys.argv[2])")
    try:
        proc = run_group([sys.executable, "-c", code, str(pkg.parent), pkg.name], timeout,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    except subprocess.TimeoutExpired:
        return f"Importing the built {pkg.name} timed out."
    if proc.returncode == 0:
        return None
    err = (proc.stderr or proc.stdout).strip()
    m = re.search(r"undefined symbol: (\S+)", err)
    if m:
        return (f"The module links but cannot load: undefined symbol {_demangle(m.group(1))}. "
                "It is declared and called, but no definition is compiled in: check the "
                "function's name and signature in its .cpp, and that the .cpp is in "
                "CMakeLists.txt's target_sources.")
    last = err.splitlines()[-1] if err else f"exit {proc.returncode}"
    return f"The built {pkg.name} does not import: {last}"


def answer_key_source() -> Path:
    from tutor import paths

    return paths.checks_dir() / "answer_key_ext"


def build_answer_key(dest: Path, *, clean: bool = False) -> BuildResult:
    """Copy the answer key's extension sources to ``dest`` and build them there (the
    package is ``dest/tiny_llm_ext_key``). Unchanged sources keep their timestamps, so a
    second call only rebuilds what changed."""
    dest = Path(dest)
    shutil.copytree(answer_key_source(), dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("build", "__pycache__", "*.so", "*.metallib"))
    return build(dest, clean=clean)
