"""The installed console script, driven as a learner would, in workspaces made by `init`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tutor import paths
from tutor.curriculum import load_course

EXE = Path(sys.executable).parent / "tiny-llm-tutor"
if not EXE.exists():  # pragma: no cover - a non-venv install
    EXE = Path(shutil.which("tiny-llm-tutor") or "tiny-llm-tutor")

DAYS = [d.id for d in load_course().week(1).days]


def tutor(*args, cwd: Path, input: str | None = None, env: dict | None = None):
    full_env = {**os.environ, "COLUMNS": "100", **(env or {})}
    full_env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    return subprocess.run([str(EXE), *args], cwd=cwd, capture_output=True, text=True,
                          input=input, env=full_env, timeout=120)


@pytest.fixture
def ws(tmp_path) -> Path:
    r = tutor("init", "ws", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return tmp_path / "ws"


def test_init_lays_out_a_workspace(ws):
    for name in ("impl/__init__.py", "impl/attention.py", "CLAUDE.md", "AGENTS.md",
                 "SESSION-TEMPLATE.md", "tiny-llm-tutor.toml", "kernels"):
        assert (ws / name).exists(), name
    assert (ws / "sessions").is_dir() and not any((ws / "sessions").iterdir())
    assert (ws / "progress").is_dir() and not any((ws / "progress").iterdir())
    assert (ws / "curriculum" / "course.yaml").is_file()
    # the hidden checks and the answer key never reach a workspace
    assert not (ws / "checks").exists()
    assert not list(ws.rglob("answer_key"))


def test_init_refuses_to_overwrite(ws):
    (ws / "impl" / "attention.py").write_text("# my work\n")
    r = tutor("init", str(ws), cwd=ws.parent)
    assert r.returncode == 2
    assert "already holds a workspace" in r.stderr
    assert (ws / "impl" / "attention.py").read_text() == "# my work\n"


@pytest.mark.parametrize("day", DAYS)
def test_check_on_stubs_fails_cleanly_with_json(ws, day):
    r = tutor("check", f"day{day}", "--json", cwd=ws)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    result = json.loads(r.stdout)
    assert result["day"] == day and result["status"] == "fail"
    assert set(result) == {"day", "impl", "status", "duration_s", "checks", "summary"}
    assert result["checks"]
    for c in result["checks"]:
        assert set(c) == {"id", "task", "title", "status", "message", "evidence",
                          "diagnosis", "skip_reason"}
        if c["status"] == "skipped":
            assert c["skip_reason"]
            continue
        assert c["status"] in ("fail", "error"), c
        assert "stub" in c["message"] or "not implemented" in c["message"].lower(), c


def test_check_human_output_has_no_traceback(ws):
    r = tutor("check", "1.2", cwd=ws)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert "Day 1.2" in r.stdout and "rope-traditional" in r.stdout


def test_check_week_prints_a_list_in_order(ws):
    r = tutor("check", "week1", "--json", cwd=ws)
    assert r.returncode == 1
    results = json.loads(r.stdout)
    assert [x["day"] for x in results] == DAYS


def test_answer_key_passes_through_impl_flag(ws):
    r = tutor("check", "w1d3", "--impl", str(paths.answer_key_dir()), "--json", cwd=ws)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["status"] == "pass"
    # checking another package is not the learner's attempt: nothing is recorded
    assert not (ws / "progress" / "state.json").exists()


@pytest.mark.parametrize("day", ["day1.9", "dya1.3", "week7", "banana"])
def test_unknown_day_exits_2_with_suggestions(ws, day):
    r = tutor("check", day, cwd=ws)
    assert r.returncode == 2
    assert "Unknown day" in r.stderr and "Valid ids: day1.1" in r.stderr
    if day == "dya1.3":
        assert "Did you mean 'day1.3'" in r.stderr


def test_bad_usage_exits_2(ws):
    assert tutor("check", cwd=ws).returncode == 2
    assert tutor("check", "1.1", "--timeout", "soon", cwd=ws).returncode == 2
    r = tutor("check", "1.1", "--impl", str(ws / "nowhere"), cwd=ws)
    assert r.returncode == 2 and "not a Python package" in r.stderr


def test_check_outside_a_workspace_needs_impl(tmp_path):
    r = tutor("check", "1.1", cwd=tmp_path)
    assert r.returncode == 2 and "init" in r.stderr


def test_check_records_progress_tracker_and_session(ws):
    tutor("check", "1.1", cwd=ws)
    state = json.loads((ws / "progress" / "state.json").read_text())
    assert state["days"]["1.1"]["attempts_total"] == 1
    tracker = (ws / "progress" / "tiny-llm-tracker.md").read_text()
    assert "1.1" in tracker and "🟡" in tracker
    doc = ws / "sessions" / "week1" / "day1.1-attention.md"
    assert doc.is_file() and "sdpa-simple" in doc.read_text()


def test_progress_json_and_table(ws):
    tutor("check", "1.1", cwd=ws)
    r = tutor("progress", "--json", cwd=ws)
    assert r.returncode == 0
    data = json.loads(r.stdout)
    day = data["weeks"][0]["days"][0]
    assert day["id"] == "1.1" and day["status"] == "in_progress" and day["attempts"] == 1
    r = tutor("progress", cwd=ws)
    assert r.returncode == 0 and "1.1" in r.stdout and "📖" in r.stdout


def test_progress_json_carries_per_idea_mastery_and_the_review_queue(ws):
    from tutor.records.state import StateStore

    with StateStore(ws, course=load_course()) as store:  # a diagnosed mistake, a right answer
        store.record_check("1.1", {"status": "fail", "summary": {}, "checks": [
            {"id": "sdpa-simple", "status": "fail",
             "diagnosis": {"pitfall": "attn-softmax-wrong-axis"}}]})
        store.record_concept_answer("1.1", "scale-value", "x", True)
    r = tutor("progress", "--json", cwd=ws)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["review_queue"] == []  # nothing scheduled in these records
    ideas = {i["id"]: i for i in data["ideas"]}
    assert ideas["softmax-axis"]["level"] == "shaky"
    assert ideas["softmax-axis"]["mistakes"] == [
        {"pitfall": "attn-softmax-wrong-axis", "day": "1.1", "count": 1}]
    # a right answer without a passing check is not mastery
    assert ideas["attention-scale"]["level"] == "learning"
    assert ideas["attention-scale"]["right"] == ["1.1/scale-value"]
    assert {i["level"] for i in data["ideas"]} <= {"due", "shaky", "mastered", "learning"}
    assert data["frequent_mistakes"][0]["pitfall"] == "attn-softmax-wrong-axis"
    r = tutor("progress", cwd=ws)
    assert r.returncode == 0
    assert "❗ Shaky" in r.stdout and "softmax-axis" in r.stdout
    assert "Most frequent mistakes" in r.stdout and "attn-softmax-wrong-axis ×1 (day 1.1)" in r.stdout
    assert "Review queue: nothing due." in r.stdout
    tracker = (ws / "progress" / "tiny-llm-tracker.md").read_text()
    assert "## Ideas" in tracker and "## Review queue" in tracker


def test_corrupt_state_is_moved_aside_and_reported(ws):
    (ws / "progress" / "state.json").write_text("{not json")
    r = tutor("check", "1.1", cwd=ws)
    assert r.returncode == 1
    assert "state.json" in r.stdout
    assert (ws / "progress" / "state.json.bak").read_text() == "{not json"
    assert json.loads((ws / "progress" / "state.json").read_text())["days"]["1.1"]


def test_lessons_outline(ws):
    r = tutor("lessons", cwd=ws)
    assert r.returncode == 0
    for day in DAYS:
        assert f"day{day}" in r.stdout


def test_doctor_reports_each_part(ws):
    r = tutor("doctor", cwd=ws)
    assert r.returncode in (0, 1)
    out = r.stdout
    for needle in ("Python", "MLX", "backend", "cmake", "Qwen2-0.5B", "Coach"):
        assert needle in out, needle
    if "Metal" not in out.split("backend", 1)[1].splitlines()[0]:
        assert "CPU" in out


def test_reset_backs_up_and_keeps_other_days(ws):
    attention = ws / "impl" / "attention.py"
    src = attention.read_text()
    # learner work for day 1.1 and day 1.3 in the same file
    src = src.replace("def scaled_dot_product_attention_simple(",
                      "# day 1.1 work\ndef scaled_dot_product_attention_simple(", 1)
    src = src.replace("def causal_mask(", "# day 1.3 work\ndef causal_mask(", 1)
    src += "\n\ndef my_helper():\n    return 42\n"
    attention.write_text(src)
    r = tutor("reset", "day1.3", "--yes", cwd=ws)
    assert r.returncode == 0, r.stderr
    new = attention.read_text()
    assert "# day 1.1 work" in new and "my_helper" in new
    backups = list((ws / "backups").glob("*-day1.3/impl/attention.py"))
    assert len(backups) == 1 and backups[0].read_text() == src


def test_reset_asks_for_confirmation(ws):
    attention = ws / "impl" / "attention.py"
    attention.write_text(attention.read_text() + "\n# mine\n")
    r = tutor("reset", "1.1", cwd=ws, input="y\n")
    assert r.returncode == 2 and "--yes" in r.stderr  # no terminal: refuses to guess
    assert "# mine" in attention.read_text()


def test_start_validates_its_target(ws):
    r = tutor("start", "week1", cwd=ws)  # no terminal here: refuses instead of hanging
    assert r.returncode == 2 and "needs a terminal" in r.stderr
    r = tutor("start", "day9.9", cwd=ws)
    assert r.returncode == 2 and "Unknown day" in r.stderr


# --------------------------------------------------------------------------- the book's day numbers


def test_check_takes_a_book_day_and_says_which_lesson_covers_it(ws):
    r = tutor("check", "day2.3", "--json", cwd=ws)
    assert r.returncode == 1, r.stderr
    assert json.loads(r.stdout)["day"] == "2.2"  # stdout stays pure JSON
    assert ("Book day 2.3 is covered by lesson 2.2 (Quantized Matmul, book days 2.2–2.3)."
            in r.stderr)


# Book days no lesson covers yet: none since week 3 is complete; test_dayids keeps that
# rule tested on a course of its own.


def test_hint_and_ask_take_a_book_day(ws):
    r = tutor("hint", "2.5", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "Write the flash_attention wrapper in Python" in r.stdout  # lesson 2.4, task 1
    assert "Book day 2.5 is covered by lesson 2.4" in r.stderr
    r = tutor("ask", "w2d7", "what is a slot?", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "Book day 2.7 is covered by lesson 2.6" in r.stderr and r.stdout.strip()


def test_hint_on_a_week_does_what_its_help_says(ws):
    help_text = " ".join(tutor("hint", "--help", cwd=ws).stdout.split())
    assert "week1 for the first day of the week you have not finished" in help_text
    assert "2.3" in help_text  # the book's numbers are accepted
    r = tutor("hint", "week1", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "Hint for day 1.1" in r.stderr and "Hint 1 of 4 for task 1" in r.stdout


def test_check_help_names_the_book_s_numbers(ws):
    help_text = " ".join(tutor("check", "--help", cwd=ws).stdout.split())
    assert "as the book numbers it: day2.3, 2.3 or w2d3" in help_text
    assert "week1 for every day of the week" in help_text


def test_reset_and_start_take_a_book_day(ws):
    batch = ws / "impl" / "batch.py"
    batch.write_text(batch.read_text() + "\n# mine\n")
    r = tutor("reset", "day2.7", "--yes", cwd=ws)
    assert r.returncode == 0, r.stderr
    assert "Book day 2.7 is covered by lesson 2.6" in r.stderr
    assert "impl/batch.py: Request, batch_generate back to the stub" in r.stdout
    assert "Day 2.6 reset." in r.stdout
    r = tutor("start", "day2.7", cwd=ws)
    assert r.returncode == 2 and "needs a terminal" in r.stderr  # the id was accepted


def test_doctor_says_which_edition_the_tutor_follows(ws):
    out = " ".join(tutor("doctor", cwd=ws).stdout.split())
    assert "Qwen2 edition at commit ea4769d (https://github.com/skyzh/tiny-llm/tree/ea4769d)" in out
    assert "https://skyzh.github.io/tiny-llm/ is a Qwen3 edition since August 2026" in out


@pytest.mark.parametrize("body, status", [
    ("while True:\n        pass", "timeout"),
    ("import os\n    os._exit(7)", "crashed"),
    ("import sys\n    for _ in range(120):\n        sys.stdout.write('x' * 1_000_000)\n"
     "    raise NotImplementedError", "fail"),
])
def test_misbehaving_code_is_reported_and_records_survive(ws, body, status):
    tutor("check", "1.1", cwd=ws)  # a first, ordinary attempt
    path = ws / "impl" / "attention.py"
    src = path.read_text()
    marker = "def scaled_dot_product_attention_simple("
    start = src.index(marker)
    body_start = src.index('"""', src.index('"""', start) + 3) + 3  # after the docstring
    end = src.index("\n\n\n", body_start)
    path.write_text(src[:body_start] + "\n    " + body + src[end:])
    r = tutor("check", "1.1", "--timeout", "4", cwd=ws)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    assert len(r.stdout) < 5000
    state = json.loads((ws / "progress" / "state.json").read_text())
    attempts = state["days"]["1.1"]["attempts"]
    assert len(attempts) == 2
    assert attempts[-1]["status"] == "fail" and attempts[-1]["summary"].get(status, 0) >= 1, attempts[-1]


# --------------------------------------------------------------------------- plain output


def test_plain_check_shows_where_a_syntax_error_is(ws):
    with open(ws / "impl" / "attention.py", "a") as f:
        f.write("\ndef broken(:\n")
    r = tutor("check", "day1.1", cwd=ws)
    assert r.returncode == 1
    assert "impl/attention.py, line" in r.stdout, r.stdout
    assert r.stdout.count("def broken(:") == 1  # the learner's line, once for the day


def test_plain_check_shows_checks_that_never_ran(ws):
    with open(ws / "impl" / "attention.py", "a") as f:
        f.write("\nwhile True:\n    pass\n")
    r = tutor("check", "day1.1", "--timeout", "2", cwd=ws)
    assert r.returncode == 1
    assert "⏱ sdpa-simple" in r.stdout and "import time" in r.stdout, r.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "abc"])
def test_timeout_must_be_positive_and_finite(ws, value):
    r = tutor("check", "day1.1", f"--timeout={value}", cwd=ws)
    assert r.returncode == 2
    assert "--timeout" in r.stderr
