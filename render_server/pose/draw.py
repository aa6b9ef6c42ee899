"""Pose drawing, identical to the official drawers.

``draw_pose_aligned`` is the drawer the official code uses for training data and inference
(``opensora/dataset/utils.py::draw_pose_aligned``): it draws on an up-scaled canvas whose short side is 2160 px with
stick widths chosen from the canvas size, dims the body limbs by 0.6, and resizes back with bilinear interpolation.
``draw_pose_classic`` is the classic DWPose/ControlNet drawer (fixed widths, no confidences).

Numerics follow the official code run with its numpy-1 pin: a numpy float32 *scalar* combined with a Python number
is evaluated in float64, float32 *arrays* stay float32. We write those float64 steps explicitly (``float(x) * w``)
so the drawings are the same under numpy 1 and numpy 2. Canvases are RGB.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from .openpose import OpenPose

# OpenPose limb pairs (1-based, as in the OpenPose literature); only the first 17 are drawn.
LIMBS = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11],
    [2, 12], [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18],
]  # fmt: skip
COLORS = [
    [255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0], [0, 255, 0],
    [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255], [85, 0, 255],
    [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85],
]  # fmt: skip
HAND_EDGES = [
    [0, 1], [1, 2], [2, 3], [3, 4], [0, 5], [5, 6], [6, 7], [7, 8], [0, 9], [9, 10],
    [10, 11], [11, 12], [0, 13], [13, 14], [14, 15], [15, 16], [0, 17], [17, 18], [18, 19], [19, 20],
]  # fmt: skip
HEAD_JOINTS = [0, 14, 15, 16, 17]  # nose, eyes, ears (OpenPose indices)
# Face landmarks the aligned drawer skips: jaw line and nose.
FACE_SKIP = frozenset(range(0, 17)) | frozenset(range(27, 36))
HEAD_CHANGE_SCORE = -2.0  # marks a head joint "lightened": limb alpha 0.35, black joint disc
LIMB_ALPHA_MISSING_SCORE = 0.35
FACE_CHANGE_FACTOR = 0.35
DRAW_THRESHOLD = 0.3  # hands and face points below this score are not drawn
_EPS = 0.01
_DIM_LUT = (np.arange(256) * 0.6).astype(np.uint8)  # == (canvas * 0.6).astype(uint8), as a table
_CANVAS_SHORT_SIDE = 2160


@dataclass(frozen=True)
class PoseStyle:
    """How a pose is drawn by ``draw_pose_aligned``.

    without_face: skip the face landmarks (the reference pose image is drawn like this).
    face_change: face landmarks at 35% brightness ("lightened" face, what the official demos use).
    head_change: head limbs (neck-nose, nose-eyes, eyes-ears) at 35% and black head joints.
    """

    without_face: bool = False
    face_change: bool = False
    head_change: bool = False


def stick_width(canvas_w: int, canvas_h: int, base: int) -> int:
    """Stick width for a canvas, scaled by its long side as the official ``get_stickwidth``."""
    side = max(canvas_w, canvas_h)
    if side < 512:
        ratio = 1.0
    elif side < 1080:
        ratio = 1.5
    elif side < 2160:
        ratio = 2.0
    elif side < 3240:
        ratio = 2.5
    elif side < 4320:
        ratio = 3.5
    elif side < 5400:
        ratio = 4.5
    else:
        ratio = 4.0
    return int(base * ratio)


def _hsv_color(ie: int, scale: float) -> tuple[float, float, float]:
    """matplotlib ``hsv_to_rgb([ie / 20, 1, 1]) * scale`` with the same float64 operations."""
    h = ie / float(len(HAND_EDGES))
    i = int(h * 6.0)
    f = (h * 6.0) - i
    v, s = 1.0, 1.0
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return (rgb[0] * scale, rgb[1] * scale, rgb[2] * scale)


def _limb_polygon(candidate: np.ndarray, index: np.ndarray, width: int, height: int, stickwidth: int) -> np.ndarray:
    """Filled-ellipse polygon of one limb, as the official drawers compute it."""
    ys = candidate[index, 0] * float(width)
    xs = candidate[index, 1] * float(height)
    m_x = np.mean(xs)
    m_y = np.mean(ys)
    dx = xs[0] - xs[1]
    dy = ys[0] - ys[1]
    # numpy-1: float32 scalar ** int -> float64
    length = (float(dx) ** 2 + float(dy) ** 2) ** 0.5
    angle = math.degrees(math.atan2(dx, dy))
    return cv2.ellipse2Poly((int(m_y), int(m_x)), (int(length / 2), stickwidth), int(angle), 0, 360, 1)


class _Box:
    """Bounding box of the limb polygons: the 0.6 dimming only needs to touch that part of the canvas
    (everything else is still black, and 0 * 0.6 = 0), which is most of the drawing time on a 2160p canvas."""

    def __init__(self) -> None:
        self.lo = np.array([np.iinfo(np.int32).max] * 2)
        self.hi = np.array([np.iinfo(np.int32).min] * 2)

    def add(self, polygon: np.ndarray) -> None:
        if len(polygon):
            self.lo = np.minimum(self.lo, polygon.min(axis=0))
            self.hi = np.maximum(self.hi, polygon.max(axis=0))

    def dim(self, canvas: np.ndarray) -> None:
        """In place: canvas = (canvas * 0.6).astype(uint8), restricted to the box (+1 px for anti-aliasing-free
        rounding of polygon edges)."""
        height, width = canvas.shape[:2]
        x0, y0 = np.maximum(self.lo - 1, 0)
        x1, y1 = np.minimum(self.hi + 2, (width, height))
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = cv2.LUT(canvas[y0:y1, x0:x1], _DIM_LUT)


def _scaled(color: Sequence[int], alpha: float) -> list[int]:
    return [int(c * alpha) for c in color]


def _present_limbs(subset: np.ndarray) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """(limb i, person n, joint pair, subset indices) of the 17 drawn limbs whose two joints both exist, in the
    official drawing order (limb-major, then person)."""
    for i in range(17):
        pair = np.array(LIMBS[i]) - 1
        for n in range(len(subset)):
            index = subset[n][pair]
            if -1 not in index:
                yield i, n, pair, index


def _draw_body_aligned(canvas: np.ndarray, pose: OpenPose, score: np.ndarray) -> np.ndarray:
    height, width = canvas.shape[:2]
    sw = stick_width(width, height, 3)
    candidate = np.asarray(pose.candidate)
    subset = np.asarray(pose.subset)
    box = _Box()
    for i, n, pair, index in _present_limbs(subset):
        conf = score[n][pair]
        # float(conf0 * conf1): the product is taken in the score dtype, the colour scaling in float64
        alpha = max(float(conf[0] * conf[1]), 0) if conf[0] > 0 and conf[1] > 0 else LIMB_ALPHA_MISSING_SCORE
        polygon = _limb_polygon(candidate, index.astype(int), width, height, sw)
        cv2.fillConvexPoly(canvas, polygon, _scaled(COLORS[i], alpha))
        box.add(polygon)
    box.dim(canvas)
    for i in range(18):
        for n in range(len(subset)):
            index = int(subset[n][i])
            if index == -1:
                continue
            x, y = candidate[index][0:2]
            conf = score[n][i]
            alpha = 0.0 if conf == HEAD_CHANGE_SCORE else max(float(conf), 0.0)
            center = (int(float(x) * width), int(float(y) * height))
            cv2.circle(canvas, center, sw, _scaled(COLORS[i], alpha), thickness=-1)
    return canvas


def _draw_hands_aligned(canvas: np.ndarray, hands: np.ndarray, hands_score: np.ndarray) -> None:
    height, width = canvas.shape[:2]
    sw = stick_width(width, height, 2)
    for peaks, scores in zip(hands, hands_score):
        for ie, (a, b) in enumerate(HAND_EDGES):
            if scores[a] < DRAW_THRESHOLD or scores[b] < DRAW_THRESHOLD:
                continue
            x1, y1 = int(float(peaks[a][0]) * width), int(float(peaks[a][1]) * height)
            x2, y2 = int(float(peaks[b][0]) * width), int(float(peaks[b][1]) * height)
            level = int(float(scores[a] * scores[b]) * 255)
            if x1 > _EPS and y1 > _EPS and x2 > _EPS and y2 > _EPS:
                cv2.line(canvas, (x1, y1), (x2, y2), _hsv_color(ie, level), thickness=sw)
        for i, (x, y) in enumerate(peaks):
            if scores[i] < DRAW_THRESHOLD:
                continue
            px, py = int(float(x) * width), int(float(y) * height)
            level = int(float(scores[i]) * 255)
            if px > _EPS and py > _EPS:
                cv2.circle(canvas, (px, py), sw, (0, 0, level), thickness=-1)


def _draw_face_aligned(canvas: np.ndarray, faces: np.ndarray, faces_score: np.ndarray, face_change: bool) -> None:
    height, width = canvas.shape[:2]
    sw = stick_width(width, height, 2)
    for lmks, scores in zip(faces, faces_score):
        for idx, ((x, y), score) in enumerate(zip(lmks, scores)):
            if idx in FACE_SKIP or score < DRAW_THRESHOLD:
                continue
            px, py = int(float(x) * width), int(float(y) * height)
            level = int(float(score) * 255)
            if face_change:
                level = int(level * FACE_CHANGE_FACTOR)
            if px > _EPS and py > _EPS:
                cv2.circle(canvas, (px, py), sw, (level, level, level), thickness=-1)


def canvas_size(height: int, width: int, ref_w: int = _CANVAS_SHORT_SIDE) -> tuple[int, int]:
    """(height, width) of the up-scaled drawing canvas: short side ``ref_w``."""
    short = min(height, width)
    ratio = (ref_w / short) if short != ref_w else 1
    return int(height * ratio), int(width * ratio)


def draw_pose_aligned(
    pose: OpenPose,
    height: int,
    width: int,
    *,
    without_face: bool = False,
    face_change: bool = False,
    head_change: bool = False,
    ref_w: int = _CANVAS_SHORT_SIDE,
) -> np.ndarray:
    """Official aligned drawer: uint8 RGB (height, width, 3)."""
    score = np.array(pose.score, copy=True)
    if head_change:
        score[:, HEAD_JOINTS] = HEAD_CHANGE_SCORE
    canvas = np.zeros(canvas_size(height, width, ref_w) + (3,), dtype=np.uint8)
    canvas = _draw_body_aligned(canvas, pose, score)
    _draw_hands_aligned(canvas, np.asarray(pose.hands), np.asarray(pose.hands_score))
    if not without_face:
        _draw_face_aligned(canvas, np.asarray(pose.faces), np.asarray(pose.faces_score), face_change)
    return cv2.resize(canvas, (width, height))


def draw_pose_styled(pose: OpenPose, height: int, width: int, style: PoseStyle) -> np.ndarray:
    return draw_pose_aligned(
        pose,
        height,
        width,
        without_face=style.without_face,
        face_change=style.face_change,
        head_change=style.head_change,
    )


def draw_pose_classic(pose: OpenPose, height: int, width: int) -> np.ndarray:
    """Classic DWPose/ControlNet drawer (``dwpose_utils.draw_pose``): fixed widths, no confidences, no upscaling."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    candidate = np.asarray(pose.candidate)
    subset = np.asarray(pose.subset)
    box = _Box()
    for i, _n, _pair, index in _present_limbs(subset):
        polygon = _limb_polygon(candidate, index.astype(int), width, height, 4)
        cv2.fillConvexPoly(canvas, polygon, COLORS[i])
        box.add(polygon)
    box.dim(canvas)
    for i in range(18):
        for n in range(len(subset)):
            index = int(subset[n][i])
            if index == -1:
                continue
            x, y = candidate[index][0:2]
            cv2.circle(canvas, (int(float(x) * width), int(float(y) * height)), 4, COLORS[i], thickness=-1)
    for peaks in np.asarray(pose.hands):
        for ie, (a, b) in enumerate(HAND_EDGES):
            x1, y1 = int(float(peaks[a][0]) * width), int(float(peaks[a][1]) * height)
            x2, y2 = int(float(peaks[b][0]) * width), int(float(peaks[b][1]) * height)
            if x1 > _EPS and y1 > _EPS and x2 > _EPS and y2 > _EPS:
                cv2.line(canvas, (x1, y1), (x2, y2), _hsv_color(ie, 255), thickness=2)
        for x, y in peaks:
            px, py = int(float(x) * width), int(float(y) * height)
            if px > _EPS and py > _EPS:
                cv2.circle(canvas, (px, py), 4, (0, 0, 255), thickness=-1)
    for lmks in np.asarray(pose.faces):
        for x, y in lmks:
            px, py = int(float(x) * width), int(float(y) * height)
            if px > _EPS and py > _EPS:
                cv2.circle(canvas, (px, py), 3, (255, 255, 255), thickness=-1)
    return canvas


def no_pose_frame(height: int, width: int) -> np.ndarray:
    """The black "no pose" image (used for the unconditional branch)."""
    return np.zeros((height, width, 3), dtype=np.uint8)


def draw_frames(
    poses: Sequence[OpenPose | None], height: int, width: int, style: PoseStyle, *, workers: int = 0
) -> np.ndarray:
    """Draw many poses into a uint8 (N, height, width, 3) array; ``None`` draws a black frame.

    OpenCV releases the GIL while drawing and resizing, so ``workers`` > 1 draws frames in parallel threads.
    """
    out = np.zeros((len(poses), height, width, 3), dtype=np.uint8)

    def one(i: int) -> None:
        if poses[i] is not None:
            out[i] = draw_pose_styled(poses[i], height, width, style)

    if workers > 1 and len(poses) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one, range(len(poses))))
    else:
        for i in range(len(poses)):
            one(i)
    return out
