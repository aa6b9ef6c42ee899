"""Job runner: snapshot -> worker thread (gRPC) -> SimpleQueue -> main-thread ``pump()``.

No bpy here. The UI calls ``JobRunner.start`` with a plain ``ShotSnapshot`` taken on the main thread,
a worker thread talks to the server through the client library, and a ``bpy.app.timers`` callback
(UI) or a plain loop (farm, tests) calls ``pump()`` to receive the messages and touch Blender data.
``run_job`` is the same worker body as a synchronous function, for background/farm runs.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

from .pose.types import PoseSequence
from .settings import ServerSettings

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


@dataclass(frozen=True)
class RenderOptions:
    """User-facing render settings; enum values are the proto names without their prefix."""

    steps: int = 0
    seed: int | None = None
    image_guidance: float | None = None
    pose_guidance: float | None = None
    guidance_mode: str = "UNSPECIFIED"
    face_lightening: str = "UNSPECIFIED"
    head_lightening: bool = False
    same_skeleton: bool = False
    alignment_mode: str = "UNSPECIFIED"
    chunk_plan: str = "UNSPECIFIED"
    image_pose_transfer: str = "UNSPECIFIED"
    prompt: str = ""
    display_name: str = ""
    width: int = 0
    height: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RenderOptions:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class ShotSnapshot:
    """Everything a job needs, copied out of Blender on the main thread."""

    poses: PoseSequence
    reference_image: bytes
    reference_pose: np.ndarray | None  # (133, 3) in reference-image pixels; None = server detection
    options: RenderOptions = field(default_factory=RenderOptions)

    def request_id(self) -> str:
        """Idempotency key: same content -> same key, so a retried submit never renders twice."""
        h = hashlib.sha256()
        h.update(self.reference_image)
        h.update(np.ascontiguousarray(self.poses.keypoints).tobytes())
        h.update(json.dumps([self.poses.width, self.poses.height, self.poses.fps], sort_keys=True).encode())
        h.update(b"detect" if self.reference_pose is None else np.ascontiguousarray(self.reference_pose, np.float32).tobytes())
        h.update(json.dumps(self.options.to_dict(), sort_keys=True).encode())
        return "o2a-" + h.hexdigest()[:40]


# --- messages from the worker to the main thread ------------------------------------------------

@dataclass(frozen=True)
class MsgSubmitted:
    key: str
    job_id: str


@dataclass(frozen=True)
class MsgProgress:
    key: str
    state: str          # QUEUED / RUNNING / DOWNLOADING
    progress: float
    eta_s: float
    message: str = ""


@dataclass(frozen=True)
class MsgDone:
    key: str
    job_id: str
    state: str          # SUCCEEDED / FAILED / CANCELLED / DETACHED
    message: str
    frames: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)


Message = MsgSubmitted | MsgProgress | MsgDone


class JobFailed(RuntimeError):
    """A job could not be submitted or watched; the message is meant for the user.

    ``unreachable`` is True when the server could not be reached (worth re-running later: the farm
    exits with its own code for it, and a recorded job id resumes).
    """

    unreachable = False


def frame_path(out_dir: str | Path, index: int) -> Path:
    return Path(out_dir) / f"frame_{index:05d}.png"


def run_job(
    settings: ServerSettings,
    out_dir: str | Path,
    emit: Callable[[Message], None],
    *,
    key: str = "job",
    snapshot: ShotSnapshot | None = None,
    job_id: str = "",
    should_cancel: Callable[[], bool] = lambda: False,
    should_detach: Callable[[], bool] = lambda: False,
    client_factory=None,
) -> MsgDone:
    """Submit (or re-attach to ``job_id``), follow progress, download frames; returns the final message.

    ``should_cancel`` = True requests cancellation on the server (the job ends CANCELLED);
    ``should_detach`` = True stops watching but leaves the job running (state DETACHED; re-attach
    later with its id). Network errors raise ``JobFailed`` with a readable message; the progress
    stream is re-opened after drops.
    """
    from . import remote  # grpc is imported only when a job really runs

    client = (client_factory or remote.RemoteClient)(settings)
    try:
        if not job_id:
            if snapshot is None:
                raise JobFailed("nothing to submit: no shot snapshot and no job id")
            job_id = client.submit(snapshot)
            emit(MsgSubmitted(key, job_id))
        final = client.follow(job_id, lambda st, p, eta, msg: emit(MsgProgress(key, st, p, eta, msg)),
                              should_cancel, should_detach)
        if final.state != "SUCCEEDED":
            return MsgDone(key, job_id, final.state, final.message, (), final.settings)
        emit(MsgProgress(key, "DOWNLOADING", 1.0, 0.0, "downloading frames"))
        paths = client.download(job_id, Path(out_dir), frame_path)
        return MsgDone(key, job_id, "SUCCEEDED", f"{len(paths)} frames", tuple(str(p) for p in paths), final.settings)
    finally:
        client.close()


class JobRunner:
    """Owns the worker threads and the message queue of one Blender session."""

    def __init__(self, client_factory=None):
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._threads: dict[str, threading.Thread] = {}
        self._cancel: dict[str, threading.Event] = {}
        self._detach: dict[str, threading.Event] = {}
        self._client_factory = client_factory

    def start(self, key: str, settings: ServerSettings, out_dir: str, *, snapshot: ShotSnapshot | None = None,
              job_id: str = "") -> None:
        if key in self._threads and self._threads[key].is_alive():
            raise JobFailed(f"job {key} is already being watched")
        cancel, detach = threading.Event(), threading.Event()

        def body():
            try:
                done = run_job(settings, out_dir, self._queue.put, key=key, snapshot=snapshot, job_id=job_id,
                               should_cancel=cancel.is_set, should_detach=detach.is_set,
                               client_factory=self._client_factory)
            except JobFailed as exc:
                done = MsgDone(key, job_id, "FAILED", str(exc))
            except Exception as exc:  # noqa: BLE001 - the worker's top level: report, never die silently
                done = MsgDone(key, job_id, "FAILED", f"internal error: {type(exc).__name__}: {exc}")
            self._queue.put(done)

        thread = threading.Thread(target=body, name=f"o2a-job-{key}", daemon=True)
        self._threads[key], self._cancel[key], self._detach[key] = thread, cancel, detach
        thread.start()

    def cancel(self, key: str) -> bool:
        """Ask the server to cancel the job watched under ``key``; False when it is not watched."""
        if not self.watching(key):
            return False
        self._cancel[key].set()
        return True

    def watching(self, key: str) -> bool:
        t = self._threads.get(key)
        return t is not None and t.is_alive()

    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads.values()) or not self._queue.empty()

    def pump(self, limit: int = 100) -> list[Message]:
        out: list[Message] = []
        while len(out) < limit:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def shutdown(self, timeout: float = 2.0) -> None:
        """Stop watching (jobs keep running on the server; they can be re-attached later)."""
        for detach in self._detach.values():
            detach.set()
        for t in self._threads.values():
            t.join(timeout)
        self._threads.clear()
        self._cancel.clear()
        self._detach.clear()
