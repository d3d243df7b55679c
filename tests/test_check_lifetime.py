"""A check process never outlives the tutor: kill the CLI (TERM, HUP or KILL) while a
learner's endless loop runs, and the loop goes too. Its pieces: the CLI's reaper
(tutor.checking.procs) and the child's lifeline (tutor.checking.lifeline)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from waiting import seconds_until

GONE_WITHIN_S = 3.0
ROOT = Path(__file__).resolve().parents[1]


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _running(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaps (an orphan in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _processes(needle: str) -> list[int]:
    """Live processes whose command line holds ``needle``."""
    return [int(p) for p in os.listdir("/proc") if p.isdigit()
            and needle.encode() in _cmdline(p) and _running(int(p))]


def _endless(impl: Path, flag: Path) -> None:
    """The learner's attention (what day 1.1 checks first) loops forever, after saying so."""
    path = impl / "attention.py"
    src = path.read_text()
    stub = src.index("    raise NotImplementedError", src.index("def scaled_dot_product_attention_simple"))
    path.write_text(src[:stub] + f"    open({str(flag)!r}, 'w').close()\n"
                    "    while True:\n        pass\n" + src[stub:])


@pytest.fixture
def looping_cli(stub_impl, tmp_path):
    flag = tmp_path / "looping"
    _endless(stub_impl, flag)
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this tree's tutor, not an installed one
    cli = subprocess.Popen([sys.executable, "-m", "tutor", "check", "1.1", "--impl",
                            str(stub_impl), "--timeout", "120"], cwd=tmp_path, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert seconds_until(flag.exists, 60) is not None, "the check never reached the loop"
        children = _processes(str(stub_impl))
        assert children, "no check process found"
        yield cli, str(stub_impl)
    finally:
        cli.kill()
        cli.wait()
        for pid in _processes(str(stub_impl)):  # never leave a spinner behind
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL],
                         ids=lambda s: s.name)
def test_killing_the_cli_ends_the_check_process(looping_cli, sig):
    cli, impl = looping_cli
    cli.send_signal(sig)
    took = seconds_until(lambda: not _processes(impl), GONE_WITHIN_S)
    assert took is not None, f"check process still running {GONE_WITHIN_S} s after {sig.name}"
    print(f"{sig.name}: check process gone after {took:.3f} s")
    assert cli.wait(timeout=10) == -sig  # died of the signal: the shell sees 128+n


# --------------------------------------------------------------------------- lifeline

_HOLD = """
import os, sys, time
sys.path.insert(0, {root!r})
from tutor.checking import lifeline
lifeline.hold({budget}, parent={parent}, pdeathsig={pdeathsig}, margin_s={margin})
open({flag!r}, "w").close()
while True:
    pass
"""


def _spawn_held(tmp_path, budget=None, parent=None, pdeathsig=True, via_middle=False,
                margin=10.0):
    """A looping process tied to ``parent`` by lifeline.hold; ``via_middle`` starts it
    from a middle process (which the test can kill), with parent = that middle."""
    root = str(ROOT)
    flag = tmp_path / "held"
    code = _HOLD.format(root=root, budget=budget, parent=parent, pdeathsig=pdeathsig,
                        flag=str(flag), margin=margin)
    if not via_middle:
        return subprocess.Popen([sys.executable, "-c", code]), flag
    middle = ("import os, subprocess, sys; code = sys.argv[1].replace('None, pdeathsig', "
              "str(os.getpid()) + ', pdeathsig', 1); subprocess.Popen([sys.executable, '-c', "
              "code]); import time; time.sleep(600)")
    return subprocess.Popen([sys.executable, "-c", middle, code]), flag


def _held_pids(flag: Path) -> list[int]:
    return _processes(str(flag))


def test_lifeline_exits_at_once_if_the_parent_is_already_gone(tmp_path):
    proc, flag = _spawn_held(tmp_path, parent=1)  # not our parent: it "died" before hold
    assert proc.wait(timeout=30) != 0
    assert not flag.exists()


def test_lifeline_watchdog_without_parent_death_signal(tmp_path):
    """macOS has no parent-death signal: the watchdog alone notices the new parent."""
    middle, flag = _spawn_held(tmp_path, pdeathsig=False, via_middle=True)
    try:
        assert seconds_until(flag.exists, 30) is not None
        assert _held_pids(flag)
        middle.kill()
        middle.wait()
        took = seconds_until(lambda: not _held_pids(flag), GONE_WITHIN_S)
        assert took is not None, "the held process outlived its parent"
        print(f"watchdog alone: held process gone {took:.3f} s after its parent")
    finally:
        middle.kill()
        for pid in _held_pids(flag):
            os.kill(pid, signal.SIGKILL)


def test_lifeline_parent_death_signal(tmp_path):
    middle, flag = _spawn_held(tmp_path, pdeathsig=True, via_middle=True)
    try:
        assert seconds_until(flag.exists, 30) is not None
        middle.kill()
        middle.wait()
        took = seconds_until(lambda: not _held_pids(flag), 1.0)
        assert took is not None, "the held process outlived its parent"
        print(f"parent-death signal: held process gone {took:.3f} s after its parent")
    finally:
        middle.kill()
        for pid in _held_pids(flag):
            os.kill(pid, signal.SIGKILL)


def test_lifeline_hard_deadline(tmp_path):
    proc, flag = _spawn_held(tmp_path, budget=0.5, margin=0.5, parent="os.getppid()")
    try:
        t0 = time.monotonic()
        assert proc.wait(timeout=20) != 0
        took = time.monotonic() - t0
        assert flag.exists()
        assert took < 5, took
        print(f"hard deadline (budget 0.5 s + margin 0.5 s): ended after {took:.3f} s")
    finally:
        proc.kill()


# --------------------------------------------------------------------------- the app


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_closing_the_terminal_of_the_app_ends_the_check_process(tmp_path):
    """The full-screen tutor runs checks from a worker thread; closing its terminal
    (SIGHUP to the app) mid-check leaves no check process behind."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "tutor", "init", "ws"], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    flag = tmp_path / "looping"
    _endless(ws / "impl", flag)
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", *args],
                              capture_output=True, text=True, timeout=30).stdout

    cmd = (f"cd {ws} && env -u TINY_LLM_TUTOR_WORKSPACE TERM=xterm-256color "
           f"TINY_LLM_TUTOR_LLM=offline PYTHONPATH={ROOT} {sys.executable} -m tutor start week1")
    tmux("new-session", "-d", "-s", "app", "-x", "100", "-y", "32", cmd)
    impl = str(ws / "impl")
    try:
        assert seconds_until(lambda: "Quit" in tmux("capture-pane", "-p", "-t", "app"), 60) is not None, \
            tmux("capture-pane", "-p", "-t", "app")
        tmux("send-keys", "-t", "app", "c")
        assert seconds_until(flag.exists, 60) is not None, tmux("capture-pane", "-p", "-t", "app")
        assert _processes(impl)
        tmux("kill-session", "-t", "app")  # the terminal goes: SIGHUP
        took = seconds_until(lambda: not _processes(impl), GONE_WITHIN_S)
        assert took is not None, "the check process outlived the app's terminal"
        print(f"app SIGHUP: check process gone after {took:.3f} s")
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
        for pid in _processes(impl):
            os.kill(pid, signal.SIGKILL)
