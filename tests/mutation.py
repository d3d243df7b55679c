"""Applying a catalogued mistake (a find/replace edit of a correct package) to a copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml


def load_mutations(*files: Path) -> list[dict]:
    out = []
    for f in files:
        for entry in yaml.safe_load(f.read_text()) or []:
            entry["_source"] = f.name
            out.append(entry)
    return out


def edits_of(entry: dict) -> list[dict]:
    if "edits" in entry:
        return entry["edits"]
    return [{"file": entry["file"], "find": entry["find"], "replace": entry["replace"]}]


def apply_mutation(package: Path, entry: dict, dest: Path) -> Path:
    """Copy ``package`` to ``dest`` (keeping its directory name) and apply the edits;
    each ``find`` must occur exactly once, so a drifted catalogue fails loudly."""
    target = dest / package.name
    shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
    for e in edits_of(entry):
        path = target / e["file"]
        text = path.read_text()
        n = text.count(e["find"])
        assert n == 1, f"{entry['id']}: 'find' occurs {n} times in {e['file']}"
        path.write_text(text.replace(e["find"], e["replace"]))
    return target
