"""The environment of a process that runs learner code: an allowlist, not a denylist.

A denylist of secret-looking names misses ``GITHUB_PAT``, ``DB_PWD`` or a proxy URL with
a password in it; the learner's code (or something it imports) could print or send any
of them. So only what the check process needs is passed on, each group for a reason:

* PATH, HOME, USER, LOGNAME, TMPDIR/TMP/TEMP, TZ: what Python, tempfile and
  ``os.path.expanduser`` need to behave normally.
* LANG, LANGUAGE, LC_*: the locale, so text I/O decodes as the learner's terminal does.
* A few PYTHON* that change where modules are found or how the interpreter runs
  (PYTHONPATH, PYTHONHOME, PYTHONUSERBASE, PYTHONNOUSERSITE, ...); not PYTHONSTARTUP or
  PYTHONBREAKPOINT, which only matter interactively.
* VIRTUAL_ENV, CONDA_PREFIX: tools that ask which environment they are in.
* LD_LIBRARY_PATH, DYLD_*: the loader must find the libraries MLX and the built C++
  extension were linked against (conda and custom installs put them off the default path).
* MLX_*: MLX's own switches (device, Metal capture, compile).
* OMP_NUM_THREADS and the BLAS thread counts: a learner on a shared machine limits threads.
* CC, CXX, SDKROOT, DEVELOPER_DIR, MACOSX_DEPLOYMENT_TARGET: the compiler and, on macOS,
  the SDK that Metal kernels are built against.
* HF_HOME, HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, XDG_CACHE_HOME: where the week-2 model
  weights already are (the hub itself is switched off: offline).

Anything allowlisted whose name still looks like a secret (``MLX_API_KEY``) is dropped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "TMP", "TEMP", "TZ",
    "LANG", "LANGUAGE",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONPLATLIBDIR",
    "PYTHONSAFEPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONHASHSEED",
    "PYTHONUTF8", "PYTHONWARNINGS", "PYTHONFAULTHANDLER", "PYTHONDEVMODE", "PYTHONMALLOC",
    "VIRTUAL_ENV", "CONDA_PREFIX",
    "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
    "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "CC", "CXX", "SDKROOT", "DEVELOPER_DIR", "MACOSX_DEPLOYMENT_TARGET",
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME",
})
PREFIXES = ("LC_", "MLX_")
_SECRET = re.compile(r"KEY|TOKEN|SECRET|PASS|PWD|(^|_)PAT(_|$)|CREDENTIAL|AUTH|COOKIE",
                     re.IGNORECASE)


def allowed(name: str) -> bool:
    if name in NAMES:
        return True
    return name.startswith(PREFIXES) and not _SECRET.search(name)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a check process: the allowlist, offline model hubs, unbuffered
    UTF-8 output, and ``tutor`` importable from wherever this process found it."""
    env = {k: v for k, v in os.environ.items() if allowed(k)}
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env
