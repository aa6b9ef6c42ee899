"""Alignment behaviour beyond the official fixtures: hands on their own arm, anchor search, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from render_server.pose import align, retarget
from render_server.pose.openpose import coco133_to_meta, frame_to_openpose, meta_to_openpose

W, H = 320, 480


def _pose(kps: np.ndarray):
    return frame_to_openpose(kps, W, H)


def _long_arms(person, factor: float = 1.4) -> np.ndarray:
    kps = person(conf=0.95)
    for shoulder, elbow, wrist, hand in ((6, 8, 10, slice(112, 133)), (5, 7, 9, slice(91, 112))):
        offset_elbow = (kps[elbow, :2] - kps[shoulder, :2]) * (factor - 1)
        kps[elbow, :2] += offset_elbow
        offset_wrist = offset_elbow + (kps[wrist, :2] - kps[elbow, :2] + 0) * (factor - 1)
        kps[wrist, :2] += offset_wrist
        kps[hand, :2] += offset_wrist
    return kps


def _wrist_and_hand_shift(before, after, wrist: int, hand: int) -> tuple[np.ndarray, np.ndarray]:
    return (after.candidate[wrist] - before.candidate[wrist],
            (after.hands[hand] - before.hands[hand]).mean(axis=0))  # fmt: skip


def test_hands_follow_their_own_arm(person) -> None:
    ref = _pose(_long_arms(person))
    driving = [_pose(person(conf=0.95)), _pose(person(conf=0.95, shift=(0.02, 0.01)))]
    for fixed in (0, 1):
        out = align.align_to_pose(ref, driving, anchor=fixed)[fixed]
        before = driving[fixed]
        r_wrist, r_hand = _wrist_and_hand_shift(before, out, 4, 0)  # hands[0] = right hand
        l_wrist, l_hand = _wrist_and_hand_shift(before, out, 7, 1)
        assert np.linalg.norm(r_wrist) > 0.01 and np.linalg.norm(l_wrist) > 0.01  # arms really grew
        np.testing.assert_allclose(r_hand, r_wrist, atol=1e-6)
        np.testing.assert_allclose(l_hand, l_wrist, atol=1e-6)


def test_official_pairing_moves_hands_with_the_opposite_arm(person) -> None:
    ref = _pose(_long_arms(person))
    before = _pose(person(conf=0.95))
    out = align.align_to_pose(ref, [before], anchor=0, right_hand_index=1)[0]
    r_wrist, r_hand = _wrist_and_hand_shift(before, out, 4, 0)
    l_wrist, _ = _wrist_and_hand_shift(before, out, 7, 0)
    np.testing.assert_allclose(r_hand, l_wrist, atol=1e-6)  # right hand went with the LEFT arm
    assert np.linalg.norm(r_hand - r_wrist) > 0.01
    with pytest.raises(ValueError, match="right_hand_index"):
        align.align_to_pose(ref, [before], anchor=0, right_hand_index=2)


def _rotated(kps: np.ndarray, degrees: float) -> np.ndarray:
    out = kps.copy()
    center = kps[[5, 6, 11, 12], :2].mean(axis=0)
    a = np.radians(degrees)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out[:, :2] = (kps[:, :2] - center) @ rot.T + center
    return out


def test_anchor_search_picks_the_most_similar_frame(person) -> None:
    ref = _pose(person())
    asymmetric = person()
    asymmetric[10, :2] += (-60.0, 40.0)  # right forearm much longer than the left
    frames = [_rotated(person(), 50), asymmetric, _rotated(person(), 8), person(scale=0.8)]
    poses = [_pose(k) for k in frames]
    scores = align.anchor_frame_scores(ref, poses)
    assert scores[0][1] is False and scores[3][1] is True  # leaning 50 degrees is not upright
    assert scores[1][0] < scores[3][0]
    assert align.find_anchor_frame(ref, poses) == 3  # same orientation, just smaller
    assert align.find_anchor_frame(ref, poses[:3]) == 2
    with pytest.raises(ValueError, match="driving"):
        align.find_anchor_frame(ref, [])


def test_scale_ratio_fallbacks(person) -> None:
    ref = person(conf=0.95)
    small = person(conf=0.95, scale=0.5)
    assert align.scale_ratio(_pose(ref), _pose(small)) == pytest.approx(0.5, rel=1e-5)
    weak_hips = small.copy()
    weak_hips[[11, 12], 2] = 0.5
    # shoulders only: Euclidean shoulder distance ratio, still 0.5 for a uniform scale
    assert align.scale_ratio(_pose(ref), _pose(weak_hips)) == pytest.approx(0.5, rel=1e-5)
    weak_shoulders = person(conf=0.95, scale=0.25)
    weak_shoulders[[5, 6], 2] = 0.5
    assert align.scale_ratio(_pose(ref), _pose(weak_shoulders)) == pytest.approx(0.25, rel=1e-5)  # ears


def test_warp_moves_reference_neck_onto_driving_neck(person) -> None:
    image = np.full((H, W, 3), 200, np.uint8)
    ref, drv = _pose(person(conf=0.95)), _pose(person(conf=0.95, scale=0.5, shift=(0.1, 0.05)))
    img, pose_img, mask = align.warp_ref_to_pose(image, drv, ref)
    assert img.shape == (H, W, 3) and pose_img.shape == (H, W, 3) and mask.shape == (H, W)
    assert set(np.unique(mask)) == {0, 255} and (mask == 255).mean() > 0.5  # reference shrank to a quarter
    assert (img[mask == 255] == 0).all() and (img[mask == 0] == 200).mean() > 0.95
    m = align.reference_warp_matrix(ref, drv, W, H)
    neck_ref = ref.candidate[1] * [W, H]
    np.testing.assert_allclose(m[:, :2] @ neck_ref + m[:, 2], drv.candidate[1] * [W, H], atol=1e-3)


def test_retarget_identity_and_scaling(person) -> None:
    kps = person(conf=0.95)
    meta = coco133_to_meta(kps, W, H)
    same = retarget.align_to_reference(meta, [meta])[0]
    # identity up to one constant offset: the official ground line uses ankles for the driver but the
    # ankle-toe midpoint for the reference, which shifts a full-body pose down by half that distance
    shift = same.candidate[:18] - meta_to_openpose(meta).candidate
    np.testing.assert_allclose(shift, np.broadcast_to(shift[1], shift.shape), atol=1e-6)
    assert shift[1, 0] == pytest.approx(0, abs=1e-6) and 0 < shift[1, 1] < 0.02
    np.testing.assert_allclose(same.faces[0, 30], same.candidate[0], atol=1e-9)  # face nose tip on the body nose
    face_in = meta_to_openpose(meta).faces[0]
    np.testing.assert_allclose(same.faces[0] - same.faces[0, 30], face_in - face_in[30], atol=1e-6)  # same shape
    # a smaller driver is brought to the reference size
    small = coco133_to_meta(person(conf=0.95, scale=0.6), W, H)
    out = retarget.align_to_reference(meta, [small, small])
    ref_pose = meta_to_openpose(meta)
    for pose in out:
        width = np.linalg.norm(pose.candidate[2] - pose.candidate[5])
        assert width == pytest.approx(np.linalg.norm(ref_pose.candidate[2] - ref_pose.candidate[5]), rel=1e-4)
        assert pose.candidate[10, 1] == pytest.approx(ref_pose.candidate[10, 1], abs=0.02)  # feet on the ground
        assert np.linalg.norm(pose.candidate[8] - pose.candidate[9]) == pytest.approx(
            np.linalg.norm(ref_pose.candidate[8] - ref_pose.candidate[9]), rel=1e-4)  # thigh of the reference


def test_retarget_tolerates_missing_points(person) -> None:
    kps = person(conf=0.95)
    drv = person(conf=0.95, scale=0.7)
    drv[[9, 7]] = 0.0  # left wrist and elbow missing in the driving frames
    out = retarget.align_to_reference(coco133_to_meta(kps, W, H), [coco133_to_meta(drv, W, H)])[0]
    assert out.subset[0, 6] == -1 and out.subset[0, 7] == -1 and out.subset[0, 4] >= 0
    assert np.isfinite(out.candidate).all()


def test_face_scale_only_takes_reference_proportions(person) -> None:
    src = frame_to_openpose(person(), W, H).faces[0].astype(np.float64)
    ref = (src - src.mean(0)) * [1.5, 0.8] + src.mean(0)
    nose = np.array([0.3, 0.4])
    out = align.face_scale_only(src, ref, nose)
    np.testing.assert_allclose(out[30], nose)
    assert np.linalg.norm(out[36] - out[45]) == pytest.approx(np.linalg.norm(ref[36] - ref[45]))
    assert np.linalg.norm(out[27] - out[8]) == pytest.approx(np.linalg.norm(ref[27] - ref[8]), rel=1e-3)


def test_resizecrop_arrays() -> None:
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 100:200] = 255
    out = align.resizecrop(img, 50, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8 and out.mean() > 250  # centre square kept
    mask = np.zeros((100, 60), np.uint8)
    assert align.resizecrop(mask, 20, 40).shape == (20, 40)
    assert align.crop_box(300, 100, 50, 50) == (100.0, 0.0, 200.0, 100.0)


def test_anchor_search_ignores_missing_joints(person) -> None:
    ref = _pose(person())
    broken = person()
    broken[[5, 7, 9]] = (1.0, 1.0, 0.0)  # left arm missing; its coordinates are meaningless
    poses = [_pose(broken), _pose(person(scale=0.7))]
    scores = align.anchor_frame_scores(ref, poses)
    assert scores[0][1] is False and scores[0][2] == float("inf") and scores[0][0] == 2  # legs still symmetric
    assert align.find_anchor_frame(ref, poses) == 1


def test_align_to_pose_ignores_missing_joints(person) -> None:
    ref = _pose(_long_arms(person))
    broken = person(conf=0.95)
    broken[8] = (1000.0, -500.0, 0.0)  # right elbow missing, with a wild coordinate
    before = _pose(broken)
    out = align.align_to_pose(ref, [_pose(person(conf=0.95)), before], anchor=0)[1]
    # the upper arm and forearm offsets need the elbow: the visible wrist only moves with the shoulder
    shoulder_shift = out.candidate[2] - before.candidate[2]
    np.testing.assert_allclose(out.candidate[4] - before.candidate[4], shoulder_shift, atol=1e-6)
    assert np.abs(out.candidate[4] - before.candidate[4]).max() < 0.05


def test_retarget_needs_a_neck(person) -> None:
    ref = person(conf=0.95)
    no_shoulders = person(conf=0.95)
    no_shoulders[[5, 6], 2] = 0.0
    with pytest.raises(ValueError, match="neck.*reference"):
        retarget.align_to_reference(coco133_to_meta(no_shoulders, W, H), [coco133_to_meta(ref, W, H)])
    with pytest.raises(ValueError, match="neck.*driving anchor"):
        retarget.align_to_reference(coco133_to_meta(ref, W, H), [coco133_to_meta(no_shoulders, W, H)], anchor=0)
