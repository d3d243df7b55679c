"""A check child never outlives the tutor that started it, nor its own time budget.

The tutor reaps its children on SIGTERM and SIGHUP (:mod:`tutor.checking.procs`), but
SIGKILL, a crash or a bug there would leave a learner's endless loop spinning at 100% CPU
forever. So the child guards itself three ways, each covering what the others miss:

* Linux: a parent-death signal (SIGKILL, which needs no cooperation from a main thread
  stuck in native code). It fires when the *thread* that forked the child ends; the
  runner forks, waits for and reaps the child in one call on one thread, so that thread
  outlives the child. The parent may have died before the signal was armed: getppid is
  checked right after.
* Everywhere (macOS has no parent-death signal): a watchdog thread that kills the child's
  process group, with whatever the learner's code spawned, once its parent pid changes.
* A hard deadline: the whole budget plus a margin, after which the watchdog kills the
  group, and faulthandler's C thread (which needs no GIL) ends the process if even
  that could not run.
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import sys
import threading
import time

PARENT_ENV = "TINY_LLM_TUTOR_PARENT"  # the pid the child must stay attached to
POLL_S = 0.1
DEADLINE_MARGIN_S = 10.0
_PR_SET_PDEATHSIG = 1
_DEVNULL = None


def _die() -> None:
    # The group goes too (what the learner's code spawned), but only a group this process
    # leads: the runner starts one per child; anyone else's group is not ours to end.
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def _arm_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
        pass


def hold(budget_s: float | None, parent: int | None = None, *, pdeathsig: bool = True,
         margin_s: float = DEADLINE_MARGIN_S) -> None:
    """Tie this process to ``parent`` (default: the pid in ``$TINY_LLM_TUTOR_PARENT``, else
    the current parent) and, if ``budget_s`` is given, end it ``margin_s`` after that.
    Call first thing in a child; returns at once."""
    if parent is None:
        parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    if pdeathsig:
        _arm_parent_death_signal()
    if os.getppid() != parent:  # the parent died before the signal was armed
        _die()
    deadline = None
    if budget_s is not None:
        limit = budget_s + margin_s
        deadline = time.monotonic() + limit
        # The tutor stopped listening long before: the traceback goes nowhere.
        global _DEVNULL
        _DEVNULL = open(os.devnull, "w")  # noqa: SIM115 - must stay open for faulthandler
        faulthandler.dump_traceback_later(limit + 2, exit=True, file=_DEVNULL)
    threading.Thread(target=_watch, args=(parent, deadline), daemon=True,
                     name="tutor-lifeline").start()


def _watch(parent: int, deadline: float | None) -> None:
    while os.getppid() == parent and (deadline is None or time.monotonic() < deadline):
        time.sleep(POLL_S)
    _die()
