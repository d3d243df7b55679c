"""`check week1` on the book's own reference solution, against the book's own pytest harness
for days 1-5 on the same machine, measured in one run (interleaved, medians).

The book is not shipped with the tutor; give a copy of skyzh/tiny-llm at commit ea4769d:

    git clone https://github.com/skyzh/tiny-llm /tmp/tiny-llm && git -C /tmp/tiny-llm checkout ea4769d
    python benchmarks/book_harness_ratio.py --book /tmp/tiny-llm [--runs 5]

Everything runs in a scratch copy. The book's reference imports its C++ extension at import
time, which does not build on Linux; week 1 never calls it, so the copy gets an empty
stand-in `extensions_ref` package. Three timings, each a whole process tree:

* tutor: `tiny-llm-tutor check week1 --impl <copy>/src/tiny_llm_ref` (7 days, nothing recorded)
* pytest-1: one `pytest tests_refsol/test_week_1_day_{1..5}.py -k "not gpu"` process
* pytest-5: five pytest processes, one per day, as `pdm run test-refsol --week 1 --day N`
  runs them (without pdm's own start-up)
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


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    code = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, code


def scratch_copy(book: Path, dest: Path) -> Path:
    for rel in ("src/tiny_llm_ref", "src/tiny_llm", "tests_refsol", "tests/utils.py",
                "pyproject.toml"):
        src, dst = book / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
    stand_in = dest / "src" / "extensions_ref"
    stand_in.mkdir()
    (stand_in / "__init__.py").write_text("")
    (stand_in / "tiny_llm_ext_ref.py").write_text(
        "# stand-in: the book's week-1 code imports its kernels but never calls them\n")
    return dest


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--book", required=True, help="the book's repository at commit ea4769d")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    book = Path(args.book).expanduser().resolve()
    if not (book / "src" / "tiny_llm_ref").is_dir() or not (book / "tests_refsol").is_dir():
        print(f"{book} does not look like tiny-llm at ea4769d (no src/tiny_llm_ref, "
              "tests_refsol)", file=sys.stderr)
        return 2
    exe = shutil.which("tiny-llm-tutor")
    if not exe:
        print("tiny-llm-tutor is not installed (python -m pip install -e .)", file=sys.stderr)
        return 2
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch_copy(book, Path(tmp) / "book")
        pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "not gpu"]
        days = [f"tests_refsol/test_week_1_day_{d}.py" for d in range(1, 6)]
        runs: dict[str, list[float]] = {"tutor": [], "pytest-1": [], "pytest-5": []}
        codes: dict[str, set[int]] = {k: set() for k in runs}
        tutor = [exe, "check", "week1", "--impl", str(root / "src" / "tiny_llm_ref")]
        timed(tutor, root, env)  # warm the page cache; not counted
        for _ in range(args.runs):
            for name in runs:  # interleaved, so every target sees the same load
                if name == "tutor":
                    wall, code = timed(tutor, root, env)
                elif name == "pytest-1":
                    wall, code = timed(pytest + days, root, env)
                else:
                    wall, code = 0.0, 0
                    for f in days:
                        w, c = timed(pytest + [f], root, env)
                        wall, code = wall + w, max(code, c)
                runs[name].append(wall)
                codes[name].add(code)
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{'target':<9} {'median s':>9} {'min s':>7} {'max s':>7}  exit")
        for k, v in runs.items():
            print(f"{k:<9} {med[k]:>9.3f} {min(v):>7.3f} {max(v):>7.3f}  {sorted(codes[k])}")
        print(f"ratio tutor / pytest-1: {med['tutor'] / med['pytest-1']:.2f}")
        print(f"ratio tutor / pytest-5: {med['tutor'] / med['pytest-5']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
