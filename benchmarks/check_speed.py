"""Wall time and peak memory of `tiny-llm-tutor check DAY` as a whole process.

Runs in a temporary workspace made by `tiny-llm-tutor init`, whose impl/ holds the answer
key (so every check runs to the end, and the attempt is recorded as a learner's would be).
Reports the median over --runs runs of each of day1.1 .. day1.7 and week1. With --impl the
checks run on that package instead (`check --impl PATH`, nothing recorded), e.g. the
book-style solution, whose sampler is written for one row as the book's is:

    python benchmarks/check_speed.py [--runs 7] [--days 1.1,1.3,week1]
    python benchmarks/check_speed.py --days 1.7 --impl tests/fixtures/book_solution/tiny_llm

Weeks 2 and 3 run kernel checks: --key-kernels builds the answer key's C++ extension once
(not timed; TINY_LLM_KEY_EXT_DIR reuses a build) and passes it as `check --kernels`:

    python benchmarks/check_speed.py --runs 5 --days week3 --key-kernels
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    # ru_maxrss: KiB on Linux, bytes on macOS; covers the process and the children it waited for.
    rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return wall, rss, os.waitstatus_to_exitcode(status)


def _answer_key_kernels(tmp: Path) -> Path:
    sys.path.insert(0, str(REPO))
    from tutor.kernels_build import build_answer_key

    dest = Path(os.environ.get("TINY_LLM_KEY_EXT_DIR") or tmp / "answer_key_ext")
    result = build_answer_key(dest)
    if not result.ok:
        raise SystemExit("the answer key's extension did not build:\n" + "\n".join(result.messages))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--days", default="1.1,1.2,1.3,1.4,1.5,1.6,1.7,week1")
    ap.add_argument("--impl", default="", help="check this package instead of the answer key")
    ap.add_argument("--key-kernels", action="store_true",
                    help="build the answer key's extension and check with it (--kernels)")
    args = ap.parse_args()
    exe = shutil.which("tiny-llm-tutor")
    if not exe:
        print("tiny-llm-tutor is not installed (python -m pip install -e .)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([exe, "init", str(ws)], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(ws / "impl")
        shutil.copytree(REPO / "checks" / "answer_key", ws / "impl",
                        ignore=shutil.ignore_patterns("__pycache__"))
        kernels = _answer_key_kernels(Path(tmp)) if args.key_kernels else None
        print(f"{'target':<8} {'median s':>9} {'min s':>7} {'max s':>7} {'peak MiB':>9}  exit")
        for day in args.days.split(","):
            cmd = [exe, "check", day if day.startswith("week") else f"day{day}"]
            if args.impl:
                cmd += ["--impl", str(Path(args.impl).resolve())]
            if kernels:
                cmd += ["--kernels", str(kernels)]
            run_once(cmd, ws)  # warm the page cache; not counted
            walls, rsss, codes = [], [], set()
            for _ in range(args.runs):
                wall, rss, code = run_once(cmd, ws)
                walls.append(wall)
                rsss.append(rss)
                codes.add(code)
            print(f"{day:<8} {statistics.median(walls):>9.3f} {min(walls):>7.3f} "
                  f"{max(walls):>7.3f} {max(rsss):>9.0f}  {sorted(codes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
