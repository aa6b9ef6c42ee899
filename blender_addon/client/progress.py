"""A progress display on stderr for the `o2a` command line.

On a terminal it redraws one line (`\\r`); elsewhere (farm logs, CI, pipes) it prints plain lines, at most one per
`min_interval_s` unless the state changes, so logs stay readable and parsable:
`o2a: job-... RUNNING 42% segment 1/2 step 3/4 frames 0/97 eta 12s`.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .events import JobProgress


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, width: int = 28,
                 min_interval_s: float = 2.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._tty = self._stream.isatty() if tty is None else tty
        self._width = width
        self._min_interval_s = min_interval_s
        self._last_state = ""
        self._last_print = 0.0
        self._drawn = 0

    def update(self, progress: JobProgress) -> None:
        line = progress.describe()
        if self._tty:
            filled = int(round(self._width * max(0.0, min(1.0, progress.progress))))
            bar = "#" * filled + "." * (self._width - filled)
            self._redraw(f"[{bar}] {line}")
            return
        now = time.monotonic()
        if progress.state != self._last_state or now - self._last_print >= self._min_interval_s:
            self._stream.write(f"o2a: {progress.job_id} {line}\n")
            self._stream.flush()
            self._last_state, self._last_print = progress.state, now

    def note(self, message: str) -> None:
        """A one-off message (reconnecting, downloading) that does not disturb the bar."""
        if self._tty and self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._drawn = 0
        self._stream.write(f"o2a: {message}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = 0

    def _redraw(self, text: str) -> None:
        pad = max(0, self._drawn - len(text))
        self._stream.write("\r" + text + " " * pad)
        self._stream.flush()
        self._drawn = len(text)
