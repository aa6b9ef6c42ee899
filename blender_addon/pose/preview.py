"""Local pose preview: DWPose-style skeleton drawing in numpy (no OpenCV/GPU in Blender or on a farm).

Follows the drawing rules of the One-to-All spec (section 4): black canvas, 17 body limbs with the
18 OpenPose colours, limbs dimmed by 0.6 before the joints are drawn, hands as 20 rainbow edges with
blue joints, face as grey dots (brows, eyes, mouth). Limbs are drawn as capsules instead of
cv2 ellipse polygons: this is a QC preview, the server draws what the model sees.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .types import PoseSequence

# OpenPose-18 limbs (0-based joint indices) and colours, spec 4.2.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
# OpenPose-18 joint -> COCO-WholeBody index (neck = mean of the shoulders).
OPENPOSE_FROM_COCO = (0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
HAND_EDGES = tuple((0 if j % 4 == 0 else j, j + 1) for j in range(20))
FACE_DRAWN = tuple(range(17, 27)) + tuple(range(36, 68))
BODY_THRESHOLD = 0.3
HAND_FACE_THRESHOLD = 0.3


def openpose18(kp: np.ndarray) -> np.ndarray:
    """(133, 3) COCO-WholeBody -> (18, 3) OpenPose body with the neck from both shoulders."""
    out = np.zeros((18, 3), np.float64)
    for j, c in enumerate(OPENPOSE_FROM_COCO):
        if c >= 0:
            out[j] = kp[c]
    ls, rs = kp[5], kp[6]
    if ls[2] > 0 and rs[2] > 0:
        out[1] = (ls + rs) / 2
    return out


def stick_widths(width: int, height: int) -> tuple[float, float]:
    """Body and hand/face stroke half-widths scaled from the spec's 2160-short-side canvas."""
    ratio = max(width, height) / min(width, height)
    body, small = (7, 5) if ratio < 1.5 else ((10, 7) if ratio < 2.0 else (13, 9))
    scale = min(width, height) / 2160.0
    return max(body * scale, 1.0), max(small * scale / 2.0, 0.75)


def _capsule(canvas: np.ndarray, a, b, radius: float, color) -> None:
    h, w = canvas.shape[:2]
    x0, x1 = int(max(min(a[0], b[0]) - radius - 1, 0)), int(min(max(a[0], b[0]) + radius + 2, w))
    y0, y1 = int(max(min(a[1], b[1]) - radius - 1, 0)), int(min(max(a[1], b[1]) + radius + 2, h))
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    px, py = xs + 0.5, ys + 0.5
    d = np.array(b, float) - np.array(a, float)
    dd = float(d @ d)
    t = np.zeros_like(px) if dd == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / dd, 0, 1)
    dist2 = (px - a[0] - t * d[0]) ** 2 + (py - a[1] - t * d[1]) ** 2
    canvas[y0:y1, x0:x1][dist2 <= radius * radius] = color


def draw_pose(kp: np.ndarray, width: int, height: int, out_size: tuple[int, int] | None = None) -> np.ndarray:
    """One frame (133, 3) in pixels of a (width, height) canvas -> uint8 (H, W, 3) RGB preview."""
    ow, oh = out_size or (width, height)
    sx, sy = ow / width, oh / height
    pts = np.asarray(kp, np.float64).copy()
    pts[:, 0] *= sx
    pts[:, 1] *= sy
    canvas = np.zeros((oh, ow, 3), np.uint8)
    body_r, small_r = stick_widths(ow, oh)
    body = openpose18(pts)
    for (i, j), color in zip(LIMBS, COLORS):
        si, sj = body[i, 2], body[j, 2]
        if si < BODY_THRESHOLD or sj < BODY_THRESHOLD:
            continue
        _capsule(canvas, body[i, :2], body[j, :2], body_r, tuple(int(c * si * sj) for c in color))
    canvas = (canvas * 0.6).astype(np.uint8)
    for j, color in enumerate(COLORS):
        if body[j, 2] >= BODY_THRESHOLD:
            _capsule(canvas, body[j, :2], body[j, :2], body_r, tuple(int(c * body[j, 2]) for c in color))
    for start in (91, 112):
        hand = pts[start:start + 21]
        for e, (i, j) in enumerate(HAND_EDGES):
            if min(hand[i, 2], hand[j, 2]) < HAND_FACE_THRESHOLD:
                continue
            rgb = colorsys.hsv_to_rgb(e / 20.0, 1.0, 1.0)
            scale = hand[i, 2] * hand[j, 2]
            _capsule(canvas, hand[i, :2], hand[j, :2], small_r, tuple(int(c * 255 * scale) for c in rgb))
        for p in hand:
            if p[2] >= HAND_FACE_THRESHOLD:
                _capsule(canvas, p[:2], p[:2], small_r * 1.5, (0, 0, int(255 * p[2])))
    face = pts[23:91]
    for i in FACE_DRAWN:
        if face[i, 2] >= HAND_FACE_THRESHOLD:
            c = int(255 * face[i, 2])
            _capsule(canvas, face[i, :2], face[i, :2], small_r * 1.5, (c, c, c))
    return canvas


def preview_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def draw_sequence(seq: PoseSequence, long_side: int = 512):
    """Yield (frame number, uint8 image) for every frame of the sequence."""
    size = preview_size(seq.width, seq.height, long_side)
    for frame, kp in zip(seq.frames, seq.keypoints):
        yield frame, draw_pose(kp, seq.width, seq.height, size)
