"""The keypoint layouts the official drawing/alignment code works on, and conversions from COCO-WholeBody-133.

* ``OpenPose``: the DWPose-style dict the drawers consume (OpenPose-18 body + 2 hands per person + 68 face points),
  coordinates normalised to [0, 1] (x / width, y / height). ``to_dict``/``from_dict`` give the official dict layout.
* ``WanMeta``: the Wan2.2-Animate / ViTPose "meta" (20 body points = OpenPose-18 + left toe + right toe, hands,
  69 face points whose first entry is not a face landmark), the input of the retargeting in ``retarget.py``.

The inference path of the official code is COCO-133 -> meta -> OpenPose (``meta_to_openpose``); the DWPose
detector path (training data) is raw-134 -> OpenPose (``dwpose_raw_to_openpose``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .keypoints import NUM_KEYPOINTS, PoseFrame, validate_canvas

# OpenPose-18 (+ 2 toes) from COCO-WholeBody: point i = mean(coco[_A[i]], coco[_B[i]]).
_A = np.array([0, 6, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 17, 20])
_B = np.array([0, 5, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 18, 21])
# DWPose: COCO order with a neck inserted at 17, then reordered to OpenPose order.
_MMPOSE_IDX = [17, 6, 8, 10, 7, 9, 12, 14, 16, 13, 15, 2, 1, 4, 3]
_OPENPOSE_IDX = [1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17]


@dataclass
class OpenPose:
    """DWPose-style pose of P persons; all coordinates normalised (x / W, y / H).

    candidate (18P, 2), subset (P, 18) float index into candidate or -1 (missing), score (P, 18),
    hands (2P, 21, 2), hands_score (2P, 21), faces (P, 68, 2), faces_score (P, 68).
    """

    candidate: np.ndarray
    subset: np.ndarray
    score: np.ndarray
    hands: np.ndarray
    hands_score: np.ndarray
    faces: np.ndarray
    faces_score: np.ndarray

    def copy(self) -> "OpenPose":
        return OpenPose(*(np.array(getattr(self, name), copy=True) for name in _FIELDS))

    def to_dict(self) -> dict:
        """The official dict layout (``bodies``/``hands``/``hands_score``/``faces``/``faces_score``)."""
        return {
            "bodies": {"candidate": self.candidate, "subset": self.subset, "score": self.score},
            "hands": self.hands,
            "hands_score": self.hands_score,
            "faces": self.faces,
            "faces_score": self.faces_score,
        }

    @classmethod
    def from_dict(cls, pose: dict) -> "OpenPose":
        """From the official dict layout; keeps dtypes (the official numerics depend on float32 inputs)."""
        bodies = pose["bodies"]
        candidate = np.asarray(bodies["candidate"])
        subset = np.asarray(bodies["subset"])
        score = bodies.get("score")
        score = np.ones(subset.shape, np.float32) if score is None else np.asarray(score)
        persons = subset.shape[0]
        hands = pose.get("hands")
        hands = np.zeros((0, 21, 2), np.float32) if hands is None else np.asarray(hands)
        hands_score = pose.get("hands_score")
        hands_score = np.ones(hands.shape[:2], np.float32) if hands_score is None else np.asarray(hands_score)
        faces = pose.get("faces")
        faces = np.zeros((0, 68, 2), np.float32) if faces is None else np.asarray(faces)
        faces_score = pose.get("faces_score")
        faces_score = np.ones(faces.shape[:2], np.float32) if faces_score is None else np.asarray(faces_score)
        if candidate.shape[0] < 18 * persons:
            raise ValueError(f"bodies.candidate has {candidate.shape[0]} rows for {persons} persons")
        return cls(candidate, subset, score, hands, hands_score, faces, faces_score)


_FIELDS = ("candidate", "subset", "score", "hands", "hands_score", "faces", "faces_score")


@dataclass
class WanMeta:
    """Wan2.2-Animate pose meta of one person, coordinates normalised; columns (x, y, score)."""

    width: int
    height: int
    body: np.ndarray  # (20, 3): OpenPose-18 + left toe + right toe
    left_hand: np.ndarray  # (21, 3)
    right_hand: np.ndarray  # (21, 3)
    face: np.ndarray  # (69, 3); entry 0 is not a face landmark

    def copy(self) -> "WanMeta":
        return WanMeta(
            self.width, self.height, self.body.copy(), self.left_hand.copy(), self.right_hand.copy(), self.face.copy()
        )

    def to_dict(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "keypoints_body": self.body,
            "keypoints_left_hand": self.left_hand,
            "keypoints_right_hand": self.right_hand,
            "keypoints_face": self.face,
        }

    @classmethod
    def from_dict(cls, meta: dict) -> "WanMeta":
        return cls(
            int(meta["width"]),
            int(meta["height"]),
            np.asarray(meta["keypoints_body"]),
            np.asarray(meta["keypoints_left_hand"]),
            np.asarray(meta["keypoints_right_hand"]),
            np.asarray(meta["keypoints_face"]),
        )


def coco133_to_meta(keypoints: np.ndarray | PoseFrame, width: int, height: int) -> WanMeta:
    """COCO-WholeBody-133 pixel keypoints -> normalised Wan meta (float32, like the detector output).

    Derived points (neck = mid-shoulders, toes = mid big/small toe) average x, y and confidence, as the official
    conversion does. Unlike the official detector our input can mark points missing (confidence 0, coordinates
    meaningless), so a derived point is missing when either of its sources is missing instead of being placed
    halfway towards an arbitrary coordinate.
    """
    width, height = validate_canvas(width, height)
    kps = keypoints.keypoints if isinstance(keypoints, PoseFrame) else np.asarray(keypoints, np.float64)
    if kps.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"keypoints: expected ({NUM_KEYPOINTS}, 3), got {kps.shape}")
    scale = np.array([1.0 / width, 1.0 / height, 1.0])
    body = (kps[_A] + kps[_B]) / 2.0
    body[(kps[_A, 2] <= 0) | (kps[_B, 2] <= 0)] = 0.0
    meta = WanMeta(
        width,
        height,
        (body * scale).astype(np.float32),
        (kps[91:112] * scale).astype(np.float32),
        (kps[112:133] * scale).astype(np.float32),
        (kps[22:91] * scale).astype(np.float32),
    )
    return meta


def meta_to_openpose(meta: WanMeta) -> OpenPose:
    """Wan meta -> OpenPose (official ``aaposemeta_to_dwpose``): hands stored as [right, left], face[0] dropped."""
    body = meta.body[:-2]
    candidate = body[:, :2]
    score = body[:, 2]
    subset = np.arange(len(candidate), dtype=float)
    subset[score <= 0] = -1
    return OpenPose(
        candidate=candidate,
        subset=subset[None],
        score=score[None],
        hands=np.stack([meta.right_hand[:, :2], meta.left_hand[:, :2]]),
        hands_score=np.stack([meta.right_hand[:, 2], meta.left_hand[:, 2]]),
        faces=meta.face[1:, :2][None],
        faces_score=meta.face[1:, 2][None],
    )


def frame_to_openpose(keypoints: np.ndarray | PoseFrame, width: int, height: int) -> OpenPose:
    """COCO-WholeBody-133 pixel keypoints on a width x height canvas -> the OpenPose dict the drawer uses."""
    return meta_to_openpose(coco133_to_meta(keypoints, width, height))


def coco133_to_dwpose_raw(keypoints: np.ndarray | PoseFrame) -> tuple[np.ndarray, np.ndarray]:
    """COCO-133 pixel keypoints -> DWPose ``Wholebody`` raw output: (1, 134, 2) pixels and (1, 134) scores.

    DWPose inserts a neck (mid-shoulders, binary score: both shoulders > 0.3) and reorders the body to OpenPose.
    """
    kps = keypoints.keypoints if isinstance(keypoints, PoseFrame) else np.asarray(keypoints, np.float64)
    neck = kps[[5, 6]].mean(axis=0)
    neck[2] = float(kps[5, 2] > 0.3 and kps[6, 2] > 0.3)
    raw = np.insert(kps, 17, neck, axis=0)
    raw[_OPENPOSE_IDX] = raw[_MMPOSE_IDX]
    return raw[None, :, :2].astype(np.float32), raw[None, :, 2].astype(np.float32)


def dwpose_raw_to_openpose(
    candidate: np.ndarray, score: np.ndarray, img_h: int, img_w: int, target_ratio: float | None = None
) -> OpenPose:
    """DWPose raw (1, 134, 2) pixel output -> OpenPose (official ``build_pose_dict``).

    With ``target_ratio`` (H/W of a training bucket) the coordinates are normalised on a canvas padded to that
    aspect ratio. Body points with score <= 0.3 become subset -1 and every point with score < 0.3 gets
    coordinates -1.
    """
    cand = np.array(candidate[0][None], copy=True)
    sc = np.array(score[0][None], copy=True)
    cur_ratio = img_h / img_w
    if target_ratio is None or abs(cur_ratio - target_ratio) < 1e-6:
        norm_w, norm_h, pad_x, pad_y = img_w, img_h, 0.0, 0.0
    elif target_ratio > cur_ratio:
        norm_w, norm_h = img_w, img_w * target_ratio
        pad_x, pad_y = 0.0, (norm_h - img_h) / 2.0
    else:
        norm_w, norm_h = img_h / target_ratio, img_h
        pad_x, pad_y = (norm_w - img_w) / 2.0, 0.0
    cand[:, :, 0] = (cand[:, :, 0] + pad_x) / float(norm_w)
    cand[:, :, 1] = (cand[:, :, 1] + pad_y) / float(norm_h)
    body = cand[:, :18].reshape(18, cand.shape[2]).copy()
    subset = sc[:, :18].copy()
    visible = subset > 0.3
    subset[visible] = np.arange(18)[None].repeat(len(subset), 0)[visible]
    subset[~visible] = -1
    cand[sc < 0.3] = -1
    return OpenPose(
        candidate=body,
        subset=subset,
        score=sc[:, :18],
        hands=np.vstack([cand[:, 92:113], cand[:, 113:]]),
        hands_score=np.vstack([sc[:, 92:113], sc[:, 113:]]),
        faces=cand[:, 24:92],
        faces_score=sc[:, 24:92],
    )
