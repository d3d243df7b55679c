"""Where the tutor's own content lives.

A wheel carries the course content inside the package (``tutor/_bundle``); a source
checkout or an editable install reads it from the top of the repository.

The stubs a new workspace starts from, and that ``reset`` restores, live in ``stubs/impl``
and ``stubs/kernels``, never in the repository's own ``impl/`` and ``kernels/``: the
repository is also a learner's workspace, and a learner working in it edits those two.
Copying them would hand a new workspace someone's solutions, and make ``reset`` "restore"
to them. ``stubs/`` is the pristine, committed copy nobody works in; change a stub there.
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


def stubs_root() -> Path:
    """Holds ``impl/`` and ``kernels/`` as shipped: a workspace path such as
    ``impl/basics.py`` names its stub relative to this folder."""
    return content_root() / "stubs"


def stubs_dir() -> Path:
    return stubs_root() / "impl"


def kernels_dir() -> Path:
    """The kernels/ skeleton as shipped (not any learner's kernels/)."""
    return stubs_root() / "kernels"


def answer_key_dir() -> Path:
    return checks_dir() / "answer_key"


def template(name: str) -> Path:
    """CLAUDE.md, AGENTS.md or SESSION-TEMPLATE.md."""
    return content_root() / name
