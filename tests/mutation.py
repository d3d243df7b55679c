"""Applying a catalogued mistake (a find/replace edit of a correct package) to a copy."""

from __future__ import annotations

import os
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


# Checks with a time measurement (day 2.4's flash-cpu-perf) run with nothing else of ours.
TIMED_DAYS = frozenset({"2.4"})


def run_each(run, entries: list[dict], workers: int = 2, alone=TIMED_DAYS) -> list:
    """``run(i, entry)`` for every entry, results in the entries' order: two at a time (a
    check run is a child process on one core while this one waits, and CI has two cores),
    except entries of a day in ``alone`` (a timed check), which run by themselves after."""
    from concurrent.futures import ThreadPoolExecutor

    results: list = [None] * len(entries)
    shared = [i for i, e in enumerate(entries) if e["day"] not in alone]
    with ThreadPoolExecutor(max(1, min(workers, os.cpu_count() or 1))) as pool:
        for i, r in zip(shared, pool.map(lambda i: run(i, entries[i]), shared)):
            results[i] = r
    for i, e in enumerate(entries):
        if e["day"] in alone:
            results[i] = run(i, e)
    return results


_AHEAD: dict = {}


def run_ahead(request, entry: dict, run) -> object:
    """``run(entry)`` for a test parametrized by ``entry``. The first such test of a test
    function runs every entry of that function selected in this session, two at a time
    (run_each, timed days included: a timed check only adds failures, and these tests
    ask for a failure naming the entry); later tests find their result ready. An error
    of one run is raised in its own test."""
    fn = request.function
    key = (fn, id(entry))
    if key not in _AHEAD:
        entries = [item.callspec.params["entry"] for item in request.session.items
                   if getattr(item, "function", None) is fn
                   and "entry" in getattr(getattr(item, "callspec", None), "params", {})]
        entries = [e for e in entries if (fn, id(e)) not in _AHEAD] or [entry]

        def guarded(_i, e):
            try:
                return run(e), None
            except Exception as exc:  # raised again in its own test
                return None, exc

        for e, out in zip(entries, run_each(guarded, entries, alone=())):
            _AHEAD[(fn, id(e))] = out
    result, exc = _AHEAD.pop(key)
    if exc is not None:
        raise exc
    return result
