"""The coach facade (``tutor.coach.chat.Coach``) on a real TutorSession in a temp
workspace: offline answers and their speed, the LLM path through the real SDK against a
local Anthropic-protocol server, fallbacks with notices and interrupted partial text, the
guardrail on streamed replies, the solution exception, the per-day conversation file, the
Questions section of the session doc, and no API key anywhere."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from fixtures.fake_llm import FakeAnthropic

from tutor.coach.chat import MAX_STORED_MESSAGES, ChatEvent, Coach, chat_path
from tutor.config import LLMConfig
from tutor.engine import TutorSession
from tutor.workspace import init_workspace

KEY = "sk-ant-TEST-LEAKCHECK-5550123-zyxw"
LEAK = """Sure, here it is:

```python
def scaled_dot_product_attention_simple(query, key, value, scale=None, mask=None):
    factor = scale if scale is not None else 1.0 / math.sqrt(query.shape[-1])
    scores = query @ key.swapaxes(-1, -2) * factor
    if mask is not None:
        scores = scores + mask
    return softmax(scores, axis=-1) @ value
```

Does that make sense?
"""
LEAK_LINES = ["scores = query @ key.swapaxes(-1, -2) * factor",
              "return softmax(scores, axis=-1) @ value"]


@pytest.fixture
def ws(tmp_path) -> Path:
    init_workspace(tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture
def session(ws):
    s = TutorSession(ws).open("1.1")
    yield s
    s.close()


@pytest.fixture
def claude():
    with FakeAnthropic() as srv:
        yield srv


def claude_coach(session, srv, key=KEY, timeout=3.0) -> Coach:
    return Coach(session, LLMConfig("anthropic", "claude-test", srv.base_url, key, 512, timeout))


def chunked(text: str, n: int = 5) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


def collect(events) -> tuple[str, list[ChatEvent]]:
    evs = list(events)
    assert evs and evs[-1].kind == "done"
    assert [e for e in evs if e.kind == "done"] == [evs[-1]]
    return "".join(e.text for e in evs if e.kind == "text"), evs


def all_text(root: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8", errors="replace")
                     for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# --------------------------------------------------------------------------- offline


def test_offline_answers_socratically(session):
    """With no key and no network the offline engine answers, asking rather than telling.
    (Its speed, <= 50 ms, is measured by benchmarks/coach_offline.py, not asserted here.)"""
    coach = Coach(session, LLMConfig())
    for q in ["why is my output wrong?", "which axis is the softmax over?", "what next?",
              "show me the solution"]:
        evs = list(coach.ask(q))
        text = "".join(e.text for e in evs if e.kind == "text")
        assert evs[-1].kind == "done" and evs[-1].text == text
        assert text.strip() and "?" in text  # it asks
        assert not [e for e in evs if e.kind == "notice"]
        assert "def " not in text and "return " not in text
    assert len(session.day_record()["questions"]) == 4


def test_questions_reach_the_state_the_session_doc_and_the_chat_file(session, ws):
    coach = Coach(session, LLMConfig())
    collect(coach.ask("Why divide by sqrt(D)?"))
    rec = session.day_record()
    assert [q["text"] for q in rec["questions"]] == ["Why divide by sqrt(D)?"]
    session.save_documents()
    doc = (ws / "sessions" / "week1" / session.lesson.session_filename).read_text()
    questions = doc.split("## Questions", 1)[1].split("## ", 1)[0]
    assert "Why divide by sqrt(D)?" in questions
    chat = json.loads(chat_path(ws, "1.1").read_text())
    assert chat["day"] == "1.1"
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]
    assert chat["messages"][1]["source"] == "offline"


def test_the_conversation_is_resumed_per_day_and_capped(ws):
    with TutorSession(ws).open("1.1") as s:
        collect(Coach(s, LLMConfig()).ask("first question"))
    with TutorSession(ws).open("1.1") as s:
        coach = Coach(s, LLMConfig())
        assert coach.history()[0]["content"] == "first question"
        for i in range(MAX_STORED_MESSAGES + 5):
            coach._append("1.1", "user", f"q{i}", save=False)
        coach._save("1.1")
        assert len(coach.history()) == MAX_STORED_MESSAGES
        s.go_to("1.2")
        assert coach.history() == []
    stored = json.loads(chat_path(ws, "1.1").read_text())["messages"]
    assert len(stored) == MAX_STORED_MESSAGES and stored[-1]["content"].startswith("q")


def test_a_broken_chat_file_is_kept_aside(ws):
    path = chat_path(ws, "1.1")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    with TutorSession(ws).open("1.1") as s:
        collect(Coach(s, LLMConfig()).ask("hello?"))
    assert path.with_name(path.name + ".bak").read_text() == "{not json"
    assert json.loads(path.read_text())["messages"][0]["content"] == "hello?"


def test_hint_climbs_one_rung_and_stops_at_the_top(session):
    coach = Coach(session, LLMConfig())
    task = session.current_task()
    for rung in range(1, len(task.hints) + 1):
        ev = coach.hint()
        assert ev is not None and ev.kind == "text" and ev.text.strip()
        assert f"{task.id}:{rung}" in session.day_record()["hints_seen"]
    assert coach.hint() is None
    assert [m["source"] for m in coach.history()] == ["hint"] * len(task.hints)


def test_after_checks_speaks_about_a_result(session):
    coach = Coach(session, LLMConfig())
    result = session.run_checks()
    text = coach.after_checks(result)
    assert isinstance(text, str) and text.strip()


def test_a_broken_config_falls_back_to_offline_with_a_notice(ws):
    (ws / "tiny-llm-tutor.toml").write_text('[llm]\nbackend = "gpt"\n')
    with TutorSession(ws).open("1.1") as s:
        text, evs = collect(Coach(s).ask("help?"))
    notices = [e.text for e in evs if e.kind == "notice"]
    assert len(notices) == 1 and "llm.backend" in notices[0] and "offline" in notices[0]
    assert text.strip()


# --------------------------------------------------------------------------- LLM path


def test_llm_reply_streams_in_pieces_and_is_kept(session, claude, ws):
    claude.chunks = chunked("Good question. Which axis of the score matrix lists the keys? "
                            "Try it on a 2 by 3 example and tell me what you see.\n", 7)
    coach = claude_coach(session, claude)
    text, evs = collect(coach.ask("which axis for softmax?"))
    assert len([e for e in evs if e.kind == "text"]) > 2  # streamed, not in one go
    assert text == "".join(claude.chunks) and evs[-1].text == text
    assert not evs[-1].interrupted
    body = claude.requests[0]["body"]
    assert "Ask before you tell" in body["system"]  # CLAUDE.md is the prompt's core
    assert body["messages"][-1] == {"role": "user", "content": "which axis for softmax?"}
    stored = json.loads(chat_path(ws, "1.1").read_text())["messages"]
    assert stored[-1]["source"] == "anthropic" and stored[-1]["content"] == text
    # the next question carries the conversation
    collect(coach.ask("and the mask?"))
    msgs = claude.requests[1]["body"]["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "user"]


def test_a_leaking_reply_never_shows_code(session, claude, ws):
    claude.chunks = chunked(LEAK, 3)
    text, evs = collect(claude_coach(session, claude).ask("I'm stuck, what's wrong?"))
    for line in LEAK_LINES:
        assert line not in text
    assert "Sure, here it is:" in text and "Does that make sense?" in text
    stored = chat_path(ws, "1.1").read_text()
    for line in LEAK_LINES:
        assert line not in stored
    assert json.loads(stored)["messages"][-1]["filtered"] is True


def test_the_solution_only_after_the_ladder_and_an_explicit_request(session, claude):
    claude.chunks = chunked(LEAK, 11)
    coach = claude_coach(session, claude)
    text, _ = collect(coach.ask("show me the solution"))
    assert LEAK_LINES[0] not in text  # ladder not climbed yet
    session.run_checks()  # tried
    while coach.hint() is not None:
        pass
    text, _ = collect(coach.ask("why does it fail?"))
    assert LEAK_LINES[0] not in text  # no explicit request
    text, _ = collect(coach.ask("I give up. Please show me the full solution."))
    assert LEAK_LINES[0] in text
    assert "walk through a working solution" in claude.requests[-1]["body"]["system"]


@pytest.mark.parametrize("status, words", [(401, "refused the API key"), (429, "rate-limiting"),
                                           (529, "overloaded")])
def test_http_errors_fall_back_to_offline_with_one_notice(session, claude, ws, status, words):
    claude.mode = status
    t = time.perf_counter()
    text, evs = collect(claude_coach(session, claude).ask("why is it wrong?"))
    assert time.perf_counter() - t < 3.0
    notices = [e for e in evs if e.kind == "notice"]
    assert len(notices) == 1 and words in notices[0].text and "offline" in notices[0].text
    assert "\n" not in notices[0].text and KEY not in notices[0].text
    assert not notices[0].interrupted and not evs[-1].interrupted
    assert text.strip() and "?" in text  # the offline coach answered
    assert len(claude.requests) == 1  # no retry storm
    assert json.loads(chat_path(ws, "1.1").read_text())["messages"][-1]["source"] == "offline"


def test_a_stream_cut_midway_keeps_the_partial_text_marked(session, claude, ws):
    claude.chunks = ["Let's look at the shapes. ", "What is the shape of ", "the scores? ",
                     "And which axis ", "sums to one?"]
    claude.mode, claude.cut_after = "cut", 3
    text, evs = collect(claude_coach(session, claude).ask("help"))
    partial = "".join(claude.chunks[:3])
    assert text.startswith(partial.rstrip())
    (notice,) = [e for e in evs if e.kind == "notice"]
    assert notice.interrupted and "cut off" in notice.text
    kinds = [e.kind for e in evs]
    assert kinds.index("notice") > kinds.index("text")  # partial first, then the notice
    assert evs[-1].interrupted
    stored = json.loads(chat_path(ws, "1.1").read_text())["messages"]
    assert stored[-2]["interrupted"] is True and stored[-2]["content"].startswith("Let's look")
    assert stored[-1]["source"] == "offline"


def test_missing_key_falls_back(session):
    coach = Coach(session, LLMConfig("anthropic", "claude-test", "", "", 256, 2.0))
    text, evs = collect(coach.ask("help"))
    (notice,) = [e for e in evs if e.kind == "notice"]
    assert "ANTHROPIC_API_KEY is not set" in notice.text and text.strip()


def test_no_key_in_any_written_file_or_event(ws, claude, monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("TINY_LLM_TUTOR_LLM", "anthropic")
    monkeypatch.setenv("TINY_LLM_TUTOR_BASE_URL", claude.base_url)
    events = []
    with TutorSession(ws).open("1.1") as s:
        coach = Coach(s)  # configuration from the environment, key included
        assert coach.config.api_key == KEY and KEY not in repr(coach.config)
        for mode in (401, 429, 529, "cut", "error_event", "ok"):
            claude.mode = mode
            events += list(coach.ask(f"question while the server says {mode}"))
        coach.hint()
        s.run_checks()
        coach.after_checks(s.latest_result())
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" or
               r["headers"].get("x-api-key") == KEY for r in claude.requests)
    assert KEY not in "".join(e.text for e in events)
    out = capsys.readouterr()
    assert KEY not in out.out + out.err
    files = all_text(ws)
    assert "question while the server says 401" in files  # the records were written
    assert KEY not in files
