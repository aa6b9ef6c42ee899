"""COCO-WholeBody-133 keypoint format shared by the add-on, the protocol and the server.

One person per frame, 133 points in COCO-WholeBody order:

| range    | part                         |
|----------|------------------------------|
| 0..16    | body (COCO-17)               |
| 17..22   | feet (L big toe, L small toe, L heel, R big toe, R small toe, R heel) |
| 23..90   | face (68 iBUG landmarks)     |
| 91..111  | left hand (21)               |
| 112..132 | right hand (21)              |

Each point is ``(x, y, confidence)``: pixel coordinates with the origin at the top-left corner and y pointing down,
confidence in [0, 1] where 0 means "missing" (its coordinates are then ignored).

JSON sequence format (written by the Blender add-on, read by ``o2a-pose`` and the server)::

    {"layout": "coco_wholebody_133", "width": 1280, "height": 720, "fps": 24.0,
     "frames": [{"frame": 1, "keypoints": [[x, y, c], ... 133 entries]}, ...]}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

LAYOUT = "coco_wholebody_133"
NUM_KEYPOINTS = 133

BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

# COCO-17 body indices used by conversions and alignment.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER = 5, 6
L_HIP, R_HIP = 11, 12


class KeypointError(ValueError):
    """Bad keypoint input. The message names the offending field and, where it applies, the frame."""

    def __init__(self, message: str, *, field: str, frame: int | None = None) -> None:
        where = field if frame is None else f"{field} (frame {frame})"
        super().__init__(f"{where}: {message}")
        self.field = field
        self.frame = frame


def validate_keypoints(keypoints: Any, *, frame: int | None = None, field: str = "keypoints") -> np.ndarray:
    """Check one frame of keypoints and return it as a float64 (133, 3) array.

    Raises KeypointError for a wrong shape, NaN/inf values or confidences outside [0, 1].
    """
    try:
        arr = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise KeypointError(f"not a numeric array ({exc})", field=field, frame=frame) from exc
    if arr.shape != (NUM_KEYPOINTS, 3):
        raise KeypointError(
            f"expected shape ({NUM_KEYPOINTS}, 3) = [x, y, confidence] per COCO-WholeBody point, got {arr.shape}",
            field=field,
            frame=frame,
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        point, column = np.argwhere(bad)[0]
        raise KeypointError(
            f"non-finite value {arr[point, column]} at point {point}, column {'xyc'[column]}",
            field=field,
            frame=frame,
        )
    conf = arr[:, 2]
    out = (conf < 0.0) | (conf > 1.0)
    if out.any():
        point = int(np.argmax(out))
        raise KeypointError(
            f"confidence {conf[point]} at point {point} is outside [0, 1] (0 = missing)",
            field=field,
            frame=frame,
        )
    return arr


def validate_canvas(width: Any, height: Any) -> tuple[int, int]:
    """Frame size in pixels: both must be integers > 0."""
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)):
            raise KeypointError(f"must be a positive integer, got {value!r}", field=name)
        if not math.isfinite(float(value)) or float(value) != int(value) or int(value) <= 0:
            raise KeypointError(f"must be a positive integer, got {value!r}", field=name)
    return int(width), int(height)


@dataclass(frozen=True)
class PoseFrame:
    """One person's 133 keypoints for one frame, float64 (133, 3) in pixels."""

    keypoints: np.ndarray
    frame: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "keypoints", validate_keypoints(self.keypoints, frame=self.frame))

    @property
    def visible(self) -> np.ndarray:
        """Boolean (133,) mask of points with confidence > 0."""
        return self.keypoints[:, 2] > 0


@dataclass(frozen=True)
class PoseSequence:
    """A keypoint sequence on a ``width`` x ``height`` canvas at ``fps`` frames per second."""

    width: int
    height: int
    fps: float
    frames: tuple[PoseFrame, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        width, height = validate_canvas(self.width, self.height)
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        try:
            fps = float(self.fps)
        except (TypeError, ValueError) as exc:
            raise KeypointError(f"must be a number > 0, got {self.fps!r}", field="fps") from exc
        if not math.isfinite(fps) or fps <= 0:
            raise KeypointError(f"must be a number > 0, got {self.fps!r}", field="fps")
        object.__setattr__(self, "fps", fps)
        frames = tuple(self.frames)
        for i, item in enumerate(frames):
            if not isinstance(item, PoseFrame):
                raise KeypointError(f"expected PoseFrame, got {type(item).__name__}", field="frames", frame=i)
        object.__setattr__(self, "frames", frames)

    def __len__(self) -> int:
        return len(self.frames)

    def array(self) -> np.ndarray:
        """All frames as one float64 (N, 133, 3) array."""
        if not self.frames:
            return np.zeros((0, NUM_KEYPOINTS, 3))
        return np.stack([f.keypoints for f in self.frames])

    @classmethod
    def from_array(
        cls, keypoints: np.ndarray, width: int, height: int, fps: float, first_frame: int = 0
    ) -> "PoseSequence":
        """Build from an (N, 133, 3) array; frame numbers count up from ``first_frame``."""
        arr = np.asarray(keypoints, dtype=np.float64)
        if arr.ndim != 3:
            raise KeypointError(f"expected (N, {NUM_KEYPOINTS}, 3), got shape {arr.shape}", field="keypoints")
        return cls(width, height, fps, tuple(PoseFrame(arr[i], first_frame + i) for i in range(arr.shape[0])))

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "layout": LAYOUT,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": [{"frame": f.frame, "keypoints": f.keypoints.tolist()} for f in self.frames],
        }

    @classmethod
    def from_json_dict(cls, data: Any) -> "PoseSequence":
        """Parse the JSON sequence format, validating every field (errors name the field and frame index)."""
        if not isinstance(data, dict):
            raise KeypointError(f"expected a JSON object, got {type(data).__name__}", field="document")
        layout = data.get("layout", LAYOUT)
        if layout != LAYOUT:
            raise KeypointError(f"unsupported layout {layout!r}; expected {LAYOUT!r}", field="layout")
        for key in ("width", "height", "frames"):
            if key not in data:
                raise KeypointError("missing", field=key)
        frames_in = data["frames"]
        if not isinstance(frames_in, list):
            raise KeypointError(f"expected a list, got {type(frames_in).__name__}", field="frames")
        frames = []
        for i, item in enumerate(frames_in):
            if not isinstance(item, dict) or "keypoints" not in item:
                raise KeypointError("expected an object with 'keypoints'", field="frames", frame=i)
            number = item.get("frame", i)
            if isinstance(number, bool) or not isinstance(number, int):
                raise KeypointError(f"frame number must be an integer, got {number!r}", field="frame", frame=i)
            frames.append(PoseFrame(validate_keypoints(item["keypoints"], frame=i), number))
        return cls(data["width"], data["height"], data.get("fps", 24.0), tuple(frames))


def load_sequence(path: str | os.PathLike[str]) -> PoseSequence:
    """Read a keypoint sequence JSON file."""
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise KeypointError(f"invalid JSON ({exc})", field="document") from exc
    return PoseSequence.from_json_dict(data)


def save_sequence(sequence: PoseSequence, path: str | os.PathLike[str]) -> None:
    """Write a keypoint sequence JSON file (atomically: temp file, then rename)."""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(sequence.to_json_dict(), fh)
    os.replace(tmp, path)


def empty_frame(frame: int = 0) -> PoseFrame:
    """A frame with every point missing (draws as a black "no pose" image)."""
    return PoseFrame(np.zeros((NUM_KEYPOINTS, 3)), frame)


def stack_frames(frames: Iterable[PoseFrame] | Sequence[np.ndarray]) -> np.ndarray:
    """(N, 133, 3) float64 array from PoseFrames or raw arrays (raw arrays are validated)."""
    out = []
    for i, item in enumerate(frames):
        out.append(item.keypoints if isinstance(item, PoseFrame) else validate_keypoints(item, frame=i))
    return np.stack(out) if out else np.zeros((0, NUM_KEYPOINTS, 3))
