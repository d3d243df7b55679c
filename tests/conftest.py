from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tutor import paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def stub_impl(tmp_path) -> Path:
    """A fresh copy of the learner stubs, named like a learner's package."""
    dest = tmp_path / "ws" / "impl"
    shutil.copytree(paths.stubs_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def answer_key_copy(tmp_path) -> Path:
    dest = tmp_path / "key" / "answer_key"
    shutil.copytree(paths.answer_key_dir(), dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest
