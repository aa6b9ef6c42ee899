"""Bind every COCO-WholeBody keypoint to bones once, in the rest pose; evaluate per frame with numpy.

A keypoint is a weighted sum of *terms*; a term is a point fixed in one bone's rest frame. Bone
heads/tails are terms with local offsets (0, 0, 0) / (0, length, 0); derived points (face template,
heels, toes) are rest-pose positions converted into the frame of the bone that should carry them.
Per frame: ``p = pose_matrix[bone] @ (local, 1)`` for every term, then a weighted scatter-add.
That is independent of bone roll and needs nothing but ``pose.bones.foreach_get("matrix")``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import face_template as ft
from .skeleton import Detection, PointSpec
from .types import KEYPOINT_INDEX, KEYPOINT_NAMES, NUM_KEYPOINTS

SOURCE_NONE, SOURCE_BONE, SOURCE_DERIVED = 0, 1, 2


@dataclass(frozen=True)
class RestRig:
    """Rest-pose bone data in armature space (what ``Armature.bones`` holds)."""

    names: tuple[str, ...]
    matrix_local: np.ndarray  # (B, 4, 4) bone rest matrices, armature space
    lengths: np.ndarray       # (B,)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def point(self, bone: str, end: str) -> np.ndarray:
        b = self.index(bone)
        head = self.matrix_local[b, :3, 3]
        axis = self.matrix_local[b, :3, 1]
        frac = {"head": 0.0, "tail": 1.0, "mid": 0.5}[end]
        return head + axis * self.lengths[b] * frac

    def spec_point(self, spec: PointSpec) -> np.ndarray:
        return np.mean([self.point(p.bone, p.end) for p in spec.parts], axis=0)


@dataclass(frozen=True)
class RigBinding:
    """Keypoints as terms on bones, plus outward normals for points that can face away."""

    kp_index: np.ndarray    # (T,) int, keypoint each term contributes to
    bone_index: np.ndarray  # (T,) int
    local: np.ndarray       # (T, 3) position in the bone's rest frame
    weight: np.ndarray      # (T,)
    source: np.ndarray      # (133,) SOURCE_* per keypoint
    normal_bone: np.ndarray   # (133,) int, -1 = no normal (always facing the camera)
    normal_local: np.ndarray  # (133, 3) outward normal in that bone's rest frame

    @property
    def available(self) -> np.ndarray:
        return self.source != SOURCE_NONE

    def evaluate(self, pose_matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Armature-space keypoints (133, 3) and outward normals (133, 3) for one pose.

        pose_matrices: (B, 4, 4) ``PoseBone.matrix`` of every bone (armature space).
        Unavailable keypoints come back as zeros.
        """
        m = pose_matrices[self.bone_index]  # (T, 4, 4)
        p = np.einsum("tij,tj->ti", m[:, :3, :3], self.local) + m[:, :3, 3]
        out = np.zeros((NUM_KEYPOINTS, 3))
        np.add.at(out, self.kp_index, p * self.weight[:, None])
        normals = np.zeros((NUM_KEYPOINTS, 3))
        has = self.normal_bone >= 0
        if np.any(has):
            rot = pose_matrices[self.normal_bone[has], :3, :3]
            n = np.einsum("kij,kj->ki", rot, self.normal_local[has])
            normals[has] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return out, normals


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-12:
        raise ValueError("degenerate rig: zero-length direction")
    return v / n


@dataclass(frozen=True)
class HeadFrame:
    origin: np.ndarray  # head bone head (armature space)
    left: np.ndarray
    up: np.ndarray
    forward: np.ndarray
    scale: float        # head height H in armature units
    bone: int

    def place(self, template_pts: np.ndarray) -> np.ndarray:
        """Template points (N, 3) in head-frame units -> armature-space rest positions."""
        t = np.atleast_2d(template_pts)
        basis = np.stack([self.left, self.up, self.forward], axis=1)  # columns
        shifted = t - np.array([0.0, ft.HEAD_BONE_BASE_Y, 0.0])
        return self.origin + self.scale * shifted @ basis.T

    def rotate(self, dirs: np.ndarray) -> np.ndarray:
        basis = np.stack([self.left, self.up, self.forward], axis=1)
        return np.atleast_2d(dirs) @ basis.T


def _left_axis(rest: RestRig, det: Detection, up: np.ndarray, head_bone: int) -> np.ndarray:
    for a, b in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_eye", "right_eye")):
        if det.has(a) and det.has(b):
            v = rest.spec_point(det.specs[a]) - rest.spec_point(det.specs[b])
            v = v - up * float(v @ up)
            if np.linalg.norm(v) > 1e-9:
                return _unit(v)
    # No paired joints: the head bone's X axis (Blender convention: +X = the character's left).
    return _unit(rest.matrix_local[head_bone, :3, 0])


def head_frame(rest: RestRig, det: Detection) -> HeadFrame | None:
    if not det.has("head"):
        return None
    b = rest.index(det.specs["head"].parts[0].bone)
    origin = rest.matrix_local[b, :3, 3].copy()
    up = _unit(rest.matrix_local[b, :3, 1])
    left = _left_axis(rest, det, up, b)
    forward = _unit(np.cross(left, up))
    return HeadFrame(origin, left, up, forward, ft.HEAD_HEIGHT_PER_BONE_LENGTH * float(rest.lengths[b]), b)


def _fit_template(frame: HeadFrame, rest: RestRig, det: Detection) -> HeadFrame:
    """Refine template scale/position from the face points the rig does have (eyes, ears, face bones)."""
    roles = [r for r in ft.TEMPLATE_POINTS if det.has(r)]
    if not roles:
        return frame
    target = np.array([rest.spec_point(det.specs[r]) for r in roles])
    placed = frame.place(np.array([ft.TEMPLATE_POINTS[r] for r in roles]))
    rel = placed - frame.origin
    if len(roles) >= 2:
        rc, tc = rel - rel.mean(0), target - target.mean(0)
        denom = float((rc * rc).sum())
        s = float((rc * tc).sum()) / denom if denom > 0 else 1.0
        s = float(np.clip(s, 0.5, 2.0))  # a wild fit (mis-mapped bone) must not blow up the face
        t = target.mean(0) - frame.origin - s * rel.mean(0)
    else:
        s, t = 1.0, target[0] - placed[0]
    return HeadFrame(frame.origin + t, frame.left, frame.up, frame.forward, frame.scale * s, frame.bone)


class _Builder:
    def __init__(self, rest: RestRig):
        self.rest = rest
        self.inv = np.linalg.inv(rest.matrix_local)
        self.terms: list[tuple[int, int, np.ndarray, float]] = []
        self.source = np.zeros(NUM_KEYPOINTS, np.int8)
        self.normal_bone = np.full(NUM_KEYPOINTS, -1, np.int64)
        self.normal_local = np.zeros((NUM_KEYPOINTS, 3))

    def local(self, bone: int, p_rest: np.ndarray) -> np.ndarray:
        return (self.inv[bone] @ np.append(p_rest, 1.0))[:3]

    def add_spec(self, kp: int, spec: PointSpec) -> None:
        for part in spec.parts:
            b = self.rest.index(part.bone)
            self.terms.append((kp, b, self.local(b, self.rest.point(part.bone, part.end)), 1.0 / len(spec.parts)))
        self.source[kp] = SOURCE_BONE

    def add_rest_point(self, kp: int, bone: int, p_rest: np.ndarray) -> None:
        self.terms.append((kp, bone, self.local(bone, p_rest), 1.0))
        self.source[kp] = SOURCE_DERIVED

    def set_normal(self, kp: int, bone: int, n_rest: np.ndarray) -> None:
        self.normal_bone[kp] = bone
        self.normal_local[kp] = self.rest.matrix_local[bone, :3, :3].T @ n_rest

    def build(self) -> RigBinding:
        if not self.terms:
            raise ValueError("bone map: no keypoint could be bound (no mapped bones)")
        kp, bone, local, w = zip(*self.terms)
        return RigBinding(
            np.array(kp, np.int64), np.array(bone, np.int64), np.array(local), np.array(w),
            self.source.copy(), self.normal_bone.copy(), self.normal_local.copy(),
        )


def _add_feet(builder: _Builder, rest: RestRig, det: Detection, frame: HeadFrame | None) -> None:
    """Big toe, small toe and heel per side: bones when mapped, else derived from ankle + toe tip."""
    for side, sign in (("left", 1.0), ("right", -1.0)):
        ankle_role, tip_role = f"{side}_ankle", f"{side}_toe_tip"
        if not (det.has(ankle_role) and det.has(tip_role)):
            for name in ("big_toe", "small_toe", "heel"):
                role = f"{side}_{name}"
                if det.has(role):
                    builder.add_spec(KEYPOINT_INDEX[role], det.specs[role])
            continue
        ankle = rest.spec_point(det.specs[ankle_role])
        tip = rest.spec_point(det.specs[tip_role])
        if frame is not None:
            up, left = frame.up, frame.left
        else:
            up, left = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
        fwd_full = tip - ankle
        fwd_flat = fwd_full - up * float(fwd_full @ up)
        length = float(np.linalg.norm(fwd_flat)) or float(np.linalg.norm(fwd_full))
        fwd = _unit(fwd_flat) if np.linalg.norm(fwd_flat) > 1e-9 else _unit(fwd_full)
        lateral = left * sign  # the little toe is on the outside of each foot
        ground = float(tip @ up)
        derived = {
            "big_toe": tip - lateral * 0.12 * length,
            "small_toe": tip + lateral * 0.30 * length - fwd * 0.22 * length,
            "heel": ankle - up * (float(ankle @ up) - ground) - fwd * 0.17 * length,
        }
        carrier = det.specs.get(f"{side}_foot") or det.specs[ankle_role]
        toe_bone = rest.index(carrier.parts[0].bone)
        heel_bone = rest.index(det.specs[ankle_role].parts[0].bone)
        for name, point in derived.items():
            role = f"{side}_{name}"
            if det.has(role):
                builder.add_spec(KEYPOINT_INDEX[role], det.specs[role])
            else:
                builder.add_rest_point(KEYPOINT_INDEX[role], heel_bone if name == "heel" else toe_bone, point)


def bind(rest: RestRig, det: Detection, *, use_face_template: bool = True) -> RigBinding:
    """Build the per-keypoint terms for a rig from its detection (preset or custom map)."""
    builder = _Builder(rest)
    frame = head_frame(rest, det)
    if frame is not None:
        frame = _fit_template(frame, rest, det)
    jaw_bone = rest.index(det.specs["jaw"].parts[0].bone) if det.has("jaw") else None

    for kp, role in enumerate(KEYPOINT_NAMES):
        if role in ("left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel"):
            continue  # handled by _add_feet
        if det.has(role):
            builder.add_spec(kp, det.specs[role])
        elif role.endswith("_hand_wrist") and det.has(role.replace("_hand_wrist", "_wrist")):
            builder.add_spec(kp, det.specs[role.replace("_hand_wrist", "_wrist")])
        elif role in ft.TEMPLATE_POINTS and frame is not None and use_face_template:
            landmark = int(role[5:]) if role.startswith("face_") else -1
            carrier = jaw_bone if (jaw_bone is not None and landmark in ft.JAW_LANDMARKS) else frame.bone
            builder.add_rest_point(kp, carrier, frame.place(ft.TEMPLATE_POINTS[role])[0])
        if role in ft.TEMPLATE_POINTS and frame is not None:
            # Head points can face away from the camera; their normal follows the head bone.
            n = frame.rotate(ft.outward_normal(ft.TEMPLATE_POINTS[role][None]))[0]
            builder.set_normal(kp, frame.bone, n)
    _add_feet(builder, rest, det, frame)
    return builder.build()
