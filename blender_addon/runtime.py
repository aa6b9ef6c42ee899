"""The session's one JobRunner and the timer that drains it on the main thread.

The only module-level state of the add-on (style note: one private variable plus ``discard()``,
hooked to ``load_pre`` and ``unregister``).
"""

from __future__ import annotations

import bpy

from .jobs import JobRunner

_runner: JobRunner | None = None
TICK_S = 0.25


def get_runner() -> JobRunner:
    global _runner
    if _runner is None:
        _runner = JobRunner()
    return _runner


def discard() -> None:
    """Stop watching all jobs (they keep running on the server) and drop the runner."""
    global _runner
    if _runner is not None:
        _runner.shutdown()
        _runner = None
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)


def _tick():
    from .apply import apply_messages

    runner = _runner
    if runner is None:
        return None
    apply_messages(runner.pump())
    return TICK_S if runner.busy() else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK_S, persistent=True)


def pump_now() -> int:
    """Drain the queue once on the calling (main) thread; for background mode and tests."""
    from .apply import apply_messages

    if _runner is None:
        return 0
    msgs = _runner.pump()
    apply_messages(msgs)
    return len(msgs)
