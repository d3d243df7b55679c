"""Time from launch to the first painted screen of `tiny-llm-tutor start week1`.

Launches the installed console script in a real pseudo-terminal (a private tmux server,
100x32, TERM=xterm-256color) in a fresh workspace made by `tiny-llm-tutor init`, polls the
pane every 5 ms until the first screen is painted (the status line's "Day 1.1" and the
footer's "Quit" are both on screen), then quits with `q` and waits for the exit. Reports
the median of N runs (the bar: <= 1.0 s on a 2-core machine).

    python benchmarks/tui_startup.py [-n 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXE = Path(sys.executable).parent / "tiny-llm-tutor"
MARKERS = ("Day 1.1", "Quit")


def _tmux(sock: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-S", sock, "-f", "/dev/null", *args], capture_output=True,
                          text=True, check=check)


def _pane(sock: str, target: str) -> str:
    r = _tmux(sock, "capture-pane", "-p", "-t", target, check=False)
    return r.stdout if r.returncode == 0 else ""


def one_run(sock: str, ws: Path, i: int, timeout: float = 20.0) -> float:
    name = f"run{i}"
    cmd = (f"cd {ws} && env TERM=xterm-256color TINY_LLM_TUTOR_LLM=offline {EXE} start week1; "
           f"echo EXITED:$?; sleep 30")
    t0 = time.perf_counter()
    _tmux(sock, "new-window", "-d", "-t", "bench", "-n", name, cmd)
    target = f"bench:{name}"
    deadline = t0 + timeout
    while True:
        screen = _pane(sock, target)
        if all(m in screen for m in MARKERS):
            painted = time.perf_counter() - t0
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no first screen within {timeout} s:\n{screen}")
        time.sleep(0.005)
    _tmux(sock, "send-keys", "-t", target, "q")
    while "EXITED:" not in _pane(sock, target):
        if time.perf_counter() > deadline + 10:
            raise RuntimeError("the app did not quit")
        time.sleep(0.02)
    if "EXITED:0" not in _pane(sock, target):
        raise RuntimeError(f"the app exited badly:\n{_pane(sock, target)}")
    _tmux(sock, "kill-window", "-t", target, check=False)
    return painted


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="runs (default 10)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if shutil.which("tmux") is None:
        print("tmux is not installed", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="tui-startup-"))
    sock = str(tmp / "tmux.sock")
    try:
        subprocess.run([str(EXE), "init", str(tmp / "ws")], check=True, capture_output=True)
        ws = tmp / "ws"
        _tmux(sock, "new-session", "-d", "-s", "bench", "-x", "100", "-y", "32", "sleep 600")
        _tmux(sock, "set-option", "-g", "default-size", "100x32", check=False)
        for i in range(args.warmup):
            one_run(sock, ws, 1000 + i)
        times = [one_run(sock, ws, i) for i in range(args.n)]
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median(times)
    if args.json:
        print(json.dumps({"median_s": med, "runs_s": times, "cpus": os.cpu_count()}))
    else:
        print(f"first paint: median {med:.3f} s, min {min(times):.3f} s, max {max(times):.3f} s "
              f"over {len(times)} runs ({os.cpu_count()} CPUs)")
    return 0 if med <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
