"""``tiny-llm-tutor serve``: the learner's own engine behind an OpenAI-compatible API.

``POST /v1/chat/completions`` (``stream`` true or false; streamed replies are server-sent
``data:`` chunks ended by ``data: [DONE]``) and ``GET /v1/models``, on 127.0.0.1 only.
The HTTP side is Starlette on uvicorn (with sse-starlette for the event stream); the
model runs in :mod:`tutor.serve_child`, a separate process with the check runner's
isolation (own process group, allowlisted environment, the learner's prints drained),
where every request in flight is batched into the learner's paged engine.

Learners who outgrow this should move to a serving engine built for it (``mlx_lm.server``
on a Mac, vLLM on a GPU server) rather than grow this one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from tutor import hfcache, paths
from tutor.checking.isolated import describe_exit, popen_isolated
from tutor.checking.output import CappedOutput, drain
from tutor.checking.procs import reap_group

DEFAULT_MODEL = hfcache.QWEN2_REPOS["qwen2-0.5b"]
START_TIMEOUT_S = 180.0
DEFAULT_MAX_TOKENS = 512


class ServeError(Exception):
    """The server cannot start: the message is one line for the learner."""


def resolve_model(spec: str | None) -> tuple[Path, str]:
    """``(folder, name)`` of ``--model``: a local folder, or a Hugging Face repo id found in
    the local cache (nothing is downloaded)."""
    spec = spec or DEFAULT_MODEL
    p = Path(spec).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ServeError(f"{p} has no config.json: point --model at an MLX model folder "
                             "or a Hugging Face repo id")
        p = p.resolve()
        # A snapshot folder of the Hugging Face cache is named by its commit: the repo is
        # the better name (models--Qwen--Qwen2-0.5B-Instruct-MLX/snapshots/<hash>).
        repo = p.parent.parent.name if p.parent.name == "snapshots" else ""
        name = repo.removeprefix("models--").replace("--", "/") if repo.startswith("models--") \
            else p.name
        return p, name
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        snap = hfcache.snapshot(spec)
        if snap is not None:
            return snap, spec
        raise ServeError(f"{spec} is not in the local Hugging Face cache: `hf download {spec}` "
                         "gets it")
    raise ServeError(f"no model folder at {spec} (and it is not a Hugging Face repo id); "
                     f"`hf download {DEFAULT_MODEL}` gets the course's model")


class Engine:
    """The engine process and the requests in flight. Thread-safe: the HTTP handlers call
    :meth:`submit` / :meth:`cancel` from the event loop; one reader thread routes the
    engine's events to each request's asyncio queue."""

    def __init__(self, impl: Path, model: Path, name: str, kernels: Path | None = None,
                 python: str | None = None, max_batch: int = 8, page_size: int = 16,
                 max_seq_len: int = 4096):
        self.impl = Path(impl).resolve()
        self.model, self.name = model, name
        self.kernels = Path(kernels).resolve() if kernels else None
        self.python = python or sys.executable
        self.max_batch, self.page_size, self.max_seq_len = max_batch, page_size, max_seq_len
        self.info: dict = {}
        self.proc = None
        self.output = CappedOutput()
        self._sock: socket.socket | None = None
        self._send_lock = threading.Lock()
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.dead: str | None = None

    # ------------------------------------------------------------------ life

    def start(self, timeout_s: float = START_TIMEOUT_S) -> dict:
        """Start the engine and wait until it has run one request end to end; raise
        :class:`ServeError` with the reason when it cannot (a day not written yet, a
        model that does not load)."""
        ours, theirs = socket.socketpair()
        fd = theirs.detach()  # popen_isolated closes the parent's copy
        cmd = [self.python, "-m", "tutor.serve_child", "--impl", str(self.impl),
               "--checks", str(paths.checks_dir()), "--fd", str(fd),
               "--model", str(self.model), "--name", self.name,
               "--max-batch", str(self.max_batch), "--page-size", str(self.page_size),
               "--max-seq-len", str(self.max_seq_len)]
        if self.kernels is not None:
            cmd += ["--kernels", str(self.kernels)]
        self.proc = popen_isolated(cmd, fd, self.impl.parent)
        self._sock = ours
        drain(self.proc.stdout, self.output)
        reader = ours.makefile("rb")
        ours.settimeout(timeout_s)
        try:
            line = reader.readline()
        except (socket.timeout, OSError):
            self.close()
            raise ServeError(f"your engine did not start within {timeout_s:g} s") from None
        ours.settimeout(None)
        ev = json.loads(line) if line.strip() else {"event": "gone"}
        kind = ev.get("event")
        if kind != "ready":
            self.close()
            if kind == "not_ready":
                raise ServeError(f"Your engine is not ready to serve: {ev['message']}")
            if kind == "fatal":
                raise ServeError(ev["message"])
            tail = self.output.text().strip().splitlines()[-1:] or [""]
            raise ServeError(f"the engine process {describe_exit(self.proc.returncode)} "
                             f"while starting {tail[0]}".strip())
        self.info = ev
        threading.Thread(target=self._route, args=(reader,), daemon=True).start()
        return ev

    def _route(self, reader) -> None:
        for line in reader:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            self._deliver(ev.get("id"), ev)
        self.proc.wait()
        self.dead = f"the engine process {describe_exit(self.proc.returncode)}"
        with self._lock:
            ids = list(self._waiters)
        for rid in ids:
            self._deliver(rid, {"event": "error", "id": rid, "status": 500,
                                "message": self.dead})

    def _deliver(self, rid, ev: dict) -> None:
        with self._lock:
            w = self._waiters.get(rid)
            if w is not None and ev.get("event") in ("done", "error"):
                del self._waiters[rid]
        if w is not None:
            loop, q = w
            try:
                loop.call_soon_threadsafe(q.put_nowait, ev)
            except RuntimeError:  # the request's loop has closed
                pass

    def _send(self, obj: dict) -> None:
        data = (json.dumps(obj) + "\n").encode()
        with self._send_lock:
            self._sock.sendall(data)

    def close(self) -> None:
        if self.proc is not None:
            reap_group(self.proc)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ requests

    def submit(self, body: dict) -> tuple[str, asyncio.Queue]:
        """Queue one generation; its events (start, text..., done | error) arrive on the
        returned queue, on the calling event loop."""
        if self.dead:
            raise ServeError(self.dead)
        rid = f"r{next(self._ids)}"
        q: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._waiters[rid] = (asyncio.get_running_loop(), q)
        self._send({"op": "submit", "id": rid, **body})
        return rid, q

    def cancel(self, rid: str) -> None:
        with self._lock:
            live = self._waiters.pop(rid, None) is not None
        if live and not self.dead:
            try:
                self._send({"op": "cancel", "id": rid})
            except OSError:
                pass


# --------------------------------------------------------------------------- HTTP


def _error(status: int, message: str):
    """OpenAI's error body; its type follows the status (the server's fault from 500 on)."""
    from starlette.responses import JSONResponse

    kind = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}},
                        status_code=status)


def _text_of(content) -> str | None:
    """A message's content: a string, or OpenAI's list of parts (text parts only)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if all(isinstance(t, str) for t in parts):
            return "".join(parts)
    if content is None:
        return ""
    return None


def parse_request(body) -> dict:
    """The engine's submit fields from an OpenAI chat completion body; ValueError says
    what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ValueError("'messages' must be a non-empty list")
    messages = []
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError("each message needs a 'role' and a 'content'")
        text = _text_of(m.get("content"))
        if text is None:
            raise ValueError("only text content is supported")
        messages.append({"role": m["role"], "content": text})
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) or DEFAULT_MAX_TOKENS
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    out = {"messages": messages,
           "max_tokens": int(max_tokens),
           "temperature": 1.0 if temperature is None else float(temperature),
           "top_p": 1.0 if top_p is None else float(top_p),
           "top_k": int(body["top_k"]) if body.get("top_k") else None,
           "ignore_eos": bool(body.get("ignore_eos", False))}
    if out["max_tokens"] < 1:
        raise ValueError("'max_tokens' must be at least 1")
    if not 0.0 <= out["temperature"] <= 2.0 or not 0.0 < out["top_p"] <= 1.0:
        raise ValueError("'temperature' must be in [0, 2] and 'top_p' in (0, 1]")
    return out


def make_app(engine: Engine):
    """The Starlette application over a started :class:`Engine`."""
    from sse_starlette.sse import EventSourceResponse
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    created = int(time.time())

    async def models(request):
        return JSONResponse({"object": "list", "data": [
            {"id": engine.name, "object": "model", "created": created,
             "owned_by": "tiny-llm-tutor"}]})

    async def chat(request):
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body is not JSON")
        try:
            fields = parse_request(body)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        try:
            rid, q = engine.submit(fields)
        except (ServeError, OSError) as exc:
            return _error(503, f"the engine is not running: {exc}")
        cid = f"chatcmpl-{rid}-{int(time.time() * 1000)}"
        stamp = int(time.time())

        def chunk(delta: dict | None, finish=None, usage=None) -> str:
            """A stream chunk; ``delta`` None: no choices (the closing usage chunk)."""
            obj = {"id": cid, "object": "chat.completion.chunk", "created": stamp,
                   "model": engine.name,
                   "choices": [] if delta is None else
                   [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if usage is not None:
                obj["usage"] = usage
            return json.dumps(obj)

        def usage_of(ev: dict) -> dict:
            p, c = ev.get("prompt_tokens", 0), ev.get("completion_tokens", 0)
            return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

        if not body.get("stream"):
            parts: list[str] = []
            try:
                while True:
                    ev = await q.get()
                    kind = ev["event"]
                    if kind == "text":
                        parts.append(ev["text"])
                    elif kind == "error":
                        return _error(ev.get("status", 500), ev["message"])
                    elif kind == "done":
                        break
            finally:
                engine.cancel(rid)  # a client gone before the end frees its slot
            return JSONResponse({
                "id": cid, "object": "chat.completion", "created": stamp, "model": engine.name,
                "choices": [{"index": 0, "message": {"role": "assistant",
                                                     "content": "".join(parts)},
                             "finish_reason": ev["finish_reason"]}],
                "usage": usage_of(ev)})

        # A request the engine refuses (too long, a template error) is an HTTP error, not
        # a stream: the first event decides.
        first = await q.get()
        if first["event"] == "error":
            engine.cancel(rid)
            return _error(first.get("status", 500), first["message"])
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        async def events():
            try:
                yield {"data": chunk({"role": "assistant", "content": ""})}
                ev = first
                while True:
                    if ev["event"] == "text":
                        yield {"data": chunk({"content": ev["text"]})}
                    elif ev["event"] == "error":
                        yield {"data": json.dumps({"error": {"message": ev["message"],
                                                             "type": "server_error"}})}
                        break
                    elif ev["event"] == "done":
                        yield {"data": chunk({}, ev["finish_reason"])}
                        if include_usage:
                            yield {"data": chunk(None, usage=usage_of(ev))}
                        break
                    ev = await q.get()
                yield {"data": "[DONE]"}
            finally:
                engine.cancel(rid)

        return EventSourceResponse(events(), ping=15)

    return Starlette(routes=[Route("/v1/models", models, methods=["GET"]),
                             Route("/v1/chat/completions", chat, methods=["POST"])])


class Server:
    """The engine and its HTTP server: :meth:`start` runs the server in a thread of this
    process (tests and ``bench serve``), :meth:`serve_forever` in the foreground (the
    CLI)."""

    def __init__(self, engine: Engine, port: int = 0):
        import uvicorn

        self.engine = engine
        self.sock = _bind(port)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(make_app(engine), log_level="warning", lifespan="off",
                                timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "Server":
        self.thread = threading.Thread(target=self.server.run,
                                       kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.engine.close()
        self.sock.close()

    def serve_forever(self) -> None:
        """Serve in the foreground until Ctrl-C; the engine goes with the server."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.engine.close()
            self.sock.close()


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    os.set_inheritable(sock.fileno(), False)
    return sock


def open_server(impl: Path, model: str | None = None, kernels: Path | None = None,
                port: int = 0, starting: Callable[[str], None] | None = None,
                **engine_kw) -> Server:
    """Resolve the model, start the engine (raising :class:`ServeError` when it cannot),
    then bind the HTTP server to 127.0.0.1:``port`` (0: any free port), not yet serving.
    ``starting(name)`` is called once the model is found, before the engine loads it."""
    folder, name = resolve_model(model)
    sock_check = _bind(port)  # a busy port fails before the model loads
    sock_check.close()
    if starting is not None:
        starting(name)
    engine = Engine(impl, folder, name, kernels, **engine_kw)
    engine.start()
    try:
        return Server(engine, port)
    except BaseException:
        engine.close()
        raise


def start_server(impl: Path, model: str | None = None, kernels: Path | None = None,
                 port: int = 0, **engine_kw) -> Server:
    """:func:`open_server`, serving in a thread of this process."""
    return open_server(impl, model, kernels, port, **engine_kw).start()
