"""Keypoint format: validation errors, JSON round trip, conversion to the drawer's OpenPose layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from render_server.pose.keypoints import (
    KeypointError,
    PoseFrame,
    PoseSequence,
    load_sequence,
    save_sequence,
    validate_keypoints,
)
from render_server.pose.openpose import (
    OpenPose,
    coco133_to_dwpose_raw,
    coco133_to_meta,
    dwpose_raw_to_openpose,
    frame_to_openpose,
)


def _doc(frames: list, width: object = 320, height: object = 480) -> dict:
    return {"layout": "coco_wholebody_133", "width": width, "height": height, "fps": 24,
            "frames": [{"frame": i + 10, "keypoints": f} for i, f in enumerate(frames)]}  # fmt: skip


@pytest.mark.parametrize(
    "mutate, field, fragment",
    [
        (lambda k: k[:132], "keypoints", "shape (133, 3)"),
        (lambda k: k[:, :2], "keypoints", "shape (133, 3)"),
        (lambda k: np.where(np.arange(133)[:, None] == 7, np.nan, k), "keypoints", "non-finite"),
        (lambda k: np.where(np.arange(133)[:, None] == 3, np.inf, k), "keypoints", "non-finite"),
        (lambda k: np.concatenate([k[:, :2], np.full((133, 1), 1.5)], 1), "keypoints", "outside [0, 1]"),
        (lambda k: np.concatenate([k[:, :2], np.full((133, 1), -0.1)], 1), "keypoints", "outside [0, 1]"),
    ],
)
def test_bad_frame_names_field_and_frame(person, mutate, field, fragment) -> None:
    good = person()
    bad = mutate(good.copy())
    with pytest.raises(KeypointError) as info:
        PoseSequence.from_json_dict(_doc([good.tolist(), np.asarray(bad).tolist()]))
    message = str(info.value)
    assert field in message and "frame 1" in message and fragment in message, message
    assert info.value.frame == 1 and info.value.field == field


def test_nan_point_is_located(person) -> None:
    kps = person()
    kps[42, 1] = np.nan
    with pytest.raises(KeypointError, match=r"point 42, column y"):
        validate_keypoints(kps, frame=3)


@pytest.mark.parametrize("width, height, field", [(0, 480, "width"), (320, -2, "height"), (32.5, 480, "width"),
                                                  ("320", 480, "width"), (320, None, "height")])  # fmt: skip
def test_bad_canvas_size(person, width, height, field) -> None:
    with pytest.raises(KeypointError) as info:
        PoseSequence.from_json_dict(_doc([person().tolist()], width, height))
    assert info.value.field == field and field in str(info.value)


def test_other_document_errors(person, tmp_path) -> None:
    with pytest.raises(KeypointError, match="layout"):
        PoseSequence.from_json_dict({**_doc([]), "layout": "coco_17"})
    with pytest.raises(KeypointError, match="frames.*frame 0"):
        PoseSequence.from_json_dict({**_doc([]), "frames": ["nope"]})
    with pytest.raises(KeypointError, match="fps"):
        PoseSequence.from_json_dict({**_doc([person().tolist()]), "fps": 0})
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(KeypointError, match="document"):
        load_sequence(path)


def test_json_round_trip(person, tmp_path) -> None:
    seq = PoseSequence.from_array(np.stack([person(), person(conf=0.5)]), 320, 480, 30.0, first_frame=5)
    path = tmp_path / "seq.json"
    save_sequence(seq, path)
    data = json.loads(path.read_text())
    assert data["layout"] == "coco_wholebody_133" and [f["frame"] for f in data["frames"]] == [5, 6]
    back = load_sequence(path)
    assert (back.width, back.height, back.fps, len(back)) == (320, 480, 30.0, 2)
    np.testing.assert_array_equal(back.array(), seq.array())


def test_openpose_conversion(person) -> None:
    kps = person(width=320, height=480)
    kps[5, 2], kps[6, 2] = 0.8, 0.6
    pose = frame_to_openpose(kps, 320, 480)
    # neck = mid-shoulders with averaged confidence; right shoulder = COCO 6
    np.testing.assert_allclose(pose.candidate[1], (kps[5, :2] + kps[6, :2]) / 2 / [320, 480], rtol=1e-6)
    assert pose.score[0, 1] == pytest.approx(0.7)
    np.testing.assert_allclose(pose.candidate[2], kps[6, :2] / [320, 480], rtol=1e-6)
    # hands stored [right, left]; 68 face points from COCO 23..90
    np.testing.assert_allclose(pose.hands[0], kps[112:133, :2] / [320, 480], rtol=1e-6)
    np.testing.assert_allclose(pose.faces[0], kps[23:91, :2] / [320, 480], rtol=1e-6)
    assert pose.subset.shape == (1, 18) and (pose.subset >= 0).all()


def test_missing_source_makes_derived_point_missing(person) -> None:
    kps = person()
    kps[5] = (0.0, 0.0, 0.0)  # left shoulder missing: its coordinates mean nothing
    pose = frame_to_openpose(kps, 320, 480)
    assert pose.subset[0, 1] == -1 and pose.subset[0, 5] == -1 and pose.subset[0, 2] == 2


def test_dwpose_raw_round_trip(person) -> None:
    kps = person()
    cand, score = coco133_to_dwpose_raw(kps)
    assert cand.shape == (1, 134, 2) and score[0, 1] == 1.0  # binary DWPose neck
    pose = dwpose_raw_to_openpose(cand, score, 480, 320)
    via_meta = frame_to_openpose(kps, 320, 480)
    np.testing.assert_allclose(pose.candidate, via_meta.candidate, rtol=1e-6)
    np.testing.assert_allclose(pose.faces, via_meta.faces, rtol=1e-6)
    np.testing.assert_allclose(pose.hands[0], via_meta.hands[1], rtol=1e-6)  # DWPose order: [left, right]


def test_dict_round_trip(person) -> None:
    pose = frame_to_openpose(person(), 320, 480)
    back = OpenPose.from_dict(pose.to_dict())
    for name in ("candidate", "subset", "score", "hands", "hands_score", "faces", "faces_score"):
        np.testing.assert_array_equal(getattr(back, name), getattr(pose, name))
    meta = coco133_to_meta(person(), 320, 480)
    assert meta.body.shape == (20, 3) and meta.face.shape == (69, 3) and meta.body.dtype == np.float32


def test_pose_frame_validates() -> None:
    with pytest.raises(KeypointError, match=r"keypoints \(frame 4\)"):
        PoseFrame(np.zeros((17, 3)), frame=4)
