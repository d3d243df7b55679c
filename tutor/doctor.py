"""``tiny-llm-tutor doctor``: is this machine ready for the course?

Each finding is a line with a state (ok, warn, missing, info) and, when something is
missing, what to do about it.
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from tutor import hfcache

@dataclass
class Finding:
    name: str
    state: str  # ok | warn | missing | info
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return None


def _run(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout or out.stderr).strip() if out.returncode == 0 else None


BOOK_COMMIT = "ea4769d"
BOOK_TREE = f"https://github.com/skyzh/tiny-llm/tree/{BOOK_COMMIT}"
LIVE_SITE = "https://skyzh.github.io/tiny-llm/"


def edition_finding() -> Finding:
    """Which edition of the book the tutor follows, and why the live site differs."""
    return Finding("edition", "info",
                   f"Book: the Qwen2 edition at commit {BOOK_COMMIT} ({BOOK_TREE}); the live "
                   f"site {LIVE_SITE} is a Qwen3 edition since August 2026, so its code "
                   "differs from these lessons")


def python_finding() -> Finding:
    v = sys.version_info
    text = f"Python {platform.python_version()} ({sys.executable})"
    if v < (3, 11):  # pyproject's requires-python: the version the suite runs on
        return Finding("python", "missing", text, "Use Python 3.11 or newer.")
    return Finding("python", "ok", text)


def mlx_findings() -> list[Finding]:
    ver = _version("mlx")
    if ver is None:
        fix = "python -m pip install mlx" if sys.platform == "darwin" else \
            "python -m pip install 'mlx[cpu]'"
        return [Finding("mlx", "missing", "MLX is not installed", fix)]
    out = [Finding("mlx", "ok", f"MLX {ver}")]
    try:
        import mlx.core as mx

        metal = bool(mx.metal.is_available())
    except Exception as exc:  # noqa: BLE001 - a broken install is a finding, not a crash
        return out + [Finding("mlx-backend", "missing", f"MLX does not import: {exc}",
                              "Reinstall MLX for this platform.")]
    if metal:
        out.append(Finding("mlx-backend", "ok", "MLX backend: Metal (Apple GPU)"))
    else:
        out.append(Finding("mlx-backend", "info",
                           "MLX backend: CPU (no Metal here). Python and C++ checks run; "
                           "Metal kernel checks are reported as skipped."))
    lm = _version("mlx-lm")
    out.append(Finding("mlx-lm", "ok", f"mlx-lm {lm}") if lm else
               Finding("mlx-lm", "missing", "mlx-lm is not installed",
                       "python -m pip install mlx-lm"))
    return out


def compiler_finding() -> Finding:
    from tutor import kernels_build as kb

    try:
        cxx = kb.find_compiler()
    except kb.BuildSetupError as exc:
        return Finding("compiler", "missing", "No C++ compiler (needed for week 2's kernels)",
                       str(exc))
    first = (_run([cxx.split()[0], "--version"]) or cxx).splitlines()[0]
    return Finding("compiler", "ok", f"C++ compiler: {first}")


def cmake_finding() -> Finding:
    from tutor import kernels_build as kb

    try:
        path, ver = kb.find_cmake()
    except kb.BuildSetupError as exc:
        return Finding("cmake", "missing", "No CMake >= 3.27 (needed for week 2's kernels)",
                       str(exc))
    return Finding("cmake", "ok", f"cmake {'.'.join(map(str, ver))} ({path})")


def nanobind_finding() -> Finding:
    from tutor import kernels_build as kb

    try:
        kb.check_nanobind()
    except kb.BuildSetupError as exc:
        return Finding("nanobind", "warn", "nanobind does not match MLX (week 2's kernels)",
                       str(exc))
    return Finding("nanobind", "ok", f"nanobind {_version('nanobind')} matches MLX "
                   f"{_version('mlx')}")


def weights_findings() -> list[Finding]:
    out = []
    for short, repo in hfcache.QWEN2_REPOS.items():
        snap = hfcache.snapshot(repo)
        if snap:
            out.append(Finding(f"weights-{short}", "ok", f"{repo} in the Hugging Face cache"))
        else:
            state = "warn" if short == "qwen2-0.5b" else "info"
            out.append(Finding(f"weights-{short}", state, f"{repo} not in the local cache "
                               "(the checks that need it are skipped)",
                               f"hf download {repo}"))
    return out


def llm_finding(workspace: Path | None) -> Finding:
    from tutor import config

    try:
        cfg = config.load_llm_config(workspace)
    except config.ConfigError as exc:
        return Finding("llm", "warn", str(exc), f"fix or unset {exc.env}" if exc.env
                       else f"fix {config.CONFIG_HINT}")
    if cfg.backend == "offline":
        return Finding("llm", "info", "Coach: offline (scripted Socratic questions; no LLM)",
                       "to use an LLM, see `[llm]` in tiny-llm-tutor.toml or README's LLM section")
    if cfg.backend == "anthropic" and not cfg.api_key and not cfg.base_url:
        return Finding("llm", "missing", f"Coach: Claude ({cfg.model}) but ANTHROPIC_API_KEY is "
                       "not set", "export ANTHROPIC_API_KEY=...")
    url = cfg.base_url or "https://api.anthropic.com"
    ok, why = _reachable(url)
    desc = f"Coach: {cfg.backend} {cfg.model or ''} at {masked_url(url)}".rstrip()
    if ok:
        return Finding("llm", "ok", desc + " (reachable)")
    return Finding("llm", "warn", f"{desc}: not reachable ({why}); the offline coach answers "
                   "meanwhile", "start the server or check the URL and network")


def masked_url(url: str) -> str:
    """The URL without the password (or token) some servers take in its user part, and
    without query values, which may carry keys: doctor's output gets pasted into issues."""
    u = urlparse(url)
    netloc = u.netloc
    if u.username is not None or u.password is not None:
        host = u.hostname or ""
        if u.port:
            host += f":{u.port}"
        netloc = f"{u.username or ''}:***@{host}" if u.password is not None else f"***@{host}"
    query = "&".join(f"{part.split('=', 1)[0]}=***" if "=" in part else part
                     for part in u.query.split("&")) if u.query else ""
    return u._replace(netloc=netloc, query=query).geturl()


def _reachable(url: str, timeout: float = 2.0) -> tuple[bool, str]:
    u = urlparse(url)
    host = u.hostname or "localhost"
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, exc.strerror or str(exc)


def run_doctor(workspace: Path | None) -> list[Finding]:
    findings = [edition_finding(), python_finding(), *mlx_findings(), compiler_finding(),
                cmake_finding(), nanobind_finding(), *weights_findings(),
                llm_finding(workspace)]
    if workspace is None:
        findings.append(Finding("workspace", "info", "No workspace here",
                                "tiny-llm-tutor init DIR  (then cd DIR)"))
    else:
        findings.append(Finding("workspace", "ok", f"Workspace: {workspace}"))
    return findings
