"""Synthetic COCO-WholeBody-133 people for the pose tests (pixel coordinates on a given canvas)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

# Standing person, normalised (x, y); person's right side at smaller x (facing the camera).
_BODY = {
    0: (0.50, 0.15), 1: (0.52, 0.13), 2: (0.48, 0.13), 3: (0.55, 0.14), 4: (0.45, 0.14),
    5: (0.60, 0.25), 6: (0.40, 0.25), 7: (0.65, 0.40), 8: (0.35, 0.40), 9: (0.67, 0.52), 10: (0.33, 0.52),
    11: (0.56, 0.55), 12: (0.44, 0.55), 13: (0.57, 0.72), 14: (0.43, 0.72), 15: (0.57, 0.90), 16: (0.43, 0.90),
    17: (0.59, 0.93), 18: (0.61, 0.92), 19: (0.56, 0.91), 20: (0.41, 0.93), 21: (0.39, 0.92), 22: (0.44, 0.91),
}  # fmt: skip


def _face(center: tuple[float, float], size: float) -> np.ndarray:
    """68 iBUG-like landmarks around a face centre."""
    cx, cy = center
    pts = []
    for t in np.linspace(np.pi * 0.95, np.pi * 0.05, 17):  # jaw, left to right, lower half
        pts.append((cx - np.cos(t) * size, cy + np.sin(t) * size * 1.1))
    for side in (-1, 1):  # brows
        pts += [(cx + side * size * (0.15 + 0.12 * k) if side > 0 else cx - size * (0.63 - 0.12 * k),
                 cy - size * 0.45) for k in range(5)]  # fmt: skip
    pts += [(cx, cy - size * (0.3 - 0.12 * k)) for k in range(4)]  # nose bridge
    pts += [(cx + size * 0.1 * (k - 2), cy + size * 0.2) for k in range(5)]  # nostrils
    for side in (-1, 1):  # eyes
        ex = cx + side * size * 0.35
        pts += [(ex + np.cos(a) * size * 0.12, cy - size * 0.25 + np.sin(a) * size * 0.05)
                for a in np.linspace(np.pi, -np.pi, 6, endpoint=False)]  # fmt: skip
    pts += [(cx + np.cos(a) * size * 0.3, cy + size * 0.5 + np.sin(a) * size * 0.12)
            for a in np.linspace(np.pi, -np.pi, 12, endpoint=False)]  # fmt: skip
    pts += [(cx + np.cos(a) * size * 0.18, cy + size * 0.5 + np.sin(a) * size * 0.05)
            for a in np.linspace(np.pi, -np.pi, 8, endpoint=False)]  # fmt: skip
    return np.array(pts)


def _hand(wrist: tuple[float, float], size: float, side: int) -> np.ndarray:
    wx, wy = wrist
    pts = [(wx, wy)]
    for finger in range(5):
        angle = np.radians(60 + 15 * finger) if side > 0 else np.radians(120 - 15 * finger)
        for joint in range(1, 5):
            r = size * (0.25 + 0.2 * joint)
            pts.append((wx + np.cos(angle) * r, wy + np.sin(angle) * r))
    return np.array(pts)


def make_person(
    width: int = 320, height: int = 480, conf: float = 0.9, scale: float = 1.0, shift: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """(133, 3) pixel keypoints of a standing person, every point visible with confidence ``conf``."""
    xy = np.zeros((133, 2))
    for i, (x, y) in _BODY.items():
        xy[i] = (x, y)
    xy[23:91] = _face((0.5, 0.16), 0.06)
    xy[91:112] = _hand(_BODY[9], 0.04, +1)
    xy[112:133] = _hand(_BODY[10], 0.04, -1)
    xy = (xy - 0.5) * scale + 0.5 + np.asarray(shift)
    out = np.empty((133, 3))
    out[:, 0] = xy[:, 0] * width
    out[:, 1] = xy[:, 1] * height
    out[:, 2] = conf
    return out


@pytest.fixture
def person() -> Callable[..., np.ndarray]:
    return make_person
