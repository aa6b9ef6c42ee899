"""A procedurally animated stick figure in COCO-WholeBody 133 layout, and a painted reference character.

The figure walks in place (legs and left arm swing) and waves with its right hand; face and both hands carry all
their landmarks, so the whole keypoint layout is exercised. Everything is in pixels of a `width` x `height`
canvas, y down. Deterministic: the same arguments give the same keypoints.
"""

from __future__ import annotations

import math

import numpy as np

from blender_addon.pose.types import NUM_KEYPOINTS, PoseSequence

# COCO-WholeBody body indices used below.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = 11, 12, 13, 14, 15, 16
FEET, FACE, L_HAND, R_HAND = 17, 23, 91, 112


def _polar(origin: np.ndarray, length: float, angle_deg: float) -> np.ndarray:
    """The point `length` px from `origin` at `angle_deg` (0 = straight down, positive = toward +x)."""
    a = math.radians(angle_deg)
    return origin + length * np.array([math.sin(a), math.cos(a)])


def figure_pose(phase: float, width: int, height: int, *, wave: float = 1.0, walk: float = 1.0) -> np.ndarray:
    """(133, 3) keypoints of the figure at gait `phase` (radians). `wave`/`walk` scale the two motions."""
    # The figure spans about 9 units from the raised hand to the toes and 6.6 units across with the arm raised;
    # it is centred with a margin. `top` is the top of the head.
    unit = min(width / 7.2, height / 10.0)
    cx, top = width / 2.0, (height - 9.0 * unit) / 2.0 + 0.7 * unit
    swing = 28.0 * walk * math.sin(phase)
    bob = 0.08 * unit * walk * abs(math.cos(phase))
    kp = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    pts: dict[int, np.ndarray] = {}

    neck = np.array([cx, top + 1.45 * unit - bob])
    head = neck + np.array([0.0, -0.8 * unit])
    pts[NOSE] = head + np.array([0.0, 0.1 * unit])
    pts[L_EYE], pts[R_EYE] = head + [0.17 * unit, -0.08 * unit], head + [-0.17 * unit, -0.08 * unit]
    pts[L_EAR], pts[R_EAR] = head + [0.38 * unit, 0.0], head + [-0.38 * unit, 0.0]
    pts[L_SHO], pts[R_SHO] = neck + [0.85 * unit, 0.1 * unit], neck + [-0.85 * unit, 0.1 * unit]
    pelvis = neck + np.array([0.0, 2.9 * unit])
    pts[L_HIP], pts[R_HIP] = pelvis + [0.5 * unit, 0.0], pelvis + [-0.5 * unit, 0.0]

    # Legs: opposite swing, knees bend on the back swing.
    for hip, knee, ankle, sign in ((L_HIP, L_KNE, L_ANK, 1.0), (R_HIP, R_KNE, R_ANK, -1.0)):
        thigh = sign * swing
        pts[knee] = _polar(pts[hip], 1.8 * unit, thigh)
        pts[ankle] = _polar(pts[knee], 1.8 * unit, thigh - max(0.0, -thigh) * 0.9)
    # Left arm swings against the left leg; right arm is raised and waves.
    pts[L_ELB] = _polar(pts[L_SHO], 1.3 * unit, 12.0 - swing * 0.8)
    pts[L_WRI] = _polar(pts[L_ELB], 1.2 * unit, 8.0 - swing * 0.9)
    pts[R_ELB] = _polar(pts[R_SHO], 1.3 * unit, -95.0 * wave - 15.0)
    pts[R_WRI] = _polar(pts[R_ELB], 1.2 * unit, 180.0 - 35.0 * wave * math.sin(2.0 * phase))
    for i, p in pts.items():
        kp[i, :2], kp[i, 2] = p, 1.0

    # Feet: big toe, small toe, heel per foot.
    for base, ankle in ((FEET, L_ANK), (FEET + 3, R_ANK)):
        a = pts[ankle]
        side = 1.0 if ankle == L_ANK else -1.0
        kp[base] = (*(a + [0.35 * unit * side, 0.25 * unit]), 1.0)
        kp[base + 1] = (*(a + [0.15 * unit * side, 0.3 * unit]), 1.0)
        kp[base + 2] = (*(a + [-0.1 * unit * side, 0.2 * unit]), 1.0)

    kp[FACE:FACE + 68] = _face(head, 0.42 * unit, phase)
    kp[L_HAND:L_HAND + 21] = _hand(pts[L_ELB], pts[L_WRI], 0.55 * unit, spread=0.4)
    kp[R_HAND:R_HAND + 21] = _hand(pts[R_ELB], pts[R_WRI], 0.55 * unit, spread=0.9)
    return kp


def _face(center: np.ndarray, r: float, phase: float) -> np.ndarray:
    """68 iBUG-style landmarks (jaw, brows, nose, eyes, mouth) around `center`; the mouth opens and closes."""
    out = np.ones((68, 3), np.float32)
    pts = []
    for i in range(17):  # jaw: left ear -> chin -> right ear (image left = figure's right)
        a = math.radians(-90 + 180 * i / 16)
        pts.append(center + r * np.array([-math.cos(a) * 0.95, 0.15 + math.sin(a) * 0.85 + 0.2]))
    for side in (-1, 1):  # brows
        for j in range(5):
            pts.append(center + r * np.array([side * (0.15 + 0.13 * j) if side > 0 else -(0.67 - 0.13 * j),
                                              -0.45 - 0.06 * math.sin(math.pi * j / 4)]))
    for j in range(4):  # nose bridge
        pts.append(center + r * np.array([0.0, -0.3 + 0.14 * j]))
    for j in range(5):  # nostrils
        pts.append(center + r * np.array([-0.16 + 0.08 * j, 0.3]))
    for side in (-1, 1):  # eyes, 6 points each
        c = center + r * np.array([0.35 * side, -0.22])
        for j in range(6):
            a = 2 * math.pi * j / 6
            pts.append(c + r * np.array([0.14 * math.cos(a), 0.06 * math.sin(a)]))
    open_ = 0.04 + 0.05 * (1 + math.sin(3 * phase))
    mouth = center + r * np.array([0.0, 0.55])
    for j in range(12):  # outer lip
        a = 2 * math.pi * j / 12
        pts.append(mouth + r * np.array([-0.3 * math.cos(a), (0.08 + open_) * math.sin(a)]))
    for j in range(8):  # inner lip
        a = 2 * math.pi * j / 8
        pts.append(mouth + r * np.array([-0.2 * math.cos(a), open_ * math.sin(a)]))
    out[:, :2] = np.array(pts)
    return out


def _hand(elbow: np.ndarray, wrist: np.ndarray, length: float, spread: float) -> np.ndarray:
    """21 hand landmarks: the wrist, then 4 joints per finger fanned around the forearm direction."""
    out = np.ones((21, 3), np.float32)
    direction = wrist - elbow
    base_angle = math.atan2(direction[0], direction[1])
    out[0, :2] = wrist
    for f in range(5):
        angle = base_angle + spread * (f - 2) / 2.0
        d = np.array([math.sin(angle), math.cos(angle)])
        for j in range(4):
            out[1 + 4 * f + j, :2] = wrist + d * length * (0.3 + 0.22 * j) * (0.8 if f == 0 else 1.0)
    return out


def walking_sequence(num_frames: int, width: int, height: int, fps: float = 16.0) -> PoseSequence:
    """`num_frames` frames of walking in place and waving, one gait cycle per second."""
    if num_frames < 1:
        raise ValueError(f"num_frames: must be >= 1, got {num_frames}")
    frames = [figure_pose(2 * math.pi * i / fps, width, height) for i in range(num_frames)]
    return PoseSequence(np.stack(frames), width, height, fps)


def rest_pose(width: int, height: int) -> np.ndarray:
    """The figure standing still with its arms down: the reference character's pose."""
    return figure_pose(0.0, width, height, wave=0.0, walk=0.0)


_LIMBS = ((L_SHO, L_ELB), (L_ELB, L_WRI), (R_SHO, R_ELB), (R_ELB, R_WRI), (L_HIP, L_KNE), (L_KNE, L_ANK),
          (R_HIP, R_KNE), (R_KNE, R_ANK))


def paint_reference(pose: np.ndarray, width: int, height: int) -> np.ndarray:
    """A simple painted character in `pose` on a soft background: uint8 (H, W, 3) RGB."""
    import cv2

    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = (np.array([235, 225, 210], np.float32) * (1 - yy) + np.array([170, 185, 205], np.float32) * yy)
    img = np.ascontiguousarray(np.broadcast_to(img, (height, width, 3)).astype(np.uint8))
    unit = float(np.linalg.norm(pose[L_SHO, :2] - pose[R_SHO, :2])) / 1.7
    p = {i: tuple(int(round(v)) for v in pose[i, :2]) for i in range(23)}
    thick = max(2, int(0.45 * unit))
    torso = np.array([p[L_SHO], p[R_SHO], p[R_HIP], p[L_HIP]], np.int32)
    cv2.fillConvexPoly(img, torso, (200, 60, 50), lineType=cv2.LINE_AA)  # red shirt
    for a, b in _LIMBS:
        color = (40, 60, 140) if a in (L_HIP, R_HIP, L_KNE, R_KNE) else (225, 180, 150)
        cv2.line(img, p[a], p[b], color, thick, lineType=cv2.LINE_AA)
    head = (pose[L_EAR, :2] + pose[R_EAR, :2]) / 2
    cv2.circle(img, tuple(int(v) for v in head), max(3, int(0.5 * unit)), (225, 180, 150), -1, cv2.LINE_AA)
    cv2.circle(img, tuple(int(v) for v in head - [0, 0.25 * unit]), max(2, int(0.45 * unit)), (60, 40, 30), -1,
               cv2.LINE_AA)  # hair
    for eye in (L_EYE, R_EYE):
        cv2.circle(img, p[eye], max(1, int(0.06 * unit)), (20, 20, 20), -1, cv2.LINE_AA)
    return img
