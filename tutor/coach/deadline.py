"""A reply's overall deadline (``llm.deadline_s``).

The per-read timeout (``llm.timeout_s``) cannot end a reply whose server keeps the
connection busy without answering: SSE keep-alive comments or Anthropic ``ping`` events
every few seconds reset it forever. So a timer thread shuts the reply's socket down when
the deadline passes; the read blocked on it returns at once, and the backend, seeing
``expired``, reports the deadline instead of a broken connection.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def on_expire(self, close: Callable[[], None]) -> None:
        """Run ``close`` when the deadline passes (at once if it already has)."""
        with self._lock:
            if not self.expired:
                self._closers.append(close)
                return
        _quietly(close)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            closers, self._closers = self._closers, []
        for close in closers:
            _quietly(close)

    def notice(self, who: str, partial: str) -> str:
        if partial:
            return (f"{who} was still answering after {self.seconds:g} s (llm.deadline_s); "
                    "the reply was cut off.")
        return f"{who} sent no reply within {self.seconds:g} s (llm.deadline_s)."


def shut(sock) -> None:
    """Shut ``sock`` down for reading and writing, which wakes a thread blocked reading it
    (closing it would not). The plain socket's method, since an SSL socket's own
    ``shutdown`` also drops its SSL state under the reading thread's feet."""
    if sock is not None:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def response_socket(response):
    """The socket under an httpx (or httpx2) streaming response, or None."""
    stream = getattr(response, "extensions", {}).get("network_stream")
    get = getattr(stream, "get_extra_info", None)
    return get("socket") if get else None


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:  # noqa: BLE001 - the connection may already be gone
        pass
