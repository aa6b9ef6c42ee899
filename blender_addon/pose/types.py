"""COCO-WholeBody 133 keypoint layout and the ``PoseSequence`` that leaves the add-on.

Pure numpy (no bpy): the client library and its CLI import this from plain Python.
Coordinates are image pixels with a top-left origin and y pointing down; the third column is
the confidence in [0, 1] (0 = not visible: behind the camera, outside the frame, unmapped).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LAYOUT = "coco_wholebody_133"
NUM_KEYPOINTS = 133

# Index ranges of the COCO-WholeBody layout.
BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
FEET_NAMES = (
    "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel",
)
HAND_POINT_NAMES = (
    "wrist",
    "thumb1", "thumb2", "thumb3", "thumb4",
    "index1", "index2", "index3", "index4",
    "middle1", "middle2", "middle3", "middle4",
    "ring1", "ring2", "ring3", "ring4",
    "pinky1", "pinky2", "pinky3", "pinky4",
)
KEYPOINT_NAMES: tuple[str, ...] = (
    BODY_NAMES
    + FEET_NAMES
    + tuple(f"face_{i}" for i in range(68))
    + tuple(f"left_hand_{n}" for n in HAND_POINT_NAMES)
    + tuple(f"right_hand_{n}" for n in HAND_POINT_NAMES)
)
assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS

KEYPOINT_INDEX = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


class PoseFormatError(ValueError):
    """A pose file or array does not follow the COCO-WholeBody 133 layout; the message names the field."""


@dataclass(frozen=True)
class PoseSequence:
    """Keypoints of one character over a range of frames, as seen by the render camera.

    keypoints: float32 array (num_frames, 133, 3) of (x_px, y_px, confidence).
    width, height: canvas size in pixels (the scene's render size after percentage/border crop).
    fps: frames per second of the sequence (scene fps / fps_base).
    frames: the scene frame number of each row.
    """

    keypoints: np.ndarray
    width: int
    height: int
    fps: float
    frames: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
            raise PoseFormatError(f"keypoints: expected shape (N, {NUM_KEYPOINTS}, 3), got {kp.shape}")
        if not np.all(np.isfinite(kp)):
            bad = int(np.argwhere(~np.isfinite(kp))[0][0])
            raise PoseFormatError(f"keypoints: non-finite value in frame row {bad}")
        conf = kp[..., 2]
        if np.any(conf < 0) or np.any(conf > 1):
            raise PoseFormatError("keypoints: confidence must lie in [0, 1]")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise PoseFormatError(f"width/height: must be positive, got {self.width}x{self.height}")
        if not (math.isfinite(float(self.fps)) and float(self.fps) > 0):
            raise PoseFormatError(f"fps: must be positive, got {self.fps}")
        frames = tuple(int(f) for f in self.frames) if self.frames else tuple(range(len(kp)))
        if len(frames) != len(kp):
            raise PoseFormatError(f"frames: {len(frames)} frame numbers for {len(kp)} keypoint rows")
        object.__setattr__(self, "keypoints", kp)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "frames", frames)

    def __len__(self) -> int:
        return len(self.keypoints)

    def normalized(self) -> np.ndarray:
        """(N, 133, 3) with x / width, y / height (what the DWPose-style drawers consume)."""
        out = self.keypoints.copy()
        out[..., 0] /= self.width
        out[..., 1] /= self.height
        return out

    def frame(self, i: int) -> PoseSequence:
        """A one-frame sequence (row i), e.g. for single-image pose transfer."""
        return PoseSequence(self.keypoints[i : i + 1], self.width, self.height, self.fps, self.frames[i : i + 1])

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "layout": LAYOUT,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frames": [
                {"frame": f, "keypoints": np.round(kp.astype(np.float64), 4).tolist()}
                for f, kp in zip(self.frames, self.keypoints)
            ],
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> PoseSequence:
        if data.get("layout") != LAYOUT:
            raise PoseFormatError(f"layout: expected {LAYOUT!r}, got {data.get('layout')!r}")
        for key in ("width", "height", "fps", "frames"):
            if key not in data:
                raise PoseFormatError(f"{key}: missing")
        rows, numbers = [], []
        for i, entry in enumerate(data["frames"]):
            try:
                numbers.append(int(entry["frame"]))
                rows.append(np.asarray(entry["keypoints"], dtype=np.float32))
            except (KeyError, TypeError, ValueError) as exc:
                raise PoseFormatError(f"frames[{i}]: {exc}") from exc
            if rows[-1].shape != (NUM_KEYPOINTS, 3):
                raise PoseFormatError(f"frames[{i}].keypoints: expected {NUM_KEYPOINTS} x 3, got {rows[-1].shape}")
        kp = np.stack(rows) if rows else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
        return cls(kp, data["width"], data["height"], data["fps"], tuple(numbers))

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json_dict(), separators=(",", ":")))
        tmp.replace(path)  # atomic: a farm reader never sees half a file
        return path

    @classmethod
    def load_json(cls, path: str | Path) -> PoseSequence:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise PoseFormatError(f"{path}: not JSON ({exc})") from exc
        return cls.from_json_dict(data)
