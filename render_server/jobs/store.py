"""Durable job store: SQLite in WAL mode holding jobs, their events (numbered per job) and finished segments.

Every state change of a job is written together with the event that announces it, in one transaction, so a
watcher that replays the events after a crash sees exactly the states the store holds. `synchronous=NORMAL` in
WAL mode survives a killed process (the case we must handle); after a power loss the last few transactions may
be lost but the database stays consistent, and a lost "segment finished" row only means that segment is rendered
again (with the same seed, to the same frames).

One connection guarded by a lock: every statement is short, and SQLite serialises writers anyway.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from .spec import EventRecord, JobError, JobRecord, JobSpec, JobState, OutputFileInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    submit_order INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    client_request_id TEXT,
    request_hash TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL,
    queue_position INTEGER NOT NULL DEFAULT 0,
    segments_total INTEGER NOT NULL,
    segments_done INTEGER NOT NULL DEFAULT 0,
    frames_done INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    eta_s REAL NOT NULL DEFAULT -1,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL DEFAULT 0,
    finished_ms INTEGER NOT NULL DEFAULT 0,
    error_json TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    last_event_seq INTEGER NOT NULL DEFAULT 0,
    output_json TEXT NOT NULL DEFAULT '[]',
    resume_count INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request_id ON jobs(client_request_id) WHERE client_request_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, priority, submit_order);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    blob BLOB,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    job_id TEXT NOT NULL,
    segment_index INTEGER NOT NULL,
    finished_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, segment_index)
) WITHOUT ROWID;
"""

# Columns a caller may update together with an event (the rest are managed by the store).
_UPDATABLE = frozenset(
    {
        "state", "queue_position", "segments_done", "frames_done", "progress", "eta_s", "started_ms",
        "finished_ms", "error", "cancel_requested", "output_files", "resume_count",
    }
)


class QueueFullError(RuntimeError):
    """More jobs are queued than the configured limit."""


def now_ms() -> int:
    return int(time.time() * 1000)


class JobStore:
    """The SQLite job store. Thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self._path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------------------------------

    def _tx(self) -> "_Transaction":
        return _Transaction(self._db, self._lock)

    # -- jobs -----------------------------------------------------------------------------------------------------

    def create_job(
        self,
        *,
        job_id: str,
        client_request_id: str,
        request_hash: str,
        spec: JobSpec,
        segments_total: int,
        max_queued: int,
    ) -> tuple[JobRecord, bool]:
        """Inserts a QUEUED job with its first event, or returns the job already holding `client_request_id`.

        Returns (record, created). Raises QueueFullError when `max_queued` jobs are already queued.
        """
        with self._tx() as db:
            if client_request_id:
                row = db.execute("SELECT * FROM jobs WHERE client_request_id = ?", (client_request_id,)).fetchone()
                if row is not None:
                    return _record(row), False
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (JobState.QUEUED.value,)).fetchone()[0]
            if queued >= max_queued:
                raise QueueFullError(f"{queued} jobs are queued (limit {max_queued})")
            created = now_ms()
            # The new job goes behind every queued job of the same or higher priority.
            position = 1 + db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ? AND priority >= ?", (JobState.QUEUED.value, spec.priority)
            ).fetchone()[0]
            db.execute(
                "INSERT INTO jobs (job_id, client_request_id, request_hash, spec_json, state, priority,"
                " queue_position, segments_total, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id, client_request_id or None, request_hash, spec.to_json(), JobState.QUEUED.value,
                    spec.priority, position, segments_total, created,
                ),
            )
            payload = {"state": JobState.QUEUED.value, "queue_position": position, "error": None, "message": ""}
            self._append(db, job_id, "state", payload, None, created)
            row = db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            return _record(row), True

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _record(row) if row is not None else None

    def get_by_request_id(self, client_request_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE client_request_id = ?", (client_request_id,)).fetchone()
        return _record(row) if row is not None else None

    def list_jobs(
        self, states: Sequence[JobState] = (), limit: int = 100, before_order: int | None = None
    ) -> tuple[list[JobRecord], int | None]:
        """Newest first. Returns (records, cursor for the next page or None)."""
        sql = "SELECT * FROM jobs WHERE 1=1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(s.value for s in states)
        if before_order is not None:
            sql += " AND submit_order < ?"
            args.append(before_order)
        sql += " ORDER BY submit_order DESC LIMIT ?"
        args.append(limit + 1)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = rows[-1]["submit_order"] if more and rows else None
        return [_record(r) for r in rows], cursor

    def queued_job_ids(self) -> list[str]:
        """Queued jobs in dispatch order: higher priority first, then first come first served."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE state = ? ORDER BY priority DESC, submit_order ASC",
                (JobState.QUEUED.value,),
            ).fetchall()
        return [r["job_id"] for r in rows]

    def job_ids_in_state(self, state: JobState) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id FROM jobs WHERE state = ? ORDER BY submit_order", (state.value,)
            ).fetchall()
        return [r["job_id"] for r in rows]

    def count_in_state(self, state: JobState) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state.value,)).fetchone()[0]

    def update(self, job_id: str, **updates: Any) -> None:
        """Updates job columns without an event (bookkeeping that watchers need not see, e.g. progress)."""
        with self._tx() as db:
            self._update(db, job_id, updates)

    def delete_job(self, job_id: str, *, only_if_state: Sequence[JobState]) -> bool:
        """Removes a job, its events and segments in one transaction, if it is in one of `only_if_state`."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None or JobState(row["state"]) not in only_if_state:
                return False
            db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM segments WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))
            return True

    # -- events ---------------------------------------------------------------------------------------------------

    def append_events(
        self,
        job_id: str,
        events: Iterable[tuple[str, dict[str, Any], bytes | None]],
        *,
        updates: dict[str, Any] | None = None,
        finished_segment: int | None = None,
        only_if_state: Sequence[JobState] | None = None,
    ) -> list[EventRecord]:
        """Appends events (kind, payload, blob) and applies `updates` to the job row in one transaction.

        With `only_if_state`, nothing happens (returns []) unless the job is in one of those states: this makes
        state transitions race-free (e.g. a cancel and a worker finishing at the same moment).
        """
        with self._tx() as db:
            if only_if_state is not None:
                row = db.execute("SELECT state FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                if row is None or JobState(row["state"]) not in only_if_state:
                    return []
            t = now_ms()
            records = [self._append(db, job_id, kind, payload, blob, t) for kind, payload, blob in events]
            if updates:
                self._update(db, job_id, updates)
            if finished_segment is not None:
                db.execute(
                    "INSERT OR REPLACE INTO segments (job_id, segment_index, finished_ms) VALUES (?, ?, ?)",
                    (job_id, finished_segment, t),
                )
            return records

    def events_after(self, job_id: str, after_sequence: int, limit: int = 500) -> list[EventRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after_sequence, limit),
            ).fetchall()
        return [
            EventRecord(r["job_id"], r["seq"], r["time_ms"], r["kind"], json.loads(r["payload_json"]), r["blob"])
            for r in rows
        ]

    def finished_segments(self, job_id: str) -> set[int]:
        with self._lock:
            rows = self._db.execute("SELECT segment_index FROM segments WHERE job_id = ?", (job_id,)).fetchall()
        return {r["segment_index"] for r in rows}

    # -- internals ------------------------------------------------------------------------------------------------

    def _append(
        self, db: sqlite3.Connection, job_id: str, kind: str, payload: dict[str, Any], blob: bytes | None, t: int
    ) -> EventRecord:
        row = db.execute("SELECT last_event_seq FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        seq = row["last_event_seq"] + 1
        db.execute(
            "INSERT INTO events (job_id, seq, time_ms, kind, payload_json, blob) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, seq, t, kind, json.dumps(payload, sort_keys=True), blob),
        )
        db.execute("UPDATE jobs SET last_event_seq = ? WHERE job_id = ?", (seq, job_id))
        return EventRecord(job_id, seq, t, kind, payload, blob)

    @staticmethod
    def _update(db: sqlite3.Connection, job_id: str, updates: dict[str, Any]) -> None:
        unknown = set(updates) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update job columns {sorted(unknown)}")
        cols, args = [], []
        for key, value in updates.items():
            if key == "state":
                value = JobState(value).value
            elif key == "error":
                key, value = "error_json", json.dumps(value.to_dict()) if value is not None else None
            elif key == "output_files":
                key = "output_json"
                value = json.dumps([[f.name, f.size_bytes, f.sha256] for f in value])
            elif key == "cancel_requested":
                value = int(bool(value))
            cols.append(f"{key} = ?")
            args.append(value)
        args.append(job_id)
        db.execute(f"UPDATE jobs SET {', '.join(cols)} WHERE job_id = ?", args)


class _Transaction:
    """`with store._tx() as db:` runs the block in BEGIN IMMEDIATE ... COMMIT under the store lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self._lock.release()


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_id=row["job_id"],
        client_request_id=row["client_request_id"] or "",
        request_hash=row["request_hash"],
        spec=JobSpec.from_json(row["spec_json"]),
        state=JobState(row["state"]),
        queue_position=row["queue_position"],
        segments_total=row["segments_total"],
        segments_done=row["segments_done"],
        frames_done=row["frames_done"],
        progress=row["progress"],
        eta_s=row["eta_s"],
        created_ms=row["created_ms"],
        started_ms=row["started_ms"],
        finished_ms=row["finished_ms"],
        error=JobError.from_dict(json.loads(row["error_json"])) if row["error_json"] else None,
        cancel_requested=bool(row["cancel_requested"]),
        last_event_sequence=row["last_event_seq"],
        output_files=tuple(OutputFileInfo(*f) for f in json.loads(row["output_json"])),
        resume_count=row["resume_count"],
    )
