"""The lock that keeps a second tutor off a workspace's records: a non-blocking
``fcntl.flock`` on ``progress/.lock``, which holds the owner's PID so that the refusal
can name it. The kernel drops the lock when its holder dies, so a crash never leaves
the records locked.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tutor.records.schema import StateError  # every records error is a StateError

try:  # POSIX only; the tutor targets macOS and Linux
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class StateLocked(StateError):
    """Another tutor holds ``progress/.lock``."""

    def __init__(self, pid: int | None, lock_path: Path):
        self.pid = pid
        self.lock_path = Path(lock_path)
        who = f"PID {pid}" if pid else "PID unknown"
        super().__init__(
            f"another tiny-llm-tutor ({who}) is already using these progress records "
            f"({self.lock_path}); close it and try again"
        )


def take_lock(lock_path: Path) -> int:
    """Open ``lock_path`` and lock it; returns the descriptor for :func:`release_lock`.
    Raises :class:`StateLocked` when another process holds it."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
            pid = _read_pid(fd)
            os.close(fd)
            raise StateLocked(pid, lock_path) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release_lock(fd: int) -> None:
    """Empty the PID file, unlock it and close it."""
    try:
        os.ftruncate(fd, 0)
    except OSError:  # pragma: no cover
        pass
    finally:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError:  # pragma: no cover
                pass
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 64, 0)
    except OSError:  # pragma: no cover
        return None
    try:
        pid = int(raw.decode("ascii", "replace").strip() or 0)
    except ValueError:
        return None
    return pid or None
