"""Where the tutor's own content lives.

A wheel carries the course content inside the package (``tutor/_bundle``); a source
checkout or an editable install reads it from the top of the repository.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_PKG = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def content_root() -> Path:
    bundled = _PKG / "_bundle"
    if (bundled / "curriculum").is_dir():
        return bundled
    return _PKG.parent


def curriculum_dir() -> Path:
    return content_root() / "curriculum"


def checks_dir() -> Path:
    return content_root() / "checks"


def stubs_dir() -> Path:
    return content_root() / "impl"


def kernels_dir() -> Path:
    return content_root() / "kernels"


def answer_key_dir() -> Path:
    return checks_dir() / "answer_key"


def template(name: str) -> Path:
    """CLAUDE.md, AGENTS.md or SESSION-TEMPLATE.md."""
    return content_root() / name
