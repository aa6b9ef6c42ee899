"""Bringing a reference of any framing to the driving pose (One-to-All "alignment-free" preprocessing).

Official behaviour (``infer_function.py``, ``infer_utils.py``), re-implemented on ``OpenPose`` values:

* ``find_anchor_frame``: the driving frame whose pose is most like the reference (``pick_good_source_frame``; the
  official scripts hard-code frame 0 and never call it).
* ``scale_ratio`` / ``scale_and_translate``: size ratio from the body parts confident in both poses (shoulders +
  torso, else shoulders, else ears) and the neck-anchored similarity transform.
* ``warp_ref_to_pose``: "pose" mode; the reference image and its pose drawing are scaled about the reference neck
  and moved onto the driving neck, the uncovered area is black and marked in the outpaint mask.
* ``bone_ratios`` / ``align_to_pose``: "pose" mode with limb rescaling of the driving poses toward the reference.
* ``face_scale_only``: rough face alignment (reference face proportions, driving expression).
* ``resizecrop``: centre crop to the target aspect + Pillow resize (default bicubic), applied to every image.

All functions take and return copies; nothing is mutated in place. Single-person poses (person 0) are assumed, as
in the official code.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np

from .draw import draw_pose_aligned
from .openpose import OpenPose

NECK = 1
_L_EYE_IDXS = list(range(36, 42))
_R_EYE_IDXS = list(range(42, 48))
NOSE_TIP = 30
_MOUTH_L, _MOUTH_R = 48, 54


# --------------------------------------------------------------------------------------------- anchor frame


def _angle_with_vertical(v: np.ndarray) -> float:
    return math.atan2(abs(v[0]), abs(v[1]) + 1e-9)


def _angle_with_horizontal(v: np.ndarray) -> float:
    return math.atan2(abs(v[1]), abs(v[0]) + 1e-9)


def _is_upright(cand: np.ndarray, torso_deg: float, horiz_deg: float) -> bool:
    neck, rs, ls, rh, lh = cand[1], cand[2], cand[5], cand[8], cand[11]
    if any((p <= 0).any() for p in (neck, rs, ls, rh, lh)):
        return False
    torso = (rh + lh) / 2 - (ls + rs) / 2
    if _angle_with_vertical(torso) > math.radians(torso_deg):
        return False
    if _angle_with_horizontal(ls - rs) > math.radians(horiz_deg):
        return False
    return _angle_with_horizontal(rh - lh) <= math.radians(horiz_deg)


# Left/right bone pairs compared by the anchor search (OpenPose indices): upper arm, forearm, thigh, shin.
_SYM_BONES = [((2, 3), (5, 6)), ((3, 4), (6, 7)), ((8, 9), (11, 12)), ((9, 10), (12, 13))]


def anchor_frame_scores(
    reference: OpenPose,
    driving: Sequence[OpenPose],
    *,
    th: float = 1e-6,
    ratio_thr: float = 1.5,
    torso_angle_thr_deg: float = 30,
    horiz_angle_thr_deg: float = 30,
) -> list[tuple[int, bool, float]]:
    """Per driving frame: (symmetric bone pairs 0-4, upright, orientation difference to the reference).

    Official scoring; additionally, joints marked missing (subset -1) never count: a bone with a missing joint is
    not a symmetric pair, a frame missing neck/shoulders/hips is not upright, and a missing nose, neck or shoulder
    makes the orientation difference infinite. (The official detector never marks joints missing, so this only
    matters for our keypoints, whose missing points have meaningless coordinates.)
    """
    ref = np.asarray(reference.candidate)
    ref_ok = np.asarray(reference.subset)[0, :18] >= 0
    ref_shoulder = _angle_with_horizontal(ref[5] - ref[2])
    ref_head = _angle_with_vertical(ref[0] - ref[1])
    out = []
    for pose in driving:
        cand = np.asarray(pose.candidate)
        ok = (np.asarray(pose.subset)[0, :18] >= 0) & ref_ok

        def ratio(i: int, j: int) -> float:
            if not (ok[i] and ok[j]):
                return 0.0  # below th: the pair is skipped
            src_len = np.linalg.norm(cand[i] - cand[j])
            return 1.0 if src_len < th else np.linalg.norm(ref[i] - ref[j]) / src_len

        sym = 0
        for right, left in _SYM_BONES:
            v1, v2 = ratio(*right), ratio(*left)
            if v1 < th or v2 < th:
                continue
            if 1.0 / ratio_thr <= v1 / v2 <= ratio_thr:
                sym += 1
        if ok[[0, 1, 2, 5]].all():
            angle = abs(_angle_with_horizontal(cand[5] - cand[2]) - ref_shoulder) + abs(
                _angle_with_vertical(cand[0] - cand[1]) - ref_head
            )
        else:
            angle = math.inf
        upright = bool(ok[[1, 2, 5, 8, 11]].all()) and _is_upright(cand, torso_angle_thr_deg, horiz_angle_thr_deg)
        out.append((sym, upright, angle))
    return out


def find_anchor_frame(reference: OpenPose, driving: Sequence[OpenPose], **kwargs: Any) -> int:
    """Index of the driving frame most similar to the reference pose.

    Sort key as the official ``pick_good_source_frame``: most symmetric bone-ratio pairs first, then upright
    frames, then the smallest difference in shoulder-line and head orientation; ties keep the earliest frame.
    """
    if not driving:
        raise ValueError("driving: at least one driving pose is needed to pick an anchor frame")
    scores = anchor_frame_scores(reference, driving, **kwargs)
    return min(range(len(scores)), key=lambda i: (-scores[i][0], not scores[i][1], scores[i][2]))


# --------------------------------------------------------------------------------------------- scale ratio


def _body_scores(pose: OpenPose) -> np.ndarray:
    score = pose.score
    if score is None:
        return np.ones(np.asarray(pose.candidate).shape[0], np.float32)
    return np.asarray(score).astype(np.float32).reshape(-1)


def scale_ratio(moving: OpenPose, target: OpenPose, conf_th: float = 0.9) -> float:
    """Size of ``target`` over size of ``moving`` (normalised coordinates), from parts confident in both.

    Shoulders and hips confident in both: mean of shoulder-width and torso-height ratios; else shoulders: shoulder
    distance ratio; else the ear distance ratio (no confidence check). A denominator <= 1e-6 gives 1.0.
    """
    return _scale_ratio(moving, target, conf_th)[0]


def _scale_ratio(moving: OpenPose, target: OpenPose, conf_th: float) -> tuple[float, bool, bool]:
    th = 1e-6
    tgt = np.asarray(target.candidate).astype(np.float32)
    mov = np.asarray(moving.candidate).astype(np.float32)
    tgt_sc, mov_sc = _body_scores(target), _body_scores(moving)

    def ok(*idx: int) -> bool:
        return all(tgt_sc[i] >= conf_th and mov_sc[i] >= conf_th for i in idx)

    shoulder_ok, hip_ok = ok(2, 5), ok(8, 11)
    if shoulder_ok and hip_ok:
        tgt_w, mov_w = abs(tgt[5, 0] - tgt[2, 0]), abs(mov[5, 0] - mov[2, 0])
        x_ratio = tgt_w / mov_w if mov_w > th else 1.0
        tgt_h = abs(np.mean(tgt[[8, 11], 1]) - np.mean(tgt[[2, 5], 1]))
        mov_h = abs(np.mean(mov[[8, 11], 1]) - np.mean(mov[[2, 5], 1]))
        y_ratio = tgt_h / mov_h if mov_h > th else 1.0
        ratio = (x_ratio + y_ratio) / 2
    elif shoulder_ok:
        tgt_d, mov_d = np.linalg.norm(tgt[2] - tgt[5]), np.linalg.norm(mov[2] - mov[5])
        ratio = tgt_d / mov_d if mov_d > th else 1.0
    else:
        tgt_d, mov_d = np.linalg.norm(tgt[16] - tgt[17]), np.linalg.norm(mov[16] - mov[17])
        ratio = tgt_d / mov_d if mov_d > th else 1.0
    return float(ratio), bool(shoulder_ok), bool(hip_ok)


def scale_and_translate(moving: OpenPose, target: OpenPose, conf_th: float = 0.9) -> tuple[OpenPose, bool, bool]:
    """``moving`` scaled about its neck by ``scale_ratio`` and moved onto the target neck.

    Returns (aligned pose, shoulders confident in both, hips confident in both). Body, hands and faces move
    together (including hand/face points marked missing, as in the official code).
    """
    ratio, shoulder_ok, hip_ok = _scale_ratio(moving, target, conf_th)
    out = moving.copy()
    cand = np.asarray(out.candidate).astype(np.float32)
    anchor = cand[NECK].copy()
    for arr in (cand, out.faces, out.hands):
        if arr is not None and arr.size > 0:
            arr[..., 0] = anchor[0] + (arr[..., 0] - anchor[0]) * ratio
            arr[..., 1] = anchor[1] + (arr[..., 1] - anchor[1]) * ratio
    offset = np.asarray(target.candidate).astype(np.float32)[NECK] - cand[NECK]
    for arr in (cand, out.faces, out.hands):
        if arr is not None and arr.size > 0:
            arr += offset.astype(arr.dtype)
    out.candidate = cand
    return out, shoulder_ok, hip_ok


# --------------------------------------------------------------------------------------------- reference warp


def reference_warp_matrix(
    ref_pose: OpenPose,
    driving_anchor: OpenPose,
    width: int,
    height: int,
    *,
    conf_th: float = 0.9,
    align_center: bool = False,
) -> np.ndarray:
    """2x3 float32 affine map moving the reference (neck-anchored) to the driving anchor pose's neck and scale."""
    ratio = scale_ratio(ref_pose, driving_anchor, conf_th)
    ref_kpt = np.asarray(ref_pose.candidate).astype(np.float32)
    drv_kpt = np.asarray(driving_anchor.candidate).astype(np.float32)
    x0, y0 = float(ref_kpt[NECK][0]) * width, float(ref_kpt[NECK][1]) * height
    xd = float(drv_kpt[NECK][0]) * width if not align_center else width / 2
    yd = float(drv_kpt[NECK][1]) * height
    return np.array(
        [[ratio, 0, (1 - ratio) * x0 + (xd - x0)], [0, ratio, (1 - ratio) * y0 + (yd - y0)]], dtype=np.float32
    )


def warp_ref_to_pose(
    reference_image: np.ndarray,
    driving_anchor: OpenPose,
    ref_pose: OpenPose,
    *,
    bg_val: tuple[int, int, int] = (0, 0, 0),
    conf_th: float = 0.9,
    align_center: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """"pose" mode: (warped reference image, warped reference-pose drawing, uint8 mask 255 = outpaint).

    The reference pose is drawn without face at the reference size and warped with the image; output size =
    reference size. Positional order as the official ``warp_ref_to_pose(img, driving anchor, reference pose)``.
    """
    height, width = reference_image.shape[:2]
    pose_img = draw_pose_aligned(ref_pose, height, width, without_face=True)
    m = reference_warp_matrix(ref_pose, driving_anchor, width, height, conf_th=conf_th, align_center=align_center)
    img_warp = cv2.warpAffine(reference_image, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=bg_val)
    pose_warp = cv2.warpAffine(pose_img, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=bg_val)
    zeros = np.zeros((height, width), dtype=np.uint8)
    mask = cv2.warpAffine(zeros, m, (width, height), flags=cv2.INTER_NEAREST, borderValue=255)
    return img_warp, pose_warp, mask


# --------------------------------------------------------------------------------------------- face


def face_scale_only(
    src68: np.ndarray,
    ref68: np.ndarray,
    target_nose: np.ndarray,
    alpha: float = 1.0,
    anchor_pairs: tuple[tuple[int, int], tuple[int, int]] = ((36, 45), (27, 8)),
) -> np.ndarray:
    """Driving face (68, 2) reshaped to the reference's proportions, nose tip moved onto ``target_nose``.

    x scaled by the eye-corner distance ratio, y by the nose-bridge-to-chin ratio, about the mean of five anchors
    (eye centres, nose tip, mouth corners); keeps the driving expression.
    """
    src = np.asarray(src68, dtype=np.float64)
    ref = np.asarray(ref68, dtype=np.float64)
    le, re = src[_L_EYE_IDXS].mean(axis=0), src[_R_EYE_IDXS].mean(axis=0)
    if re[0] < le[0]:
        le, re = re, le
    center = np.stack([le, re, src[NOSE_TIP], src[_MOUTH_L], src[_MOUTH_R]]).mean(axis=0)
    (wa, wb), (ha, hb) = anchor_pairs
    src_w, ref_w = np.linalg.norm(src[wa] - src[wb]), np.linalg.norm(ref[wa] - ref[wb])
    src_h, ref_h = np.linalg.norm(src[ha] - src[hb]), np.linalg.norm(ref[ha] - ref[hb])
    scale_x = ref_w / src_w if src_w > 1e-6 else 1.0
    scale_y = ref_h / src_h if src_h > 1e-6 else 1.0
    local = src - center
    local[:, 0] *= (1 - alpha) + scale_x * alpha
    local[:, 1] *= (1 - alpha) + scale_y * alpha
    out = local + center
    return out + (np.asarray(target_nose, dtype=np.float64) - out[NOSE_TIP])


def face68(faces: np.ndarray | None) -> np.ndarray | None:
    """The first person's 68 face points as float64 (68, 2), or None when the pose has no face."""
    if faces is None or np.asarray(faces).size == 0:
        return None
    arr = np.asarray(faces)
    if arr.shape == (1, 68, 2) or arr.shape == (68, 2):
        return arr.reshape(68, 2).astype(np.float64)
    raise ValueError(f"faces: expected (1, 68, 2) or (68, 2), got {arr.shape}")


# --------------------------------------------------------------------------------------------- limb rescaling

RATIO_BONES = [
    (0, 1), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7),
    (0, 14), (0, 15), (14, 16), (15, 17), (8, 9), (9, 10), (11, 12), (12, 13), (1, 8), (1, 11),
]  # fmt: skip
_HEAD = [0, 1, 14, 15, 16, 17]


def bone_ratios(
    ref_scores: np.ndarray,
    src_scores: np.ndarray,
    ref_pts: np.ndarray,
    src_pts: np.ndarray,
    conf_th: float = 0.9,
    th: float = 1e-6,
) -> dict[tuple[int, int], float]:
    """Per-bone length ratios reference/driving (official ``compute_ratios_stepwise``).

    Groups of bones are measured only when every joint of the group (and of the groups before it) is confident
    in both poses; forearms copy upper arms and shins copy thighs until measured themselves; left/right pairs
    are averaged. Unmeasured bones keep ratio 1.
    """
    ref_scores, src_scores = np.asarray(ref_scores), np.asarray(src_scores)

    def valid(idx: Sequence[int]) -> bool:
        return all(ref_scores[0, i] >= conf_th and src_scores[0, i] >= conf_th for i in idx)

    def measured(a: int, b: int) -> float:
        src_len = np.linalg.norm(src_pts[a] - src_pts[b])
        return float(np.linalg.norm(ref_pts[a] - ref_pts[b]) / src_len) if src_len > th else 1.0

    ratios: dict[tuple[int, int], float] = {bone: 1.0 for bone in RATIO_BONES}
    joints = list(_HEAD)
    steps: list[tuple[list[int], list[tuple[int, int]], dict]] = [
        ([], [(0, 1), (0, 14), (0, 15), (14, 16), (15, 17)], {}),
        ([2, 5], [(1, 2), (1, 5)], {}),
        ([3, 6], [(2, 3), (5, 6)], {(3, 4): (2, 3), (6, 7): (5, 6)}),
        ([8, 11], [(1, 8), (1, 11)], {}),
        ([4, 7], [(3, 4), (6, 7)], {}),
        ([9, 12], [(8, 9), (11, 12)], {(9, 10): (8, 9), (12, 13): (11, 12)}),
    ]
    for extra, bones, copies in steps:
        joints += extra
        if valid(joints):
            for bone in bones:
                ratios[bone] = measured(*bone)
            for bone, parent in copies.items():
                ratios[bone] = ratios[parent]
    if valid(range(18)):
        for bone in RATIO_BONES:
            ratios[bone] = measured(*bone)
    for a, b in [((1, 2), (1, 5)), ((2, 3), (5, 6)), ((3, 4), (6, 7)), ((8, 9), (11, 12)), ((9, 10), (12, 13))]:
        ratios[a] = ratios[b] = (ratios[a] + ratios[b]) / 2.0
    return ratios


def _shift(cand: np.ndarray, a: int, b: int, ratio: float, present: np.ndarray) -> np.ndarray:
    """Offset moving joint b along bone a-b so that the bone gets ``ratio`` times its length.

    Zero when a joint of the bone is marked missing: its coordinates mean nothing (never the case for the official
    detector, whose joints are all present)."""
    if not (present[a] and present[b]):
        return np.zeros(2, dtype=cand.dtype)
    return (cand[a] - cand[b]) * (1.0 - ratio)


def align_to_pose(
    ref_pose: OpenPose,
    driving: Sequence[OpenPose],
    *,
    anchor: int | None = None,
    conf_th: float = 0.9,
    right_hand_index: int = 0,
) -> list[OpenPose]:
    """"pose" mode with do_align: driving limbs rescaled toward the reference's proportions, faces reshaped.

    ``right_hand_index`` says which entry of ``hands`` is the right hand: 0 for poses from ``frame_to_openpose``
    / ``meta_to_openpose`` ([right, left]), so each hand follows its own arm. The official code moves
    ``hands[1]`` with the right arm on [right, left] poses, i.e. each hand follows the opposite arm; pass
    ``right_hand_index=1`` to reproduce it.
    """
    if right_hand_index not in (0, 1):
        raise ValueError(f"right_hand_index must be 0 or 1, got {right_hand_index}")
    if anchor is None:
        anchor = find_anchor_frame(ref_pose, driving)
    best = driving[anchor]
    ref_scaled, _, _ = scale_and_translate(ref_pose, best, conf_th=conf_th)
    ref68 = face68(ref_scaled.faces)
    ratios = bone_ratios(
        np.asarray(ref_scaled.score).astype(np.float32),
        np.asarray(best.score).astype(np.float32),
        np.asarray(ref_scaled.candidate).astype(np.float32),
        np.asarray(best.candidate).astype(np.float32),
        conf_th=conf_th,
    )
    rh, lh = right_hand_index, 1 - right_hand_index
    out = []
    for pose in driving:
        pose = pose.copy()
        cand, hands = pose.candidate, pose.hands
        present = np.asarray(pose.subset)[0] >= 0
        cand[[0, 14, 15, 16, 17]] += _shift(cand, 1, 0, ratios[(0, 1)], present).astype(cand.dtype)
        # arm chains: shoulder, upper arm, forearm; the hand moves with its wrist
        for chain, hand in (([(1, 2), (2, 3), (3, 4)], rh), ([(1, 5), (5, 6), (6, 7)], lh)):
            for a, b in chain:
                off = _shift(cand, a, b, ratios[(a, b)], present)
                cand[list(range(b, chain[-1][1] + 1))] += off.astype(cand.dtype)
                if hands is not None and len(hands) > hand:
                    hands[hand] += off.astype(hands.dtype)
        for a, b in [(0, 14), (0, 15), (14, 16), (15, 17)]:
            cand[b] += _shift(cand, a, b, ratios[(a, b)], present).astype(cand.dtype)
        for a, b in [(1, 8), (1, 11)]:
            cand[b] += _shift(cand, a, b, ratios[(a, b)], present).astype(cand.dtype)
        for a, b, moved in [(8, 9, [9, 10]), (9, 10, [10]), (11, 12, [12, 13]), (12, 13, [13])]:
            # legs grow from the hip: (cand[a] - cand[b]) * (1 - ratio) == (cand[b] - cand[a]) * (ratio - 1)
            cand[moved] += _shift(cand, a, b, ratios[(a, b)], present).astype(cand.dtype)
        src68 = face68(pose.faces)
        if ref68 is not None and src68 is not None:
            pose.faces = face_scale_only(src68, ref68, cand[0])[None]
        out.append(pose)
    return out


# --------------------------------------------------------------------------------------------- resize


def crop_box(width: int, height: int, th: int, tw: int) -> tuple[float, float, float, float]:
    """Centre crop box (left, top, right, bottom; floats) of a width x height image to the th:tw aspect."""
    if height / width > th / tw:
        new_w = int(width)
        new_h = int(new_w * th / tw)
    else:
        new_h = int(height)
        new_w = int(new_h * tw / th)
    return ((width - new_w) / 2, (height - new_h) / 2, (width + new_w) / 2, (height + new_h) / 2)


def resizecrop(image: Any, th: int, tw: int) -> Any:
    """Centre crop to the th:tw aspect, then Pillow ``resize((tw, th))`` with its default (bicubic) filter.

    Takes and returns a PIL image, or a uint8 numpy array (H, W[, C]) which is returned as one.
    """
    from PIL import Image  # Pillow is the official resampler here; imported lazily (server extra)

    as_array = isinstance(image, np.ndarray)
    img = Image.fromarray(image) if as_array else image
    img = img.crop(crop_box(img.size[0], img.size[1], th, tw)).resize((tw, th))
    return np.asarray(img).copy() if as_array else img
