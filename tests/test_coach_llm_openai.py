"""The OpenAI-compatible backend: end to end against a real ``mlx_lm.server`` process on
loopback serving a tiny randomly initialised Qwen2 whose tokenizer the fixture builds (no
downloads), plus protocol failures against a local fake server."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from fixtures.fake_llm import DEFAULT_CHUNKS, FakeOpenAI, closed_port
from fixtures.tiny_qwen2 import WORDS, MlxLmServer, build_tiny_qwen2

from tutor.coach.llm import BackendError, OpenAIBackend
from tutor.config import LLMConfig

KEY = "sk-local-TEST-9876543210-SECRET"
MSGS = [{"role": "user", "content": "what shape does the score matrix have"}]


@pytest.fixture(scope="module")
def mlx_server(tmp_path_factory):
    pytest.importorskip("mlx_lm")
    root = tmp_path_factory.mktemp("tiny-qwen2")
    try:
        model = build_tiny_qwen2(root / "model")
    except Exception as exc:  # pragma: no cover - platform without a working MLX
        pytest.skip(f"cannot build the tiny Qwen2 model with MLX on this platform: {exc}")
    server = MlxLmServer(model, root / "server.log", max_tokens=16)
    try:
        t = time.perf_counter()
        server.start()
        server.startup_s = time.perf_counter() - t
    except RuntimeError as exc:  # pragma: no cover
        pytest.skip(f"mlx_lm.server cannot start on this platform: {exc}")
    yield server
    server.stop()
    assert server.proc.poll() is not None  # the server is gone after the tests


def config(url: str, key: str = "", timeout: float = 30.0, max_tokens: int = 12) -> LLMConfig:
    return LLMConfig("openai", "", url, key, max_tokens, timeout)


def test_real_mlx_lm_server_streams_a_reply(mlx_server):
    b = OpenAIBackend(config(mlx_server.base_url, key=KEY))
    deltas = list(b.stream("You are the tutor. Ask one question.", MSGS))
    assert deltas, "the server streamed nothing"
    text = "".join(deltas)
    alphabet = set("".join(WORDS)) | set("abcdefghijklmnopqrstuvwxyz?., ")
    assert text.strip() and set(text) <= alphabet  # decoded by the fixture's own tokenizer
    assert KEY not in mlx_server.log_tail(100_000)


def test_real_server_with_conversation_history(mlx_server):
    b = OpenAIBackend(config(mlx_server.base_url, max_tokens=5))
    history = [{"role": "user", "content": "why scale"}, {"role": "assistant", "content": "think"},
               {"role": "assistant", "content": "about it"}, {"role": "user", "content": "how"}]
    assert "".join(b.stream("system", history))


def test_real_server_wrong_path_is_a_clear_notice(mlx_server):
    url = mlx_server.base_url.removesuffix("/v1") + "/nothing"
    with pytest.raises(BackendError) as err:
        list(OpenAIBackend(config(url)).stream("s", MSGS))
    assert "404" in err.value.notice and "base_url" in err.value.notice


# --------------------------------------------------------------------------- fake server


@pytest.fixture
def fake():
    with FakeOpenAI() as srv:
        yield srv


def test_request_shape(fake):
    b = OpenAIBackend(LLMConfig("openai", "qwen-local", fake.base_url, KEY, 99, 5.0))
    assert list(b.stream("SYS", MSGS)) == DEFAULT_CHUNKS
    (req,) = fake.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == f"Bearer {KEY}"
    body = req["body"]
    assert body["stream"] is True and body["model"] == "qwen-local" and body["max_tokens"] == 99
    assert body["messages"][0] == {"role": "system", "content": "SYS"}
    assert body["messages"][1:] == MSGS


def test_no_key_no_authorization_header(fake):
    list(OpenAIBackend(config(fake.base_url)).stream("s", MSGS))
    assert "Authorization" not in fake.requests[0]["headers"]
    assert "model" not in fake.requests[0]["body"]  # the server's own model


@pytest.mark.parametrize("status, words", [(401, "refused the API key (401)"),
                                           (429, "rate-limiting"), (503, "busy or still loading"),
                                           (500, "server error (500)")])
def test_http_errors(fake, status, words):
    fake.mode = status
    with pytest.raises(BackendError) as err:
        list(OpenAIBackend(config(fake.base_url, key=KEY)).stream("s", MSGS))
    assert words in err.value.notice and KEY not in err.value.notice
    assert err.value.partial == "" and len(fake.requests) == 1


def test_cut_midway_keeps_partial(fake):
    fake.mode, fake.cut_after = "cut", 3
    got = []
    with pytest.raises(BackendError) as err:
        for d in OpenAIBackend(config(fake.base_url)).stream("s", MSGS):
            got.append(d)
    assert got == DEFAULT_CHUNKS[:3]
    assert err.value.partial == "".join(DEFAULT_CHUNKS[:3]) and "cut off" in err.value.notice


def test_unreadable_event(fake):
    fake.mode, fake.cut_after = "garbage", 1
    with pytest.raises(BackendError) as err:
        list(OpenAIBackend(config(fake.base_url)).stream("s", MSGS))
    assert "could not read" in err.value.notice and err.value.partial == DEFAULT_CHUNKS[0]


def test_stall_times_out(fake):
    fake.mode, fake.cut_after, fake.stall_s = "stall", 1, 3.0
    t = time.perf_counter()
    with pytest.raises(BackendError) as err:
        list(OpenAIBackend(config(fake.base_url, timeout=0.4)).stream("s", MSGS))
    assert time.perf_counter() - t < 2.0
    assert "no data for 0.4 s" in err.value.notice


def test_server_not_running():
    with pytest.raises(BackendError) as err:
        list(OpenAIBackend(config(f"http://127.0.0.1:{closed_port()}/v1")).stream("s", MSGS))
    assert "refused the connection" in err.value.notice


def test_network_down():
    with pytest.raises(BackendError) as err:  # conftest blocks non-loopback hosts
        list(OpenAIBackend(config("https://llm.example.com/v1", key=KEY)).stream("s", MSGS))
    assert "cannot be reached" in err.value.notice and KEY not in err.value.notice
    assert json.dumps(err.value.notice)  # one plain line


def test_the_coach_end_to_end_on_the_real_server(mlx_server, tmp_path):
    """Coach -> system prompt -> mlx_lm.server -> guardrail -> events and records."""
    from tutor.coach.chat import Coach, chat_path
    from tutor.engine import TutorSession
    from tutor.workspace import init_workspace

    ws = tmp_path / "ws"
    init_workspace(ws)
    with TutorSession(ws).open("1.1") as s:
        coach = Coach(s, config(mlx_server.base_url, max_tokens=12))
        events = list(coach.ask("what shape does the score matrix have"))
        events += list(coach.ask("why scale"))
    kinds = [e.kind for e in events]
    assert "notice" not in kinds and kinds.count("done") == 2
    assert all(e.text.strip() for e in events if e.kind == "done")
    stored = json.loads(chat_path(ws, "1.1").read_text())["messages"]
    assert [m["role"] for m in stored] == ["user", "assistant", "user", "assistant"]
    assert {m.get("source") for m in stored if m["role"] == "assistant"} == {"openai"}


@pytest.mark.parametrize("after, words", [
    (2, "was still answering after 4 s (llm.deadline_s); the reply was cut off."),
    (0, "sent no reply within 4 s (llm.deadline_s)."),
])
def test_keep_alives_do_not_outlast_the_reply_deadline(fake, after, words):
    """Issue 10: keep-alive comments every 2 s kept a 3 s read timeout from ever firing."""
    fake.mode, fake.cut_after, fake.keepalive_s = "keepalive", after, 2.0
    cfg = dataclasses.replace(config(fake.base_url, timeout=3.0), deadline_s=4.0)
    got, t = [], time.perf_counter()
    with pytest.raises(BackendError) as err:
        for d in OpenAIBackend(cfg).stream("s", MSGS):
            got.append(d)
    assert 3.9 < time.perf_counter() - t < 6.0
    assert got == DEFAULT_CHUNKS[:after] and err.value.partial == "".join(got)
    assert err.value.notice.endswith(words)
    assert len(fake.requests) == 1


def test_only_the_configs_key_is_sent_never_the_environments(fake, monkeypatch):
    """The SDK would look in OPENAI_* variables on its own: the config's key (from
    OPENAI_API_KEY or none) is the only credential that leaves, and a base_url's query
    stays on the request."""
    env = {"OPENAI_API_KEY": "sk-env-KEY", "OPENAI_ADMIN_KEY": "sk-env-ADMIN",
           "OPENAI_ORG_ID": "org-env", "OPENAI_PROJECT_ID": "proj-env",
           "OPENAI_CUSTOM_HEADERS": "Authorization: Bearer sk-env-CUSTOM"}
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    for key in ("", KEY):
        list(OpenAIBackend(config(fake.base_url + "?api-version=1", key=key)).stream("s", MSGS))
        req = fake.requests[-1]
        assert req["path"] == "/v1/chat/completions?api-version=1"
        assert req["headers"]["Authorization"] == (f"Bearer {KEY}" if key else None)
        sent = str(req["headers"])
        assert not any(v.split()[-1] in sent for v in env.values()), sent
        assert "OpenAI-Organization" not in req["headers"] and "OpenAI-Project" not in req["headers"]
