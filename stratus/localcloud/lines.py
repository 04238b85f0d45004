"""Whole lines on the local cloud's one stdout, whichever thread writes them.

On AWS every function has its own log stream. Here every function, the endpoint and the pollers
share one process and one stdout, from many threads. Powertools' metrics print their EMF document
with `print()`, which writes the text and its newline in two calls: another thread's log line then
landed between them, and the log had a line holding two records, a metric's and the next function's
(measured in `stratus local up` under 24 concurrent clients). This stream keeps each thread's
partial line until its newline, then writes the whole line at once.
"""

from __future__ import annotations

import io
import sys
import threading
from typing import TextIO


class WholeLines(io.TextIOBase):
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pending = threading.local()

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "") + text
        lines, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._stream.write(lines + newline)
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        rest: str = getattr(self._pending, "text", "")
        with self._lock:
            if rest:
                self._pending.text = ""
                self._stream.write(rest)
            self._stream.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding


def whole_lines_on_stdout() -> None:
    """Install `WholeLines` on `sys.stdout` (once), before any function's logger is built."""
    if not isinstance(sys.stdout, WholeLines):
        sys.stdout = WholeLines(sys.stdout)
