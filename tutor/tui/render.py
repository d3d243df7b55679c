"""What the TUI shows, as plain text and Rich renderables: the lesson as Markdown, a check
result with its evidence and diagnosis, the active-time chart, the editor command.

No Textual here, so all of it is testable on its own and cheap to import.
"""

from __future__ import annotations

import ast
import os
import shlex
from pathlib import Path

from rich.console import Group
from rich.text import Text

from tutor.checking.results import ICONS

STYLES = {"pass": "green", "fail": "red", "error": "red", "timeout": "yellow",
          "crashed": "magenta", "skipped": "dim"}
STATUS_WORDS = {"pass": "passed", "fail": "failed", "error": "error", "timeout": "timed out",
                "crashed": "crashed", "skipped": "skipped"}


# --------------------------------------------------------------------------- lesson


def lesson_markdown(lesson) -> str:
    """The day as Markdown: objectives, the tasks (file and symbols to edit), concepts."""
    out = [f"# Day {lesson.id} · {lesson.title}", "",
           f"Week {lesson.week} · book chapter: [{lesson.chapter}]({lesson.chapter})", "",
           "## Objectives", ""]
    out += [f"- {o}" for o in lesson.objectives]
    out += ["", "## Tasks", ""]
    for t in lesson.tasks:
        symbols = ", ".join(f"`{s}`" for s in t.symbols) or "-"
        out += [f"### {t.id}. {t.title}", "",
                f"Edit `impl/{t.file}`: {symbols} · checks: {', '.join(t.checks) or '-'}", "",
                t.description.strip(), ""]
    out += ["## Concepts", ""]
    for c in lesson.concepts:
        out += [f"### {c.name}", "", c.explanation.strip(), ""]
    return "\n".join(out)


def question_prompt(q) -> str:
    """A concept question as shown above its answer box (choices lettered)."""
    text = q.prompt.strip()
    if q.kind == "choice":
        text += "\n" + "\n".join(f"  {'abcdef'[i]}) {o}" for i, o in enumerate(q.options))
    elif q.kind == "shape":
        text += "\n  (a shape, e.g. N, L, D)"
    return text


# --------------------------------------------------------------------------- checks


def _num(x) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _shape(s) -> str:
    if isinstance(s, (list, tuple)):
        return "(" + ", ".join(str(x) for x in s) + (",)" if len(s) == 1 else ")")
    return str(s)


def evidence_lines(ev: dict, output_lines: int = 8) -> list[str]:
    """The evidence of a check as short lines: case, shapes, errors, first mismatch,
    forbidden calls, the learner's traceback frames, what their code printed."""
    if not ev:
        return []
    lines = []
    if ev.get("case"):
        lines.append(f"case: {ev['case']}")
    if "shape" in ev or "expected_shape" in ev:
        part = f"shape {_shape(ev.get('shape'))}"
        if "expected_shape" in ev:
            part += f" · expected {_shape(ev['expected_shape'])}"
        if ev.get("dtype"):
            part += f" · {ev['dtype']}"
        lines.append(part)
    errs = []
    if ev.get("max_abs_err") is not None:
        errs.append(f"max abs error {_num(ev['max_abs_err'])}")
    if ev.get("max_rel_err") is not None:
        errs.append(f"max rel error {_num(ev['max_rel_err'])}")
    if ev.get("mismatched") is not None:
        of = f" of {ev['of']}" if ev.get("of") is not None else ""
        errs.append(f"{ev['mismatched']}{of} values differ")
    if errs:
        lines.append(" · ".join(errs))
    fm = ev.get("first_mismatch")
    if isinstance(fm, dict):
        lines.append(f"first mismatch at {list(fm.get('index') or [])}: got {_num(fm.get('got'))}, "
                     f"expected {_num(fm.get('expected'))}")
    elif fm:
        lines.append(f"first mismatch: {fm}")
    if ev.get("forbidden_calls"):
        calls = ev["forbidden_calls"]
        lines.append("calls: " + (", ".join(map(str, calls)) if isinstance(calls, list) else str(calls)))
    if ev.get("timeout_s") is not None:
        lines.append(f"time budget: {_num(ev['timeout_s'])} s")
    for frame in ev.get("traceback") or []:
        lines.append(str(frame))
    if ev.get("output"):
        printed = str(ev["output"]).rstrip().splitlines()
        lines.append("your code printed:")
        lines += ["  " + x for x in printed[:output_lines]]
        if len(printed) > output_lines:
            lines.append(f"  ... ({len(printed) - output_lines} more lines)")
    return lines


def check_text(check: dict) -> Text:
    """One check: icon, id and title; unless it passed, the message, the evidence and the
    diagnosis as a question (or the reason it was skipped)."""
    status = check.get("status", "error")
    style = STYLES.get(status, "red")
    t = Text()
    t.append(f"{ICONS.get(status, '?')} ", style=f"bold {style}")
    t.append(str(check.get("id", "?")), style=f"bold {style}")
    t.append(f"  {check.get('title', '')}")
    if status == "pass":
        return t
    if status == "skipped":
        reason = check.get("skip_reason") or check.get("message") or ""
        t.append(f"\n    skipped: {reason}", style="dim")
        return t
    msg = (check.get("message") or "").strip()
    if msg:
        for line in msg.splitlines()[:4]:
            t.append(f"\n    {line}")
    for line in evidence_lines(check.get("evidence") or {}):
        t.append(f"\n    {line}", style="dim")
    diag = check.get("diagnosis")
    if diag and diag.get("question"):
        t.append("\n    ? ", style="bold cyan")
        t.append(diag["question"], style="cyan")
    return t


def summary_text(result: dict) -> Text:
    s = result.get("summary") or {}
    parts = [f"{s.get('pass', 0)} passed"]
    for k in ("fail", "error", "timeout", "crashed", "skipped"):
        if s.get(k):
            parts.append(f"{s[k]} {STATUS_WORDS[k]}")
    style = "bold green" if result.get("status") == "pass" else "bold red"
    return Text(f"Day {result.get('day', '?')}: " + " · ".join(parts), style=style)


def results_renderable(result: dict | None, plan: list[dict] | None = None,
                       done: dict[str, dict] | None = None, running: str | None = None):
    """The Checks view: a finished result, or the live state of a run (plan, the results
    so far, the check that is running)."""
    if result is not None:
        return Group(summary_text(result), Text(""),
                     *[x for c in result["checks"] for x in (check_text(c), Text(""))])
    if plan is None:
        return Text("Starting the check process…", style="dim")
    done = done or {}
    rows = []
    for c in plan:
        r = done.get(c["id"])
        if r is not None:
            rows.append(check_text({**c, **r, "diagnosis": None}))
        elif c["id"] == running:
            rows.append(Text(f"⟳ {c['id']}  {c.get('title', '')}", style="bold"))
        else:
            rows.append(Text(f"· {c['id']}  {c.get('title', '')}", style="dim"))
    n = len(done)
    head = Text(f"Running {n}/{len(plan)} · {progress_bar(n, len(plan), 20)} · Esc cancels",
                style="bold")
    return Group(head, Text(""), *rows)


# --------------------------------------------------------------------------- charts

_EIGHTHS = " ▏▎▍▌▋▊▉"


def progress_bar(done: int, total: int, width: int) -> str:
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    return "▕" + bar(frac * width, width) + "▏"


def bar(cells: float, width: int) -> str:
    """A horizontal bar ``cells`` long (eighths of a cell resolution), padded to ``width``."""
    cells = max(0.0, min(float(width), cells))
    full = int(cells)
    rest = int(round((cells - full) * 8))
    if rest == 8:
        full, rest = full + 1, 0
    s = "█" * full + (_EIGHTHS[rest] if rest and full < width else "")
    return s.ljust(width)


def duration(seconds: float) -> str:
    seconds = int(seconds or 0)
    if seconds <= 0:
        return "-"
    if seconds < 60:
        return "<1m"
    h, m = divmod(seconds // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"


def active_time_chart(rows: list[dict], width: int = 40) -> str:
    """Active time per day as Unicode bars: one line per day of ``rows`` (the
    ``progress_summary`` day rows)."""
    peak = max((r.get("active_seconds") or 0 for r in rows), default=0)
    lines = []
    for r in rows:
        sec = r.get("active_seconds") or 0
        cells = 0.0 if peak <= 0 else width * sec / peak
        lines.append(f"{r['id']:>5} {bar(cells, width)} {duration(sec)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- editor


def symbol_line(path: Path, symbol: str) -> int:
    """The line where ``symbol`` is defined at top level in ``path`` (1 if not found)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return 1
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and node.name == symbol:
            return node.lineno
    return 1


def editor_command(path: Path, line: int, editor: str | None = None) -> list[str]:
    """The command that opens ``path`` at ``line`` in $VISUAL / $EDITOR (vi by default)."""
    editor = editor or os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    argv = shlex.split(editor) or ["vi"]
    name = Path(argv[0]).name
    if name in ("code", "code-insiders", "codium", "cursor"):
        return [*argv, "-g", f"{path}:{line}"]
    if name in ("subl", "zed", "hx", "helix"):
        return [*argv, f"{path}:{line}"]
    return [*argv, f"+{line}", str(path)]
