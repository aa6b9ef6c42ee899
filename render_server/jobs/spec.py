"""Domain types of the job layer: what a job asks for (`JobSpec`), where it is (`JobState`), what went wrong.

Stdlib only. The service layer turns a validated `SubmitJobRequest` into a `JobSpec`; the worker turns a `JobSpec`
into engine calls. Enum-like settings are plain lower-case strings so the spec round-trips through JSON (the
SQLite store keeps it as text) without a proto dependency.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, fields
from typing import Any


class JobState(str, enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


# Allowed values of the string-valued settings (mirrors the proto enums, minus UNSPECIFIED).
GUIDANCE_MODES = ("standard", "pose_last", "none")
FACE_LIGHTENING_MODES = ("auto", "on", "off")
ALIGNMENT_MODES = ("reference_retarget", "reference", "pose", "pose_retarget")
CHUNK_PLANS = ("default", "official")
IMAGE_POSE_TRANSFER_MODES = ("auto", "per_frame")


@dataclass(frozen=True)
class JobSpec:
    """Everything needed to (re)run a job, with defaults already applied.

    Large inputs live in files next to the job (the reference image as a content-addressed asset, the keypoint
    arrays as .npy in the job folder); the spec only names them.
    """

    model_id: str
    reference_asset_id: str
    detect_reference_pose: bool
    canvas_width_px: int
    canvas_height_px: int
    frame_count: int
    width_px: int
    height_px: int
    fps: float
    seed: int
    steps: int
    image_guidance_scale: float
    pose_guidance_scale: float
    guidance_mode: str
    face_lightening: str
    alignment_mode: str
    chunk_plan: str
    image_pose_transfer: str
    priority: int
    lease_s: int  # 0 = no lease
    prompt: str
    negative_prompt: str | None  # None = the model's default negative prompt
    display_name: str = ""
    head_lightening: bool = False
    same_skeleton: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class JobError:
    """A job failure expressed as a gRPC status code name plus a message and a hint for the user."""

    code: str  # grpc.StatusCode name, e.g. "RESOURCE_EXHAUSTED"
    message: str
    hint: str = ""
    retryable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "JobError | None":
        return cls(**data) if data else None


@dataclass(frozen=True)
class OutputFileInfo:
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class JobRecord:
    """A snapshot of one row of the job store."""

    job_id: str
    client_request_id: str
    request_hash: str
    spec: JobSpec
    state: JobState
    queue_position: int
    segments_total: int
    segments_done: int
    frames_done: int
    progress: float
    eta_s: float
    created_ms: int
    started_ms: int
    finished_ms: int
    error: JobError | None
    cancel_requested: bool
    last_event_sequence: int
    output_files: tuple[OutputFileInfo, ...]
    resume_count: int


@dataclass(frozen=True)
class EventRecord:
    """One stored job event. `kind` is "state", "step", "preview" or "frames"; `payload` is JSON-able."""

    job_id: str
    sequence: int
    time_ms: int
    kind: str
    payload: dict[str, Any]
    blob: bytes | None = None
