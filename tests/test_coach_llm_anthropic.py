"""The Anthropic backend through the real ``anthropic`` SDK against a local server on
127.0.0.1 that speaks the Messages streaming protocol: a full reply, HTTP 401/429/529,
an ``error`` event midway, a stream cut midway, a stall, a refused connection, a missing
key and no network. One request per question (no retry storm), and no notice or log line
ever holds the key."""

from __future__ import annotations

import logging
import time

import pytest
from fixtures.fake_llm import DEFAULT_CHUNKS, FakeAnthropic, closed_port

from tutor.coach.llm import AnthropicBackend, BackendError, make_backend
from tutor.config import LLMConfig

KEY = "sk-ant-TEST-0123456789-SECRETKEY-abcdef"
MSGS = [{"role": "user", "content": "Why is my output transposed?"}]


@pytest.fixture
def server():
    with FakeAnthropic() as srv:
        yield srv


def backend(url: str, key: str = KEY, timeout: float = 2.0, model: str = "claude-test"):
    return AnthropicBackend(LLMConfig("anthropic", model, url, key, 256, timeout))


def run(b) -> tuple[list[str], BackendError | None, float]:
    out: list[str] = []
    t = time.perf_counter()
    try:
        for d in b.stream("You are the tutor.", MSGS):
            out.append(d)
    except BackendError as exc:
        return out, exc, time.perf_counter() - t
    return out, None, time.perf_counter() - t


def test_full_reply_streams_text_deltas(server):
    out, err, _ = run(backend(server.base_url))
    assert err is None
    assert out == DEFAULT_CHUNKS
    (req,) = server.requests
    assert req["path"] == "/v1/messages"
    # the key is sent, to the server only (x-api-key or a bearer token, by SDK version)
    sent = req["headers"].get("x-api-key") or req["headers"].get("Authorization", "")
    assert sent in (KEY, f"Bearer {KEY}")
    body = req["body"]
    assert body["stream"] is True and body["model"] == "claude-test"
    assert body["system"] == "You are the tutor."
    assert body["messages"] == MSGS and body["max_tokens"] == 256


def test_make_backend_picks_by_config():
    assert make_backend(LLMConfig()) is None
    assert isinstance(make_backend(LLMConfig("anthropic", "m", "", KEY)), AnthropicBackend)


@pytest.mark.parametrize("status, words", [
    (401, "refused the API key (401)"),
    (403, "refused the API key (403)"),
    (429, "rate-limiting requests (429)"),
    (529, "overloaded right now (529)"),
    (500, "server error (500)"),
    (404, "rejected the request (404)"),
])
def test_http_errors_become_one_line_notices_without_retry(server, status, words, caplog):
    caplog.set_level(logging.DEBUG)
    server.mode = status
    out, err, secs = run(backend(server.base_url))
    assert out == [] and err is not None
    assert words in err.notice
    assert "\n" not in err.notice and KEY not in err.notice and KEY not in str(err)
    assert "not welcome" not in err.notice  # the server's own words never reach the learner
    assert err.partial == ""
    assert len(server.requests) == 1, "one attempt per question, no retries"
    assert secs < 2.0
    assert KEY not in caplog.text  # the SDK's debug log included


def test_stream_cut_midway_keeps_the_partial_text(server):
    server.mode = "cut"
    server.cut_after = 2
    out, err, _ = run(backend(server.base_url))
    assert out == DEFAULT_CHUNKS[:2]
    assert err is not None and "cut off" in err.notice
    assert err.partial == "".join(DEFAULT_CHUNKS[:2])
    assert len(server.requests) == 1


def test_error_event_midway(server):
    server.mode = "error_event"
    server.cut_after = 3
    out, err, _ = run(backend(server.base_url))
    assert out == DEFAULT_CHUNKS[:3]
    assert "overloaded" in err.notice and "cut off" in err.notice
    assert err.partial == "".join(DEFAULT_CHUNKS[:3])
    assert KEY not in err.notice


def test_body_ending_without_message_stop_is_a_cut(server):
    server.mode = "no_stop"
    out, err, _ = run(backend(server.base_url))
    assert out == DEFAULT_CHUNKS
    assert err is not None and "cut off" in err.notice and err.partial == "".join(DEFAULT_CHUNKS)


def test_a_stalled_stream_times_out_quickly(server):
    server.mode = "stall"
    server.cut_after = 1
    server.stall_s = 3.0
    out, err, secs = run(backend(server.base_url, timeout=0.5))
    assert out == DEFAULT_CHUNKS[:1]
    assert "no data for 0.5 s" in err.notice and err.partial == DEFAULT_CHUNKS[0]
    assert secs < 2.5
    assert len(server.requests) == 1


def test_connection_refused():
    out, err, secs = run(backend(f"http://127.0.0.1:{closed_port()}"))
    assert out == [] and "refused the connection" in err.notice
    assert secs < 2.0


def test_missing_key_without_a_server_says_what_to_set():
    out, err, _ = run(backend("", key=""))
    assert err is not None and "ANTHROPIC_API_KEY is not set" in err.notice


def test_network_down_reaching_the_real_api():
    # conftest blocks every non-loopback address, as a machine without network would
    out, err, secs = run(backend("", key=KEY))
    assert out == [] and err is not None
    assert "cannot be reached" in err.notice and KEY not in err.notice
    assert secs < 2.0


def test_the_key_is_not_in_the_config_repr():
    cfg = LLMConfig("anthropic", "m", "", KEY)
    assert KEY not in repr(cfg) and KEY not in cfg.describe()


def test_pings_do_not_outlast_the_reply_deadline(server):
    """Issue 10: ping events (which the SDK swallows) kept the read timeout from firing."""
    server.mode, server.cut_after, server.keepalive_s = "keepalive", 1, 0.5
    # The deadline counts from the first read of the reply, the SDK's import included.
    b = AnthropicBackend(LLMConfig("anthropic", "claude-test", server.base_url, KEY, 256, 1.0,
                                   3.0))
    out, err, secs = run(b)
    assert 2.9 < secs < 5.0
    assert out == DEFAULT_CHUNKS[:1] and err.partial == DEFAULT_CHUNKS[0]
    assert err.notice.endswith("was still answering after 3 s (llm.deadline_s); the reply was "
                               "cut off.")
    assert KEY not in err.notice and len(server.requests) == 1
