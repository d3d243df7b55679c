"""Watch mode's file poller: notices saves under ``impl/`` and ``kernels/`` by their
modification times and reports a change once the files have been quiet for the debounce
time (an editor's save burst or a formatter's rewrite starts one check run, not three).

Pure Python and clock-injected, so it is tested without a UI or sleeps.
"""

from __future__ import annotations

import os
from pathlib import Path

SKIP_DIRS = {"__pycache__", "build", ".git", ".mypy_cache", ".pytest_cache", "backups"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".so", ".dylib", ".o", ".a", ".swp", ".tmp", "~")

POLL_S = 0.5
DEBOUNCE_S = 0.4


def snapshot(roots: list[Path]) -> dict[str, int]:
    """``{path: mtime_ns}`` for the source files under ``roots``."""
    out: dict[str, int] = {}
    stack = [Path(r) for r in roots]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            name = e.name
            try:
                if e.is_dir(follow_symlinks=False):
                    if name not in SKIP_DIRS and not name.startswith("."):
                        stack.append(Path(e.path))
                elif not name.endswith(SKIP_SUFFIXES) and not name.startswith((".", "#")):
                    out[e.path] = e.stat().st_mtime_ns
            except OSError:
                continue
    return out


class FileWatcher:
    def __init__(self, roots: list[Path], debounce_s: float = DEBOUNCE_S):
        self.roots = [Path(r) for r in roots]
        self.debounce_s = debounce_s
        self._last = snapshot(self.roots)
        self._changed_at: float | None = None
        self.changed: set[str] = set()

    def reset(self) -> None:
        """Forget pending changes and take the current files as the baseline."""
        self._last = snapshot(self.roots)
        self._changed_at = None
        self.changed = set()

    @property
    def pending(self) -> bool:
        return self._changed_at is not None

    def poll(self, now: float) -> bool:
        """Look at the files; True when a change has settled for ``debounce_s`` (then the
        changed paths are in :attr:`changed` until the next poll that finds a change)."""
        snap = snapshot(self.roots)
        if snap != self._last:
            keys = set(snap) | set(self._last)
            if self._changed_at is None:
                self.changed = set()
            self.changed |= {k for k in keys if snap.get(k) != self._last.get(k)}
            self._last = snap
            self._changed_at = now
            return False
        if self._changed_at is not None and now - self._changed_at >= self.debounce_s:
            self._changed_at = None
            return True
        return False
