"""The import contracts in pyproject.toml ([tool.importlinter]): tutor's layers, and
Textual only in tutor.tui. import-linter builds the graph with grimp, which reads every
import statement, those inside functions too: the tests below break the contracts with an
import inside a function on purpose, in a copy of the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package in ``root`` with the contracts in ``root/pyproject.toml``,
    in a process of its own so that ``tutor`` is the one in ``root``."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", LINT], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_import_contracts_hold():
    r = _lint(REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "tutor's layers KEPT" in r.stdout
    assert "only tutor.tui imports Textual KEPT" in r.stdout


@pytest.mark.parametrize("module, line, contract, broken", [
    # A deliberate Textual import below the UI, inside a function, as a lazy import would be.
    ("engine.py", "import textual", "only tutor.tui imports Textual", "tutor.engine -> textual"),
    # A layer reaching up: the records asking the engine.
    ("records/state.py", "from tutor import engine", "tutor's layers", "tutor.records.state -> tutor.engine"),
])
def test_an_import_against_the_layers_breaks_the_contract(tmp_path, module, line, contract, broken):
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "tutor", tmp_path / "tutor",
                    ignore=shutil.ignore_patterns("__pycache__", "build", "*.so", "*.metallib"))
    target = tmp_path / "tutor" / module
    target.write_text(target.read_text() + f"\n\ndef _against_the_layers():\n    {line}\n")
    r = _lint(tmp_path)
    assert r.returncode != 0, r.stdout + r.stderr
    assert f"{contract} BROKEN" in r.stdout, r.stdout + r.stderr
    assert broken in r.stdout, r.stdout
