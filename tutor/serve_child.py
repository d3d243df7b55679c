"""The engine process of ``tiny-llm-tutor serve``: the learner's week-3 engine
(``Qwen2ModelWeek3`` on its page pool, ``BatchingKvCache`` over the requests' paged
caches, ``make_sampler``) generating for every request the server hands it, the requests
batched together as they come and go (continuous batching).

Started by :mod:`tutor.serve` as ``python -m tutor.serve_child`` with the check runner's
isolation. It speaks JSON lines over one socket (``--fd``); stdout belongs to the
learner's prints. The server sends::

    {"op": "submit", "id": ID, "messages": [...], "max_tokens": N, "temperature": T,
     "top_p": P, "top_k": K, "ignore_eos": false}
    {"op": "cancel", "id": ID}

and the engine answers::

    {"event": "ready", "model": NAME, "max_seq_len": N, "device": "cpu" | "gpu"}
    {"event": "not_ready", "message": ...}   (the learner's engine is missing a day)
    {"event": "fatal", "message": ...}       (the model or the environment)
    {"event": "start", "id": ID, "prompt_tokens": N}
    {"event": "text", "id": ID, "text": ...}
    {"event": "done", "id": ID, "finish_reason": "stop" | "length", "prompt_tokens": N,
     "completion_tokens": N}
    {"event": "error", "id": ID, "message": ..., "status": 400 | 500}

Each scheduler round prefills one chunk of one waiting request (in the request's own
paged caches), then decodes one token for every request that is generating, all in one
call of the learner's model through a ``BatchingKvCache`` built over their caches. The
batch is rebuilt only when a request joins or leaves, with one slot per request: a lone
request is not padded to the largest batch, so one client at a time is measured fairly.
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import threading
import traceback
from collections import deque
from pathlib import Path

from tutor.bench_child import NotReady, _one_line, _symbol, describe_failure

# Which day writes each piece the engine calls (for "not ready" when a symbol is missing),
# in the order the engine takes them.
PIECES = [("qwen2_week3", "Qwen2ModelWeek3", "3.1"), ("kv_cache", "BatchingKvCache", "2.6"),
          ("sampler", "make_sampler", "1.7")]


def _piece(impl, module: str, name: str, day: str):
    try:
        return _symbol(impl, module, name)
    except NotReady:
        raise NotReady(f"{module}.{name} was not found in your package "
                       f"(lesson day {day})") from None


class Channel:
    """The socket to the server: JSON lines both ways. Only the main thread writes."""

    def __init__(self, fd: int):
        self.sock = socket.socket(fileno=fd)
        self.inbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        f = self.sock.makefile("rb")
        for line in f:
            try:
                self.inbox.put(json.loads(line))
            except ValueError:
                continue
        self.inbox.put({"op": "closed"})

    def send(self, obj: dict) -> None:
        try:
            self.sock.sendall((json.dumps(obj) + "\n").encode())
        except OSError:  # the server is gone; the lifeline ends this process
            pass


class Seq:
    """One request: its prompt, its own paged caches (one per layer), what it generated."""

    def __init__(self, rid: str, prompt: list[int], max_tokens: int, sampler, ignore_eos: bool):
        self.id = rid
        self.prompt = prompt
        self.max_tokens = max_tokens
        self.sampler = sampler
        self.ignore_eos = ignore_eos
        self.caches = None
        self.offset = 0
        self.next_token: int | None = None
        self.generated: list[int] = []
        self.sent = ""  # text already streamed


class Engine:
    def __init__(self, impl, impl_dir: Path, mlx_model, tokenizer, chan: Channel, *,
                 page_size: int, max_batch: int, prefill_step: int, max_seq_len: int):
        import mlx.core as mx

        self.mx = mx
        self.impl_dir = impl_dir  # where the learner's frames are, for an error's one line
        self.Model, self.Batching, self.make_sampler = (_piece(impl, *p) for p in PIECES)
        self.model = self.Model(mlx_model, page_size=page_size)
        self.tokenizer = tokenizer
        self.eos = set(getattr(tokenizer, "eos_token_ids", None) or [tokenizer.eos_token_id])
        self.chan = chan
        self.max_batch = max_batch
        self.prefill_step = prefill_step
        self.max_seq_len = max_seq_len
        self.waiting: deque[Seq] = deque()
        self.prefilling: Seq | None = None
        self.active: list[Seq] = []
        self.batch = None  # the BatchingKvCache per layer over self.active, in order
        self._samplers: dict[tuple, object] = {}

    # ------------------------------------------------------------------ requests

    def sampler(self, temp: float, top_p: float, top_k: int | None):
        key = (temp, top_p, top_k)
        if key not in self._samplers:
            self._samplers[key] = self.make_sampler(temp, top_p, top_k)
        return self._samplers[key]

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template")
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tok.encode(text, add_special_tokens=False))

    def submit(self, cmd: dict) -> None:
        rid = cmd["id"]
        try:
            prompt = self.prompt_ids(cmd["messages"])
        except Exception as exc:  # noqa: BLE001 - a template that cannot render these messages
            self.chan.send({"event": "error", "id": rid, "status": 400,
                            "message": _one_line(f"the chat template failed: {exc}")})
            return
        room = self.max_seq_len - len(prompt)
        if room <= 0:
            self.chan.send({"event": "error", "id": rid, "status": 400, "message":
                            f"the prompt has {len(prompt)} tokens; this server holds at most "
                            f"{self.max_seq_len} per request"})
            return
        max_tokens = min(int(cmd.get("max_tokens") or room), room)
        temp = float(cmd.get("temperature", 1.0))
        top_p = float(cmd.get("top_p", 1.0))
        top_k = cmd.get("top_k")
        seq = Seq(rid, prompt, max_tokens, self.sampler(temp, top_p, top_k),
                  bool(cmd.get("ignore_eos")))
        self.waiting.append(seq)
        self.chan.send({"event": "start", "id": rid, "prompt_tokens": len(prompt)})

    def cancel(self, rid: str) -> None:
        for seq in list(self.waiting):
            if seq.id == rid:
                self.waiting.remove(seq)
        if self.prefilling is not None and self.prefilling.id == rid:
            self._release(self.prefilling)
            self.prefilling = None
        for seq in self.active:
            if seq.id == rid:
                self._leave(seq)

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.prefilling or self.active)

    # ------------------------------------------------------------------ steps

    def _sample(self, logits, seqs: list[Seq]) -> list[int]:
        """One token per row of ``logits`` (B, V), each row with its request's sampler;
        rows that share a sampler are drawn in one call."""
        mx = self.mx
        logits = logits.astype(mx.float32)
        logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        groups: dict[int, list[int]] = {}
        for i, seq in enumerate(seqs):
            groups.setdefault(id(seq.sampler), []).append(i)
        out = [0] * len(seqs)
        for rows in groups.values():
            picked = seqs[rows[0]].sampler(logprobs[mx.array(rows)])
            for i, t in zip(rows, picked.reshape(-1).tolist()):
                out[i] = int(t)
        return out

    def _emit_token(self, seq: Seq, token: int) -> bool:
        """Record a generated token and stream the text it completes. True when the
        request is finished."""
        if token in self.eos and not seq.ignore_eos:
            self._finish(seq, "stop")
            return True
        seq.generated.append(token)
        seq.next_token = token
        text = self.tokenizer.decode(seq.generated)
        # A multi-byte character split across tokens decodes to U+FFFD until it is whole.
        if not text.endswith("\ufffd") and len(text) > len(seq.sent) and text.startswith(seq.sent):
            self.chan.send({"event": "text", "id": seq.id, "text": text[len(seq.sent):]})
            seq.sent = text
        if len(seq.generated) >= seq.max_tokens or seq.offset + 1 >= self.max_seq_len:
            self._finish(seq, "length")
            return True
        return False

    def _finish(self, seq: Seq, reason: str) -> None:
        text = self.tokenizer.decode(seq.generated)
        if text != seq.sent and text.startswith(seq.sent):
            self.chan.send({"event": "text", "id": seq.id, "text": text[len(seq.sent):]})
        self.chan.send({"event": "done", "id": seq.id, "finish_reason": reason,
                        "prompt_tokens": len(seq.prompt),
                        "completion_tokens": len(seq.generated)})

    def _release(self, seq: Seq) -> None:
        for c in seq.caches or []:
            c.release()
        seq.caches = None

    def _leave(self, seq: Seq) -> None:
        self.active.remove(seq)
        self._release(seq)
        self.batch = None

    def prefill_chunk(self) -> None:
        mx = self.mx
        if self.prefilling is None:
            if not self.waiting or len(self.active) >= self.max_batch:
                return
            self.prefilling = self.waiting.popleft()
            self.prefilling.caches = self.model.create_kv_cache()
        seq = self.prefilling
        n = min(self.prefill_step, len(seq.prompt) - seq.offset)
        chunk = mx.array(seq.prompt[seq.offset: seq.offset + n], dtype=mx.int32)[None]
        logits = self.model(chunk, seq.offset, seq.caches)
        seq.offset += n
        if seq.offset < len(seq.prompt):
            mx.eval(logits)  # the chunk's keys and values land in the pages now
            return
        token = self._sample(logits[:, -1, :], [seq])[0]
        self.prefilling = None  # only now: an error above must still find it to fail it
        if self._emit_token(seq, token):
            self._release(seq)
        else:
            self.active.append(seq)
            self.batch = None

    def decode_step(self) -> None:
        mx = self.mx
        if not self.active:
            return
        if self.batch is None:
            B = len(self.active)
            self.batch = []
            for layer in range(self.model.num_hidden_layers):
                bc = self.Batching(max_active_requests=B, max_seq_len=self.max_seq_len)
                for slot, seq in enumerate(self.active):
                    bc.add_request(seq.caches[layer], slot)
                self.batch.append(bc)
        seqs = list(self.active)
        y = mx.array([s.next_token for s in seqs], dtype=mx.int32)[:, None]
        offsets = mx.array([s.offset for s in seqs], dtype=mx.int32)
        logits = self.model(y, offsets, self.batch)
        tokens = self._sample(logits[:, -1, :], seqs)
        for seq, token in zip(seqs, tokens):
            seq.offset += 1
            if self._emit_token(seq, token):
                self._leave(seq)

    def fail_all(self, message: str) -> None:
        """The learner's code raised mid-step: every request in flight gets the error and
        the engine starts clean (its caches may be half written)."""
        seqs = list(self.waiting) + ([self.prefilling] if self.prefilling else []) + self.active
        for seq in seqs:
            self.chan.send({"event": "error", "id": seq.id, "status": 500, "message": message})
            try:
                self._release(seq)
            except Exception:  # noqa: BLE001 - the caches are the learner's, maybe broken
                pass
        self.waiting.clear()
        self.prefilling = None
        self.active = []
        self.batch = None

    def smoke(self) -> None:
        """One short request through every piece the server uses, before saying ready:
        a stub or a missing day shows at start-up, not on the first request."""
        seq = Seq("smoke", self.tokenizer.encode("hello", add_special_tokens=False)[:4] or [0],
                  2, self.sampler(0.0, 1.0, None), True)
        saved, self.chan = self.chan, _Mute()
        try:
            self.waiting.append(seq)
            while self.busy:
                self.prefill_chunk()
                self.decode_step()
        finally:
            self.chan = saved
            self.waiting.clear()
            self.prefilling = None
            self.active = []
            self.batch = None

    def run(self) -> None:
        inbox = self.chan.inbox
        while True:
            try:
                cmd = inbox.get(block=not self.busy)
            except queue.Empty:
                cmd = None
            while cmd is not None:
                op = cmd.get("op")
                if op == "closed":
                    return
                if op == "submit":
                    self.submit(cmd)
                elif op == "cancel":
                    self.cancel(cmd["id"])
                try:
                    cmd = inbox.get_nowait()
                except queue.Empty:
                    cmd = None
            try:
                self.prefill_chunk()
                self.decode_step()
            except Exception as exc:  # noqa: BLE001 - the learner's code
                traceback.print_exc()
                self.fail_all(describe_failure(exc, self.impl_dir, None)["message"])


class _Mute:
    def send(self, obj: dict) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", required=True)
    ap.add_argument("--checks", required=True)
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--model", required=True, help="a local model folder")
    ap.add_argument("--name", default="")
    ap.add_argument("--kernels", default="")
    ap.add_argument("--page-size", type=int, default=16)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--prefill-step", type=int, default=64)
    ap.add_argument("--max-seq-len", type=int, default=4096)
    args = ap.parse_args(argv)
    from tutor.checking import lifeline

    lifeline.hold(None)  # dies with the server
    chan = Channel(args.fd)
    impl_dir = Path(args.impl).resolve()
    try:
        import mlx.core as mx

        from tutor.checking.child import load_harness

        harness = load_harness(Path(args.checks))
        from mlx_lm.utils import load

        mlx_model, tokenizer = load(args.model)
    except BaseException as exc:  # noqa: BLE001 - the model or the environment
        if isinstance(exc, KeyboardInterrupt):
            raise
        chan.send({"event": "fatal", "message": _one_line(
            f"cannot load the model at {args.model}: {type(exc).__name__}: {exc}", 300)})
        return 0

    from tutor.checking.child import describe_import_error, import_impl, load_extension_for_run

    ext_error = load_extension_for_run(args.kernels, harness)
    try:
        try:
            impl = import_impl(impl_dir)
        except BaseException as exc:  # noqa: BLE001
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise NotReady(describe_import_error(exc, impl_dir, harness)["message"]) from None
        max_len = min(args.max_seq_len, int(getattr(mlx_model.args, "max_position_embeddings",
                                                    args.max_seq_len)))
        engine = Engine(impl, impl_dir, mlx_model, tokenizer, chan, page_size=args.page_size,
                        max_batch=args.max_batch, prefill_step=args.prefill_step,
                        max_seq_len=max_len)
        engine.smoke()
    except BaseException as exc:  # noqa: BLE001 - the learner's code
        if isinstance(exc, KeyboardInterrupt):
            raise
        traceback.print_exc()
        out = describe_failure(exc, impl_dir, ext_error)
        chan.send({"event": out["status"] if out["status"] == "not_ready" else "fatal",
                   "message": out["message"]})
        return 0
    chan.send({"event": "ready", "model": args.name or Path(args.model).name,
               "max_seq_len": max_len, "max_batch": args.max_batch,
               "device": "gpu" if mx.default_device() == mx.gpu else "cpu",
               "extension": ext_error or "loaded"})
    engine.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
