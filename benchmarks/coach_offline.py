"""How fast the offline coach answers: `hint` and `ask` with no key and no network.

Two measures, medians over --runs:
- engine time: from the question to the first text of the answer, in-process, in a
  temporary workspace made by `init` (what the TUI's chat sees); the first answer's time
  is printed on its own too (it loads the ranker);
- whole command: `tiny-llm-tutor hint day1.1` and `tiny-llm-tutor ask day1.1 "..."` as
  processes (interpreter start-up and records included).

    python benchmarks/coach_offline.py [--runs 20]
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

QUESTIONS = ["why is my output wrong?", "which axis is the softmax over?", "what next?",
             "I'm stuck", "show me the solution", "what does the mask do?"]


def engine_times(ws: Path, runs: int) -> list[float]:
    from tutor.coach.chat import Coach
    from tutor.config import LLMConfig
    from tutor.engine import TutorSession

    session = TutorSession(ws).open("day1.1")
    coach = Coach(session, LLMConfig())
    out = []
    try:
        for i in range(runs):
            q = QUESTIONS[i % len(QUESTIONS)]
            t = time.perf_counter()
            for ev in coach.ask(q):
                if ev.kind == "text":
                    out.append(time.perf_counter() - t)
                    break
            for _ in coach.ask("ok"):  # let the records of that answer be written
                pass
    finally:
        session.close()
    return out


def command_times(exe: str, ws: Path, args: list[str], runs: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if "KEY" not in k}
    env["TINY_LLM_TUTOR_LLM"] = "offline"
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([exe, *args], cwd=ws, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    exe = shutil.which("tiny-llm-tutor") or str(Path(sys.executable).parent / "tiny-llm-tutor")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        subprocess.run([exe, "init", str(ws)], check=True, stdout=subprocess.DEVNULL)
        os.environ.pop("ANTHROPIC_API_KEY", None)
        os.environ["TINY_LLM_TUTOR_LLM"] = "offline"
        eng = engine_times(ws, args.runs)
        hint = command_times(exe, ws, ["hint", "day1.1"], max(3, args.runs // 4))
        ask = command_times(exe, ws, ["ask", "day1.1", "why divide by sqrt(D)?"],
                            max(3, args.runs // 4))
    ms = lambda xs: f"{statistics.median(xs) * 1e3:8.1f} ms (max {max(xs) * 1e3:.1f})"  # noqa: E731
    print(f"offline answer, engine time : {ms(eng)}")
    # the first free-text question of a process also imports the ranker (bm25s, numpy)
    # and indexes the day; the median hides that once-per-process cost
    print(f"first answer, engine time   : {eng[0] * 1e3:8.1f} ms")
    print(f"`hint day1.1`, whole process: {ms(hint)}")
    print(f"`ask day1.1`, whole process : {ms(ask)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
