"""Canonical 3D face: the 68 iBUG landmarks plus eyes, ears and nose tip, from average proportions.

Derived here from textbook proportions of the adult head, not from any landmark data set, so it
carries no licence strings. Units are the head height H (chin to vertex = 1). Axes of the *head
frame*: x towards the character's left, y up (chin at y = 0), z forward (z = 0 at the ear canals).

Proportions used (artists' canon, cross-checked against average adult anthropometry: head height
~23 cm, head breadth ~15.5 cm, bigonial breadth ~10 cm, ear-canal-to-nose-tip depth ~12 cm):
  * eye line at half the head height; brows at 0.6 H; base of the nose at 1/3 H; mouth line at
    2/3 of the way from chin to nose base (0.22 H); ears span brow line to nose base.
  * head breadth 2/3 H; eye width 1/5 of the head breadth (0.13 H) and one eye width between the
    eyes; nose wings as wide as the inner eye corners; mouth as wide as 0.22 H.
  * depth: outer eye corners 0.33 H in front of the ear canals, inner corners and chin 0.40-0.42 H,
    nose tip 0.52 H, lip centres 0.47 H; the jaw line runs from below the ears to the chin.
The template is placed per rig in ``binding.py`` (head bone gives origin/up; shoulders give the
left/right axis; scale from the head bone length, refined by eye/ear/nose/face bones if present).
"""

from __future__ import annotations

import numpy as np

# Where the head bone sits in the face, calibrated on rig conventions rather than on the skull: the
# head bone runs from the top of the neck (about mouth level) to the top of the head (Blender
# metarig/Rigify "spine.006", Mixamo "Head" -> "HeadTop_End", ARP "head.x"). Two measurements pin it:
# the chin lies 0.21 head-bone lengths below the bone's head and the eye line 0.56 lengths above it
# (metarig: 0.21 / 0.57; Mixamo's X/Y Bot eye bones: ~0.55). With the eye line at 0.5 H that gives
# H = 1.54 bone lengths and the bone's head at 0.14 H above the chin. On the metarig this places the
# template's 43 face points within 0.054 H (mean) of the rig's own face bones before any fitting.
HEAD_BONE_BASE_Y = 0.14
HEAD_HEIGHT_PER_BONE_LENGTH = 1.54

# Ellipsoid approximating the skull + face for outward normals (visibility of face points).
_CENTER = np.array([0.0, 0.55, 0.0])
_SEMI_AXES = np.array([0.34, 0.55, 0.45])


def _lerp_chain(points: list[tuple[float, float, float]], n: int) -> np.ndarray:
    """n points spaced evenly along the polyline through ``points`` (by arc length)."""
    pts = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, pts[:, k]) for k in range(3)], axis=1)


def _mirror(pts: np.ndarray) -> np.ndarray:
    out = pts.copy()
    out[:, 0] *= -1
    return out


def _build_face68() -> np.ndarray:
    pts = np.zeros((68, 3))
    # 0-16 jaw: half-ellipse from below the right ear (subject's right = -x) through the chin.
    theta = np.linspace(-np.pi / 2, np.pi / 2, 17)
    pts[0:17, 0] = 0.31 * np.sin(theta)
    pts[0:17, 1] = 0.45 - 0.45 * np.cos(theta)
    pts[0:17, 2] = 0.12 + 0.30 * np.cos(theta)
    # 17-21 right brow (outer -> inner), 22-26 left brow (inner -> outer).
    right_brow = _lerp_chain([(-0.23, 0.58, 0.28), (-0.15, 0.62, 0.38), (-0.05, 0.60, 0.43)], 5)
    pts[17:22] = right_brow
    pts[22:27] = _mirror(right_brow)[::-1]
    # 27-30 nose bridge (nasion -> tip), 31-35 nostrils (right wing -> left wing).
    pts[27:31] = _lerp_chain([(0.0, 0.55, 0.42), (0.0, 0.36, 0.52)], 4)
    pts[31:36] = _lerp_chain([(-0.07, 0.34, 0.43), (0.0, 0.32, 0.46), (0.07, 0.34, 0.43)], 5)
    # 36-41 right eye: outer corner, upper outer, upper inner, inner corner, lower inner, lower outer.
    right_eye = np.array([
        (-0.195, 0.50, 0.33), (-0.155, 0.52, 0.38), (-0.105, 0.52, 0.40),
        (-0.065, 0.50, 0.40), (-0.105, 0.485, 0.40), (-0.155, 0.485, 0.38),
    ])
    pts[36:42] = right_eye
    # 42-47 left eye: inner corner, upper inner, upper outer, outer corner, lower outer, lower inner.
    pts[42:48] = _mirror(right_eye)[[3, 2, 1, 0, 5, 4]]
    # 48-59 outer lip: right corner, upper lip to left corner, lower lip back to the right.
    pts[48:60] = np.array([
        (-0.11, 0.22, 0.40), (-0.07, 0.24, 0.45), (-0.025, 0.25, 0.47), (0.0, 0.245, 0.475),
        (0.025, 0.25, 0.47), (0.07, 0.24, 0.45), (0.11, 0.22, 0.40),
        (0.07, 0.195, 0.44), (0.025, 0.18, 0.46), (0.0, 0.18, 0.465), (-0.025, 0.18, 0.46), (-0.07, 0.195, 0.44),
    ])
    # 60-67 inner lip: right corner, upper inner (3), left corner, lower inner (3, left -> right).
    pts[60:68] = np.array([
        (-0.09, 0.22, 0.41), (-0.04, 0.225, 0.45), (0.0, 0.225, 0.46), (0.04, 0.225, 0.45),
        (0.09, 0.22, 0.41), (0.04, 0.215, 0.45), (0.0, 0.215, 0.46), (-0.04, 0.215, 0.45),
    ])
    return pts


FACE68 = _build_face68()
NOSE_TIP = FACE68[30].copy()
LEFT_EYE = np.array([0.13, 0.50, 0.40])   # pupil centre
RIGHT_EYE = _mirror(LEFT_EYE[None])[0]
LEFT_EAR = np.array([0.34, 0.47, 0.0])    # tragus / ear canal
RIGHT_EAR = _mirror(LEFT_EAR[None])[0]

# Named template points for the body roles (COCO nose/eyes/ears) and the face landmarks.
TEMPLATE_POINTS: dict[str, np.ndarray] = {
    "nose": NOSE_TIP,
    "left_eye": LEFT_EYE,
    "right_eye": RIGHT_EYE,
    "left_ear": LEFT_EAR,
    "right_ear": RIGHT_EAR,
} | {f"face_{i}": FACE68[i] for i in range(68)}

# Landmarks that move with the lower jaw (jaw line below the ears, lower lips).
JAW_LANDMARKS = tuple(range(3, 14)) + tuple(range(55, 60)) + tuple(range(65, 68))


def outward_normal(points: np.ndarray) -> np.ndarray:
    """Unit outward normals of the head ellipsoid at (the radial projection of) ``points`` (N, 3)."""
    d = (np.asarray(points, dtype=np.float64) - _CENTER) / _SEMI_AXES**2
    return d / np.linalg.norm(d, axis=-1, keepdims=True)
