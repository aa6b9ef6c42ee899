"""Validation of incoming requests. Every problem raises `RequestError` naming the field and the gRPC code.

Nothing here trusts the client: enum numbers may be unknown (proto3 enums are open), floats may be NaN, repeated
fields may have any length, bytes may be anything. Validation is cheap and happens before anything is stored.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass

import grpc
import numpy as np

from .._generated import render_service_pb2 as pb
from ..storage.assets import AssetError, AssetStore, parse_asset_id
from ..storage.images import ImageError, decode_rgb
from .limits import ModelFacts, ServerLimits

NUM_KEYPOINTS = 133
# Used with fullmatch (a `$` anchor would accept a trailing newline).
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_JOB_ID_RE = re.compile(r"job-[0-9a-f]{32}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
PAGE_TOKEN_RE = re.compile(r"[0-9]{1,18}")
_MAX_COORD = 1e6  # keypoints may lie off-canvas, but not absurdly far

GUIDANCE = {pb.GUIDANCE_MODE_UNSPECIFIED: "standard", pb.GUIDANCE_MODE_STANDARD: "standard",
            pb.GUIDANCE_MODE_POSE_LAST: "pose_last", pb.GUIDANCE_MODE_NONE: "none"}
FACE = {pb.FACE_LIGHTENING_MODE_UNSPECIFIED: "auto", pb.FACE_LIGHTENING_MODE_AUTO: "auto",
        pb.FACE_LIGHTENING_MODE_ON: "on", pb.FACE_LIGHTENING_MODE_OFF: "off"}
ALIGNMENT = {pb.ALIGNMENT_MODE_UNSPECIFIED: "reference_retarget",
             pb.ALIGNMENT_MODE_REFERENCE_RETARGET: "reference_retarget",
             pb.ALIGNMENT_MODE_REFERENCE: "reference", pb.ALIGNMENT_MODE_POSE: "pose",
             pb.ALIGNMENT_MODE_POSE_RETARGET: "pose_retarget"}
CHUNK_PLAN = {pb.CHUNK_PLAN_UNSPECIFIED: "default", pb.CHUNK_PLAN_DEFAULT: "default",
              pb.CHUNK_PLAN_OFFICIAL: "official"}
TRANSFER = {pb.IMAGE_POSE_TRANSFER_MODE_UNSPECIFIED: "auto", pb.IMAGE_POSE_TRANSFER_MODE_AUTO: "auto",
            pb.IMAGE_POSE_TRANSFER_MODE_PER_FRAME: "per_frame"}
ASSET_KINDS = {pb.ASSET_KIND_REFERENCE_IMAGE: "reference_image", pb.ASSET_KIND_POSE_SEQUENCE: "pose_sequence"}


class RequestError(Exception):
    """A request problem: `code` is the gRPC status, the message starts with the field name."""

    def __init__(self, field: str, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code


@dataclass(frozen=True)
class Submission:
    """A validated SubmitJobRequest: settings with defaults applied, decoded arrays, the reference bytes."""

    client_request_id: str
    request_hash: str
    reference_bytes: bytes | None  # inline image (to store as an asset), or None
    reference_asset_id: str | None  # an uploaded asset, or None
    reference_size: tuple[int, int]  # (width, height) of the decoded reference
    reference_pose: np.ndarray | None  # float32 (133, 3); None = detect
    driving: np.ndarray  # float32 (N, 133, 3)
    canvas: tuple[int, int]
    settings: dict  # JobSpec fields except model_id / reference_asset_id / canvas / frame_count


def request_hash(request: pb.SubmitJobRequest) -> str:
    """SHA-256 of the request content without its idempotency key (deterministic serialization)."""
    copy = pb.SubmitJobRequest()
    copy.CopyFrom(request)
    copy.client_request_id = ""
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()


def check_job_id(job_id: str, field: str = "job_id") -> str:
    if not job_id:
        raise RequestError(field, "required")
    if not _JOB_ID_RE.fullmatch(job_id):
        raise RequestError(field, f"malformed job id {job_id[:80]!r} (expected 'job-' + 32 hex digits)")
    return job_id


def check_enum(value: int, table: dict, field: str) -> str:
    if value not in table:
        raise RequestError(field, f"unknown enum value {value}")
    return table[value]


def check_chunk_bytes(value: int, field: str = "max_chunk_bytes") -> int:
    if value == 0:
        return 1 << 20
    if not 4096 <= value <= 3 << 20:
        raise RequestError(field, f"must be 0 or in [4096, {3 << 20}], got {value}")
    return value


def keypoints_array(values, field: str, *, allow_missing_all: bool = True) -> np.ndarray:
    """399 floats -> float32 (133, 3), checking count, finiteness, coordinate range and confidence range."""
    n = len(values)
    if n != NUM_KEYPOINTS * 3:
        raise RequestError(field, f"expected {NUM_KEYPOINTS * 3} values (133 x, y, confidence), got {n}")
    arr = np.asarray(values, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    return _check_keypoints(arr, field)


def _check_keypoints(arr: np.ndarray, field: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        i = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise RequestError(field, f"keypoint {i} has a NaN or infinite value")
    conf = arr[..., 2]
    if (conf < 0).any() or (conf > 1).any():
        i = int(np.argwhere((conf < 0) | (conf > 1)).reshape(-1, conf.ndim)[0][-1])
        raise RequestError(field, f"confidence of keypoint {i} must be in [0, 1]")
    if (np.abs(arr[..., :2]) > _MAX_COORD).any():
        raise RequestError(field, f"coordinates must be within +-{_MAX_COORD:g} pixels")
    return arr.astype(np.float32)


def validate_pose_sequence(seq: pb.PoseSequence, limits: ServerLimits, field: str) -> tuple[np.ndarray, int, int, float]:
    """Returns (keypoints (N, 133, 3) float32, canvas width, canvas height, fps)."""
    for name in ("canvas_width_px", "canvas_height_px"):
        value = getattr(seq, name)
        if not 1 <= value <= limits.max_canvas_px:
            raise RequestError(f"{field}.{name}", f"must be in [1, {limits.max_canvas_px}], got {value}")
    if not (math.isfinite(seq.fps) and 0 < seq.fps <= 240):
        raise RequestError(f"{field}.fps", f"must be in (0, 240], got {seq.fps}")
    n = len(seq.frames)
    if n == 0:
        raise RequestError(f"{field}.frames", "at least one frame is required")
    if n > limits.max_frames:
        raise RequestError(f"{field}.frames", f"{n} frames exceed the server limit of {limits.max_frames}")
    for i, frame in enumerate(seq.frames):
        if len(frame.keypoints) != NUM_KEYPOINTS * 3:
            raise RequestError(
                f"{field}.frames[{i}].keypoints",
                f"expected {NUM_KEYPOINTS * 3} values (133 x, y, confidence), got {len(frame.keypoints)}",
            )
    arr = np.asarray([list(f.keypoints) for f in seq.frames], dtype=np.float64).reshape(n, NUM_KEYPOINTS, 3)
    bad = ~np.isfinite(arr).all(axis=(1, 2)) | (arr[..., 2] < 0).any(axis=1) | (arr[..., 2] > 1).any(axis=1)
    bad |= (np.abs(arr[..., :2]) > _MAX_COORD).any(axis=(1, 2))
    if bad.any():
        i = int(np.argmax(bad))
        _check_keypoints(arr[i], f"{field}.frames[{i}].keypoints")
    return arr.astype(np.float32), seq.canvas_width_px, seq.canvas_height_px, float(seq.fps)


def validate_submit(
    request: pb.SubmitJobRequest, *, limits: ServerLimits, model: ModelFacts, assets: AssetStore
) -> Submission:
    if request.client_request_id and not _REQUEST_ID_RE.fullmatch(request.client_request_id):
        raise RequestError("client_request_id", "must be 1..128 characters of [A-Za-z0-9._:-]")

    # Reference image.
    which = request.WhichOneof("reference")
    if which is None:
        raise RequestError("reference_image", "required (or reference_image_asset_id)")
    reference_bytes: bytes | None = None
    reference_asset_id: str | None = None
    if which == "reference_image":
        if len(request.reference_image) > limits.max_inline_image_bytes:
            raise RequestError(
                "reference_image",
                f"{len(request.reference_image)} bytes exceed {limits.max_inline_image_bytes}; use UploadAsset",
            )
        reference_bytes = request.reference_image
        data = reference_bytes
        field = "reference_image"
    else:
        field = "reference_image_asset_id"
        reference_asset_id = request.reference_image_asset_id
        data = _read_asset(assets, reference_asset_id, "reference_image", field)
    try:
        reference = decode_rgb(data, max_pixels=limits.max_reference_pixels)
    except ImageError as exc:
        raise RequestError(field, str(exc)) from None
    ref_h, ref_w = reference.shape[:2]

    # Reference pose.
    if not request.HasField("reference_pose") or request.reference_pose.WhichOneof("source") is None:
        raise RequestError("reference_pose", "required: keypoints, or detect = true")
    reference_pose = None
    if request.reference_pose.WhichOneof("source") == "detect":
        if not request.reference_pose.detect:
            raise RequestError("reference_pose.detect", "false is not a source: send keypoints or detect = true")
        if not model.pose_detection_available:
            raise RequestError("reference_pose.detect", "this server has no pose detector; send keypoints",
                               grpc.StatusCode.FAILED_PRECONDITION)
    else:
        reference_pose = keypoints_array(request.reference_pose.keypoints.keypoints, "reference_pose.keypoints.keypoints")

    # Driving poses.
    which = request.WhichOneof("driving")
    if which is None:
        raise RequestError("driving_poses", "required (or driving_poses_asset_id)")
    if which == "driving_poses":
        driving, canvas_w, canvas_h, driving_fps = validate_pose_sequence(request.driving_poses, limits, "driving_poses")
    else:
        raw = _read_asset(assets, request.driving_poses_asset_id, "pose_sequence", "driving_poses_asset_id")
        driving, canvas_w, canvas_h, driving_fps = parse_pose_sequence_asset(raw, limits, "driving_poses_asset_id")
    frame_count = int(driving.shape[0])

    # Output size.
    width, height = request.width_px, request.height_px
    multiple = model.size_multiple_px
    if width == 0 and height == 0:
        width, height = default_output_size(ref_w, ref_h, model.default_max_short_side_px, multiple)
        if width == 0 or height == 0:
            raise RequestError("reference_image", f"{ref_w}x{ref_h} is too small for {multiple}-pixel multiples")
    else:
        for name, value in (("width_px", width), ("height_px", height)):
            if value == 0:
                raise RequestError(name, "set both width_px and height_px, or neither")
            if value % multiple:
                raise RequestError(name, f"must be a multiple of {multiple}, got {value}")
            if value > limits.max_canvas_px:
                raise RequestError(name, f"must be <= {limits.max_canvas_px}, got {value}")
    if width * height > limits.max_output_pixels:
        raise RequestError("width_px", f"{width}x{height} exceeds the limit of {limits.max_output_pixels} pixels")

    fps = request.fps
    if fps == 0:
        fps = driving_fps
    elif not (math.isfinite(fps) and 0 < fps <= 240):
        raise RequestError("fps", f"must be 0 or in (0, 240], got {fps}")

    if request.HasField("seed"):
        if request.seed >= 2**63:
            raise RequestError("seed", f"must be < 2**63, got {request.seed}")
        seed = int(request.seed)
    else:
        seed = secrets.randbelow(2**63)

    steps = request.steps or model.default_steps
    if not 1 <= steps <= limits.max_steps:
        raise RequestError("steps", f"must be 0 (default) or in [1, {limits.max_steps}], got {request.steps}")

    scales = {}
    for name, default in (("image_guidance_scale", model.default_image_guidance_scale),
                          ("pose_guidance_scale", model.default_pose_guidance_scale)):
        value = getattr(request, name) if request.HasField(name) else default
        if not (math.isfinite(value) and 0 <= value <= limits.max_guidance_scale):
            raise RequestError(name, f"must be in [0, {limits.max_guidance_scale}], got {value}")
        scales[name] = float(value)

    guidance_mode = check_enum(request.guidance_mode, GUIDANCE, "guidance_mode")
    face = check_enum(request.face_lightening, FACE, "face_lightening")
    alignment = check_enum(request.alignment_mode, ALIGNMENT, "alignment_mode")
    plan = check_enum(request.chunk_plan, CHUNK_PLAN, "chunk_plan")
    transfer = check_enum(request.image_pose_transfer, TRANSFER, "image_pose_transfer")
    if plan == "official" and transfer == "per_frame":
        raise RequestError("chunk_plan", "CHUNK_PLAN_OFFICIAL cannot be combined with IMAGE_POSE_TRANSFER_MODE_PER_FRAME")
    if plan == "official" and frame_count < 81:
        raise RequestError("chunk_plan", f"CHUNK_PLAN_OFFICIAL needs at least 81 frames, got {frame_count}")

    if not -limits.max_priority <= request.priority <= limits.max_priority:
        raise RequestError("priority", f"must be in [-{limits.max_priority}, {limits.max_priority}], got {request.priority}")
    lease_s = 0
    if request.HasField("lease_s"):
        if not 1 <= request.lease_s <= limits.max_lease_s:
            raise RequestError("lease_s", f"must be in [1, {limits.max_lease_s}], got {request.lease_s}")
        lease_s = int(request.lease_s)
    for name, cap in (("prompt", limits.max_prompt_chars), ("negative_prompt", limits.max_prompt_chars),
                      ("display_name", limits.max_display_name_chars)):
        value = getattr(request, name)
        if len(value) > cap:
            raise RequestError(name, f"{len(value)} characters exceed {cap}")
        if "\x00" in value:
            raise RequestError(name, "must not contain NUL characters")

    settings = dict(
        detect_reference_pose=reference_pose is None,
        width_px=int(width), height_px=int(height), fps=float(fps), seed=seed, steps=int(steps),
        image_guidance_scale=scales["image_guidance_scale"], pose_guidance_scale=scales["pose_guidance_scale"],
        guidance_mode=guidance_mode, face_lightening=face, alignment_mode=alignment, chunk_plan=plan,
        image_pose_transfer=transfer, priority=int(request.priority), lease_s=lease_s, prompt=request.prompt,
        negative_prompt=request.negative_prompt if request.HasField("negative_prompt") else None,
        display_name=request.display_name, head_lightening=bool(request.head_lightening),
        same_skeleton=bool(request.same_skeleton),
    )
    return Submission(
        client_request_id=request.client_request_id,
        request_hash=request_hash(request),
        reference_bytes=reference_bytes,
        reference_asset_id=reference_asset_id,
        reference_size=(ref_w, ref_h),
        reference_pose=reference_pose,
        driving=driving,
        canvas=(canvas_w, canvas_h),
        settings=settings,
    )


def default_output_size(width: int, height: int, max_short_side: int, multiple: int) -> tuple[int, int]:
    """The official rule: cap the short side at `max_short_side` (keeping the aspect), floor to `multiple`."""
    short = min(width, height)
    scale = min(1.0, max_short_side / short)
    return (int(width * scale) // multiple * multiple, int(height * scale) // multiple * multiple)


def parse_pose_sequence_asset(raw: bytes, limits: ServerLimits, field: str) -> tuple[np.ndarray, int, int, float]:
    seq = pb.PoseSequence()
    try:
        seq.ParseFromString(raw)
    except Exception:  # protobuf raises DecodeError (or others on garbage); any means "not a PoseSequence"
        raise RequestError(field, "asset is not a serialized PoseSequence") from None
    return validate_pose_sequence(seq, limits, field)


def check_asset_info(info: pb.AssetInfo, limits: ServerLimits) -> str:
    kind = check_enum(info.kind, ASSET_KINDS, "info.kind")
    if not 1 <= info.size_bytes <= limits.max_upload_bytes:
        raise RequestError("info.size_bytes", f"must be in [1, {limits.max_upload_bytes}], got {info.size_bytes}")
    if info.sha256 and not _SHA256_RE.fullmatch(info.sha256):
        raise RequestError("info.sha256", "must be 64 lower-case hex digits or empty")
    return kind


def check_asset_id(asset_id: str, field: str) -> str:
    if not asset_id:
        raise RequestError(field, "required")
    try:
        parse_asset_id(asset_id)
    except AssetError as exc:
        raise RequestError(field, str(exc)) from None
    return asset_id


def _read_asset(assets: AssetStore, asset_id: str, kind: str, field: str) -> bytes:
    check_asset_id(asset_id, field)
    meta = assets.meta(asset_id)
    if meta is None:
        raise RequestError(field, f"unknown asset {asset_id}; upload it with UploadAsset", grpc.StatusCode.NOT_FOUND)
    if kind not in meta.kinds:
        raise RequestError(field, f"asset {asset_id} was uploaded as {', '.join(meta.kinds)}, not {kind}")
    return assets.read(asset_id)
