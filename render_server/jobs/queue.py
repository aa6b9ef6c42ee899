"""Job queue: dispatch order, cancellation flags, event fan-out to watchers, leases and crash recovery.

The store is the single source of truth (every event is stored before anyone sees it); this class adds the live
parts: a condition variable that wakes workers and watchers, the set of jobs whose cancellation was requested
(checked by the worker between denoising steps), and watcher counts for leases.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Sequence

from .spec import EventRecord, JobError, JobRecord, JobSpec, JobState, OutputFileInfo
from .store import JobStore, now_ms

logger = logging.getLogger(__name__)

_ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def state_payload(
    state: JobState, *, queue_position: int = 0, error: JobError | None = None, message: str = ""
) -> dict[str, Any]:
    return {
        "state": state.value,
        "queue_position": queue_position,
        "error": error.to_dict() if error else None,
        "message": message,
    }


class JobQueue:
    """Priority queue of durable jobs (higher priority first, FIFO among equals). Thread-safe."""

    def __init__(
        self,
        store: JobStore,
        *,
        max_queued: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_queued = max_queued
        self._clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._cancel_flags: set[str] = set()
        self._cancel_reasons: dict[str, str] = {}
        self._watchers: dict[str, int] = {}
        self._unwatched_since: dict[str, float] = {}
        self._closed = False
        self._listeners: list[Callable[[], None]] = []

    @property
    def store(self) -> JobStore:
        return self._store

    def add_change_listener(self, fn: Callable[[], None]) -> None:
        """`fn()` runs after every queue change (metrics use it to update the queue length)."""
        self._listeners.append(fn)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """After a restart: jobs left RUNNING go back to QUEUED (they resume from their finished segments);
        jobs whose cancellation was requested become CANCELLED. Returns the re-queued job ids."""
        requeued = []
        with self._cond:
            for job_id in self._store.job_ids_in_state(JobState.RUNNING):
                record = self._store.get(job_id)
                if record is None:
                    continue
                if record.cancel_requested:
                    self._finish_locked(job_id, JobState.CANCELLED, JobError("CANCELLED", "cancelled by client"))
                    continue
                done = len(self._store.finished_segments(job_id))
                self._store.append_events(
                    job_id,
                    [("state", state_payload(
                        JobState.QUEUED,
                        message=f"server restarted; resumes at segment {done} of {record.segments_total}",
                    ), None)],
                    updates={"state": JobState.QUEUED, "resume_count": record.resume_count + 1},
                )
                requeued.append(job_id)
            for job_id in self._store.job_ids_in_state(JobState.QUEUED):
                self._unwatched_since[job_id] = self._clock()
            self._refresh_positions_locked()
            self._cond.notify_all()
        return requeued

    def close(self) -> None:
        """Wakes every waiter; `take_next` then returns None and watchers end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- submit / dispatch ----------------------------------------------------------------------------------------

    def submit(
        self, *, job_id: str, client_request_id: str, request_hash: str, spec: JobSpec, segments_total: int
    ) -> tuple[JobRecord, bool]:
        """Stores a new job (or returns the one holding `client_request_id`). Raises QueueFullError."""
        with self._cond:
            record, created = self._store.create_job(
                job_id=job_id,
                client_request_id=client_request_id,
                request_hash=request_hash,
                spec=spec,
                segments_total=segments_total,
                max_queued=self._max_queued,
            )
            if created:
                self._unwatched_since[job_id] = self._clock()
                self._refresh_positions_locked()
                self._cond.notify_all()
                record = self._store.get(job_id) or record
        if created:
            self._changed()
        return record, created

    def take_next(self, timeout_s: float | None = None) -> JobRecord | None:
        """Blocks until a job is queued, marks it RUNNING and returns it; None on timeout or close."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while not self._closed:
                for job_id in self._store.queued_job_ids():
                    record = self._store.get(job_id)
                    assert record is not None
                    started = record.started_ms or now_ms()
                    moved = self._store.append_events(
                        job_id,
                        [("state", state_payload(JobState.RUNNING), None)],
                        updates={"state": JobState.RUNNING, "queue_position": 0, "started_ms": started},
                        only_if_state=(JobState.QUEUED,),
                    )
                    if not moved:
                        continue
                    self._refresh_positions_locked()
                    self._cond.notify_all()
                    break
                else:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                    continue
                record = self._store.get(job_id)
                break
            else:
                return None
        self._changed()
        return record

    # -- cancellation ---------------------------------------------------------------------------------------------

    def cancel(self, job_id: str, reason: str = "cancelled by client") -> JobRecord | None:
        """Cancels a queued job at once; flags a running job (the worker stops within one step). None if unknown."""
        with self._cond:
            record = self._store.get(job_id)
            if record is None:
                return None
            if record.state == JobState.QUEUED:
                self._finish_locked(job_id, JobState.CANCELLED, JobError("CANCELLED", reason), cancel_requested=True)
                self._refresh_positions_locked()
            elif record.state == JobState.RUNNING:
                self._cancel_flags.add(job_id)
                self._cancel_reasons[job_id] = reason
                self._store.update(job_id, cancel_requested=True)
            self._cond.notify_all()
            record = self._store.get(job_id)
        self._changed()
        return record

    def cancel_requested(self, job_id: str) -> bool:
        return job_id in self._cancel_flags

    def cancel_reason(self, job_id: str) -> str:
        """Why a running job was asked to stop ("cancelled by client", "lease expired: ...")."""
        return self._cancel_reasons.get(job_id, "cancelled by client")

    # -- events from the worker -----------------------------------------------------------------------------------

    def emit(
        self,
        job_id: str,
        events: Iterable[tuple[str, dict[str, Any], bytes | None]],
        *,
        updates: dict[str, Any] | None = None,
        finished_segment: int | None = None,
    ) -> list[EventRecord]:
        """Stores events of a running job (and job-row updates) and wakes its watchers."""
        records = self._store.append_events(
            job_id, events, updates=updates, finished_segment=finished_segment, only_if_state=(JobState.RUNNING,)
        )
        with self._cond:
            self._cond.notify_all()
        return records

    def finish(
        self,
        job_id: str,
        state: JobState,
        *,
        error: JobError | None = None,
        output_files: Sequence[OutputFileInfo] = (),
        message: str = "",
    ) -> None:
        """Moves a running job to a terminal state with its final event."""
        assert state.terminal
        with self._cond:
            self._finish_locked(job_id, state, error, output_files=output_files, message=message)
            self._cond.notify_all()
        self._changed()

    def _finish_locked(
        self,
        job_id: str,
        state: JobState,
        error: JobError | None,
        *,
        output_files: Sequence[OutputFileInfo] = (),
        message: str = "",
        cancel_requested: bool | None = None,
    ) -> None:
        updates: dict[str, Any] = {"state": state, "finished_ms": now_ms(), "queue_position": 0, "eta_s": 0.0}
        if error is not None:
            updates["error"] = error
        if output_files:
            updates["output_files"] = tuple(output_files)
        if cancel_requested is not None:
            updates["cancel_requested"] = cancel_requested
        if state == JobState.SUCCEEDED:
            updates["progress"] = 1.0
        self._store.append_events(
            job_id,
            [("state", state_payload(state, error=error, message=message), None)],
            updates=updates,
            only_if_state=_ACTIVE,
        )
        self._cancel_flags.discard(job_id)
        self._cancel_reasons.pop(job_id, None)
        self._unwatched_since.pop(job_id, None)

    # -- watching -------------------------------------------------------------------------------------------------

    def wait_for_events(self, job_id: str, after_sequence: int, timeout_s: float) -> list[EventRecord]:
        """Returns stored events after `after_sequence`, waiting up to `timeout_s` for new ones."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                events = self._store.events_after(job_id, after_sequence)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0 or self._closed:
                    return events
                self._cond.wait(remaining)

    def wake(self) -> None:
        """Wakes every waiter (e.g. a watcher whose client disconnected re-checks its stream)."""
        with self._cond:
            self._cond.notify_all()

    def watcher_attached(self, job_id: str) -> None:
        with self._cond:
            self._watchers[job_id] = self._watchers.get(job_id, 0) + 1

    def watcher_detached(self, job_id: str) -> None:
        with self._cond:
            count = self._watchers.get(job_id, 0) - 1
            if count <= 0:
                self._watchers.pop(job_id, None)
                self._unwatched_since[job_id] = self._clock()
            else:
                self._watchers[job_id] = count

    def expire_leases(self) -> list[str]:
        """Cancels unfinished jobs with a lease that nobody has watched for longer than the lease."""
        now = self._clock()
        expired = []
        with self._cond:
            candidates = [j for j, since in self._unwatched_since.items() if not self._watchers.get(j)]
            for job_id in candidates:
                record = self._store.get(job_id)
                if record is None or record.state.terminal or record.spec.lease_s <= 0:
                    continue
                if now - self._unwatched_since[job_id] > record.spec.lease_s:
                    expired.append(job_id)
        for job_id in expired:
            logger.info("lease expired", extra={"job_id": job_id})
            self.cancel(job_id, reason="lease expired: no client watched the job for lease_s seconds")
        return expired

    # -- internals ------------------------------------------------------------------------------------------------

    def _refresh_positions_locked(self) -> None:
        """Stores a QUEUED event for every queued job whose 1-based position changed."""
        for position, job_id in enumerate(self._store.queued_job_ids(), start=1):
            record = self._store.get(job_id)
            if record is None or record.queue_position == position:
                continue
            self._store.append_events(
                job_id,
                [("state", state_payload(JobState.QUEUED, queue_position=position), None)],
                updates={"queue_position": position},
                only_if_state=(JobState.QUEUED,),
            )

    def _changed(self) -> None:
        for fn in self._listeners:
            fn()
