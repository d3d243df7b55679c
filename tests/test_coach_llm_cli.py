"""``tiny-llm-tutor hint DAY`` and ``tiny-llm-tutor ask DAY "question"`` as a learner runs
them: offline answers, the session doc's Questions section, the records lock, LLM
fallbacks with a notice, and no API key in any output, file or check process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures.fake_llm import FakeAnthropic, FakeOpenAI
from test_cli import tutor

from tutor.checking.runner import child_env
from tutor.engine import TutorSession

KEY = "sk-ant-TEST-CLI-7770001-qwerty-SECRET"


@pytest.fixture
def ws(tmp_path) -> Path:
    r = tutor("init", "ws", cwd=tmp_path, env=_offline_env())
    assert r.returncode == 0, r.stderr
    return tmp_path / "ws"


def _offline_env(**extra) -> dict:
    env = {k: "" for k in ("TINY_LLM_TUTOR_LLM", "TINY_LLM_TUTOR_BASE_URL",
                           "TINY_LLM_TUTOR_MODEL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY")}
    env.update(extra)
    return env


def all_text(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_hint_prints_the_next_rung_each_time(ws):
    outs = []
    for _ in range(5):
        r = tutor("hint", "day1.1", cwd=ws, env=_offline_env())
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert len(set(outs[:4])) == 4  # four different rungs
    assert "every rung" in outs[4]
    with TutorSession(ws).open("1.1") as s:
        assert len(s.day_record()["hints_seen"]) == 4


def test_ask_answers_offline_and_lands_in_the_session_doc(ws):
    r = tutor("ask", "day1.1", "Why do we divide by sqrt(D)?", cwd=ws, env=_offline_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() and "?" in r.stdout
    assert r.stderr.strip() == ""
    doc = next((ws / "sessions").rglob("day1.1-*.md")).read_text()
    assert "Why do we divide by sqrt(D)?" in doc.split("## Questions", 1)[1].split("\n## ", 1)[0]
    assert (ws / "progress" / "chats" / "day1.1.json").is_file()


def test_ask_without_a_question_is_usage(ws):
    r = tutor("ask", "day1.1", "  ", cwd=ws, env=_offline_env())
    assert r.returncode == 2 and "Ask something" in r.stderr


def test_a_week_means_its_first_unfinished_day(ws):
    """As `hint --help` says (and as `start week1` does)."""
    r = tutor("hint", "week1", cwd=ws, env=_offline_env())
    assert r.returncode == 0 and "Hint for day 1.1" in r.stderr
    r = tutor("ask", "week2", "what does a cache hold?", cwd=ws, env=_offline_env())
    assert r.returncode == 0 and "day 2.1" in r.stderr and r.stdout.strip()


def test_another_tutor_holding_the_records_is_exit_2(ws):
    holder = TutorSession(ws).open("1.1")
    try:
        for args in (("hint", "day1.1"), ("ask", "day1.1", "hello?")):
            r = tutor(*args, cwd=ws, env=_offline_env())
            assert r.returncode == 2, r.stdout + r.stderr
            assert "already using these progress records" in r.stderr
            assert "Traceback" not in r.stderr
    finally:
        holder.close()


def test_offline_engine_time_is_small(ws):
    """The whole process, interpreter start included, stays quick; the engine's own time
    (≤ 50 ms) is measured in test_coach_llm_chat."""
    t = time.perf_counter()
    r = tutor("ask", "1.1", "which axis?", cwd=ws, env=_offline_env())
    assert r.returncode == 0
    assert time.perf_counter() - t < 10


@pytest.mark.parametrize("mode, words", [(401, "refused the API key"), (429, "rate-limiting"),
                                         (529, "overloaded"), ("cut", "cut off")])
def test_llm_failures_fall_back_with_a_notice_and_no_key_anywhere(ws, mode, words):
    with FakeAnthropic(["Let's look at the shapes. ", "What is the shape ", "of the scores? ",
                        "And which axis sums to one?"]) as srv:
        srv.mode, srv.cut_after = mode, 2
        env = _offline_env(TINY_LLM_TUTOR_LLM="anthropic", TINY_LLM_TUTOR_BASE_URL=srv.base_url,
                           ANTHROPIC_API_KEY=KEY, TINY_LLM_TUTOR_TIMEOUT="5")
        r = tutor("ask", "day1.1", "why does my mask do nothing?", cwd=ws, env=env)
    assert r.returncode == 0, r.stderr
    assert words in r.stderr and "offline coach answers" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one notice, one line
    assert r.stdout.strip()
    if mode == "cut":
        assert r.stdout.startswith("Let's look at the shapes. What is the shape")
        assert "[reply interrupted]" in r.stdout
    assert len(srv.requests) == 1
    assert KEY not in r.stdout + r.stderr
    assert KEY not in all_text(ws)


def test_llm_answer_streams_to_stdout(ws):
    with FakeAnthropic(["Which axis ", "lists the keys?"]) as srv:
        env = _offline_env(TINY_LLM_TUTOR_LLM="anthropic", TINY_LLM_TUTOR_BASE_URL=srv.base_url,
                           ANTHROPIC_API_KEY=KEY)
        r = tutor("ask", "1.1", "softmax axis?", cwd=ws, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Which axis lists the keys?\n" and r.stderr == ""


def test_no_key_reaches_the_check_process(ws, tmp_path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert KEY not in "".join(child_env().values())
    spy = tmp_path / "child-env.txt"
    basics = ws / "impl" / "basics.py"
    basics.write_text(f"import os\nopen({str(spy)!r}, 'w').write(repr(dict(os.environ)))\n"
                      + basics.read_text())
    r = tutor("check", "day1.1", cwd=ws, env={"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY})
    assert r.returncode == 1
    seen = spy.read_text()
    assert "'PATH':" in seen  # the spy ran in the check process
    assert KEY not in seen and KEY not in r.stdout + r.stderr
    assert KEY not in all_text(ws / "progress") + all_text(ws / "sessions")


def test_python_m_works_too(ws):
    r = subprocess.run([sys.executable, "-m", "tutor", "ask", "1.1", "what", "next?"], cwd=ws,
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, **_offline_env()})
    assert r.returncode == 0 and r.stdout.strip()


def test_ask_ends_at_the_reply_deadline_despite_keep_alives(ws):
    """Issue 10: a server sending ": keep-alive" every 2 s held `ask` forever with a 3 s
    timeout; the reply deadline ends it with the partial text kept and marked."""
    with FakeOpenAI(["Which axis ", "does softmax ", "run over?"]) as srv:
        srv.mode, srv.cut_after, srv.keepalive_s = "keepalive", 2, 2.0
        env = _offline_env(TINY_LLM_TUTOR_LLM="openai", TINY_LLM_TUTOR_BASE_URL=srv.base_url,
                           TINY_LLM_TUTOR_TIMEOUT="3", TINY_LLM_TUTOR_DEADLINE="4")
        t = time.perf_counter()
        r = tutor("ask", "day1.1", "why does my mask do nothing?", cwd=ws, env=env)
    assert time.perf_counter() - t < 20
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Which axis does softmax") and "[reply interrupted]" in r.stdout
    assert "after 4 s (llm.deadline_s)" in r.stderr and "offline coach answers" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
