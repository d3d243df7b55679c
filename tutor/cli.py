"""The ``tiny-llm-tutor`` command line.

Exit codes: 0 success (every check passed), 1 a check failed, errored, timed out or
crashed, 2 bad usage (unknown day, missing workspace, broken lesson file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tutor import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the learner: printed as one or two lines, exit 2."""


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _course():
    from tutor.curriculum import CurriculumError, load_course

    try:
        return load_course()
    except CurriculumError as exc:
        raise UsageError(f"A lesson file is broken: {exc}") from None


def _route(course, text: str):
    """Where a typed day leads (lesson ids, and a note for a book day that a lesson with
    another number covers); an unknown day is a usage error."""
    from tutor import dayids

    try:
        return dayids.resolve(text, course)
    except dayids.UnknownDay as exc:
        raise UsageError(exc.render()) from None


def _days(course, text: str) -> list[str]:
    """The lesson ids for ``text``; a book day merged into a lesson says which one, on
    stderr (stdout stays the command's own, e.g. JSON)."""
    route = _route(course, text)
    _note(route.note)
    return route.days


def _note(text: str | None) -> None:
    if text:
        _console(stderr=True).print(f"[cyan]{_escape(text)}[/cyan]", soft_wrap=True)


def _workspace(required: bool = True) -> Path | None:
    from tutor.workspace import find_workspace

    ws = find_workspace()
    if ws is None and required:
        raise UsageError("No tiny-llm-tutor workspace here. Create one with "
                         "`tiny-llm-tutor init DIR`, then run this inside DIR.")
    return ws


def _code_under_test(args) -> tuple[Path | None, Path, Path | None]:
    """``(workspace, impl, kernels)`` for ``check`` and ``bench``: ``--impl`` or the
    workspace's impl/ (a workspace is needed only without ``--impl``), and ``--kernels``
    or the workspace's kernels/ when there is one."""
    ws = _workspace(required=args.impl is None)
    impl = Path(args.impl).expanduser() if args.impl else ws / "impl"
    if not (impl / "__init__.py").is_file():
        raise UsageError(f"{impl} is not a Python package (no __init__.py). Point --impl at "
                         "a package directory such as impl/ or src/tiny_llm.")
    kernels = Path(args.kernels).expanduser() if args.kernels else (
        ws / "kernels" if ws is not None and (ws / "kernels").is_dir() else None)
    return ws, impl, kernels


# --------------------------------------------------------------------------- check


def cmd_check(args) -> int:
    from tutor.checking.results import with_questions
    from tutor.checking.runner import run_days

    course = _course()
    days = _days(course, args.day)
    ws, impl, kernels = _code_under_test(args)
    impl = impl.resolve()
    record = ws is not None and (args.impl is None or impl == (ws / "impl").resolve())
    out = _console()
    results = []
    notices: list[str] = []  # about the records: shown after the results, never instead

    printers: dict[str, _ProgressPrinter] = {}

    def progress(day: str):
        if args.json:
            return None
        printers[day] = _ProgressPrinter(out, course.lesson(day), args.verbose,
                                         course.pitfall_questions(day))
        return printers[day]

    budgets = [(day, args.timeout or course.lesson(day).timeout_s) for day in days]
    for result in run_days(budgets, impl, on_day=progress, kernels=kernels):
        lesson = course.lesson(result["day"])
        with_questions(result, course.pitfall_questions(lesson.id))
        results.append(result)
        if record:
            notice = _record_check(ws, course, lesson, result)
            if notice and notice not in notices:
                notices.append(notice)
        if not args.json:
            if result["day"] in printers:
                printers[result["day"]].finish(result)
            _print_day_summary(out, result)
    if args.json:
        payload = results[0] if len(results) == 1 else results
        sys.stdout.write(json.dumps(payload, indent=None, ensure_ascii=False) + "\n")
    elif len(results) > 1:
        passed = sum(r["status"] == "pass" for r in results)
        out.print(f"\n[bold]{passed} of {len(results)} days pass.[/bold]")
    for notice in notices:  # stdout stays the JSON alone with --json
        (_console(stderr=True) if args.json else out).print(
            f"[yellow]{_escape(notice)}[/yellow]", soft_wrap=True)
    return EXIT_OK if all(r["status"] == "pass" for r in results) else EXIT_FAIL


def _record_check(ws: Path, course, lesson, result: dict) -> str | None:
    """Log the attempt and refresh the tracker; returns a line for the learner, if any.
    Records trouble never hides the results, nor changes the exit code."""
    from tutor.records import recorder
    from tutor.records.state import StateError, StateLocked

    try:
        return recorder.record_check(ws, course, lesson, result)
    except StateLocked as exc:
        return f"Results not recorded: {exc}"
    except (OSError, StateError) as exc:
        return f"Results not recorded: {_records_trouble(exc, ws)}"


def _records_trouble(exc: Exception, ws: Path | None) -> str:
    from tutor.records.trouble import records_trouble

    return records_trouble(exc, ws)


class _ProgressPrinter:
    """Prints a day's checks as their results arrive, then, when the day is done, what the
    stream could not carry: checks that never ran (an import error, a timeout, a crash
    between checks) and, with -v, what the learner's code printed."""

    def __init__(self, out, lesson, verbose: bool, questions: dict[str, str]):
        from rich.markup import escape

        self.out, self.verbose, self.questions = out, verbose, questions
        self.printed: set[str] = set()
        self.last_frame = ""
        header = f"[bold]Day {lesson.id} · {escape(lesson.title)}[/bold]"
        if len(lesson.covers) > 1:
            header += f"  [dim]({lesson.book_days_label})[/dim]"
        out.print(header)

    def __call__(self, ev: dict) -> None:
        if ev.get("event") == "result":
            self._show(ev["id"], ev["status"], ev.get("message") or "", ev.get("pitfall"),
                       ev.get("evidence") or {})

    def finish(self, result: dict) -> None:
        from rich.markup import escape

        for c in result["checks"]:
            evidence = c.get("evidence") or {}
            if c["id"] not in self.printed:
                pit = (c.get("diagnosis") or {}).get("pitfall") or c.get("pitfall")
                self._show(c["id"], c["status"], c.get("message") or "", pit, evidence)
            elif self.verbose and c["status"] != "pass" and evidence.get("output"):
                self.out.print(f"     [dim]{escape(c['id'])}:[/dim]")
                _print_output(self.out, evidence["output"])

    def _show(self, cid: str, status: str, msg: str, pit, evidence: dict) -> None:
        from rich.markup import escape

        from tutor.checking.results import ICONS

        self.printed.add(cid)
        style = {"pass": "green", "skipped": "dim"}.get(status, "red")
        line = f" [{style}]{ICONS.get(status, '?')} {escape(cid)}[/{style}]"
        if status != "pass":
            line += f"  {escape(_first_line(msg))}"
        self.out.print(line)
        if status in ("pass", "skipped"):
            return
        if pit and self.questions.get(pit):
            self.out.print(f"     [cyan]? {escape(self.questions[pit])}[/cyan]")
        # Where the learner's code broke is the one thing never to hide, flags or not.
        frames = evidence.get("traceback") or []
        if frames and not self.verbose and frames[-1] != self.last_frame:
            self.out.print(f"     [dim]{escape(frames[-1])}[/dim]")
            self.last_frame = frames[-1]  # an import error is every check's: show it once
        if self.verbose:
            _print_evidence(self.out, evidence)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _print_evidence(out, ev: dict) -> None:
    from rich.markup import escape
    from rich.padding import Padding

    from tutor.checking.diffmap_view import map_text

    for key in ("case", "shape", "expected_shape", "dtype", "max_abs_err", "max_rel_err",
                "mismatched", "first_mismatch", "forbidden_calls"):
        if key in ev and ev[key] not in ("", None):
            out.print(f"     [dim]{key}: {escape(str(ev[key]))}[/dim]")
    for frame in ev.get("traceback") or []:
        out.print(f"     [dim]{escape(frame)}[/dim]")
    picture = map_text(ev.get("map"))
    if picture is not None:
        out.print(Padding(picture, (0, 0, 0, 5), expand=False))
    if ev.get("output"):
        _print_output(out, ev["output"])


def _print_output(out, text: str) -> None:
    from rich.markup import escape

    lines = text.splitlines()
    shown = "\n".join(lines[:20]) + ("\n     ..." if len(lines) > 20 else "")
    out.print("     [dim]your code printed:[/dim]")
    out.print(escape(shown), style="dim")


def _print_day_summary(out, result: dict) -> None:
    s = result["summary"]
    parts = [f"{s['pass']} passed"]
    for k in ("fail", "error", "timeout", "crashed", "skipped"):
        if s[k]:
            parts.append(f"{s[k]} {'failed' if k == 'fail' else k}")
    color = "green" if result["status"] == "pass" else "red"
    out.print(f"[{color}]{' · '.join(parts)}[/{color}]  [dim]({result['duration_s']:.2f} s)[/dim]")


# --------------------------------------------------------------------------- progress / lessons


def cmd_progress(args) -> int:
    from tutor.records import recorder

    course = _course()
    ws = _workspace()
    summary, notice = recorder.progress_summary(ws, course)
    if args.json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
        if notice:
            _console(stderr=True).print(f"[yellow]{_escape(notice)}[/yellow]", soft_wrap=True)
        return EXIT_OK
    out = _console()
    if notice:
        out.print(f"[yellow]{_escape(notice)}[/yellow]", soft_wrap=True)
    from rich import box
    from rich.table import Table

    from tutor.records import fmt_duration

    for week in summary["weeks"]:
        table = Table(title=f"Week {week['number']}: {week['title']}", title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("", "Day", "Title", "Active", "Runs", "Hints", "Mastery", "Gaps"):
            table.add_column(col, no_wrap=col not in ("Title", "Gaps"), min_width=len(col),
                             max_width=26 if col == "Title" else None)
        for d in week["days"]:
            table.add_row(d["status_icon"], d["id"], d["title"], fmt_duration(d["active_seconds"], zero="-"),
                          str(d["attempts"]), str(d["hints"]), d["mastery"],
                          ", ".join(d["gaps"]) or "-")
        out.print(table)
    _print_mastery_picture(out, summary)
    out.print(f"[dim]Tracker: {summary['tracker']}[/dim]")
    return EXIT_OK


def _print_mastery_picture(out, summary: dict) -> None:
    """The ideas met (what needs attention first), the most frequent mistakes and the
    review queue, under the week tables."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from tutor.records.picture import (by_level, idea_evidence, level_counts, mistake_text,
                                       queue_text)

    ideas = by_level(summary.get("ideas") or [])
    if ideas:
        counts = level_counts(ideas)
        table = Table(title=(f"Ideas met: {len(ideas)} · ⭐ {counts['mastered']} mastered · "
                             f"❗ {counts['shaky']} shaky · 🔁 {counts['due']} due · "
                             f"📖 {counts['learning']} learning"),
                      title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("Level", no_wrap=True)
        table.add_column("Idea", no_wrap=True)
        table.add_column("Why")
        for i in ideas:
            table.add_row(i["label"], i["id"], escape(idea_evidence(i)) or "-")
        out.print(table)
    else:
        out.print("[dim]Ideas: none met yet (start a day).[/dim]")
    mistakes = summary.get("frequent_mistakes") or []
    if mistakes:
        out.print("[bold]Most frequent mistakes[/bold]")
        for m in mistakes:
            out.print(f"  {escape(mistake_text(m))}")
    queue = summary.get("review_queue") or []
    if queue:
        out.print(f"[bold]Due for review ({len(queue)})[/bold]")
        for q in queue:
            out.print(f"  {escape(queue_text(q))}")
        out.print("  [dim]`tiny-llm-tutor review` asks them.[/dim]")
    else:
        out.print("[dim]Review queue: nothing due.[/dim]")


def cmd_lessons(args) -> int:
    from rich.markup import escape

    course = _course()
    ws = _workspace(required=False)
    status = {}
    if ws is not None:
        from tutor.records import recorder

        status = recorder.day_icons(ws, course)
    out = _console()
    out.print(f"[bold]{escape(course.title)}[/bold]  [dim]{course.book}[/dim]")
    if course.edition:
        out.print(f"[dim]{escape(course.edition)}[/dim]")
    for week in course.weeks:
        out.print(f"\n[bold]Week {week.number}: {escape(week.title)}[/bold]")
        for lesson in week.days:
            icon = status.get(lesson.id, "⬜")
            days = f"  [dim]({lesson.book_days_label})[/dim]" if len(lesson.covers) > 1 else ""
            out.print(f" {icon} day{lesson.id}  {escape(lesson.title)}{days}")
    if ws is None:
        out.print("\n[dim]No workspace here: statuses are not shown. `tiny-llm-tutor init DIR` "
                  "creates one.[/dim]")
    return EXIT_OK


# --------------------------------------------------------------------------- doctor / init / reset / start


def cmd_doctor(args) -> int:
    from rich.markup import escape

    from tutor.doctor import run_doctor

    out = _console()
    icons = {"ok": "[green]✓[/green]", "warn": "[yellow]![/yellow]",
             "missing": "[red]✗[/red]", "info": "[blue]i[/blue]"}
    findings = run_doctor(_workspace(required=False))
    for f in findings:
        line = f" {icons[f.state]} {escape(f.detail)}"
        if f.fix and f.state != "ok":
            line += f"\n     [dim]→ {escape(f.fix)}[/dim]"
        out.print(line)
    return EXIT_FAIL if any(f.state == "missing" for f in findings) else EXIT_OK


def cmd_init(args) -> int:
    from rich.markup import escape

    from tutor.workspace import WorkspaceError, init_workspace

    target = Path(args.dir)
    try:
        made = init_workspace(target)
    except WorkspaceError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"Could not create the workspace: {exc}") from None
    out = _console()
    out.print(f"[green]Workspace ready in {escape(str(target.resolve()))}[/green]")
    for m in made:
        out.print(f"  {escape(m)}")
    out.print(f"\nNext: cd {escape(str(target))} && tiny-llm-tutor start week1")
    return EXIT_OK


def cmd_reset(args) -> int:
    from rich.markup import escape

    from tutor.workspace import reset_day, reset_plan

    course = _course()
    days = _days(course, args.day)
    if len(days) != 1:
        raise UsageError("reset takes one day (e.g. day1.3), not a whole week.")
    lesson = course.lesson(days[0])
    ws = _workspace()
    out = _console()
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("reset asks for confirmation; run it in a terminal or add --yes.")
        out.print(f"Reset day {lesson.id} ({escape(lesson.title)}):")
        for item in reset_plan(lesson, course):
            out.print(f"  {escape(item.describe())}")
        out.print("Your current files are copied to backups/ first.")
        answer = input("Reset? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            out.print("Nothing changed.")
            return EXIT_OK
    backup, report = reset_day(ws, lesson, course=course)
    for line in report:
        out.print(f"  {escape(line)}")
    out.print(f"[green]Day {lesson.id} reset.[/green] Your previous files are in "
              f"{escape(str(backup.relative_to(ws)))}/")
    return EXIT_OK


def cmd_build_kernels(args) -> int:
    from rich.markup import escape

    from tutor.kernels_build import build

    if args.dir:
        kdir = Path(args.dir).expanduser()
    else:
        kdir = _workspace() / "kernels"
    if not (kdir / "CMakeLists.txt").is_file():
        raise UsageError(f"{kdir} has no CMakeLists.txt; point --dir at your kernels/ folder.")
    out = _console()
    out.print(f"Building {escape(str(kdir))}{' from scratch' if args.clean else ''} "
              "[dim](a clean build takes about half a minute)[/dim] ...")
    result = build(kdir, clean=args.clean)
    if result.ok:
        for m in result.messages:
            out.print(f"[green]{escape(m)}[/green]")
        return EXIT_OK
    err = _console(stderr=True)
    err.print(f"[red]The kernels did not build[/red] ({result.seconds:.1f} s):")
    for m in result.messages:
        err.print(f"  {escape(m)}")
    return EXIT_FAIL


def cmd_bench(args) -> int:
    """The learner's engine measured through the week (``bench week2``, ``bench week3``)."""
    from tutor.bench import render, run_bench

    week = args.week.lower()
    if week in ("week3", "w3", "3"):
        return _bench_week3(args)
    if week == "serve":
        return _bench_serve(args)
    if week not in ("week2", "w2", "2"):
        raise UsageError(f"No benchmark for {args.week!r}: `tiny-llm-tutor bench week2` "
                         "measures week 2's decode speed-ups, `tiny-llm-tutor bench week3` "
                         "paging, batching and speculative decoding, `tiny-llm-tutor bench "
                         "serve` your server under concurrent clients.")
    if args.tokens < 1:
        raise UsageError("--tokens must be at least 1.")
    _, impl, kernels = _code_under_test(args)
    out = _console()
    if args.json:
        result = run_bench(impl, kernels, tokens=args.tokens)
        print(json.dumps(result))
    else:
        from rich.markup import escape

        def on_event(ev: dict) -> None:
            if ev.get("event") == "start":
                out.print(f"[dim]  measuring {escape(ev['id'])} ...[/dim]")

        out.print(f"Benchmarking {escape(str(impl))} ([dim]{args.tokens} tokens per row; "
                  "your code runs in a separate process[/dim])")
        result = run_bench(impl, kernels, tokens=args.tokens, on_event=on_event)
        render(result, out)
    ref = next(r for r in result["rows"] if r["id"] == "mlx")
    return EXIT_OK if ref["status"] == "ok" else EXIT_FAIL


def _bench_week3(args) -> int:
    from rich.markup import escape

    from tutor.bench_week3 import render, run_bench_week3

    _, impl, kernels = _code_under_test(args)
    out = _console()
    if args.json:
        result = run_bench_week3(impl, kernels)
        print(json.dumps(result))
    else:
        out.print(f"Benchmarking {escape(str(impl))} ([dim]your code runs in a separate "
                  "process[/dim])")

        def on_event(ev: dict) -> None:
            if ev.get("event") == "start":
                out.print(f"[dim]  measuring {escape(ev['id'])} ...[/dim]")

        result = run_bench_week3(impl, kernels, on_event=on_event)
        render(result, out)
    return EXIT_FAIL if result.get("error") else EXIT_OK


def _bench_serve(args) -> int:
    from rich.markup import escape

    from tutor.bench_serve import MAX_CLIENTS, MAX_TOKENS, render, run_bench_serve

    if not 1 <= args.clients <= MAX_CLIENTS or not 1 <= args.tokens <= MAX_TOKENS:
        raise UsageError(f"--clients must be 1..{MAX_CLIENTS} and --tokens 1..{MAX_TOKENS}.")
    _, impl, kernels = _code_under_test(args)
    out = _console()
    if not args.json:
        out.print(f"Serving {escape(str(impl))} on loopback: {args.clients} requests one at a "
                  f"time, then {args.clients} at once ([dim]your code runs in a separate "
                  "process[/dim])")
    result = run_bench_serve(impl, kernels, clients=args.clients, tokens=args.tokens,
                             model=args.model)
    if args.json:
        print(json.dumps(result))
    else:
        render(result, out)
    return EXIT_FAIL if result.get("error") else EXIT_OK


def cmd_serve(args) -> int:
    """The learner's engine behind an OpenAI-compatible API on 127.0.0.1."""
    from rich.markup import escape

    from tutor.serve import DEFAULT_MODEL, ServeError, open_server

    _, impl, kernels = _code_under_test(args)
    out = _console()
    try:
        server = open_server(impl, args.model, kernels, args.port, max_batch=args.max_batch,
                             starting=lambda name: out.print(
                                 f"Starting your engine ({escape(str(impl))}) on "
                                 f"{escape(name)} ..."))
    except ServeError as exc:
        _console(stderr=True).print(f"[red]{escape(str(exc))}[/red]", soft_wrap=True)
        return EXIT_FAIL
    name = server.engine.name
    url = server.base_url
    toml = escape(f'[llm] backend = "openai", base_url = "{url}"')
    out.print(f"Serving {escape(name)} at [bold]{url}[/bold] (up to {args.max_batch} requests "
              f"batched; Ctrl-C stops).\nYour engine can tutor you: in tiny-llm-tutor.toml "
              f"set [dim]{toml}[/dim].")
    if args.model is None:
        out.print(f"[dim](the default model, {escape(DEFAULT_MODEL)}; --model picks another)[/dim]")
    server.serve_forever()
    return EXIT_OK


def cmd_start(args) -> int:
    """The full-screen tutor. The records are taken before the app starts, so a second
    tutor on the same workspace gets one clear line (exit 2), not a traceback."""
    from tutor.engine import TutorSession
    from tutor.records.state import StateError, StateLocked

    course = _course()
    if args.target:
        _route(course, args.target)  # validates the id; the app itself shows any note
    ws = _workspace()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("start opens the full-screen tutor and needs a terminal. In scripts, "
                         "use `check`, `progress` or `lessons`.")
    session = TutorSession(ws, course=course)
    try:
        session.open(args.target)
    except StateLocked as exc:  # one line, never wrapped, no traceback
        sys.stderr.write(f"Cannot start: {exc}.\n")
        return EXIT_USAGE
    except (OSError, StateError) as exc:
        _drop(session)
        sys.stderr.write(f"Cannot start: {_records_trouble(exc, ws)}\n")
        return EXIT_USAGE
    try:
        from tutor.tui import run

        return run(session)
    finally:
        _close(session, ws)


def _close(session, ws: Path) -> None:
    """End the session; records that cannot be written at the end are one line."""
    from tutor.records.state import StateError

    try:
        session.close()
    except (OSError, StateError) as exc:
        _drop(session)
        sys.stderr.write(f"Session not recorded: {_records_trouble(exc, ws)}\n")
        return
    notice = session.take_notice()  # e.g. the notes could not be written at the end
    if notice:
        sys.stderr.write(notice + "\n")


def _drop(session) -> None:
    """Let go of the records after a failed write (the lock must not outlive us)."""
    try:
        session.store.close()
    except Exception:  # noqa: BLE001 - the write already failed once; it was reported
        session.store._release_lock()


# --------------------------------------------------------------------------- coach: hint / ask


def _open_session(day_text: str | None, verb: str):
    """A TutorSession on the workspace at one day (None: the day the learner is on);
    another tutor holding the records is a clear message and exit 2."""
    from tutor.engine import TutorSession
    from tutor.records.state import StateError, StateLocked

    course = _course()
    route = _route(course, day_text) if day_text else None
    _note(route.note if route else None)
    ws = _workspace()
    session = TutorSession(ws, course=course)  # hint/ask work in scripts: no terminal needed
    try:
        # A week means its first unfinished day, as for `start week1`.
        # One command is not a tutoring session: no empty start/end pair in the records.
        target = None if route is None else (
            route.days[0] if len(route.days) == 1 else day_text)
        session.open(target, session=False)
    except StateLocked as exc:
        text = str(exc)
        raise UsageError(text[:1].upper() + text[1:] + ".") from None
    except (OSError, StateError) as exc:
        _drop(session)
        raise UsageError(f"The progress records cannot be opened: "
                         f"{_records_trouble(exc, ws)}") from None
    if session.notice:
        _console(stderr=True).print(f"[yellow]{_escape(session.notice)}[/yellow]")
    if route is not None and len(route.days) > 1:
        _note(f"{verb.capitalize()} for day {session.lesson.id} ({session.lesson.title}), the "
              f"first day of {day_text.strip()} you have not finished.")
    return session


def cmd_hint(args) -> int:
    from tutor.coach.chat import Coach
    from tutor.config import LLMConfig

    session = _open_session(args.day, "hint")
    try:
        ev = Coach(session, config=LLMConfig()).hint()  # the ladder is the lesson's own
        if ev is None:
            task = session.current_task()
            sys.stdout.write(f"You have seen every rung of the hint ladder for task {task.id} "
                             f"({task.title}). Try it, run `tiny-llm-tutor check day"
                             f"{session.lesson.id}`, or ask a question with `tiny-llm-tutor ask "
                             f"day{session.lesson.id} \"...\"`.\n")
        else:
            sys.stdout.write(ev.text.rstrip("\n") + "\n")
        sys.stdout.flush()
    finally:
        _close(session, session.workspace)
    return EXIT_OK


def cmd_ask(args) -> int:
    from tutor.coach.chat import Coach

    question = " ".join(args.question).strip()
    if not question:
        raise UsageError('Ask something, e.g. tiny-llm-tutor ask day1.1 "why divide by sqrt(D)?"')
    session = _open_session(args.day, "ask")
    err = _console(stderr=True)
    at_line_start = True
    try:
        for ev in Coach(session).ask(question):
            if ev.kind == "text" and ev.text:
                sys.stdout.write(ev.text)
                sys.stdout.flush()
                at_line_start = ev.text.endswith("\n")
            elif ev.kind == "notice":
                if ev.interrupted:
                    sys.stdout.write(("" if at_line_start else " ") + "[reply interrupted]\n")
                elif not at_line_start:
                    sys.stdout.write("\n")
                sys.stdout.flush()
                at_line_start = True
                err.print(f"[yellow]{_escape(ev.text)}[/yellow]", soft_wrap=True)  # one line
        if not at_line_start:
            sys.stdout.write("\n")
        sys.stdout.flush()
    finally:
        _close(session, session.workspace)
    return EXIT_OK


# --------------------------------------------------------------------------- review


def _review_date(when) -> str:
    return when.strftime("%A %d %B %Y") if when else ""


def cmd_review(args) -> int:
    """Spaced review (tutor.records.review): the due items asked in the terminal, graded as
    concept answers are, and rescheduled; ``--json`` lists the queue without asking."""
    from tutor.records import review
    from tutor.records._util import parse_iso
    from tutor.records.state import read_state
    from tutor.tui.render import question_prompt  # plain text, no Textual

    limit = review.SESSION_LIMIT if args.limit is None else args.limit
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit takes a number of items, 1 or more.")
    course = _course()
    if args.json:  # read-only, so it works while the app holds the records
        ws = _workspace()
        state, notice = read_state(ws)
        if notice:
            _console(stderr=True).print(f"[yellow]{_escape(notice)}[/yellow]")
        review.sync(state, course)
        due = review.due_items(state, course, limit=limit)
        nxt = review.next_due(state, course)
        print(json.dumps({"due": [it.to_json() for it in due],
                          "scheduled": len(review.items(state, course)),
                          "next_due": nxt.strftime("%Y-%m-%dT%H:%M:%SZ") if nxt else None,
                          "rule": review.RULE}, indent=2, ensure_ascii=False))
        return EXIT_OK
    session = _open_session(None, "review")
    out = _console()
    try:
        due = session.review_queue(limit)
        if not due:
            nxt = session.next_review()
            out.print("Nothing to review today." + (
                f" The next item is due on {_review_date(nxt)}." if nxt else
                " Nothing is scheduled: wrong concept answers and diagnosed mistakes come "
                "back here on later days."))
            return EXIT_OK
        out.print(f"{len(due)} item{'s' if len(due) != 1 else ''} to review.")
        for n, item in enumerate(due, 1):
            where = (f"from day {item.source_day}" if item.idea is None else
                     f"idea: {item.idea.name}, from a mistake on day {item.source_day}")
            out.print(f"\n[bold]{n}/{len(due)}[/bold] ({_escape(where)})")
            if item.question is not None:
                out.print(_escape(question_prompt(item.question)), soft_wrap=True)
                try:
                    text = input("your answer> ")
                except EOFError:
                    out.print("\nStopped; the rest stay due.")
                    break
                g, res = session.review_answer(item, text)
                out.print(("[green]" if g.correct else "[yellow]") + _escape(g.feedback)
                          + ("[/green]" if g.correct else "[/yellow]"), soft_wrap=True)
            else:
                out.print(_escape(item.prompt), soft_wrap=True)
                try:
                    input("think it through, then press Enter> ")
                    said = input("did you get it right? [y/n]> ").strip().lower()
                except EOFError:
                    out.print("\nStopped; the rest stay due.")
                    break
                g, res = session.review_answer(item, correct=said.startswith("y"))
            if res["left"]:
                out.print("It has stuck: it leaves your review schedule.")
            else:
                out.print(f"Next review: {_review_date(parse_iso(res['due']))}.")
    finally:
        _close(session, session.workspace)
    return EXIT_OK


# --------------------------------------------------------------------------- measure


def cmd_measure(args) -> int:
    """Run the day's predict-then-measure measurements on the learner's code and show
    each beside the learner's recorded prediction. With ``--impl``, measure that package
    (e.g. a solution written to the book's API) without reading or writing any records."""
    if args.impl:
        lesson, results = _measure_package(args)
    else:
        session = _open_session(args.day, "measure")
        try:
            lesson = session.lesson
            _known_qid(lesson, args.qid)
            results = session.measure_questions([args.qid] if args.qid else None,
                                                timeout_s=args.timeout)
        finally:
            _close(session, session.workspace)
    if args.json:
        sys.stdout.write(json.dumps({"day": lesson.id, "measurements": results},
                                    ensure_ascii=False) + "\n")
    elif not results:
        sys.stdout.write(f"Day {lesson.id} ({lesson.title}) has no predict-then-measure "
                         "questions.\n")
    else:
        out = _console()
        what = (f"measured on {args.impl}" if args.impl else
                "your predictions against your engine")
        out.print(f"[bold]Day {lesson.id} · {_escape(lesson.title)}[/bold]: {_escape(what)}")
        for r in results:
            out.print(f"  {_escape(r['qid'])}: {_escape(measure_line(r, not args.impl))}",
                      soft_wrap=True)
    return EXIT_OK if all(r["status"] == "measured" for r in results) else EXIT_FAIL


def _known_qid(lesson, qid: str | None) -> None:
    have = [q.id for q in lesson.concept_questions if q.kind == "predict"]
    if qid and qid not in have:
        raise UsageError(f"Day {lesson.id} has no predict question {qid!r} "
                         f"(its predict questions: {', '.join(have) or 'none'}).")


def _measure_package(args):
    from tutor.engine import measure_lesson

    course = _course()
    if not args.day:
        raise UsageError("Name the day to measure with --impl (e.g. day3.1).")
    days = _days(course, args.day)
    if len(days) != 1:
        raise UsageError("measure takes one day, not a week.")
    lesson = course.lesson(days[0])
    _known_qid(lesson, args.qid)
    _ws, impl, kernels = _code_under_test(args)
    results = measure_lesson(lesson, [args.qid] if args.qid else None, impl.resolve(), kernels,
                             timeout_s=args.timeout)
    for r in results:
        r["prediction"] = None  # a package, not the learner's records
    return lesson, results


def measure_line(r: dict, from_records: bool = True) -> str:
    """One measurement of TutorSession.measure_questions beside the learner's prediction."""
    from tutor.grading import measurement_line

    if not from_records:  # --impl: a package, not the learner's records
        return measurement_line(None, r["status"], r.get("value"), r.get("unit") or "",
                                r.get("reason") or "", no_prediction="")

    return measurement_line(r.get("prediction"), r["status"], r.get("value"),
                            r.get("unit") or "", r.get("reason") or "",
                            no_prediction="No prediction recorded yet (answer it in the app)")


# --------------------------------------------------------------------------- parser


_DAY_HELP = ("a day as the book numbers it: day2.3, 2.3 or w2d3 (a book day the tutor "
             "merges into another lesson, like 2.3 into 2.2, opens that lesson)")
_WEEK_HELP = "week1 for the first day of the week you have not finished"


def _seconds(text: str) -> float:
    """A day's time budget: positive and finite (nan, inf, 0 or less would turn the stop off
    or record an empty attempt)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive, finite number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tiny-llm-tutor",
        description="A terminal tutor for the tiny-llm course (LLM serving in a week, Qwen2).")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("start", help="open the tutor at a week or day (default: where you left off)")
    s.add_argument("target", nargs="?", help=f"{_WEEK_HELP}; or {_DAY_HELP}")
    s.set_defaults(func=cmd_start)

    c = sub.add_parser("check", help="run a day's hidden checks on your code")
    c.add_argument("day", help=f"{_DAY_HELP}; or week1 for every day of the week")
    c.add_argument("--impl", help="package directory to check (default: the workspace's impl/)")
    c.add_argument("--kernels", help="folder with your built C++ extension "
                                     "(default: the workspace's kernels/)")
    c.add_argument("--json", action="store_true", help="print one JSON object (a list for a week)")
    c.add_argument("--timeout", type=_seconds, help="seconds per day (default: the lesson's)")
    c.add_argument("-v", "--verbose", action="store_true", help="show evidence and output")
    c.set_defaults(func=cmd_check)

    g = sub.add_parser("progress", help="your progress table; rewrites progress/tiny-llm-tracker.md")
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_progress)

    sub.add_parser("lessons", help="the course outline with your status").set_defaults(func=cmd_lessons)
    sub.add_parser("doctor", help="is this machine ready for the course?").set_defaults(func=cmd_doctor)

    i = sub.add_parser("init", help="lay out a fresh learner workspace")
    i.add_argument("dir")
    i.set_defaults(func=cmd_init)

    h = sub.add_parser("hint", help="the next rung of the current task's hint ladder")
    h.add_argument("day", help=f"{_DAY_HELP}; or {_WEEK_HELP}")
    h.set_defaults(func=cmd_hint)

    a = sub.add_parser("ask", help="ask the coach one question (streamed; offline or an LLM)")
    a.add_argument("day", help=f"{_DAY_HELP}; or {_WEEK_HELP}")
    a.add_argument("question", nargs="+", help='the question, e.g. "why divide by sqrt(D)?"')
    a.set_defaults(func=cmd_ask)

    b = sub.add_parser("build-kernels", help="build your C++/Metal extension in kernels/ (week 2)")
    b.add_argument("--dir", help="the kernels folder to build (default: the workspace's kernels/)")
    b.add_argument("--clean", action="store_true", help="delete kernels/build first")
    b.set_defaults(func=cmd_build_kernels)

    bn = sub.add_parser("bench", help="week2: your decode speed (no cache, KV cache, quantized "
                                      "matmul, flash attention) against MLX; week3: pages, "
                                      "batching and speculative decoding; serve: concurrent "
                                      "clients against one at a time")
    bn.add_argument("week", help="week2, week3 or serve")
    bn.add_argument("--impl", help="package directory (default: the workspace's impl/)")
    bn.add_argument("--kernels", help="folder with your built C++ extension "
                                      "(default: the workspace's kernels/)")
    bn.add_argument("--tokens", type=int, default=32,
                    help="week 2: tokens decoded per row; serve: tokens per request "
                         "(default 32)")
    bn.add_argument("--clients", type=int, default=8,
                    help="serve: concurrent streaming clients (default 8, at most 32)")
    bn.add_argument("--model", help="serve: a model folder or cached Hugging Face repo "
                                    "(default: a random Qwen2 written for the run)")
    bn.add_argument("--json", action="store_true", help="print one JSON object")
    bn.set_defaults(func=cmd_bench)

    sv = sub.add_parser("serve", help="your week-3 engine behind an OpenAI-compatible chat API "
                                      "on 127.0.0.1")
    sv.add_argument("--model", help="an MLX model folder or a Hugging Face repo in the local "
                                    "cache (default: Qwen/Qwen2-0.5B-Instruct-MLX)")
    sv.add_argument("--impl", help="package directory (default: the workspace's impl/)")
    sv.add_argument("--kernels", help="folder with your built C++ extension "
                                      "(default: the workspace's kernels/)")
    sv.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000)")
    sv.add_argument("--max-batch", type=int, default=8,
                    help="requests decoded together at most (default 8)")
    sv.set_defaults(func=cmd_serve)

    m = sub.add_parser("measure", help="measure your engine for a day's predict-then-measure "
                                       "questions, beside your predictions")
    m.add_argument("day", nargs="?", help=f"{_DAY_HELP} (default: the day you are on)")
    m.add_argument("qid", nargs="?", help="one predict question's id (default: all of the day's)")
    m.add_argument("--impl", help="package directory to measure, without your records "
                                  "(default: the workspace's impl/, beside your predictions)")
    m.add_argument("--kernels", help="folder with your built C++ extension "
                                     "(default: the workspace's kernels/)")
    m.add_argument("--timeout", type=_seconds, help="seconds in all (default: the lesson's)")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=cmd_measure)

    rv = sub.add_parser("review", help="spaced review: your earlier wrong answers and "
                                        "mistakes that are due today")
    rv.add_argument("--json", action="store_true", help="list the due items without asking")
    rv.add_argument("--limit", type=int, help="at most this many items (default 3)")
    rv.set_defaults(func=cmd_review)

    r = sub.add_parser("reset", help="put a day's code back to the stubs (after a backup)")
    r.add_argument("day", help=f"{_DAY_HELP} (one day, not a week)")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=cmd_reset)
    return p


def main(argv: list[str] | None = None) -> int:
    from tutor.checking.procs import install_reaper

    install_reaper()  # a killed CLI or a closed terminal takes its check processes along
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except UsageError as exc:
        _console(stderr=True).print(f"[red]{_escape(str(exc))}[/red]")
        return EXIT_USAGE
    except KeyboardInterrupt:
        _console(stderr=True).print("Interrupted.")
        return 130


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


if __name__ == "__main__":
    sys.exit(main())
