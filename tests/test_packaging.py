"""What pyproject.toml promises: the Python the suite runs on, and the dependencies that
the code and the snapshots really need."""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_requires_python_is_what_the_suite_runs_on():
    assert PROJECT["requires-python"] == ">=3.11"
    assert sys.version_info >= (3, 11)
    assert not any(d.startswith("tomli") for d in PROJECT["dependencies"])  # 3.11 has tomllib


def test_pytest_is_a_test_dependency_only():
    assert not any(re.match(r"pytest\b", d) for d in PROJECT["dependencies"])
    assert any(re.match(r"pytest\b", d) for d in PROJECT["optional-dependencies"]["test"])
    imports = re.compile(r"^\s*(import|from)\s+(pytest|_pytest)\b", re.M)
    runtime = [p.relative_to(REPO).as_posix() for p in (REPO / "tutor").rglob("*.py")
               if imports.search(p.read_text(encoding="utf-8"))]
    assert runtime == []


def test_textual_is_pinned_to_the_minor_series_of_the_snapshots():
    (spec,) = [d for d in PROJECT["dependencies"] if re.match(r"textual\b", d)]
    major, minor = map(int, re.fullmatch(r"textual>=(\d+)\.(\d+),<\d+\.\d+", spec).groups())
    assert spec == f"textual>={major}.{minor},<{major}.{minor + 1}"
    assert metadata.version("textual").split(".")[:2] == [str(major), str(minor)]
