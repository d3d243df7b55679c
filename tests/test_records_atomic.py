"""tutor.records.atomic: old-or-new, even when the writer is SIGKILLed mid-loop."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tutor.records.atomic import atomic_write_text, temp_files_for

REPO = Path(__file__).resolve().parents[1]


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "sub" / "dir" / "f.txt"
    atomic_write_text(target, "one\n")
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two ✅\n")
    assert target.read_text(encoding="utf-8") == "two ✅\n"
    assert temp_files_for(target) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]


def test_keeps_existing_permissions(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("x")
    os.chmod(target, 0o600)
    atomic_write_text(target, "y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_new_file_is_world_readable(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old"
    assert temp_files_for(target) == []


_WRITER = r"""
import itertools, json, sys
sys.path.insert(0, sys.argv[2])
from tutor.records.atomic import atomic_write_text
docs = [json.dumps({"n": i, "pad": str(i) * 300_000}) for i in range(2)]
print("ready", flush=True)
for i in itertools.count():
    atomic_write_text(sys.argv[1], docs[i % 2])
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_sigkill_mid_write_leaves_old_or_new(tmp_path):
    target = tmp_path / "state.json"
    atomic_write_text(target, json.dumps({"n": -1, "pad": ""}))
    rng = random.Random(1234)
    seen = set()
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(target), str(REPO)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.25))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc.stdout.close()
        doc = json.loads(target.read_text())  # never a torn file
        assert doc["n"] in (-1, 0, 1)
        assert doc["pad"] == ("" if doc["n"] == -1 else str(doc["n"]) * 300_000)
        seen.add(doc["n"])
    assert seen & {0, 1}, "the writer never got to replace the file"
