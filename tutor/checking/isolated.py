"""Starting a child process that runs learner code, and saying how it ended.

The check runner and the benchmark both run the learner's code this way (their children
differ, the isolation does not), so the launcher lives here, public, for both.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from tutor.checking.environment import child_env
from tutor.checking.lifeline import PARENT_ENV
from tutor.checking.procs import popen_group

__all__ = ["popen_isolated", "describe_exit"]


def popen_isolated(cmd: list[str], result_fd: int, cwd: Path) -> subprocess.Popen:
    """Start a child that runs learner code: its own process group (a timeout, or the end
    of the tutor, kills all it started), an allowlisted environment, prints to a pipe the
    caller drains, and ``result_fd`` (closed here, in the parent) as its channel for
    results. The child ties its life to this process (:mod:`tutor.checking.lifeline`).
    End it with :func:`tutor.checking.procs.reap_group`."""
    try:
        return popen_group(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, pass_fds=(result_fd,),
                           env=child_env({PARENT_ENV: str(os.getpid())}), cwd=str(cwd))
    finally:
        os.close(result_fd)


def describe_exit(code: int) -> str:
    """How a child ended, for the learner: 'killed by SIGSEGV (signal 11)', 'exited with
    code 3'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} (signal {-code})"
    return f"exited with code {code}"
