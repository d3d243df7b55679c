"""The held-out review mistakes: apply each, run its day's checks, and say what the tutor
made of it (failed or not, which pitfall it named, and whether that pitfall is one a
reviewer judged right for the mistake).

The mistakes live in tests/fixtures/book_solution/mutants_review_week{1,2,3}.yaml. They were
written without reading the catalogue; after a first run each entry's ``expect_pitfalls``
was filled in by hand with every lesson pitfall that would be a right diagnosis of it. A
named pitfall outside that list is a wrong diagnosis. When the catalogue grows and names a
pitfall nobody judged yet, it shows up here as wrong until someone reads it and, if it is
right, adds it to the entry's ``expect_pitfalls``.

    python tests/review_mistakes.py                 # both weeks (builds the answer key's
    python tests/review_mistakes.py --week 1        #   extension for week 2, or reuses
    python tests/review_mistakes.py --id rv2-...    #   TINY_LLM_KEY_EXT_DIR / --kernels)

prints one row per mistake (status, named pitfalls, verdict) and the rates per week.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:  # run as a script: find mutation.py next to this file
    sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mutation import apply_mutation, load_mutations, run_each  # noqa: E402

FIXTURE = HERE / "fixtures" / "book_solution"
BOOK = FIXTURE / "tiny_llm"
FILES = {1: FIXTURE / "mutants_review_week1.yaml", 2: FIXTURE / "mutants_review_week2.yaml",
         3: FIXTURE / "mutants_review_week3.yaml"}
TIMEOUT = {1: 120, 2: 180, 3: 180}  # generous: the machine may be shared with other runs
FAIL_BAR = 0.95
DIAGNOSIS_BAR = 0.75


def load(week: int) -> list[dict]:
    return load_mutations(FILES[week])


@dataclass
class Outcome:
    id: str
    day: str
    status: str  # the day's status: "pass" or "fail"
    named: list[str] = field(default_factory=list)  # pitfall ids the checks named
    expected: list[str] = field(default_factory=list)  # judged right for this mistake
    failing_checks: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # what each failing check said

    @property
    def failed(self) -> bool:
        return self.status != "pass"

    @property
    def diagnosed(self) -> bool:
        return bool(self.named)

    @property
    def wrong(self) -> list[str]:
        return [p for p in self.named if p not in self.expected]

    @property
    def verdict(self) -> str:
        if not self.failed:
            return "MISSED"
        if not self.named:
            return "no diagnosis"
        return "WRONG " + ",".join(self.wrong) if self.wrong else "right"


def run_one(entry: dict, workdir: Path, kernels: Path | None, timeout: float) -> Outcome:
    from tutor.checking.runner import run_day

    pkg = apply_mutation(BOOK, entry, workdir)
    result = run_day(entry["day"], pkg, timeout, kernels=kernels)
    named = []
    for c in result["checks"]:
        p = c.get("pitfall")
        if p and p not in named:
            named.append(p)
    bad = [c for c in result["checks"] if c["status"] not in ("pass", "skipped")]
    return Outcome(entry["id"], entry["day"], result["status"], named,
                   list(entry.get("expect_pitfalls") or []), [c["id"] for c in bad],
                   [f"{c['id']} [{c['status']}] {c.get('pitfall') or '-'}: {c.get('message')}"
                    for c in bad])


def measure(week: int, workdir: Path, kernels: Path | None = None,
            ids: set[str] | None = None, echo=None, verbose: bool = False) -> list[Outcome]:
    entries = [e for e in load(week) if not ids or e["id"] in ids]

    def one(i: int, entry: dict) -> Outcome:
        return run_one(entry, workdir / str(i), kernels if week >= 2 else None, TIMEOUT[week])

    if not echo:  # the tests: two at a time (mutation.run_each)
        return run_each(one, entries)
    out = []
    for i, entry in enumerate(entries):  # by hand: each row as soon as it is known
        o = one(i, entry)
        out.append(o)
        if echo:
            echo(row(o))
            if verbose:
                for m in o.messages:
                    echo("      " + m.replace("\n", "\n      "))
    return out


def row(o: Outcome) -> str:
    return f"{o.id:44s} {o.day:4s} {o.status:5s} {','.join(o.named) or '-':48s} {o.verdict}"


def summary(week: int, outcomes: list[Outcome]) -> dict:
    n = len(outcomes)
    failed = sum(o.failed for o in outcomes)
    diagnosed = sum(o.failed and o.diagnosed for o in outcomes)
    return {
        "week": week, "n": n,
        "fail_rate": failed / n if n else 0.0,
        "diagnosis_rate": diagnosed / n if n else 0.0,
        "missed": [o.id for o in outcomes if not o.failed],
        "undiagnosed": [o.id for o in outcomes if o.failed and not o.diagnosed],
        "wrong": [(o.id, o.wrong) for o in outcomes if o.wrong],
    }


def summary_text(s: dict) -> str:
    return (f"week {s['week']}: {s['n']} held-out mistakes; fail their day "
            f"{s['fail_rate']:.1%} (bar {FAIL_BAR:.0%}); carry a diagnosis "
            f"{s['diagnosis_rate']:.1%} (bar {DIAGNOSIS_BAR:.0%}); wrong diagnoses "
            f"{len(s['wrong'])}: {s['wrong']}\n  missed: {s['missed']}\n"
            f"  undiagnosed: {s['undiagnosed']}")


def _kernels(arg: str | None) -> Path:
    from tutor.kernels_build import build_answer_key

    dest = Path(arg or os.environ.get("TINY_LLM_KEY_EXT_DIR")
                or Path(tempfile.gettempdir()) / "tiny-llm-review-key-ext")
    result = build_answer_key(dest)
    if not result.ok:
        sys.exit("the answer key's extension did not build:\n" + "\n".join(result.messages))
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--week", type=int, choices=sorted(FILES), action="append")
    ap.add_argument("--id", action="append", help="only these mistakes (repeatable)")
    ap.add_argument("--kernels", help="folder for the answer key's extension build")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="also print what each failing check said")
    args = ap.parse_args(argv)
    weeks = args.week or sorted(FILES)
    ids = set(args.id or [])
    kernels = _kernels(args.kernels) if max(weeks) >= 2 else None
    texts = []
    with tempfile.TemporaryDirectory() as td:
        for week in weeks:
            outcomes = measure(week, Path(td) / f"w{week}", kernels, ids,
                               echo=lambda line: print(line, flush=True),
                               verbose=args.verbose)
            if outcomes:
                texts.append(summary_text(summary(week, outcomes)))
    print("\n".join(texts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
