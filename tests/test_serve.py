"""``tiny-llm-tutor serve``: the answer key's week-3 engine behind the OpenAI-compatible API,
on a tiny random Qwen2 in a fake Hugging Face cache (nothing downloaded). The coach's own
OpenAI backend streams through it; greedy replies match mlx_lm's own greedy decoding of the
same model; 8 concurrent streams all complete with the text each prompt gets alone. The
stubs get a one-line "not ready" naming the day, a missing model the download command.
Real Qwen2-0.5B/1.5B-Instruct weights run when cached (skipped otherwise)."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.fake_hf import REPO_ID, make_fake_hub
from tutor import cli, hfcache, paths
from tutor.coach.llm import OpenAIBackend
from tutor.config import LLMConfig
from tutor.serve import Engine, ServeError, resolve_model, start_server

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MSGS = [{"role": "user", "content": "the tiny model writes a short story about the cache"}]


@pytest.fixture(scope="module")
def tiny_hub(tmp_path_factory):
    """The fake cache's tiny Qwen2, its tokenizer given a ChatML template like Qwen2's."""
    hub = make_fake_hub(tmp_path_factory.mktemp("serve_hub"))
    snap = next((hub / ("models--" + REPO_ID.replace("/", "--")) / "snapshots").iterdir())
    cfg_path = snap / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg))
    return hub, snap


@pytest.fixture(scope="module")
def server(tiny_hub, answer_key_ext):
    hub, snap = tiny_hub
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(hub))  # the repo id resolves in the fake cache
        srv = start_server(paths.answer_key_dir(), REPO_ID, answer_key_ext, port=0)
    yield srv
    srv.stop()
    assert srv.engine.proc.poll() is not None  # the engine process is gone with the server


def client(srv):
    import openai

    return openai.OpenAI(base_url=srv.base_url, api_key="local", max_retries=0, timeout=30)


def mlx_lm_greedy(snap: Path, messages: list[dict], max_tokens: int) -> str:
    """The oracle: mlx_lm's own model and greedy decoding loop on the same checkpoint."""
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.utils import load

    model, tok = load(str(snap))
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = mx.array(tok.encode(text, add_special_tokens=False))
    out = []
    for token, _ in generate_step(prompt, model, max_tokens=max_tokens,
                                  sampler=lambda lp: mx.argmax(lp, axis=-1)):
        if int(token) in tok.eos_token_ids:
            break
        out.append(int(token))
    return tok.decode(out)


def test_models_lists_the_served_model(server):
    models = client(server).models.list()
    assert [m.id for m in models.data] == [REPO_ID]


def test_a_greedy_reply_is_mlx_lm_greedy_decoding(server, tiny_hub):
    r = client(server).chat.completions.create(model=REPO_ID, messages=MSGS, max_tokens=10,
                                               temperature=0)
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 10 and r.usage.prompt_tokens > 10
    assert choice.message.content == mlx_lm_greedy(tiny_hub[1], MSGS, 10)


def test_the_coach_streams_through_the_learners_engine(server):
    """"Your engine tutors you": the coach's OpenAI-compatible backend, pointed at serve."""
    backend = OpenAIBackend(LLMConfig("openai", "", server.base_url, "", 12, 30.0))
    deltas = list(backend.stream("You are the tutor. Ask one question.", MSGS))
    assert len(deltas) >= 2, deltas  # streamed in pieces, not one block
    assert "".join(deltas)


def test_the_stream_is_server_sent_events_ending_in_done(server):
    u = urlsplit(server.base_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", json.dumps(
        {"messages": MSGS, "stream": True, "max_tokens": 5, "temperature": 0,
         "ignore_eos": True}), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    datas = [line[len("data: "):] for line in resp.read().decode().splitlines()
             if line.startswith("data: ")]
    conn.close()
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(d) for d in datas[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)


def test_eight_concurrent_streams_complete_with_their_own_text(server):
    """Batched together, each request streams what it gets alone (greedy, fixed length)."""
    prompts = [f"hello world, how are you today? request {i} " + "cache " * i for i in range(8)]
    c = client(server)

    def alone(p):
        r = c.chat.completions.create(model=REPO_ID, messages=[{"role": "user", "content": p}],
                                      max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
        return r.choices[0].message.content

    expected = [alone(p) for p in prompts]
    results: list = [None] * 8
    barrier = threading.Barrier(8)

    def stream(i):
        barrier.wait()
        parts, usage, finish = [], None, None
        for ch in client(server).chat.completions.create(
                model=REPO_ID, messages=[{"role": "user", "content": prompts[i]}], stream=True,
                max_tokens=12, temperature=0, stream_options={"include_usage": True},
                extra_body={"ignore_eos": True}):
            usage = ch.usage or usage
            for choice in ch.choices:
                parts.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
        results[i] = ("".join(parts), usage.completion_tokens, finish)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in results), results
    assert [r[1:] for r in results] == [(12, "length")] * 8
    assert [r[0] for r in results] == expected


def test_bad_requests_are_400s_and_the_server_keeps_serving(server):
    import openai

    c = client(server)
    with pytest.raises(openai.BadRequestError, match="messages"):
        c.chat.completions.create(model=REPO_ID, messages=[])
    with pytest.raises(openai.BadRequestError, match="holds at most"):
        c.chat.completions.create(model=REPO_ID, stream=True, messages=[
            {"role": "user", "content": "cache " * 600}])  # past max_position_embeddings
    r = c.chat.completions.create(model=REPO_ID, messages=MSGS, max_tokens=3)
    assert r.usage.completion_tokens >= 1


def test_a_client_that_hangs_up_frees_its_slot(server):
    c = client(server)
    stream = c.chat.completions.create(model=REPO_ID, messages=MSGS, stream=True,
                                       max_tokens=400, extra_body={"ignore_eos": True})
    next(iter(stream))
    stream.close()
    r = c.chat.completions.create(model=REPO_ID, messages=MSGS, max_tokens=4, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_the_stubs_are_not_ready_and_say_which_day(stub_impl, tiny_hub):
    _, snap = tiny_hub
    engine = Engine(stub_impl, snap, "tiny")
    with pytest.raises(ServeError) as err:
        engine.start()
    msg = str(err.value)
    assert msg == ("Your engine is not ready to serve: make_sampler is still a stub "
                   "(lesson day 1.7)")
    assert engine.proc.poll() is not None


def test_a_stubbed_week3_model_names_day_3_1(tmp_path, tiny_hub):
    import shutil

    pkg = tmp_path / "impl"
    shutil.copytree(paths.answer_key_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(paths.stubs_dir() / "qwen2_week3.py", pkg / "qwen2_week3.py")
    with pytest.raises(ServeError, match=r"^Your engine is not ready to serve: Qwen2ModelWeek3"
                                         r"\.create_kv_cache is still a stub \(lesson day 3\.1\)$"):
        Engine(pkg, tiny_hub[1], "tiny").start()


def test_a_missing_symbol_names_its_day(tmp_path, tiny_hub):
    import shutil

    pkg = tmp_path / "impl"
    shutil.copytree(paths.answer_key_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "__init__.py").write_text("from .kv_cache import *  # noqa\n")
    engine = Engine(pkg, tiny_hub[1], "tiny")
    with pytest.raises(ServeError, match=r"Qwen2ModelWeek3 was not found .*day 3\.1"):
        engine.start()


def test_a_model_not_in_the_cache_names_the_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ServeError, match="`hf download Qwen/Qwen2-1.5B-Instruct-MLX`"):
        resolve_model("Qwen/Qwen2-1.5B-Instruct-MLX")
    rc = cli.main(["serve", "--impl", str(paths.answer_key_dir())])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert "`hf download Qwen/Qwen2-0.5B-Instruct-MLX`" in err


def _real_snapshot():
    for key in ("qwen2-0.5b", "qwen2-1.5b"):
        snap = hfcache.snapshot(hfcache.QWEN2_REPOS[key])
        if snap is not None:
            return hfcache.QWEN2_REPOS[key]
    return None


@pytest.mark.real_weights
@pytest.mark.skipif(_real_snapshot() is None,
                    reason="Qwen2-0.5B/1.5B-Instruct are not in the local Hugging Face cache: "
                           "`hf download Qwen/Qwen2-0.5B-Instruct-MLX` gets the smaller one")
def test_real_qwen2_tutors_through_serve(answer_key_ext):
    srv = start_server(paths.answer_key_dir(), _real_snapshot(), answer_key_ext, port=0)
    try:
        backend = OpenAIBackend(LLMConfig("openai", "", srv.base_url, "", 24, 120.0))
        text = "".join(backend.stream("You are a concise tutor.",
                                      [{"role": "user", "content": "What is a KV cache?"}]))
        assert len(text.split()) >= 3, text  # words, from a 24-token budget
        assert "\ufffd" not in text  # multi-byte characters arrive whole
    finally:
        srv.stop()


def test_the_serve_command_serves_until_interrupted(tiny_hub, answer_key_ext, tmp_path):
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from tutor.serve import _bind

    sock = _bind(0)
    port = sock.getsockname()[1]
    sock.close()
    exe = shutil.which("tiny-llm-tutor", path=str(Path(sys.executable).parent)) or "tiny-llm-tutor"
    env = {**os.environ, "HF_HUB_CACHE": str(tiny_hub[0]), "COLUMNS": "200"}
    env.pop("TINY_LLM_TUTOR_WORKSPACE", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen([exe, "serve", "--impl", str(paths.answer_key_dir()),
                                 "--kernels", str(answer_key_ext), "--port", str(port)],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 25
        while "Serving" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert f'[llm] backend = "openai", base_url = "http://127.0.0.1:{port}/v1"' in text
        backend = OpenAIBackend(LLMConfig("openai", "", f"http://127.0.0.1:{port}/v1", "", 4,
                                          30.0))
        assert "".join(backend.stream("system", MSGS))
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) in (0, 130)  # 130: uvicorn passes Ctrl-C on
    finally:
        if proc.poll() is None:
            proc.kill()
    # the engine process went with it: nothing listens on the port any more
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/v1/models")


def test_an_engine_error_fails_its_requests_and_a_crash_is_named(tmp_path, tiny_hub,
                                                                  answer_key_ext):
    """The learner's sampler raising mid-request: that request gets a 500 with the error and
    the engine serves the next one. The engine process dying: the request in flight gets the
    exit, later ones a 503."""
    import shutil

    import openai

    pkg = tmp_path / "impl"
    shutil.copytree(paths.answer_key_dir(), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    src = (pkg / "sampler.py").read_text()
    src = src.replace("    def sample(logprobs: mx.array) -> mx.array:\n",
                      "    def sample(logprobs: mx.array) -> mx.array:\n"
                      "        if temp == 0.5:\n"
                      "            raise RuntimeError('my sampler broke')\n"
                      "        if temp == 0.25:\n"
                      "            import os; os._exit(3)\n", 1)
    (pkg / "sampler.py").write_text(src)
    srv = start_server(pkg, str(tiny_hub[1]), answer_key_ext, port=0)
    try:
        c = client(srv)
        with pytest.raises(openai.InternalServerError, match="RuntimeError: my sampler broke"):
            c.chat.completions.create(model="m", messages=MSGS, temperature=0.5, max_tokens=4)
        assert c.chat.completions.create(model="m", messages=MSGS, temperature=0,
                                         max_tokens=4).usage.completion_tokens >= 1
        with pytest.raises(openai.InternalServerError, match="exited with code 3"):
            c.chat.completions.create(model="m", messages=MSGS, temperature=0.25, max_tokens=4)
        with pytest.raises(openai.InternalServerError, match="not running"):
            c.chat.completions.create(model="m", messages=MSGS, temperature=0, max_tokens=4)
    finally:
        srv.stop()
