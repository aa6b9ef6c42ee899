"""Property tests of the pose drawer over random keypoint sets (hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render_server.pose.draw import (
    HEAD_JOINTS,
    PoseStyle,
    canvas_size,
    draw_frames,
    draw_pose_aligned,
    draw_pose_classic,
    no_pose_frame,
    stick_width,
)
from render_server.pose.openpose import frame_to_openpose

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FACE_DRAWN = [i for i in range(68) if not (i < 17 or 27 <= i < 36)]


@st.composite
def scenes(draw: st.DrawFn) -> tuple[np.ndarray, int, int]:
    """Random canvas (aspect up to 2.5) and 133 keypoints: near a person or anywhere, some missing or weak."""
    width = draw(st.integers(24, 160))
    height = draw(st.integers(max(16, int(width / 2.5)), min(200, int(width * 2.5))))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    spread = draw(st.sampled_from([0.02, 0.2, 1.0]))
    base = np.column_stack([rng.uniform(0.3, 0.7, 133), rng.uniform(0.1, 0.9, 133)])
    xy = base + rng.normal(0, spread, (133, 2))
    kps = np.empty((133, 3))
    kps[:, 0], kps[:, 1] = xy[:, 0] * width, xy[:, 1] * height
    levels = np.array([0.0, 0.0, 0.1, 0.29, 0.3, 0.31, 0.5, 0.9, 1.0])
    kps[:, 2] = rng.choice(levels, 133) if draw(st.booleans()) else rng.uniform(0, 1, 133)
    kps[:, 2][rng.random(133) < draw(st.sampled_from([0.0, 0.3, 1.0]))] = 0.0
    return kps, width, height


@SETTINGS
@given(scene=scenes(), style=st.builds(PoseStyle, st.booleans(), st.booleans(), st.booleans()))
def test_never_crashes_and_size_is_exact(scene, style) -> None:
    kps, width, height = scene
    pose = frame_to_openpose(kps, width, height)
    img = draw_pose_aligned(pose, height, width, without_face=style.without_face, face_change=style.face_change,
                            head_change=style.head_change)  # fmt: skip
    assert img.shape == (height, width, 3) and img.dtype == np.uint8
    assert draw_pose_classic(pose, height, width).shape == (height, width, 3)


@SETTINGS
@given(scene=scenes(), seed=st.integers(0, 2**32 - 1))
def test_missing_points_are_not_drawn(scene, seed) -> None:
    kps, width, height = scene
    missing = kps[:, 2] == 0
    moved = kps.copy()
    rng = np.random.default_rng(seed)
    moved[missing, 0] = rng.uniform(-width, 2 * width, missing.sum())
    moved[missing, 1] = rng.uniform(-height, 2 * height, missing.sum())
    style = PoseStyle(face_change=True)
    a = draw_frames([frame_to_openpose(kps, width, height)], height, width, style)[0]
    b = draw_frames([frame_to_openpose(moved, width, height)], height, width, style)[0]
    np.testing.assert_array_equal(a, b)  # where a missing point lies changes nothing


@SETTINGS
@given(scene=scenes())
def test_all_missing_is_black(scene) -> None:
    kps, width, height = scene
    kps[:, 2] = 0.0
    img = draw_pose_aligned(frame_to_openpose(kps, width, height), height, width)
    np.testing.assert_array_equal(img, no_pose_frame(height, width))


def _disc_mask(shape: tuple[int, int], centers: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cx, cy in centers:
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
    return mask


def _capsule_mask(shape: tuple[int, int], a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    d = b - a
    t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    return (xx - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2 <= radius**2


def _output_radius(width: int, height: int, base: int) -> float:
    ch, cw = canvas_size(height, width)
    return stick_width(cw, ch, base) * width / cw + 2.0  # + bilinear resize spill


@SETTINGS
@given(scene=scenes())
def test_face_lightening_changes_only_face_pixels(scene) -> None:
    kps, width, height = scene
    pose = frame_to_openpose(kps, width, height)
    default = draw_pose_aligned(pose, height, width)
    light = draw_pose_aligned(pose, height, width, face_change=True)
    changed = np.any(default != light, axis=-1)
    face = pose.faces[0][FACE_DRAWN] * [width, height]
    allowed = _disc_mask((height, width), face, _output_radius(width, height, 2))
    assert not (changed & ~allowed).any(), "face lightening changed pixels away from the face landmarks"


@SETTINGS
@given(scene=scenes())
def test_head_lightening_changes_only_head_pixels(scene) -> None:
    kps, width, height = scene
    pose = frame_to_openpose(kps, width, height)
    face_only = draw_pose_aligned(pose, height, width, face_change=True)
    head = draw_pose_aligned(pose, height, width, face_change=True, head_change=True)
    changed = np.any(face_only != head, axis=-1)
    pts = pose.candidate * [width, height]
    radius = _output_radius(width, height, 3)
    allowed = _disc_mask((height, width), pts[HEAD_JOINTS], radius)
    for a, b in [(1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]:
        allowed |= _capsule_mask((height, width), pts[a], pts[b], radius)
    assert not (changed & ~allowed).any(), "head lightening changed pixels away from the head limbs and joints"


def test_lightening_is_visible(person) -> None:
    pose = frame_to_openpose(person(), 320, 480)
    default = draw_pose_aligned(pose, 480, 320).astype(int)
    light = draw_pose_aligned(pose, 480, 320, face_change=True).astype(int)
    head = draw_pose_aligned(pose, 480, 320, face_change=True, head_change=True).astype(int)
    assert (light <= default).all() and (default - light).max() > 100  # face dots at 35%
    assert (head != light).any()
    without = draw_pose_aligned(pose, 480, 320, without_face=True)
    assert (without != default).any()


@pytest.mark.parametrize("workers", [0, 3])
def test_draw_frames_batch(person, workers) -> None:
    poses = [frame_to_openpose(person(shift=(0.01 * i, 0)), 320, 480) for i in range(4)] + [None]
    frames = draw_frames(poses, 240, 160, PoseStyle(face_change=True), workers=workers)
    assert frames.shape == (5, 240, 160, 3)
    assert not frames[4].any() and frames[0].any()
    np.testing.assert_array_equal(frames[2], draw_pose_aligned(poses[2], 240, 160, face_change=True))
