"""Key latency of the TUI while a check runs: from a key reaching the app to the repainted
screen, with the learner's code busy-looping in the check process (one of two cores
taken). Reports median, p90 and max over several rounds of keys.

    python benchmarks/tui_key_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tui_support import (key_latency, make_workspace, open_session, scripted,  # noqa: E402
                         wait_until, write_slow_attention)


async def measure(rounds: int) -> list[float]:
    from textual.widgets import Input

    from tutor.tui.app import TutorApp
    from tutor.tui.coachlink import CoachLink
    from tutor.tui.screens import ProgressScreen
    from tutor.tui.widgets import LessonTree

    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp))
        pidfile = Path(tmp) / "child.pid"
        write_slow_attention(ws, 60, pidfile)
        session = open_session(ws)
        app = TutorApp(session, coach=CoachLink(session, factory=scripted()), blink=False)
        out = []
        async with app.run_test(size=(100, 32)) as pilot:
            await pilot.press("c")
            await wait_until(pilot, pidfile.exists, 30, "the check to start")
            tabs = app.query_one("#tabs")
            for _ in range(rounds):
                for key, done in [
                    ("t", lambda: isinstance(app.screen, ProgressScreen)),
                    ("escape", lambda: not isinstance(app.screen, ProgressScreen)),
                    ("w", lambda: app.watching), ("w", lambda: not app.watching),
                    ("l", lambda: tabs.active == "lesson-tab"),
                    ("?", lambda: isinstance(app.focused, Input)),
                    ("x", lambda: app.focused.value.endswith("x")),
                ]:
                    out.append(await key_latency(pilot, key, done))
                    await pilot.pause()
                app.query_one(LessonTree).focus()
                await pilot.pause()
            await pilot.press("escape")
        session.close()
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    ms = sorted(x * 1000 for x in asyncio.run(measure(args.rounds)))
    print(f"key latency while a check runs: median {statistics.median(ms):.0f} ms, "
          f"p90 {ms[int(0.9 * len(ms))]:.0f} ms, max {ms[-1]:.0f} ms over {len(ms)} keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
