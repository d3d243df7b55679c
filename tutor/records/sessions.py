"""Session docs: ``sessions/weekN/dayN.M-topic.md``, filled from the day's records.

A session doc follows ``SESSION-TEMPLATE.md``: eight sections (Learning Objectives,
Concepts Studied, Implementation, Challenges & Solutions, Key Insights, Questions,
Progress Update, Next Steps), each holding one tutor-managed block::

    <!-- tutor:begin progress -->
    ...written by the tutor...
    <!-- tutor:end progress -->

The tutor rewrites only the inside of its blocks. Everything else in the file belongs to
the learner and survives every rewrite. A block the learner deleted is inserted again at
the end of its section (or, with the section gone too, in a new section at the end of
the file). A marker left without its partner is left alone as learner text: a block
only counts when its begin marker is followed by its own end marker with no other begin
marker in between, so a stray marker can never make the tutor swallow learner text.
A marker inside a code fence (the learner's notes on the format, say) is text too.

    merge_blocks(text, blocks) -> str          # pure, the merge rules above
    render_blocks(lesson, state, course=None)  # the blocks' contents from the records
    write_session_doc(workspace, lesson, state, template_text=None, course=None) -> Path
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from tutor.records._util import (
    day_id,
    fmt_duration,
    fmt_time,
    md_safe,
    parse_iso,
    utc_now,
)
from tutor.records.atomic import atomic_write_bytes
from tutor.records.markdown import code_mask, lead_and_list
from tutor.records.mastery import ACTIVITY_GAP_S, DEFAULT_LADDER_RUNGS, Mastery, assess
from tutor.statuses import FAILING

__all__ = [
    "SECTIONS",
    "DEFAULT_TEMPLATE",
    "begin_marker",
    "end_marker",
    "merge_blocks",
    "render_blocks",
    "render_template",
    "session_doc_path",
    "write_session_doc",
]

# (block name, section heading), in document order.
SECTIONS: tuple[tuple[str, str], ...] = (
    ("objectives", "Learning Objectives"),
    ("concepts", "Concepts Studied"),
    ("implementation", "Implementation"),
    ("challenges", "Challenges & Solutions"),
    ("insights", "Key Insights"),
    ("questions", "Questions"),
    ("progress", "Progress Update"),
    ("next", "Next Steps"),
)


def begin_marker(name: str) -> str:
    return f"<!-- tutor:begin {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- tutor:end {name} -->"


# --------------------------------------------------------------------------- merging

_ANY_BEGIN = r"<!--\s*tutor:begin\b"
_MARKER_IN_CONTENT = re.compile(r"<!--(\s*tutor:(?:begin|end)\b)")
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t#]*$")


def _block_pattern(name: str) -> re.Pattern[str]:
    n = re.escape(name)
    return re.compile(
        rf"<!--\s*tutor:begin\s+{n}\s*-->(?:(?!{_ANY_BEGIN}).)*?<!--\s*tutor:end\s+{n}\s*-->",
        re.S,
    )


def _block_text(name: str, content: str) -> str:
    body = _MARKER_IN_CONTENT.sub(r"&lt;!--\1", content).strip("\n")
    return f"{begin_marker(name)}\n{body}\n{end_marker(name)}" if body else f"{begin_marker(name)}\n{end_marker(name)}"


def _norm_heading(text: str) -> str:
    s = text.lower().replace("&", " and ")
    s = re.sub(r"^[^a-z]+", "", s)  # leading emoji, numbering, punctuation
    s = re.sub(r"[^a-z0-9]+", " ", s)
    return s.strip()


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, text) of the markdown headings in ``lines`` (masked by
    :func:`code_mask`: a heading in the learner's code is blank there)."""
    out = []
    for i, line in enumerate(lines):
        h = _HEADING.match(line)
        if h:
            out.append((i, len(h.group(1)), h.group(2)))
    return out


def _section_range(lines: list[str], title: str) -> tuple[int, int] | None:
    """(heading line, end line exclusive) of the section titled ``title``."""
    want = _norm_heading(title)
    heads = _headings(lines)
    pick = None
    for k, (_, _, text) in enumerate(heads):
        if _norm_heading(text) == want:
            pick = k
            break
    if pick is None:
        for k, (_, _, text) in enumerate(heads):
            if _norm_heading(text).startswith(want):
                pick = k
                break
    if pick is None:
        return None
    start, level, _ = heads[pick]
    end = len(lines)
    for i, lvl, _ in heads[pick + 1 :]:
        if lvl <= level:
            end = i
            break
    return start, end


def _insert_block(text: str, masked: str, title: str | None, block: str) -> str:
    lines = text.split("\n")
    rng = _section_range(masked.split("\n"), title) if title else None
    if rng is None:
        head = text.rstrip("\n")
        sep = "\n\n" if head else ""
        section = f"## {title}\n\n{block}" if title else block
        return f"{head}{sep}{section}\n"
    start, end = rng
    last = start
    for i in range(start + 1, end):
        if lines[i].strip():
            last = i
    after = lines[last + 1 :]
    new = lines[: last + 1] + [""] + block.split("\n")
    if not after or after[0].strip():
        new.append("")
    return "\n".join(new + after)


def merge_blocks(
    text: str,
    blocks: Mapping[str, str],
    sections: Iterable[tuple[str, str]] = SECTIONS,
) -> str:
    """Put each ``blocks[name]`` into its tutor block in ``text``; touch nothing else.

    Every well-formed block named ``name`` gets the new content. With none, the block is
    inserted at the end of its section (``sections`` maps block names to headings; the
    heading match ignores case, leading numbers/emoji and '&' vs 'and'), or at the end
    of the file under a new heading when the section is gone. Pure and idempotent.
    """
    titles = dict(sections)
    # Found in the masked text, replaced in both: markers in code are text. A block's own
    # content holds no fence at the top level, so the mask stays true without a re-parse.
    masked = code_mask(text)
    for name, content in blocks.items():
        block = _block_text(name, content)
        spans = [m.span() for m in _block_pattern(name).finditer(masked)]
        for a, b in reversed(spans):
            text = text[:a] + block + text[b:]
            masked = masked[:a] + block + masked[b:]
        if not spans:
            text = _insert_block(text, masked, titles.get(name), block)
            masked = code_mask(text)
    if text and not text.endswith("\n"):
        text += "\n"
    return text


# --------------------------------------------------------------------------- template

DEFAULT_TEMPLATE = """\
# Day {{day}}: {{title}}

Week {{week}} · book chapter: {{chapter}} · started {{date}}

> The tutor keeps the parts between `tutor:begin` and `tutor:end` markers up to date.
> Write your own notes anywhere else: the tutor never changes them. If you delete a
> tutor part, it comes back at the end of its section.

## Learning Objectives

<!-- tutor:begin objectives -->
<!-- tutor:end objectives -->

<!-- What do you want to be able to explain or build by the end of this day? -->

## Concepts Studied

<!-- tutor:begin concepts -->
<!-- tutor:end concepts -->

<!-- Your notes: shapes, equations, sketches, links to what you read. -->

## Implementation

<!-- tutor:begin implementation -->
<!-- tutor:end implementation -->

<!-- The decisions you made and why. What did you try first? -->

## Challenges & Solutions

<!-- tutor:begin challenges -->
<!-- tutor:end challenges -->

<!-- What went wrong, how you found the cause, what you will check first next time. -->

## Key Insights

<!-- tutor:begin insights -->
<!-- tutor:end insights -->

<!-- The key idea in your own words, as if explaining it to a colleague. -->

## Questions

<!-- tutor:begin questions -->
<!-- tutor:end questions -->

<!-- What is still unclear? What would you like to explore later? -->

## Progress Update

<!-- tutor:begin progress -->
<!-- tutor:end progress -->

<!-- How did the day feel? Energy, focus, what helped. -->

## Next Steps

<!-- tutor:begin next -->
<!-- tutor:end next -->

<!-- Anything you want to remember for the next session. -->
"""

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _day_rec(state: Any, day: str) -> dict | None:
    st = state if isinstance(state, dict) else getattr(state, "state", None) or {}
    return (st.get("days") or {}).get(day)


def _state_dict(state: Any) -> dict:
    if isinstance(state, dict):
        return state
    return getattr(state, "state", None) or {}


def render_template(template_text: str, lesson: Any, state: Any = None, now: datetime | None = None) -> str:
    """Fill ``{{day}} {{title}} {{week}} {{chapter}} {{date}} {{slug}}`` in a template."""
    day = day_id(lesson.id)
    rec = _day_rec(state, day) if state is not None else None
    started = parse_iso((rec or {}).get("first_activity")) or utc_now(now)
    values = {
        "day": day,
        "title": str(getattr(lesson, "title", "") or ""),
        "week": str(getattr(lesson, "week", "") or ""),
        "chapter": str(getattr(lesson, "chapter", "") or "—"),
        "slug": str(getattr(lesson, "slug", "") or ""),
        "date": started.strftime("%Y-%m-%d"),
    }
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template_text)


def _load_template(workspace: Path) -> str:
    candidates = [workspace / "SESSION-TEMPLATE.md"]
    try:
        from tutor.paths import template

        candidates.append(template("SESSION-TEMPLATE.md"))
    except Exception:  # pragma: no cover - paths is stdlib-only, but never fail here
        pass
    for c in candidates:
        try:
            return c.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    return DEFAULT_TEMPLATE


# --------------------------------------------------------------------------- contents


def _first_sentence(text: Any, limit: int = 160) -> str:
    s = " ".join(str(text or "").split())
    m = re.match(r"(.+?[.!?])(\s|$)", s)
    return md_safe(m.group(1) if m else s, limit)


def _task_checks(lesson: Any, rec: dict) -> list[tuple[Any, list[str]]]:
    """(task, its check ids) for each lesson task; check ids from the lesson, else from runs."""
    checks = rec.get("checks") or {}
    out = []
    for task in getattr(lesson, "tasks", None) or []:
        ids = [str(c) for c in (getattr(task, "checks", None) or [])]
        if not ids:
            ids = [cid for cid, c in checks.items() if str(c.get("task")) == str(getattr(task, "id", None))]
        out.append((task, ids))
    return out


def _hints_by_task(rec: dict, before: str | None = None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for h in rec.get("hints") or []:
        if before is not None and (h.get("time") or "") > before:
            continue
        rungs = out.setdefault(str(h.get("task")), [])
        if h.get("rung") not in rungs:
            rungs.append(h.get("rung"))
    return {k: sorted(v) for k, v in out.items()}


def _rungs(rungs: list[int]) -> str:
    return ("rung " if len(rungs) == 1 else "rungs ") + ", ".join(str(r) for r in rungs)


def _objectives(lesson: Any) -> str:
    lines = []
    chapter = getattr(lesson, "chapter", None)
    label = getattr(lesson, "book_days_label", None)
    if chapter:
        lines += [f"Book chapter: {chapter}" + (f" ({label})" if label else ""), ""]
    objectives = getattr(lesson, "objectives", None) or []
    lines += [f"- {md_safe(o, 300)}" for o in objectives] or ["_This lesson lists no objectives._"]
    return "\n".join(lines)


def _concepts(lesson: Any, rec: dict) -> str:
    lines = []
    for c in getattr(lesson, "concepts", None) or []:
        name = md_safe(getattr(c, "name", ""), 100)
        lead, items = lead_and_list(str(getattr(c, "explanation", "") or ""))
        expl = _first_sentence(lead)
        lines.append(f"- **{name}**" + (f" — {expl}" if expl else ""))
        lines += [f"  {marker} {md_safe(item, 300)}" for marker, item in items]
    answered = rec.get("concepts") or {}
    predictions = rec.get("predictions") or {}
    questions = list(getattr(lesson, "concept_questions", None) or [])
    known = {str(getattr(q, "id", "")) for q in questions}
    rows = []
    for q in questions:
        qid = str(getattr(q, "id", ""))
        when = str(getattr(q, "when", "") or "")
        label = f"`{md_safe(qid, 60)}`" + (f" ({when} coding)" if when in ("before", "after") else "")
        prompt = md_safe(getattr(q, "prompt", ""), 140)
        rows.append(_question_row(label, prompt, answered.get(qid)))
        if isinstance(predictions.get(qid), dict):
            rows.append("  - " + prediction_line(predictions[qid],
                                                 str(getattr(q, "unit", "") or "")))
    for qid, c in answered.items():
        if qid not in known:
            rows.append(_question_row(f"`{md_safe(qid, 60)}`", "", c))
    if rows:
        if lines:
            lines.append("")
        lines += ["Concept questions:"] + rows
    return "\n".join(lines) or "_No concepts listed for this lesson._"


def _number(value: Any, unit: str) -> str:
    text = str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
    return f"{text} {unit}" if unit else text


def prediction_line(p: Mapping, unit: str = "") -> str:
    """"predicted 7 pages, measured 7 pages" (or why nothing was measured), for the notes."""
    unit = md_safe(str(p.get("unit") or unit), 40)
    guess = p.get("prediction")
    said = (f"predicted {_number(guess, unit)}" if isinstance(guess, (int, float))
            and not isinstance(guess, bool) else "no number predicted")
    got, status = p.get("measured"), p.get("status")
    if status == "measured" and isinstance(got, (int, float)) and not isinstance(got, bool):
        return f"{said}, measured {_number(got, unit)}"
    if status in ("error", "skipped"):
        return f"{said}, could not measure: {md_safe(str(p.get('reason') or status), 200)}"
    return f"{said}, not measured yet"


def _question_row(label: str, prompt: str, c: dict | None) -> str:
    if not c:
        verdict, icon = "not answered yet", "⬜"
    elif c.get("first_correct"):
        verdict, icon = "right on the first try", "✅"
    elif c.get("last_correct"):
        verdict, icon = f"right after {int(c.get('tries') or 0)} tries", "🔁"
    else:
        verdict, icon = f"not right yet ({int(c.get('tries') or 0)} tries)", "❌"
    return f"- {icon} {label}" + (f": {prompt}" if prompt else "") + f" — {verdict}"


def _implementation(lesson: Any, rec: dict) -> str:
    lines = []
    files = rec.get("files_changed") or {}
    if files:
        lines.append("Files changed:")
        for path, t in sorted(files.items(), key=lambda kv: kv[0]):
            lines.append(f"- `{md_safe(path, 200)}` (last change {fmt_time(t)})")
    else:
        lines.append("_No file changes recorded yet._")
    checks = rec.get("checks") or {}
    attempts = rec.get("attempts") or []
    tasks = _task_checks(lesson, rec)
    if tasks:
        lines.append("")
        last = attempts[-1] if attempts else None
        lines.append(
            f"Tasks (latest check run {fmt_time(last.get('time'))}):" if last else "Tasks (no check run yet):"
        )
        for task, ids in tasks:
            statuses = [(cid, (checks.get(cid) or {}).get("last_status")) for cid in ids]
            run = [s for _, s in statuses if s]
            passing = sum(1 for s in run if s == "pass")
            failing = [cid for cid, s in statuses if s in FAILING]
            if not run:
                icon, tail = "⬜", "not checked yet"
            elif failing:
                icon, tail = "❌", f"{passing}/{len(ids)} checks pass (failing: {', '.join(f'`{c}`' for c in failing)})"
            elif passing == len(ids):
                icon, tail = "✅", f"{passing}/{len(ids)} checks pass"
            else:
                icon, tail = "🟡", f"{passing}/{len(ids)} checks pass (others skipped or not run)"
            where = _task_where(task)
            lines.append(
                f"- {icon} Task {getattr(task, 'id', '?')} — {md_safe(getattr(task, 'title', ''), 120)}{where} — {tail}"
            )
    elif checks:
        lines += ["", "Checks:"]
        for cid, c in checks.items():
            lines.append(f"- `{md_safe(cid, 80)}`: {c.get('last_status') or 'not run'}")
    return "\n".join(lines)


def _task_files(task: Any) -> list[tuple[str, list[str]]]:
    """(file, symbols) for every file a task names: its (file, symbol) pairs when it has
    them, else the older single file with all its symbols."""
    edits = getattr(task, "edits", None)
    if edits:
        out: dict[str, list[str]] = {}
        for e in edits:
            syms = out.setdefault(e.path, [])
            if e.symbol and e.symbol not in syms:
                syms.append(e.symbol)
        return list(out.items())
    file = getattr(task, "file", None)
    return [(file, list(getattr(task, "symbols", None) or []))] if file else []


def _task_where(task: Any) -> str:
    """`` (`impl/basics.py`: `linear`; `impl/attention.py`: `SimpleMultiHeadAttention`)``"""
    parts = []
    for file, symbols in _task_files(task):
        part = f"`{md_safe(file, 80)}`"
        if symbols:
            part += ": " + ", ".join(f"`{md_safe(s, 60)}`" for s in symbols)
        parts.append(part)
    return f" ({'; '.join(parts)})" if parts else ""


def _challenges(lesson: Any, rec: dict) -> str:
    attempts_total = int(rec.get("attempts_total") or 0)
    checks = rec.get("checks") or {}
    troubled = sorted(
        ((cid, c) for cid, c in checks.items() if int(c.get("fails") or 0) > 0),
        key=lambda kv: (kv[1].get("first_fail") or "", kv[0]),
    )
    lines = []
    if not attempts_total:
        lines.append("_No checks run yet._")
    elif not troubled:
        lines.append("_No check has failed so far._")
    else:
        lines.append("Checks that failed, and how they came to pass:")
        for cid, c in troubled:
            task = c.get("task")
            title = md_safe(c.get("title"), 100)
            label = f"`{md_safe(cid, 80)}`" + (f" (task {task}: {title})" if task is not None and title else f" ({title})" if title else "")
            fails = int(c.get("fails") or 0)
            text = f"- {label} failed in {fails} run{'s' if fails != 1 else ''}, first at {fmt_time(c.get('first_fail'))}"
            diag = c.get("pitfalls") or {}
            if diag:
                text += "; diagnosed " + ", ".join(f"{p} ×{n}" for p, n in sorted(diag.items(), key=lambda x: -x[1]))
            text += "."
            if c.get("failing"):
                msg = md_safe(c.get("last_message"), 200)
                text += " ❌ Still failing" + (f": “{msg}”" if msg else ".")
            elif c.get("fixed_at"):
                text += f" ✅ Passing since {fmt_time(c.get('fixed_at'))}"
                hints = _hints_by_task(rec, before=c.get("fixed_at")).get(str(task)) if task is not None else None
                text += f", after hints ({_rungs(hints)})." if hints else ", without a hint."
            lines.append(text)
    pitfalls = sorted((rec.get("pitfalls") or {}).items(), key=lambda x: (-int(x[1]), x[0]))
    if pitfalls:
        symptoms = {str(getattr(p, "id", "")): getattr(p, "symptom", "") for p in getattr(lesson, "pitfalls", None) or []}
        lines += ["", "Pitfalls hit:"]
        for pid, n in pitfalls:
            sym = md_safe(symptoms.get(pid, ""), 200)
            lines.append(f"- {pid} ×{n}" + (f" — {sym}" if sym else ""))
    hints = _hints_by_task(rec)
    if hints:
        parts = [f"task {t} ({_rungs(r)})" for t, r in hints.items()]
        lines += ["", "Hints used: " + "; ".join(parts) + "."]
    elif attempts_total:
        lines += ["", "No hints used."]
    return "\n".join(lines)


def _insights(rec: dict) -> str:
    items = rec.get("insights") or []
    if not items:
        return (
            "_No insight recorded yet. Tell the tutor the key idea in your own words: "
            "it is kept here, and it is one of the ⭐ Mastery conditions._"
        )
    blocks = []
    for i in items:
        text = str(i.get("text") or "").replace("<!--", "&lt;!--")
        quoted = "\n".join(f"> {line}".rstrip() for line in text.splitlines() or [""])
        blocks.append(f"{quoted}\n>\n> _recorded {fmt_time(i.get('time'))}_")
    return "\n\n".join(blocks)


def _questions(rec: dict) -> str:
    items = rec.get("questions") or []
    if not items:
        return "_No questions asked to the coach yet._"
    return "\n".join(f"- {fmt_time(q.get('time'))} — {md_safe(q.get('text'), 500)}" for q in items)


def _progress(lesson: Any, rec: dict, state: dict, day: str) -> str:
    a = assess(rec, lesson)
    n_sessions = sum(1 for s in state.get("sessions") or [] if day in (s.get("days") or []))
    attempts = int(rec.get("attempts_total") or 0)
    fails = int(rec.get("fails_before_pass") or 0)
    first_pass = rec.get("first_pass")
    hints = len(rec.get("hints_seen") or [])
    concepts = rec.get("concepts") or {}
    n_questions = len(getattr(lesson, "concept_questions", None) or []) or len(concepts)
    right = sum(1 for c in concepts.values() if c.get("last_correct"))
    mastery = str(a.mastery) if a.mastery else "—"
    lines = [
        f"- Status: {a.status} · Mastery: {mastery}",
        f"- Active time: {fmt_duration(rec.get('active_seconds'))} (breaks over {ACTIVITY_GAP_S // 60} minutes not counted)"
        + (f", over {n_sessions} session{'s' if n_sessions != 1 else ''}" if n_sessions else ""),
        f"- First activity: {fmt_time(rec.get('first_activity'))} · last activity: {fmt_time(rec.get('last_activity'))}",
    ]
    if attempts:
        runs = f"- Check runs: {attempts}"
        if first_pass:
            runs += f"; first pass {fmt_time(first_pass)} after {fails} failing run{'s' if fails != 1 else ''}"
        else:
            runs += "; no pass yet"
        lines.append(runs)
    else:
        lines.append("- Check runs: none yet")
    lines.append(
        f"- Hints used: {hints}" + (f" (including the last rung, {DEFAULT_LADDER_RUNGS})" if rec.get("final_hint") else "")
    )
    if n_questions:
        lines.append(f"- Concept questions answered right: {right} of {n_questions}")
    return "\n".join(lines)


def _next_lesson(course: Any, day: str) -> Any:
    lessons = list(getattr(course, "lessons", None) or []) if course is not None else []
    for i, lesson in enumerate(lessons):
        if str(getattr(lesson, "id", "")) == day and i + 1 < len(lessons):
            return lessons[i + 1]
    return None


def _next_steps(lesson: Any, rec: dict, day: str, course: Any) -> str:
    a = assess(rec, lesson)
    lines = []
    if a.mastery is Mastery.MASTERY:
        lines.append("- ⭐ This day is mastered.")
    else:
        target = {
            None: "📖 Learning",
            Mastery.LEARNING: "💻 Implementing",
            Mastery.IMPLEMENTING: "✅ Competent",
            Mastery.COMPETENT: "⭐ Mastery",
        }[a.mastery]
        lines.append(f"To reach {target}:")
        lines += [f"- [ ] {md_safe(m, 300)}" for m in a.missing]
        if not a.passing:
            lines.append(f"- [ ] run `tiny-llm-tutor check day{day}` after each change")
    nxt = _next_lesson(course, day)
    if nxt is not None:
        lines += ["", f"Then: day {nxt.id} — {md_safe(getattr(nxt, 'title', ''), 120)}."]
    elif course is not None:
        lines += ["", "This is the last day of the course material so far."]
    return "\n".join(lines)


def render_blocks(lesson: Any, state: Any, course: Any = None) -> dict[str, str]:
    """The content of every tutor block of ``lesson``'s session doc, from ``state``."""
    st = _state_dict(state)
    day = day_id(lesson.id)
    rec = _day_rec(st, day) or {}
    return {
        "objectives": _objectives(lesson),
        "concepts": _concepts(lesson, rec),
        "implementation": _implementation(lesson, rec),
        "challenges": _challenges(lesson, rec),
        "insights": _insights(rec),
        "questions": _questions(rec),
        "progress": _progress(lesson, rec, st, day),
        "next": _next_steps(lesson, rec, day, course),
    }


def session_doc_path(workspace: Path | str, lesson: Any) -> Path:
    filename = getattr(lesson, "session_filename", None) or f"day{lesson.id}-{getattr(lesson, 'slug', 'session')}.md"
    return Path(workspace) / "sessions" / f"week{lesson.week}" / filename


def write_session_doc(
    workspace: Path | str,
    lesson: Any,
    state: Any,
    template_text: str | None = None,
    *,
    course: Any = None,
    now: datetime | None = None,
) -> Path:
    """Create or refresh the lesson's session doc; learner text is kept byte for byte.

    A new doc starts from ``template_text`` (default: the workspace's SESSION-TEMPLATE.md,
    else the packaged one). ``course`` (optional) names the next day in Next Steps.
    Returns the doc's path; the file is written atomically and only when it changes.
    """
    workspace = Path(workspace)
    path = session_doc_path(workspace, lesson)
    try:
        old: str | None = path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        old = None
    if old is None:
        template = template_text if template_text is not None else _load_template(workspace)
        base = render_template(template, lesson, state, now)
    else:
        base = old
    new = merge_blocks(base, render_blocks(lesson, state, course))
    if new != old:
        atomic_write_bytes(path, new.encode("utf-8", "surrogateescape"))
    return path

