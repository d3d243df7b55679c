"""A small world for predict-then-measure tests that does not depend on any shipped day:
a checks folder (the real harness, plus a day 1.1 module holding only measurements), a
tiny learner package (correct, stubbed, or with a hang or a crash), and a one-lesson
course whose predict questions name those measurements.

Use :func:`measure_world` (it points ``paths.checks_dir`` at the fake checks folder for
the test; the check child reads the folder from the command line the runner builds)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tutor import paths

from course_factory import make_course, make_lesson, make_question, make_task

CHECKS_MODULE = '''"""Measurements for the predict-then-measure tests (no checks)."""

from ..harness import Skip, measure


@measure("pages-for-batch", unit="pages")
def pages_for_batch(ctx):
    pages = ctx.symbol("pages_needed")
    return sum(ctx.call(pages, n, 16) for n in (5, 16, 17, 40))


@measure("spin", unit="steps")
def spin(ctx):
    return ctx.call(ctx.symbol("spin"))


@measure("crash", unit="steps")
def crash(ctx):
    return ctx.call(ctx.symbol("crash"))


@measure("needs-gpu", unit="ms")
def needs_gpu(ctx):
    raise Skip("needs an Apple GPU")


@measure("secret-seen", unit="variables")
def secret_seen(ctx):
    return ctx.call(ctx.symbol("env_has"), "TUTOR_TEST_SECRET")


@measure("words", unit="pages")
def words(ctx):
    return "seven"
'''

CORRECT = '''def pages_needed(n, page_size):
    return -(-n // page_size)


def spin():
    while True:
        pass


def crash():
    import os
    os.abort()


def env_has(name):
    import os
    return int(name in os.environ)
'''

STUB = '''def pages_needed(n, page_size):
    raise NotImplementedError("pages_needed")
'''

# Off by one page for a request that exactly fills its pages.
OFF_BY_ONE = '''def pages_needed(n, page_size):
    return n // page_size + 1
'''


@dataclass
class World:
    checks: Path
    impl: Path

    def learner(self, source: str) -> None:
        (self.impl / "__init__.py").write_text(source)


def measure_world(tmp_path: Path, monkeypatch, source: str = CORRECT) -> World:
    checks = tmp_path / "checks"
    (checks / "week1").mkdir(parents=True)
    for name in ("__init__.py", "harness.py"):
        shutil.copy(paths.checks_dir() / name, checks / name)
    (checks / "week1" / "__init__.py").write_text("")
    (checks / "week1" / "day1_1.py").write_text(CHECKS_MODULE)
    monkeypatch.setattr(paths, "checks_dir", lambda: checks)
    impl = tmp_path / "ws" / "impl"
    impl.mkdir(parents=True)
    world = World(checks, impl)
    world.learner(source)
    return world


PAGES_PROMPT = "page_size 16, requests of 5, 16, 17 and 40 tokens: how many pages?"


def predict_course(timeout_s: float = 20.0, extra=(), when: str = "before"):
    """One lesson (day 1.1) with a number question and a predict question (7 pages),
    both shown before coding by default (no check run needed to see them)."""
    questions = (
        make_question("scale", "before", "number", "1/sqrt(64)?", 0.125, "One eighth."),
        make_question("pages", when, "predict", PAGES_PROMPT, 7, "1 + 1 + 2 + 3 pages.",
                      unit="pages", measure="pages-for-batch", tolerance=0.0),
        *extra,
    )
    lesson = make_lesson("1.1", "Paging", timeout_s=timeout_s,
                         concepts=[("Pages", "A request holds whole pages.")],
                         tasks=[make_task(1, "Count pages", checks=("pages",))],
                         questions=questions, pitfalls=[("p", "s", "q?")])
    return make_course((1, "Week one", [lesson]))
