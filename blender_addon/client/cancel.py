"""Cancellation that crosses threads: a UI thread cancels what a worker thread is blocked in.

A `CancelToken` is handed to long client operations (watch, downloads, uploads). `cancel()` may be called from
any thread: it sets the flag and cancels every gRPC call currently attached to the token, so a thread blocked in
`next(stream)` wakes at once with `Cancelled`. `RenderClient.close()` cancels the client's own token, which every
operation of that client also listens to.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from typing import Callable, Iterator

from .errors import Cancelled


class CancelToken:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = threading.Event()
        self._callbacks: dict[int, Callable[[], object]] = {}
        self._ids = itertools.count()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Thread-safe and idempotent; runs the attached callbacks (each at most once) outside the lock."""
        with self._lock:
            if self._event.is_set():
                return
            self.reason = reason
            self._event.set()
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for callback in callbacks:
            callback()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Blocks until cancelled or `timeout_s` passed; True when cancelled."""
        return self._event.wait(timeout_s)

    def _add(self, callback: Callable[[], object]) -> int | None:
        with self._lock:
            if self._event.is_set():
                return None
            key = next(self._ids)
            self._callbacks[key] = callback
            return key

    def _remove(self, key: int | None) -> None:
        if key is None:
            return
        with self._lock:
            self._callbacks.pop(key, None)


class Scope:
    """The tokens one operation listens to (the caller's and the client's), seen as one."""

    def __init__(self, *tokens: CancelToken | None) -> None:
        self._tokens = [t for t in tokens if t is not None]

    @property
    def cancelled(self) -> bool:
        return any(t.cancelled for t in self._tokens)

    def reason(self) -> str:
        return next((t.reason for t in self._tokens if t.cancelled), "")

    def check(self, what: str) -> None:
        if self.cancelled:
            raise Cancelled(f"{what}: {self.reason()}")

    @contextlib.contextmanager
    def attached(self, callback: Callable[[], object]) -> Iterator[None]:
        """Runs `callback` (e.g. call.cancel) if any token is cancelled while the block runs."""
        keys = [(t, t._add(callback)) for t in self._tokens]
        try:
            if self.cancelled:
                callback()
            yield
        finally:
            for token, key in keys:
                token._remove(key)

    def sleep(self, seconds: float) -> bool:
        """Sleeps up to `seconds`; returns True (early) when cancelled."""
        if not self._tokens:
            time.sleep(seconds)
            return False
        if len(self._tokens) == 1:
            return self._tokens[0].wait(seconds)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if any(t.wait(min(left, 0.05)) for t in self._tokens[:1]) or self.cancelled:
                return True
        return self.cancelled
