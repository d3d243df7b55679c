"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half.

The text goes to a temporary file in the *same directory* (so ``os.replace`` is a rename
on one filesystem), is flushed and fsync'ed, then renamed over the target. The directory
is fsync'ed afterwards (best effort) so the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write_text", "atomic_write_bytes", "TEMP_PREFIX", "TEMP_SUFFIX"]

TEMP_PREFIX = "."
TEMP_SUFFIX = ".tmp"
_DEFAULT_MODE = 0o644


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically; creates missing parent directories."""
    path = Path(path)
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = _DEFAULT_MODE
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.chmod(tmp, mode)
        except OSError:  # pragma: no cover - exotic filesystems
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(parent)
    return path


def atomic_write_text(path: Path | str, text: str, *, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, os.replace)."""
    return atomic_write_bytes(path, text.encode(encoding))


def temp_files_for(path: Path | str) -> list[Path]:
    """Leftover temp files of ``path`` (from a writer killed mid-write)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(path.parent.glob(f"{TEMP_PREFIX}{path.name}.*{TEMP_SUFFIX}"))


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        return
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on a directory
        pass
    finally:
        os.close(dfd)
