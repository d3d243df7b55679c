"""Child process groups the tutor starts, and ending them whatever ends the tutor.

Everything that runs learner code or a compiler starts in a process group of its own, so
one ``killpg`` ends it with all it spawned. The live groups are remembered here, and
:func:`install_reaper` makes SIGTERM and SIGHUP (a killed CLI, a closed terminal) kill
them before the tutor goes: a learner's endless loop must not outlive the tutor.
SIGKILL cannot be caught; the check child's own lifeline covers that
(:mod:`tutor.checking.lifeline`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading

# Plain set operations are atomic under the GIL; a lock here could deadlock when the
# signal handler interrupts the main thread while it holds that lock.
_LIVE: set[subprocess.Popen] = set()
REAPED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def popen_group(cmd: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen`` in a new session (its own process group), remembered until
    :func:`reap_group`."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _LIVE.add(proc)
    return proc


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap_group(proc: subprocess.Popen) -> None:
    """End a child and everything it started: kill its process group whether the child is
    still running or already gone (what it spawned may linger), then wait for it."""
    _killpg(proc.pid)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not fail
        pass
    _LIVE.discard(proc)


def run_group(cmd: list[str], timeout: float | None, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose timeout (or any exception) kills the whole group, not just
    the first process: a build tool's compilers go with it."""
    with popen_group(cmd, **kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            reap_group(proc)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def kill_live_groups() -> int:
    """SIGKILL every live group; return how many there were."""
    live = list(_LIVE)
    for proc in live:
        _killpg(proc.pid)
    return len(live)


def install_reaper() -> None:
    """On SIGTERM and SIGHUP, kill the live groups, then die of the same signal as if it
    had not been caught (a shell sees the conventional 128+n). A signal that is ignored
    (``nohup``) stays ignored. Only the main thread may set handlers: elsewhere (a test
    calling the CLI's main from a thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in REAPED_SIGNALS:
        previous = signal.getsignal(sig)
        if previous in (signal.SIG_IGN, _on_signal):
            continue
        _PREVIOUS[sig] = previous
        signal.signal(sig, _on_signal)


_PREVIOUS: dict[int, object] = {}


def _on_signal(signum, frame) -> None:
    kill_live_groups()
    previous = _PREVIOUS.get(signum)
    if callable(previous):  # someone else's handler: theirs decides what happens next
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
