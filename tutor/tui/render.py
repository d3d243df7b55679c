"""What the TUI shows, as plain text and Rich renderables: the lesson as Markdown, a check
result with its evidence and diagnosis, the active-time chart, the editor command.

No Textual here, so all of it is testable on its own and cheap to import.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from rich.console import Group
from rich.style import Style
from rich.text import Text

from tutor.checking.diffmap_view import map_text
from tutor.checking.results import ICONS
from tutor.records import fmt_duration
from tutor.records.picture import (by_level, idea_evidence, level_counts, mistake_text,
                                   queue_text)

STYLES = {"pass": "green", "fail": "red", "error": "red", "timeout": "yellow",
          "crashed": "magenta", "skipped": "dim"}
STATUS_WORDS = {"pass": "passed", "fail": "failed", "error": "error", "timeout": "timed out",
                "crashed": "crashed", "skipped": "skipped"}


# --------------------------------------------------------------------------- lesson
#
# The lesson is drawn as Rich renderables built straight from the lesson data: one
# widget, no Markdown widget tree to mount and lay out (that is most of the start-up
# time). The YAML text uses a small Markdown subset -- paragraphs, "- " and "1. " lists,
# `code`, **bold** and [links](url) -- which is all this needs to understand.

_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")
_ITEM = re.compile(r"^(\s*)([-*]|\d+[.)])\s+")


class Hanging:
    """``marker`` then ``body`` wrapped beside it, continuation lines indented under the
    body (a hanging indent). ``body`` is a Text or a list of Texts (paragraphs). Much
    cheaper to draw than a two-column table."""

    def __init__(self, marker: Text | str, body, gap: int = 1):
        self.marker = marker if isinstance(marker, Text) else Text(marker)
        self.body = body if isinstance(body, list) else [body]
        self.gap = gap

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        indent = self.marker.cell_len + self.gap
        width = max(8, options.max_width - indent)
        pad = Segment(" " * indent)
        first = True
        for para in self.body:
            for line in para.wrap(console, width):
                if first:
                    yield from self.marker.render(console)
                    yield Segment(" " * self.gap)
                    first = False
                else:
                    yield pad
                yield from line.render(console)
                yield Segment.line()

    def __rich_measure__(self, console, options):
        from rich.measure import Measurement

        return Measurement(self.marker.cell_len + self.gap + 1, options.max_width)


def inline(text: str, style: str = "") -> Text:
    """Text with `code`, **bold** and [links](url) styled."""
    out = Text(style=style)
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(text[pos:m.start()])
        code, bold, label, url = m.groups()
        if code is not None:
            out.append(code, style="bold cyan")
        elif bold is not None:
            out.append(bold, style="bold")
        else:
            out.append(label, style=Style(underline=True, link=url))
        pos = m.end()
    out.append(text[pos:])
    return out


def blocks(text: str) -> list:
    """Paragraphs and list items of a Markdown-subset text as renderables."""
    out: list = []
    items: list[tuple[str, str]] = []  # (marker, text) of the list being read
    para: list[str] = []

    def flush_para():
        if para:
            out.append(inline(" ".join(para)))
            para.clear()

    def flush_items():
        if items:
            width = max(len("•" if m in "-*" else m) for m, _ in items)
            for marker, body in items:
                mark = ("•" if marker in "-*" else marker).ljust(width)
                out.append(Hanging(Text(mark, style="dim"), inline(body)))
            items.clear()

    for raw in (text or "").strip().splitlines():
        line = raw.strip()
        if not line:
            flush_para()
            flush_items()
            continue
        m = _ITEM.match(raw)
        if m:
            flush_para()
            items.append((m.group(2), raw[m.end():].strip()))
        elif items:
            marker, body = items[-1]
            items[-1] = (marker, f"{body} {line}")
        else:
            para.append(line)
    flush_para()
    flush_items()
    return out


def edit_line(task) -> Text:
    """``Edit impl/basics.py: linear`` and, a line each under it, every other file the task
    names (``impl/attention.py: SimpleMultiHeadAttention``), with its symbols."""
    where = Text("Edit ")
    for i, path in enumerate(task.files):
        if i:
            where.append("\n     ")  # one file a line, under the first
        where.append(path, style="bold cyan")
        syms = task.symbols_in(path)
        if syms:
            where.append(": " + ", ".join(syms))
    return where


def book_terms_text(lesson) -> Text | None:
    """The book's paths and commands beside the tutor's (course.yaml's book_terms), one
    pair a line so that a command never breaks in two."""
    terms = getattr(lesson, "book_terms", ())
    if not terms:
        return None
    t = Text("The book's paths and commands, here:", style="dim")
    for book, ours in terms:
        t.append(f"\n  {book} → ", style="dim")
        t.append(ours, style="cyan")
    return t


def lesson_renderable(lesson):
    """The day: title, the book's days and chapter link, which edition of the book it
    follows, the book's names for paths and commands, objectives, the tasks (files and
    symbols to edit), the concepts."""
    parts: list = [
        Text(f"Day {lesson.id} · {lesson.title}", style="bold"),
        Text.assemble(f"Week {lesson.week} · {lesson.book_days_label} · chapter: ",
                      (lesson.chapter, Style(underline=True, link=lesson.chapter))),
    ]
    if getattr(lesson, "edition", ""):
        parts.append(Text(lesson.edition, style="dim"))
    terms = book_terms_text(lesson)
    if terms is not None:
        parts.append(terms)
    parts += [Text(""), Text("Objectives", style="bold underline")]
    parts += blocks("\n".join(f"- {o}" for o in lesson.objectives))
    parts += [Text(""), Text("Tasks", style="bold underline")]
    for t in lesson.tasks:
        where = edit_line(t)
        where.append(f" · checks: {', '.join(t.checks) or '-'}", style="dim")
        parts += [Text(""), Text(f"{t.id}. {t.title}", style="bold"), where]
        for b in blocks(t.description):
            parts += [Text(""), b]
    parts += [Text(""), Text("Concepts", style="bold underline")]
    for c in lesson.concepts:
        parts += [Text(""), Text(c.name, style="bold")]
        for b in blocks(c.explanation):
            parts.append(b)
    return Group(*parts)


def lesson_plain(lesson) -> str:
    """The lesson as plain text (for tests and screen readers)."""
    from rich.console import Console

    console = Console(width=100, record=True, color_system=None, file=_Null())
    console.print(lesson_renderable(lesson))
    return console.export_text()


class _Null:
    def write(self, _):
        return 0

    def flush(self):
        pass


def question_prompt(q) -> str:
    """A concept question as shown above its answer box (choices lettered)."""
    text = q.prompt.strip()
    if q.kind == "choice":
        text += "\n" + "\n".join(f"  {'abcdef'[i]}) {o}" for i, o in enumerate(q.options))
    elif q.kind == "shape":
        text += "\n  (a shape, e.g. N, L, D)"
    elif q.kind == "predict":
        unit = f"in {q.unit}" if getattr(q, "unit", "") else "a number"
        text += f"\n  ({unit}; then it is measured on your code)"
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


def check_text(check: dict):
    """One check: icon, id and title; unless it passed, the message, the evidence and the
    diagnosis as a question (or the reason it was skipped). Wrapped lines keep their
    indent."""

    status = check.get("status", "error")
    style = STYLES.get(status, "red")
    head = Text()
    head.append(str(check.get("id", "?")), style=f"bold {style}")
    head.append(f"  {check.get('title', '')}")
    body: list = [head]
    if status == "skipped":
        reason = check.get("skip_reason") or check.get("message") or ""
        body.append(Text(f"skipped: {reason}", style="dim"))
    elif status != "pass":
        msg = (check.get("message") or "").strip()
        if msg:
            body.append(Text("\n".join(msg.splitlines()[:4])))
        diag = check.get("diagnosis")
        if diag and diag.get("question"):
            q = Text()
            q.append("? ", style="bold cyan")
            q.append(diag["question"], style="cyan")
            body.append(q)
        ev = dict(check.get("evidence") or {})
        if ev.get("case") and str(ev["case"]) in msg:
            ev.pop("case")
        if ev.get("first_mismatch") and "first at" in msg:
            ev.pop("first_mismatch")
        # The picture first: at 80x24 it is what fits under the question.
        picture = map_text(ev.get("map"))
        if picture is not None:
            body.append(picture)
        lines = evidence_lines(ev)
        if lines:
            body.append(Text("\n".join(lines), style="dim"))
    icon = Text(ICONS.get(status, "?"), style=f"bold {style}")
    if icon.cell_len < 2:
        icon.append(" ")
    return Hanging(icon, body)


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
        parts = [summary_text(result)]
        prev_pass = False
        for c in result["checks"]:
            passed = c.get("status") == "pass"
            if not (passed and prev_pass):  # passes sit together; failures get room
                parts.append(Text(""))
            parts.append(check_text(c))
            prev_pass = passed
        return Group(*parts)
    if plan is None:
        return Text("Starting the check process…", style="dim")
    done = done or {}
    rows: list = []
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
    return fmt_duration(seconds, zero="-")


def _fit(text: str, width: int) -> str:
    """``text`` cut with an ellipsis and padded to ``width`` terminal cells."""
    from rich.cells import cell_len, set_cell_size

    if cell_len(text) > width:
        text = set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def progress_table(weeks: list[dict]) -> Text:
    """The tracker's table as aligned text: status, day, title, active time, runs, hints,
    mastery, gaps (plain text: drawing it costs nothing, even on a busy machine)."""
    from rich.cells import cell_len

    heads = ("", "Day", "Title", "Active", "Runs", "Hints", "Mastery", "Gaps")
    caps = (2, 5, 26, 7, 5, 5, 16, 30)
    right = {3, 4, 5}
    out = Text()
    for wi, week in enumerate(weeks):
        rows = [(d["status_icon"], d["id"], d["title"], duration(d["active_seconds"]),
                 str(d["attempts"]), str(d["hints"]), d["mastery"],
                 ", ".join(d["gaps"]) or "-") for d in week["days"]]
        widths = [min(cap, max([cell_len(h)] + [cell_len(r[i]) for r in rows]))
                  for i, (h, cap) in enumerate(zip(heads, caps))]

        def line(cells) -> str:
            parts = []
            for i, (c, w) in enumerate(zip(cells, widths)):
                c = _fit(c, w)
                parts.append(c.rstrip().rjust(w) if i in right else c)
            return "  ".join(parts).rstrip()

        if wi:
            out.append("\n\n")
        out.append(f"Week {week['number']}: {week['title']}\n", style="bold")
        out.append(line(heads) + "\n", style="bold")
        out.append("─" * (sum(widths) + 2 * (len(widths) - 1)) + "\n", style="dim")
        out.append("\n".join(line(r) for r in rows))
    return out


def day_chart(rows: list[dict], time_width: int = 24, runs_width: int = 12) -> Text:
    """Active time and check runs per day, two bar columns side by side (about 60
    columns: readable at 80x24). Each column is scaled to its own busiest day."""
    peak_t = max((r.get("active_seconds") or 0 for r in rows), default=0)
    peak_n = max((r.get("attempts") or 0 for r in rows), default=0)
    out = Text()
    out.append(f"{'day':>5} {'active time':<{time_width}} {'':>6}  {'check runs':<{runs_width}}\n",
               style="dim")
    for i, r in enumerate(rows):
        sec, runs = r.get("active_seconds") or 0, r.get("attempts") or 0
        if i:
            out.append("\n")
        out.append(f"{r['id']:>5} ")
        out.append(bar(0.0 if peak_t <= 0 else time_width * sec / peak_t, time_width), style="cyan")
        out.append(f" {duration(sec):>6}  ")
        out.append(bar(0.0 if peak_n <= 0 else runs_width * runs / peak_n, runs_width),
                   style="magenta")
        out.append(f" {runs}" if runs else " -")
    return out


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# mastered, shaky, learning: a glyph each, so the bar reads without colour too
_IDEA_CELLS = (("mastered", "█", "green"), ("shaky", "▓", "yellow"), ("learning", "░", "cyan"))


def _short_date(iso: str) -> str:
    """'Mar 01' from '2025-03-01' (no locale: the month names are the app's own)."""
    try:
        return f"{_MONTHS[int(iso[5:7]) - 1]} {iso[8:10]}"
    except (ValueError, IndexError):
        return iso[:6]


def _segments(counts: list[int], scale: float) -> list[int]:
    """Cells for each stacked segment: the boundaries rounded, so the segments add up to
    the whole bar and a non-empty one never vanishes."""
    out, cum, drawn = [], 0, 0
    for n in counts:
        cum += n
        end = max(drawn + (1 if n else 0), round(cum * scale))
        out.append(end - drawn)
        drawn = end
    return out


def ideas_chart(series: list[dict], total: int, width: int = 30, max_rows: int = 12) -> Text:
    """Ideas over time (``tutor.records.timeline.ideas_over_time``): one row per date
    worked, a stacked bar of the ideas met by then -- mastered █, shaky ▓, learning ░ --
    and the counts. One cell per idea while at most ``width`` are met (scaled beyond);
    the last ``max_rows`` dates. At most about 48 columns: readable at 80x24."""
    if not series:
        return Text("Nothing recorded yet: the ideas you meet will show here, date by date.",
                    style="dim")
    rows = series[-max_rows:]
    peak = max(r.get("met") or 0 for r in rows)
    scale = 1.0 if peak <= width else width / peak
    label = f"ideas met (of {total})" if total else "ideas met"
    bar_w = max(len(label), round(peak * scale))
    out = Text()
    head = f"{'date':<6} {label:<{bar_w}}  met  ⭐  ❗"
    out.append(head.rstrip() + "\n", style="dim")
    if len(series) > len(rows):
        out.append(f"… {len(series) - len(rows)} earlier date"
                   f"{'s' if len(series) - len(rows) != 1 else ''}\n", style="dim")
    for r in rows:
        out.append(f"{_short_date(str(r.get('date') or '')):<6} ")
        cells = _segments([r.get(lvl) or 0 for lvl, _, _ in _IDEA_CELLS], scale)
        for (_, glyph, style), n in zip(_IDEA_CELLS, cells):
            out.append(glyph * n, style=style)
        out.append(" " * max(0, bar_w - sum(cells)))
        out.append(f"  {r.get('met') or 0:>3} {r.get('mastered') or 0:>3} "
                   f"{r.get('shaky') or 0:>3}\n")
    for i, (lvl, glyph, style) in enumerate(_IDEA_CELLS):
        out.append("       " if i == 0 else "  ")
        out.append(glyph, style=style)
        out.append(f" {lvl}", style="dim")
    out.append("\n       🔁 due for review is not tracked over time", style="dim")
    return out


_LEVEL_STYLE = {"due": "bold cyan", "shaky": "bold yellow", "mastered": "bold green",
                "learning": ""}


def mastery_text(picture: dict):
    """The ideas met (what needs attention first, the reasons wrapping in their own
    column), the most frequent mistakes and the review queue (``mastery_picture``)."""
    from rich.table import Table  # only here: the module stays cheap to import

    ideas = by_level(picture.get("ideas") or [])
    parts: list = []
    if not ideas:
        parts.append(Text("No idea met yet: start a day.", style="dim"))
    else:
        n = level_counts(ideas)
        parts.append(Text(f"{len(ideas)} met · ⭐ {n['mastered']} mastered · ❗ {n['shaky']} "
                          f"shaky · 🔁 {n['due']} due · 📖 {n['learning']} learning",
                          style="bold"))
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, max_width=24)
        grid.add_column(ratio=1)
        # the ideas still being learnt in one line: the rows are for what needs a look
        learning = [i["id"] for i in ideas if i["level"] == "learning"]
        for i in ideas:
            if i["level"] != "learning":
                grid.add_row(Text(i["label"], style=_LEVEL_STYLE[i["level"]]), i["id"],
                             Text(idea_evidence(i) or "-", style="dim"))
        if grid.row_count:
            parts.append(grid)
        if learning:
            parts.append(Text("📖 Learning: " + ", ".join(learning), style="dim"))
    mistakes = picture.get("frequent_mistakes") or []
    parts.append(Text("\nMost frequent mistakes", style="bold"))
    parts.append(Text("\n".join("  " + mistake_text(m) for m in mistakes)) if mistakes
                 else Text("  none diagnosed", style="dim"))
    queue = picture.get("review_queue") or []
    parts.append(Text(f"\nReview queue ({len(queue)} due)", style="bold"))
    parts.append(Text("\n".join("  " + queue_text(q) for q in queue) + "\n  r reviews them")
                 if queue else Text("  nothing due", style="dim"))
    return Group(*parts)


# --------------------------------------------------------------------------- editor


def symbol_line(path: Path, symbol: str) -> int:
    """The line where ``symbol`` is defined in ``path`` (1 if not found)."""
    from tutor.workspace import symbol_line as find

    return find(path, symbol)


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
