"""What a check child prints, capped, and put down to the check that printed it.

The child's prints and its results travel on two pipes, and the tutor may read either
one ahead of the other: deciding which check printed a byte by which event was seen last
gets it wrong whenever the child runs ahead (a fast failing check's output lands on the
one before). So the child marks check boundaries in the output stream itself
(:func:`mark`), and the tutor splits that stream at the marks. Reading happens on the
thread that waits for the results, never on a thread of its own that could still hold
output back when the results are put together.
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time

OUTPUT_CAP = 8 * 1024  # bytes of learner output kept per check (head and tail)
CLOSE_GRACE_S = 1.0  # for the last output after the child is reaped
_MARK = b"\x00\x1btutor-mark:"  # never printed by accident: NUL, ESC
_MARK_MAX = 512
NO_CHECK = ("", "")  # output printed outside any check (imports)


def mark(text: str) -> None:
    """In the child: note a boundary (``start DAY ID`` or ``end``) in the output stream,
    after whatever was printed before it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - the learner may have replaced or closed it
            pass
    try:
        os.write(1, _MARK + text.encode() + b"\x00")
    except OSError:  # the learner closed fd 1: nothing of theirs to attribute either
        pass


class CappedOutput:
    """Keeps the first and last OUTPUT_CAP/2 bytes of what a check printed; drops the rest
    so a flood of output cannot hang or bloat the tutor."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def add(self, data: bytes) -> None:
        half = OUTPUT_CAP // 2
        room = half - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > half:
                cut = len(self.tail) - half
                self.dropped += cut
                del self.tail[:cut]

    def text(self) -> str:
        s = self.head.decode("utf-8", "replace")
        if self.dropped:
            s += f"\n... [{self.dropped} bytes of output not shown] ...\n"
        return s + self.tail.decode("utf-8", "replace")


def drain(stream, out: CappedOutput) -> threading.Thread:
    """Read a long-lived child's stdout to its end on a daemon thread, into ``out`` (the
    bench and serve children, whose output no check boundary splits)."""

    def run() -> None:
        while True:
            chunk = stream.read1(65536)
            if not chunk:
                return
            out.add(chunk)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class ChildOutput:
    """A child's stdout and stderr (one pipe), split at the child's marks into outputs
    keyed by (day, check id): one child may run several days."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        os.set_blocking(self.fd, False)
        self.eof = False
        self.key = NO_CHECK
        self.outputs: dict[tuple[str, str], CappedOutput] = {}
        self._pending = b""  # a mark cut in two by a read

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> None:
        """Take in whatever the child has printed so far. The child marks the end of a
        check before it reports the result, so after this a reported check's output is
        all here."""
        while not self.eof:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                self._add(self._pending)
                self._pending = b""
                return
            self._feed(chunk)

    def close(self) -> None:
        """Read to the end (the group is dead, so the end is near; a process that left the
        group could hold the pipe open, hence the bound), then close the pipe."""
        end = time.monotonic() + CLOSE_GRACE_S
        while not self.eof and time.monotonic() < end:
            select.select([self.fd], [], [], max(0.0, end - time.monotonic()))
            self.drain()
        self.stream.close()

    def _add(self, data: bytes) -> None:
        if data:
            self.outputs.setdefault(self.key, CappedOutput()).add(data)

    def _feed(self, data: bytes) -> None:
        data = self._pending + data
        self._pending = b""
        while data:
            i = data.find(_MARK)
            if i < 0:
                keep = next((k for k in range(min(len(_MARK) - 1, len(data)), 0, -1)
                             if data.endswith(_MARK[:k])), 0)
                self._add(data[:len(data) - keep])
                self._pending = data[len(data) - keep:]
                return
            self._add(data[:i])
            j = data.find(b"\x00", i + len(_MARK))
            if j < 0:
                if len(data) - i > _MARK_MAX:  # not one of ours after all
                    self._add(data[i:])
                else:
                    self._pending = data[i:]
                return
            words = data[i + len(_MARK):j].decode("utf-8", "replace").split(" ")
            self.key = (words[1], words[2]) if words[0] == "start" and len(words) == 3 \
                else NO_CHECK
            data = data[j + 1:]
