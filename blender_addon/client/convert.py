"""Keypoint sequences (PoseSequence, numpy arrays, JSON/NPZ files) and render options -> protocol messages.

Pure numpy + protobuf. The inverse conversions exist for round-trip tests and for tools that read a pose-sequence
asset back. Enum options are given by their short name ("pose_last", "reference_retarget"), case-insensitive, or
by the full proto name; unknown names raise `InvalidRequest` naming the option.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..pose.types import NUM_KEYPOINTS, PoseFormatError, PoseSequence
from ._generated import render_service_pb2 as pb
from .errors import InvalidRequest

# Option name -> (proto enum wrapper, prefix of its value names).
_ENUMS = {
    "guidance_mode": (pb.GuidanceMode, "GUIDANCE_MODE_"),
    "face_lightening": (pb.FaceLighteningMode, "FACE_LIGHTENING_MODE_"),
    "alignment_mode": (pb.AlignmentMode, "ALIGNMENT_MODE_"),
    "chunk_plan": (pb.ChunkPlan, "CHUNK_PLAN_"),
    "image_pose_transfer": (pb.ImagePoseTransferMode, "IMAGE_POSE_TRANSFER_MODE_"),
}


def enum_choices(option: str) -> list[str]:
    """Short lower-case names accepted for an enum option, e.g. ['standard', 'pose_last', 'none']."""
    wrapper, prefix = _ENUMS[option]
    return [name[len(prefix):].lower() for name in wrapper.keys() if not name.endswith("_UNSPECIFIED")]


def enum_value(option: str, value: str | int | None) -> int:
    """'pose_last' / 'POSE_LAST' / 'GUIDANCE_MODE_POSE_LAST' / 2 -> 2; None or '' -> 0 (server default)."""
    wrapper, prefix = _ENUMS[option]
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in wrapper.values():
            raise InvalidRequest(f"{option}: unknown value {value}", field=option)
        return value
    name = str(value).strip().upper()
    if not name.startswith(prefix):
        name = prefix + name
    try:
        return wrapper.Value(name)
    except ValueError:
        raise InvalidRequest(f"{option}: unknown value {value!r}; choose one of {', '.join(enum_choices(option))}",
                             field=option) from None


def enum_name(option: str, number: int) -> str:
    """2 -> 'pose_last' (the inverse of enum_value)."""
    wrapper, prefix = _ENUMS[option]
    return wrapper.Name(number)[len(prefix):].lower()


# -- keypoints ---------------------------------------------------------------------------------------------------


def pose_to_pb(keypoints: np.ndarray, field: str = "keypoints") -> pb.Pose:
    """(133, 3) x_px, y_px, confidence -> Pose."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise InvalidRequest(f"{field}: expected shape ({NUM_KEYPOINTS}, 3), got {kp.shape}", field=field)
    _check_values(kp, field)
    return pb.Pose(keypoints=kp.reshape(-1).tolist())


def pose_from_pb(message: pb.Pose) -> np.ndarray:
    values = np.asarray(message.keypoints, dtype=np.float32)
    if values.size != NUM_KEYPOINTS * 3:
        raise InvalidRequest(f"keypoints: expected {NUM_KEYPOINTS * 3} values, got {values.size}", field="keypoints")
    return values.reshape(NUM_KEYPOINTS, 3)


def sequence_to_pb(seq: PoseSequence) -> pb.PoseSequence:
    """PoseSequence (N, 133, 3) -> pb.PoseSequence, one Pose per frame (float32 on the wire)."""
    if len(seq) == 0:
        raise InvalidRequest("driving_poses.frames: the sequence has no frame", field="driving_poses.frames")
    flat = np.ascontiguousarray(seq.keypoints, dtype=np.float32).reshape(len(seq), -1)
    message = pb.PoseSequence(canvas_width_px=seq.width, canvas_height_px=seq.height, fps=seq.fps)
    # One list per frame: protobuf's repeated-float extend is the fast path (no per-value Python objects kept).
    for row in flat:
        message.frames.add().keypoints.extend(row.tolist())
    return message


def sequence_from_pb(message: pb.PoseSequence) -> PoseSequence:
    frames = [pose_from_pb(p) for p in message.frames]
    kp = np.stack(frames) if frames else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
    return PoseSequence(kp, message.canvas_width_px, message.canvas_height_px, message.fps)


def sequence_from_array(keypoints: np.ndarray, width: int, height: int, fps: float) -> PoseSequence:
    """(N, 133, 3) or (N, 399) array -> PoseSequence, raising InvalidRequest with the field on bad input."""
    arr = np.asarray(keypoints, dtype=np.float32)
    if arr.ndim == 2 and arr.shape[1] == NUM_KEYPOINTS * 3:
        arr = arr.reshape(len(arr), NUM_KEYPOINTS, 3)
    if arr.ndim == 2 and arr.shape == (NUM_KEYPOINTS, 3):
        arr = arr[None]
    try:
        return PoseSequence(arr, width, height, fps)
    except PoseFormatError as exc:
        raise InvalidRequest(f"driving_poses.{exc}", field="driving_poses") from None


def load_sequence(path: str | Path, *, width: int = 0, height: int = 0, fps: float = 0.0) -> PoseSequence:
    """Reads a keypoint sequence file.

    * ``.json``: the add-on's PoseSequence JSON (``{"layout": "coco_wholebody_133", "width", "height", "fps",
      "frames": [{"frame", "keypoints": [[x, y, c] * 133]}]}``).
    * ``.npz``: arrays ``keypoints`` (N, 133, 3) plus ``width``, ``height``, ``fps`` (or the keyword arguments).
    * ``.npy``: a (N, 133, 3) array; ``width``, ``height`` and ``fps`` must be given.
    Keyword arguments override the file's canvas and fps when non-zero.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"keypoints: no such file {path}", field="keypoints")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            seq = PoseSequence.load_json(path)
            kp, w, h, f = seq.keypoints, seq.width, seq.height, seq.fps
        elif suffix in (".npz", ".npy"):
            data = np.load(path, allow_pickle=False)
            if suffix == ".npz":
                if "keypoints" not in data:
                    raise InvalidRequest(f"{path}: the .npz has no 'keypoints' array", field="keypoints")
                kp = data["keypoints"]
                w = int(data["width"]) if "width" in data else 0
                h = int(data["height"]) if "height" in data else 0
                f = float(data["fps"]) if "fps" in data else 0.0
            else:
                kp, w, h, f = data, 0, 0, 0.0
        else:
            raise InvalidRequest(f"keypoints: {path.name}: expected a .json, .npz or .npy file", field="keypoints")
    except (PoseFormatError, ValueError, OSError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest(f"keypoints: {path}: {exc}", field="keypoints") from None
    w, h, f = width or w, height or h, fps or f
    if not w or not h:
        raise InvalidRequest(f"keypoints: {path.name} does not say its canvas size; pass --width/--height of the "
                             "canvas the keypoints are in", field="driving_poses.canvas_width_px")
    return sequence_from_array(kp, w, h, f or 24.0)


def load_pose(path: str | Path) -> np.ndarray:
    """Reads one (133, 3) pose: a JSON list of 133 [x, y, c], {"keypoints": ...}, a one-frame PoseSequence JSON,
    or a .npy array."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            data = json.loads(path.read_text())
            if isinstance(data, dict) and "frames" in data:
                arr = PoseSequence.from_json_dict(data).keypoints[0]
            else:
                arr = data["keypoints"] if isinstance(data, dict) else data
        arr = np.asarray(arr, dtype=np.float32).reshape(-1)
    except (OSError, ValueError, KeyError, TypeError, IndexError, PoseFormatError) as exc:
        raise InvalidRequest(f"reference_pose: cannot read {path}: {exc}", field="reference_pose") from None
    if arr.size != NUM_KEYPOINTS * 3:
        raise InvalidRequest(f"reference_pose: {path.name} has {arr.size} values, expected {NUM_KEYPOINTS * 3}",
                             field="reference_pose")
    return arr.reshape(NUM_KEYPOINTS, 3)


def _check_values(kp: np.ndarray, field: str) -> None:
    if not np.isfinite(kp).all():
        i = int(np.argwhere(~np.isfinite(kp))[0][0])
        raise InvalidRequest(f"{field}: keypoint {i} is NaN or infinite", field=field)
    conf = kp[..., 2]
    if (conf < 0).any() or (conf > 1).any():
        raise InvalidRequest(f"{field}: confidences must lie in [0, 1]", field=field)


# -- options -> request ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RenderOptions:
    """Everything of SubmitJobRequest except the inputs. Zero / None / '' means "server default"."""

    width_px: int = 0
    height_px: int = 0
    fps: float = 0.0
    seed: Optional[int] = None
    steps: int = 0
    image_guidance_scale: Optional[float] = None
    pose_guidance_scale: Optional[float] = None
    guidance_mode: str | int = ""
    face_lightening: str | int = ""
    alignment_mode: str | int = ""
    chunk_plan: str | int = ""
    image_pose_transfer: str | int = ""
    priority: int = 0
    lease_s: Optional[int] = None
    prompt: str = ""
    negative_prompt: Optional[str] = None
    display_name: str = ""
    head_lightening: bool = False
    same_skeleton: bool = False

    def __post_init__(self) -> None:
        if (self.width_px == 0) != (self.height_px == 0):
            raise InvalidRequest("width_px/height_px: give both or neither", field="width_px")
        if self.fps and not (math.isfinite(self.fps) and self.fps > 0):
            raise InvalidRequest(f"fps: must be positive, got {self.fps}", field="fps")
        for option in _ENUMS:
            enum_value(option, getattr(self, option))  # validates early, with the option name

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RenderOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidRequest(f"options: unknown option(s) {', '.join(unknown)}", field=unknown[0])
        return cls(**data)


def build_submit_request(
    poses: PoseSequence,
    reference_image: bytes,
    reference_pose: np.ndarray | None,
    options: RenderOptions | None = None,
    *,
    client_request_id: str = "",
) -> pb.SubmitJobRequest:
    """The SubmitJobRequest for a shot; `reference_pose` None asks the server to detect it."""
    if not reference_image:
        raise InvalidRequest("reference_image: empty", field="reference_image")
    options = options or RenderOptions()
    request = pb.SubmitJobRequest(
        client_request_id=client_request_id,
        reference_image=bytes(reference_image),
        driving_poses=sequence_to_pb(poses),
        width_px=options.width_px, height_px=options.height_px, fps=options.fps, steps=options.steps,
        priority=options.priority, prompt=options.prompt, display_name=options.display_name,
        head_lightening=options.head_lightening, same_skeleton=options.same_skeleton,
        **{option: enum_value(option, getattr(options, option)) for option in _ENUMS},
    )
    if reference_pose is None:
        request.reference_pose.detect = True
    else:
        request.reference_pose.keypoints.CopyFrom(pose_to_pb(reference_pose, "reference_pose.keypoints"))
    for name in ("seed", "image_guidance_scale", "pose_guidance_scale", "lease_s", "negative_prompt"):
        value = getattr(options, name)
        if value is not None:
            setattr(request, name, value)
    return request


def options_from_request(request: pb.SubmitJobRequest) -> RenderOptions:
    """The RenderOptions a request was built from (round trip of build_submit_request)."""
    values: dict[str, Any] = {
        f.name: getattr(request, f.name) for f in fields(RenderOptions)
        if f.name not in _ENUMS and f.name not in ("seed", "image_guidance_scale", "pose_guidance_scale",
                                                   "lease_s", "negative_prompt")
    }
    for option in _ENUMS:
        number = getattr(request, option)
        values[option] = enum_name(option, number) if number else ""
    for name in ("seed", "image_guidance_scale", "pose_guidance_scale", "lease_s", "negative_prompt"):
        values[name] = getattr(request, name) if request.HasField(name) else None
    return RenderOptions(**values)
