"""Confidence per keypoint from geometry: frame, camera side, facing direction, occlusion.

Pure numpy. Scores follow DWPose conventions (research notes 3.5, spec 4.7): a visible point gets
``visible`` (0.9 by default, near the training distribution), a point the camera cannot see gets 0,
and an occluded point gets ``occluded`` (below DWPose's 0.3 threshold hides hands/face points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .projection import CameraView, Projected

# A head point counts as facing the camera while the angle between its outward normal and the
# direction to the camera stays under ~99 degrees (cos > -0.15): profile noses stay visible,
# the far eye at a strong profile and the whole face seen from behind do not. Ears stick out of
# the head, so they stay visible up to 120 degrees (seen from the front and from behind, hidden
# only on the far side of a profile view).
FACING_COS = -0.15
EAR_FACING_COS = -0.5


def facing_thresholds(num_keypoints: int = 133) -> np.ndarray:
    out = np.full(num_keypoints, FACING_COS)
    out[[3, 4]] = EAR_FACING_COS  # COCO left_ear, right_ear
    return out


@dataclass(frozen=True)
class ConfidencePolicy:
    visible: float = 0.9
    occluded: float = 0.2

    def __post_init__(self) -> None:
        for name in ("visible", "occluded"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} confidence must lie in [0, 1], got {value}")


def facing_camera(points: np.ndarray, normals: np.ndarray, cam: CameraView) -> np.ndarray:
    """(N,) bool: True where the outward normal points towards the camera (or there is no normal)."""
    if cam.orthographic:
        to_cam = np.broadcast_to(-cam.forward, points.shape)
    else:
        to_cam = cam.location - points
    to_cam = to_cam / np.maximum(np.linalg.norm(to_cam, axis=1, keepdims=True), 1e-12)
    has_normal = np.linalg.norm(normals, axis=1) > 0.5
    cos = np.einsum("ij,ij->i", normals, to_cam)
    return ~has_normal | (cos > facing_thresholds(len(points)))


def confidences(
    available: np.ndarray,
    projected: Projected,
    facing: np.ndarray,
    occluded: np.ndarray | None,
    policy: ConfidencePolicy,
) -> np.ndarray:
    """(N,) confidence: 0 when unavailable/behind/outside/facing away, lowered when occluded."""
    seen = available & projected.in_frame & facing
    conf = np.where(seen, policy.visible, 0.0)
    if occluded is not None:
        conf = np.where(seen & occluded, policy.occluded, conf)
    return conf


def keypoints_array(projected: Projected, conf: np.ndarray, available: np.ndarray) -> np.ndarray:
    """(N, 3) float32 rows (x, y, c); unmapped points and points behind the camera are (0, 0, 0).

    Points in front of the camera but outside the frame keep their (off-canvas) coordinates with
    confidence 0, so tools can still see where they went.
    """
    out = np.zeros((len(conf), 3), np.float32)
    out[:, :2] = projected.xy
    out[:, 2] = conf
    out[~projected.in_front | ~available] = 0.0
    return out
