"""`init` and `reset` start from the pristine stubs shipped with the tutor, never from the
repository's own impl/ and kernels/ (a learner working in the repository edits those)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tutor import paths
from tutor.checking.runner import run_day
from tutor.curriculum import load_course
from tutor.workspace import init_workspace, reset_day

REAL_ROOT = paths.content_root()
SHARED = ("curriculum", "checks", "stubs", "CLAUDE.md", "AGENTS.md", "SESSION-TEMPLATE.md")


@pytest.fixture
def worked_repo(tmp_path, monkeypatch) -> Path:
    """A copy of the repository layout whose impl/ solves day 1.1 and whose kernels/ the
    learner has edited: the situation of a learner working inside the repository."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in SHARED:
        if (REAL_ROOT / name).exists():
            (repo / name).symlink_to(REAL_ROOT / name)
    ignore = shutil.ignore_patterns("__pycache__", "build", "*.so")
    shutil.copytree(paths.stubs_dir(), repo / "impl", ignore=ignore)
    shutil.copytree(paths.kernels_dir(), repo / "kernels", ignore=ignore)
    for name in ("attention.py", "basics.py"):
        shutil.copyfile(paths.answer_key_dir() / name, repo / "impl" / name)
    with open(repo / "kernels" / "src" / "quantized_matmul.cpp", "a") as f:
        f.write("\n// the learner's kernel work\n")
    monkeypatch.setattr(paths, "content_root", lambda: repo)
    return repo


def test_init_copies_the_shipped_stubs_not_the_working_impl(worked_repo, tmp_path):
    ws = tmp_path / "ws"
    init_workspace(ws)
    for name in ("attention.py", "basics.py"):
        assert (ws / "impl" / name).read_text() != (paths.answer_key_dir() / name).read_text()
    assert "learner's kernel work" not in (ws / "kernels" / "src" / "quantized_matmul.cpp").read_text()
    result = run_day("1.1", ws / "impl", 120)
    assert result["status"] == "fail"
    assert all(c["status"] != "pass" for c in result["checks"]), result["checks"]


def test_reset_restores_the_shipped_stubs(worked_repo, tmp_path):
    ws = tmp_path / "ws"
    init_workspace(ws)
    shutil.copyfile(paths.answer_key_dir() / "attention.py", ws / "impl" / "attention.py")
    reset_day(ws, load_course().lesson("1.1"))
    key = (paths.answer_key_dir() / "attention.py").read_text()
    assert (ws / "impl" / "attention.py").read_text() != key


def test_curriculum_link_is_what_the_tutor_reads(tmp_path):
    ws = tmp_path / "ws"
    init_workspace(ws)
    link = ws / "curriculum"
    assert link.is_symlink() and link.resolve() == paths.curriculum_dir().resolve()


def test_no_curriculum_copy_where_links_are_refused(tmp_path, monkeypatch):
    def refuse(self, *a, **k):
        raise OSError("symlinks not allowed here")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    ws = tmp_path / "ws"
    made = init_workspace(ws)
    # a copy would be lessons the tutor never reads: edits there would change nothing
    assert not os.path.lexists(ws / "curriculum")
    assert any("lessons" in m and str(paths.curriculum_dir()) in m for m in made)


def test_tests_never_read_the_repositorys_working_copies():
    """The suite must pass in a repository where a learner has been working."""
    import re

    working_copy = re.compile(r'(REPO|root\(\)|root|parents\[1\])\s*/\s*"(impl|kernels)"')
    me = Path(__file__).resolve()
    for f in me.parent.glob("*.py"):
        if f != me:
            assert not working_copy.search(f.read_text(encoding="utf-8")), f.name
