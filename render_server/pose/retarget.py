"""Retargeting the driving poses to the reference skeleton ("ref" mode with alignment).

Behaviour of the official ``align_to_reference`` (One-to-All ``infer_function.py``), which runs the Wan2.2-Animate
retargeting (``wanpose_utils/retarget_pose.py``) and then the rough face alignment:

1. global scale = driving body height / reference body height (nose to ankles, else nose to hips, else canvas);
2. body extent (full / three-quarter / half) of both, the smaller one wins;
3. missing limbs filled from the symmetric limb or the torso length (used for the bone ratios only);
4. 19 bone ratios reference/driving; left/right pairs take their max, eye and ear pairs their mean;
5. every frame's skeleton re-grown from the neck with those ratios (feet capped at half a shin), moved so that the
   ground line (full body) or the neck matches the reference, and brought to the reference canvas;
6. hands scaled about their root and carried by the new wrists;
7. faces reshaped to the reference proportions and put on the new nose (``align.face_scale_only``).

Points are "missing" (None) where their confidence is 0; the official detector never produces missing body points,
so for its inputs every point is present, exactly as in the official code. Two official quirks are kept because
the model was run with them: the first-frame x correction of step 5 applies to the first frame only, and the
retargeted hands come back in [left, right] order (both drawn alike).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .align import face68, face_scale_only, find_anchor_frame
from .openpose import OpenPose, WanMeta, meta_to_openpose

# Wan limb list over the 20-point body (0-based): shoulders, arms, legs, head, feet.
LIMBS = [
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (13, 18), (10, 19),
]  # fmt: skip
_MAX_PAIRS = [(0, 1), (2, 4), (3, 5), (6, 9), (7, 10), (8, 11), (17, 18)]
_FOOT_CAP = 0.5
_HAND_TH = 0.4
_BODY_TH = 0.4

Point = list  # [x, y, score] or None


def _points(body: np.ndarray) -> list[Point | None]:
    return [None if row[2] <= 0 else [float(row[0]), float(row[1]), float(row[2])] for row in np.asarray(body)]


def _length(pts: list, a: int, b: int, width: float, height: float) -> float | None:
    if pts[a] is None or pts[b] is None:
        return None
    xs = np.array([pts[a][0], pts[b][0]]) * float(width)
    ys = np.array([pts[a][1], pts[b][1]]) * float(height)
    return ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5


def _height_scale(src: list, dst: list, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> float:
    for low in ((10, 13), (8, 11)):
        idx = (0,) + low
        if all(src[i] is not None and dst[i] is not None and src[i][2] > 0.5 and dst[i][2] > 0.5 for i in idx):
            src_h = src_wh[1] * abs((src[low[0]][1] + src[low[1]][1]) / 2 - src[0][1])
            dst_h = dst_wh[1] * abs((dst[low[0]][1] + dst[low[1]][1]) / 2 - dst[0][1])
            if dst_h > 0:  # (a degenerate reference would divide by zero in the official code)
                return 1.0 * src_h / dst_h
    return float(np.sqrt(src_wh[1] * src_wh[0]) / np.sqrt(dst_wh[1] * dst_wh[0]))


def body_extent(pts: list, threshold: float = _BODY_TH) -> int:
    """2 = full body (ankles and hips in frame and confident), 1 = three-quarter (hips), 0 = half body."""

    def inside(i: int) -> bool:
        return pts[i] is not None and pts[i][1] <= 1 and pts[i][2] >= threshold

    if all(inside(i) for i in (10, 13, 8, 11)):
        return 2
    if inside(8) and inside(11):
        return 1
    return 0


def _fill_missing(pts: list, width: int, height: int) -> None:
    """Official ``fix_lack_keypoints_use_sym``: cut broken chains, re-grow missing limb ends straight down."""
    for chain in ([2, 3, 4], [5, 6, 7], [11, 12, 13, 18], [8, 9, 10, 19]):
        missing = False
        for p in chain:
            if pts[p] is None:
                missing = True
                continue
            if missing:
                pts[p] = None
    sides = [[(2, 3), (3, 4), (11, 12), (12, 13), (13, 18)], [(5, 6), (6, 7), (8, 9), (9, 10), (10, 19)]]
    for side in (0, 1):
        for idx, (a, b) in enumerate(sides[side]):
            if pts[a] is None or pts[b] is not None:
                continue
            sa, sb = sides[1 - side][idx]
            if pts[sa] is not None and pts[sb] is not None:
                ref_length = _length(pts, sa, sb, width, height)
            else:
                left = right = 0.0
                if pts[1] is not None and pts[8] is not None:
                    left = _length(pts, 1, 8, width, height) / (2 if idx <= 1 else 1)
                if pts[1] is not None and pts[11] is not None:
                    right = _length(pts, 1, 11, width, height)
                    right = right / 2 if idx <= 1 else (right / 5 if idx == 4 else right)
                ref_length = max(left, right)
            if ref_length != 0:
                pts[b] = [pts[a][0], pts[a][1] + ref_length / height, 0.0]


def _regrow(px: list, ratios: list[float], cap_feet: bool) -> tuple[list, set[int]]:
    """Re-grow a pixel-space skeleton from the neck: each bone keeps its angle, length x ratio."""
    new_len: list[float | None] = []
    angles: list[float | None] = []
    for i, (a, b) in enumerate(LIMBS):
        if px[a] is None or px[b] is None:
            new_len.append(None)
            angles.append(None)
            continue
        dy, dx = px[a][1] - px[b][1], px[a][0] - px[b][0]
        new_len.append((dy**2 + dx**2) ** 0.5 * ratios[i])
        angles.append(math.degrees(math.atan2(dy, dx)))
    if cap_feet:
        for shin, foot in ((8, 18), (11, 17)):
            if new_len[shin] is not None and new_len[foot] is not None:
                new_len[foot] = min(new_len[foot], new_len[shin] * _FOOT_CAP)
    out = list(px)
    regrown: set[int] = set()
    for i, (a, b) in enumerate(LIMBS):
        if out[a] is None or out[b] is None:
            continue
        rad = math.radians(angles[i])
        out[b] = [out[a][0] - new_len[i] * math.cos(rad), out[a][1] - new_len[i] * math.sin(rad)] + out[b][2:]
        regrown.add(b)
    return out, regrown


def _bone_ratios(src: list, dst: list, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> list[float]:
    ratios = []
    for a, b in LIMBS:
        src_len = _length(src, a, b, *src_wh)
        dst_len = _length(dst, a, b, *dst_wh)
        # a zero-length driving bone has no ratio (the official code divides by zero): treated as unmeasured
        unmeasured = src_len is None or dst_len is None or src_len < 1e-6
        ratios.append(-1.0 if unmeasured else 1.0 * dst_len / src_len)
    if ratios[0] != -1 and ratios[1] != -1:
        ratios = [(ratios[0] + ratios[1]) / 2 if r == -1 else r for r in ratios]
    for a, b in _MAX_PAIRS:
        ratios[a] = ratios[b] = max(ratios[a], ratios[b])
    for a, b in ((13, 15), (14, 16)):
        ratios[a] = ratios[b] = (ratios[a] + ratios[b]) / 2
    return ratios


def _scale_hand(hand: np.ndarray, ratio: float) -> list[list[float]]:
    """Hand (21, 3) normalised: scaled about its root; points under the threshold -> (-1, -1, 0)."""
    delta = (hand[0][0] * (ratio - 1), hand[0][1] * (ratio - 1))
    return [
        [-1.0, -1.0, 0.0] if p[2] < _HAND_TH else [p[0] * ratio - delta[0], p[1] * ratio - delta[1], p[2]]
        for p in hand.tolist()
    ]


def _place_hand(hand: list, delta: np.ndarray, src_w: int, src_h: int) -> np.ndarray:
    """Hand to integer pixels of the output canvas, moved by ``delta``; missing points -> (0, 0, 0)."""
    out = np.zeros((len(hand), 3))
    for i, (x, y, s) in enumerate(hand):
        if s != 0:
            out[i] = (int(x * src_w + delta[0]), int(y * src_h + delta[1]), s)
    return out


def retarget(
    src_anchor: WanMeta, dst: WanMeta, frames: Sequence[WanMeta]
) -> list[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Wan2.2-Animate retargeting of ``frames`` (driving) to the skeleton of ``dst`` (reference).

    ``src_anchor`` is the driving frame used to measure the driving skeleton. Returns per frame
    (width, height, body (20, 3) pixels, first hand (21, 3) pixels, second hand (21, 3) pixels) on the
    reference canvas; hands are (right-hand data, left-hand data) as the official code leaves them.
    """
    src_wh, dst_wh0 = (src_anchor.width, src_anchor.height), (dst.width, dst.height)
    src_pts, dst_pts = _points(src_anchor.body), _points(dst.body)
    for name, pts in (("reference", dst_pts), ("driving anchor frame", src_pts)):
        if pts[1] is None:
            raise ValueError(f"retargeting needs the neck (both shoulders) in the {name} pose")
    scale_min = _height_scale(src_pts, dst_pts, src_wh, dst_wh0)
    dst_wh = (int(dst.width * scale_min), int(dst.height * scale_min))
    body_flag = min(body_extent(dst_pts), body_extent(src_pts))
    src_ori = [None if p is None else list(p) for p in src_pts]
    _fill_missing(src_pts, *src_wh)
    _fill_missing(dst_pts, *dst_wh)
    none_idx = [i for i in range(len(dst_pts)) if dst_pts[i] is None or src_pts[i] is None]
    for i in none_idx:
        src_pts[i] = dst_pts[i] = None
    ratios = _bone_ratios(src_pts, dst_pts, src_wh, dst_wh)

    src_px = [None if p is None else [p[0] * src_wh[0], p[1] * src_wh[1]] for p in src_ori]
    rescaled, _ = _regrow(src_px, ratios, cap_feet=False)
    if body_flag == 2:
        ground_y = max(dst_pts[10][1], dst_pts[13][1]) * dst_wh[1]
        if dst_pts[18] is not None and dst_pts[19] is not None:
            right_mid = (dst_pts[10][1] + dst_pts[19][1]) / 2
            left_mid = (dst_pts[13][1] + dst_pts[18][1]) / 2
            ground_y = max(left_mid, right_mid) * dst_wh[1]
        delta_y = max(rescaled[10][1], rescaled[13][1]) - ground_y
        ground_x = (dst_pts[8][0] + dst_pts[11][0]) * dst_wh[0] / 2
        src_ground_x = (rescaled[8][0] + rescaled[11][0]) / 2
        delta_x = src_ground_x - ground_x
    else:
        delta_y = rescaled[1][1] - dst_pts[1][1] * dst_wh[1]
        src_ground_x = rescaled[1][0]
        delta_x = src_ground_x - dst_pts[1][0] * dst_wh[0]

    out_w, out_h = dst_wh0
    results = []
    for fid, meta in enumerate(frames):
        sw, sh = meta.width, meta.height
        pts = _points(meta.body)
        for i in none_idx:
            pts[i] = None
        px = [None if p is None else [p[0] * sw, p[1] * sh, p[2]] for p in pts]
        new, regrown = _regrow(px, ratios, cap_feet=True)
        dx = delta_x
        if fid == 0:  # official: the first-frame x correction reaches frame 0 only
            if body_flag == 2 and new[8] is not None and new[11] is not None:
                dx += (new[8][0] + new[11][0]) / 2 - src_ground_x
            elif body_flag == 0 and new[1] is not None:
                dx += new[1][0] - src_ground_x
        final = [None if p is None else [(p[0] - dx) / scale_min, (p[1] - delta_y) / scale_min, p[2]] for p in new]
        # joints that were not re-grown are the same objects as the input in the official code
        orig = [final[i] if i not in regrown else px[i] for i in range(len(px))]

        hand_ratio = max(ratios[0], ratios[1]) / scale_min
        r_data = _scale_hand(np.asarray(meta.right_hand, np.float64), hand_ratio)
        l_data = _scale_hand(np.asarray(meta.left_hand, np.float64), hand_ratio)
        first, second = _carry_hands(r_data, l_data, final, orig, sw, sh)

        body = np.zeros((len(final), 3))
        for i, p in enumerate(final):
            if p is not None:
                body[i] = (p[0], p[1], p[2])
        results.append((out_w, out_h, body, first, second))
    return results


def _carry_hands(r_data: list, l_data: list, final: list, orig: list, sw: int, sh: int) -> tuple:
    """Move the scaled hands onto the new wrists (R wrist = 4, L wrist = 7), with the official root snapping."""

    def as_array(hand: list) -> np.ndarray:  # hands left unplaced stay in normalised coordinates, as official
        return np.array(hand, dtype=np.float64)

    if final[4] is None and final[7] is None:
        return as_array(r_data), as_array(l_data)
    if final[4] is None:
        return as_array(r_data), _place_hand(l_data, np.array(final[7][:2]) - np.array(orig[7][:2]), sw, sh)
    if final[7] is None:
        return _place_hand(r_data, np.array(final[4][:2]) - np.array(orig[4][:2]), sw, sh), as_array(l_data)
    r_delta = np.array(final[4][:2]) - np.array(orig[4][:2])
    l_delta = np.array(final[7][:2]) - np.array(orig[7][:2])
    if r_data[0][0] != -1:
        r_delta = r_delta + np.array((orig[4][0] - r_data[0][0] * sw, orig[4][1] - r_data[0][1] * sh))
    if l_data[0][0] != -1:
        l_delta = l_delta + np.array((orig[7][0] - l_data[0][0] * sw, orig[7][1] - l_data[0][1] * sh))
    # official heuristic: if the right hand's root is nearer the left wrist, the hands are swapped
    dist_r = ((orig[4][0] - r_data[0][0] * sw) ** 2 + (orig[4][1] - r_data[0][1] * sh) ** 2) ** 0.5
    dist_l = ((orig[7][0] - r_data[0][0] * sw) ** 2 + (orig[7][1] - r_data[0][1] * sh) ** 2) ** 0.5
    if dist_r > dist_l:
        return _place_hand(l_data, r_delta, sw, sh), _place_hand(r_data, l_delta, sw, sh)
    return _place_hand(r_data, r_delta, sw, sh), _place_hand(l_data, l_delta, sw, sh)


def align_to_reference(
    ref_meta: WanMeta,
    driving_metas: Sequence[WanMeta],
    driving_poses: Sequence[OpenPose] | None = None,
    *,
    anchor: int | None = None,
) -> list[OpenPose]:
    """"ref" mode with alignment: driving poses retargeted to the reference skeleton, faces roughly aligned.

    ``driving_poses`` are the OpenPose forms of ``driving_metas`` (computed when not given); their faces are
    the ones reshaped. ``anchor`` fixes the driving frame that measures the driving skeleton; None searches it.
    """
    if not driving_metas:
        raise ValueError("driving_metas: at least one driving pose is needed")
    if driving_poses is None:
        driving_poses = [meta_to_openpose(m) for m in driving_metas]
    if len(driving_poses) != len(driving_metas):
        raise ValueError(f"driving_poses: {len(driving_poses)} poses for {len(driving_metas)} metas")
    ref_pose = meta_to_openpose(ref_meta)
    if anchor is None:
        anchor = find_anchor_frame(ref_pose, driving_poses)
    results = retarget(driving_metas[anchor], ref_meta, driving_metas)
    ref68 = face68(ref_pose.faces)
    out = []
    for (width, height, body, first, second), drv in zip(results, driving_poses):
        wh = np.array([width, height])
        score = body[:, 2].astype(np.float32)
        subset = np.arange(len(body), dtype=float)
        subset[score <= 0] = -1
        pose = OpenPose(
            # all 20 points (toes included) as the official conversion keeps them; the drawer reads the first 18
            candidate=body[:, :2].astype(np.float32) / wh,
            subset=subset[None],
            score=score[None],
            # official order after retargeting: [kps_rhand, kps_lhand] = [second, first]
            hands=np.stack([second[:, :2], first[:, :2]]) / wh,
            hands_score=np.stack([second[:, 2], first[:, 2]]).astype(np.float32),
            faces=np.zeros((0, 68, 2)),
            faces_score=np.zeros((0, 68), np.float32),
        )
        src68 = face68(drv.faces)
        if ref68 is not None and src68 is not None:
            pose.faces = face_scale_only(src68, ref68, pose.candidate[0])[None]
            pose.faces_score = np.asarray(drv.faces_score)
        out.append(pose)
    return out
