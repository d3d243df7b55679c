"""End to end: the installed console script in a real terminal (tmux), driven by keys.

start week1 -> `a` shows the first concept question, and its feedback once answered ->
`c` runs the checks on a mistaken attention (no 1/sqrt(D) scale) -> the
failures and the diagnosis question are on screen -> `h` takes a hint -> `e` opens the
task's file at the symbol in $EDITOR (the app suspends and comes back) -> `q` quits ->
the session doc and the tracker exist and tell that history.

The screen is polled with a deadline, never a fixed sleep; on a timeout the pane is
dumped into the failure message.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tui_support import write_no_scale_attention
from waiting import poll

EXE = Path(sys.executable).parent / "tiny-llm-tutor"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Tmux:
    def __init__(self, sock: Path, name: str):
        self.sock, self.name = str(sock), name

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", *args],
                              capture_output=True, text=True, check=check, timeout=30)

    def screen(self) -> str:
        r = self.run("capture-pane", "-p", "-J", "-t", self.name, check=False)
        return r.stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if rx.search(screen):
                return screen
            if "EXITED:" in screen or time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r}; the screen:\n{screen}")
            time.sleep(0.05)


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path / "tmux.sock", "e2e")
    yield t
    subprocess.run(["tmux", "-S", t.sock, "kill-server"], capture_output=True)


def test_start_check_diagnose_hint_edit_quit(tmp_path, tmux):
    r = subprocess.run([str(EXE), "init", "ws"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    ws = tmp_path / "ws"
    write_no_scale_attention(ws)
    editor_log = tmp_path / "editor-args"
    editor = tmp_path / "fake-editor"
    editor.write_text(f'#!/bin/sh\necho "$@" > {editor_log}\n')
    editor.chmod(0o755)
    # COLUMNS and LINES win over the pane's real size (shutil.get_terminal_size reads them
    # first); under pytest the pane's shell has had them stale at 80x24.
    env = ("env -u VISUAL -u TINY_LLM_TUTOR_WORKSPACE -u TEXTUAL -u TEXTUAL_THEME "
           "-u COLUMNS -u LINES "
           f"TERM=xterm-256color TINY_LLM_TUTOR_LLM=offline EDITOR={editor}")
    tmux.run("new-session", "-d", "-s", "e2e", "-x", "100", "-y", "32",
             f"cd {ws} && {env} {EXE} start week1; echo EXITED:$?; sleep 60")

    tmux.wait_for(r"Day 1\.1.*Not started")  # looking at a day is not working on it
    tmux.wait_for(r"q Quit")

    # a: the first concept question comes into view below the long lesson; a wrong answer
    # and its graded feedback are on screen beside it, then a right one.
    tmux.keys("a")
    tmux.wait_for(r"With D = 64 and no scale passed, by what factor")
    tmux.keys("0.5", "Enter")
    screen = tmux.wait_for(r"✗ Not quite: the answer is 0\.125")
    assert "With D = 64 and no scale passed" in screen, screen
    tmux.keys("C-u")  # clear the box (one key per send, as a person types)
    tmux.wait_for(r"█ +your answer · Enter submits *\n.*✗ Not quite")
    tmux.keys("1/8")
    tmux.keys("Enter")
    tmux.wait_for(r"✓ Right\.")
    tmux.wait_for(r"esc Cancel")  # the next question's box has the keys
    tmux.keys("Escape")  # out of the next answer box: the keys are commands again
    tmux.wait_for(r"q Quit")

    # After Esc the keys are commands: the `c` runs the checks, never lands in an answer
    # box (the focus race after a right answer is fixed: tests/test_tui_predict.py).
    tmux.keys("c")
    screen = tmux.wait_for(r"How does the spread of a dot product grow", timeout=60)
    assert re.search(r"Day 1\.1: 0 passed · 4 failed", screen), screen
    assert "✗" in screen and "sdpa-simple" in screen

    tmux.keys("h")
    tmux.wait_for(r"Hint 1 (of|/) ?4")

    tmux.keys("e")  # suspends, runs the fake editor, resumes
    poll(editor_log.exists, 30, "the editor to be started")
    args = editor_log.read_text().split()
    attention = ws / "impl" / "attention.py"
    line = next(i for i, l in enumerate(attention.read_text().splitlines(), 1)
                if l.startswith("def scaled_dot_product_attention_simple"))
    assert args == [f"+{line}", str(attention)]
    tmux.wait_for(r"q Quit")  # the app is back

    tmux.keys("q")
    tmux.wait_for(r"EXITED:0")

    doc = (ws / "sessions" / "week1" / "day1.1-attention.md").read_text()
    tracker = (ws / "progress" / "tiny-llm-tracker.md").read_text()
    assert "sdpa-simple" in doc  # the failing checks
    assert "diagnosed attn-missing-scale ×1" in doc  # the diagnosis
    assert re.search(r"Hints used: 1\b", doc)  # the hint
    row = next(x for x in tracker.splitlines() if x.startswith("| 🟡 | 1.1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "1" and cells[5] == "1", row  # one check run, one hint
    assert "attn-missing-scale" in row
    concept = json.loads((ws / "progress" / "state.json").read_text())
    concept = concept["days"]["1.1"]["concepts"]["scale-value"]
    assert concept["tries"] == 2 and concept["last_correct"] is True
