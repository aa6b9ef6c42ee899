"""prepare_shot: keypoints in -> pose frames, reference pose, warped reference and mask at the output size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render_server.pose.align import resizecrop
from render_server.pose.draw import draw_pose_aligned
from render_server.pose.keypoints import KeypointError, PoseFrame, PoseSequence
from render_server.pose.openpose import frame_to_openpose
from render_server.pose.prepare import (
    PrepareOptions,
    ReferencePoseMissing,
    map_to_canvas,
    prepare_shot,
)

REF_W, REF_H = 160, 240  # reference image
DRV_W, DRV_H = 400, 480  # driving canvas (wider: gets centre-cropped onto the reference aspect)
OUT_W, OUT_H = 96, 144


@pytest.fixture
def shot(person):
    image = np.full((REF_H, REF_W, 3), 180, np.uint8)
    ref = PoseFrame(person(REF_W, REF_H, conf=0.95))
    frames = [person(DRV_W, DRV_H, conf=0.95, scale=0.5, shift=(0.0, 0.1 + 0.01 * i)) for i in range(3)]
    driving = PoseSequence.from_array(np.stack(frames), DRV_W, DRV_H, 24.0)
    return image, ref, driving


def test_pose_mode_outputs(shot) -> None:
    image, ref, driving = shot
    out = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode="pose"))
    assert out.pose_frames.shape == (3, OUT_H, OUT_W, 3) and out.pose_frames.dtype == np.uint8
    assert out.reference_image.shape == (OUT_H, OUT_W, 3) and out.reference_pose.shape == (OUT_H, OUT_W, 3)
    assert out.mask.shape == (OUT_H, OUT_W) and out.mask.dtype == np.uint8
    # the driver is half the reference's size: the reference shrinks, the rest is outpainted
    assert (out.mask > 128).mean() > 0.4
    assert out.reference_image[out.mask == 255].max() == 0
    assert out.face_lightened and 0 <= out.anchor < 3
    assert all(frame.any() for frame in out.pose_frames) and out.reference_pose.any()


def test_frames_are_drawn_like_the_official_chain(shot) -> None:
    image, ref, driving = shot
    out = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode="ref", face_lightening="off"))
    kps = map_to_canvas(driving.frames[1].keypoints, DRV_W, DRV_H, REF_W, REF_H)
    expected = resizecrop(draw_pose_aligned(frame_to_openpose(kps, REF_W, REF_H), REF_H, REF_W), OUT_H, OUT_W)
    np.testing.assert_array_equal(out.pose_frames[1], expected)
    assert not out.mask.any() and not out.face_lightened


def test_face_lightening_modes(shot) -> None:
    image, ref, driving = shot

    def faces(**kw):
        return prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode="ref", **kw))

    auto = faces()
    assert auto.face_lightened  # a rig driving a photo: not the reference's own skeleton
    assert not faces(same_skeleton=True).face_lightened
    assert faces(face_lightening="on", same_skeleton=True).face_lightened
    off = faces(face_lightening="off")
    assert not off.face_lightened and (off.pose_frames.astype(int) - auto.pose_frames).max() > 50
    with pytest.raises(ValueError, match="face_lightening"):
        PrepareOptions(OUT_W, OUT_H, face_lightening="maybe")


def test_ref_mode_retargets_to_the_reference(shot) -> None:
    image, ref, driving = shot
    plain = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode="ref"))
    aligned = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode="ref", align_limbs=True))
    # the retargeted skeleton has the reference's (2x larger) size: more pixels drawn
    assert (aligned.pose_frames.any(axis=-1)).sum() > 1.5 * (plain.pose_frames.any(axis=-1)).sum()
    np.testing.assert_array_equal(aligned.reference_image, resizecrop(image, OUT_H, OUT_W))


def test_fixed_and_searched_anchor(shot, person) -> None:
    image, ref, driving = shot
    frames = driving.array()
    frames[0] = 0.0  # first frame empty: never an anchor
    drv = PoseSequence.from_array(frames, DRV_W, DRV_H, 24.0)
    assert prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H)).anchor in (1, 2)
    assert prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H, anchor=2)).anchor == 2
    with pytest.raises(ValueError, match="anchor.*no neck"):
        prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H, anchor=0))
    with pytest.raises(ValueError, match="anchor"):
        prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H, anchor=7))
    out = prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H, align_limbs=True))
    assert not out.pose_frames[0].any()  # the empty frame draws as a black "no pose" frame


def test_missing_reference_pose_needs_a_detector(shot, person) -> None:
    image, _, driving = shot
    with pytest.raises(ReferencePoseMissing) as info:
        prepare_shot(image, None, driving, PrepareOptions(OUT_W, OUT_H))
    message = str(info.value)
    assert "reference_pose" in message and "detector" in message and "keypoints" in message
    calls = []

    def detector(img: np.ndarray) -> PoseFrame:
        calls.append(img.shape)
        return PoseFrame(person(REF_W, REF_H, conf=0.95))

    out = prepare_shot(image, None, driving, PrepareOptions(OUT_W, OUT_H), detector=detector)
    assert calls == [(REF_H, REF_W, 3)] and out.reference_pose.any()


def test_reference_pose_from_another_canvas(shot, person) -> None:
    image, ref, driving = shot
    rig_frame = PoseFrame(person(REF_W * 2, REF_H * 2, conf=0.95))  # same pose, rendered at twice the size
    a = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H))
    b = prepare_shot(image, rig_frame, driving, PrepareOptions(OUT_W, OUT_H), reference_canvas=(REF_W * 2, REF_H * 2))
    np.testing.assert_array_equal(a.reference_image, b.reference_image)
    np.testing.assert_array_equal(a.mask, b.mask)


def test_bad_inputs(shot) -> None:
    image, ref, driving = shot
    with pytest.raises(KeypointError, match="frames"):
        prepare_shot(image, ref, PoseSequence(DRV_W, DRV_H, 24.0, ()), PrepareOptions(OUT_W, OUT_H))
    with pytest.raises(ValueError, match="reference_image"):
        prepare_shot(image[..., 0], ref, driving, PrepareOptions(OUT_W, OUT_H))
    with pytest.raises(KeypointError, match="reference_pose"):
        prepare_shot(image, PoseFrame(np.zeros((133, 3))), driving, PrepareOptions(OUT_W, OUT_H))
    with pytest.raises(KeypointError, match="width"):
        PrepareOptions(0, OUT_H)
    with pytest.raises(ValueError, match="mode"):
        PrepareOptions(OUT_W, OUT_H, mode="dance")


def test_map_to_canvas_matches_resizecrop_geometry() -> None:
    # a 400x480 canvas cropped to 2:3 keeps x in [40, 360] and y in [0, 480], scaled to 160x240
    pts = np.array([[40.0, 0.0, 1.0], [360.0, 480.0, 1.0], [200.0, 240.0, 0.5]])
    out = map_to_canvas(pts, 400, 480, 160, 240)
    np.testing.assert_allclose(out[:, :2], [[0, 0], [160, 240], [80, 120]])
    np.testing.assert_array_equal(out[:, 2], pts[:, 2])


def test_ref_mode_alignment_with_empty_and_partial_frames(shot) -> None:
    image, ref, driving = shot
    frames = driving.array()
    frames[0] = 0.0  # no pose at all
    frames[1, 91:133, 2] = 0.0  # no hands
    frames[1, [9, 10, 15, 16], 2] = 0.0  # no wrists, no ankles
    drv = PoseSequence.from_array(frames, DRV_W, DRV_H, 24.0)
    out = prepare_shot(image, ref, drv, PrepareOptions(OUT_W, OUT_H, mode="ref", align_limbs=True, anchor=2))
    assert not out.pose_frames[0].any() and out.pose_frames[1].any() and out.pose_frames[2].any()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(["pose", "ref"]), align_limbs=st.booleans(),
       drop=st.sampled_from([0.0, 0.2, 0.6]), noise=st.sampled_from([0.0, 0.05, 0.3]))  # fmt: skip
def test_prepare_never_crashes_on_random_poses(person, seed, mode, align_limbs, drop, noise) -> None:
    rng = np.random.default_rng(seed)

    def random_person(width: int, height: int) -> np.ndarray:
        kps = person(width, height, conf=0.95, scale=rng.uniform(0.3, 1.2), shift=tuple(rng.uniform(-0.2, 0.2, 2)))
        kps[:, :2] += rng.normal(0, noise, (133, 2)) * (width, height)
        kps[:, 2] = np.where(rng.random(133) < drop, 0.0, rng.uniform(0.2, 1.0, 133))
        return kps

    image = np.full((REF_H, REF_W, 3), 90, np.uint8)
    ref = PoseFrame(random_person(REF_W, REF_H))
    driving = PoseSequence.from_array(np.stack([random_person(DRV_W, DRV_H) for _ in range(3)]), DRV_W, DRV_H, 24.0)
    try:
        out = prepare_shot(image, ref, driving, PrepareOptions(OUT_W, OUT_H, mode=mode, align_limbs=align_limbs))
    except KeypointError as exc:  # refusals must say which input is unusable
        assert exc.field in ("reference_pose", "frames")
        return
    assert out.pose_frames.shape == (3, OUT_H, OUT_W, 3) and out.mask.shape == (OUT_H, OUT_W)
