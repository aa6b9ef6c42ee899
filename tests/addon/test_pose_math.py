"""Pure-numpy parts of the add-on: layout/JSON validation, point specs and custom maps, face template,
binding math, preview drawing, PNG codec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from blender_addon.pose import face_template as ft
from blender_addon.pose import preview, skeleton
from blender_addon.pose.binding import RestRig, bind
from blender_addon.pose.png import decode_png, encode_png, image_size
from blender_addon.pose.types import KEYPOINT_INDEX, PoseFormatError, PoseSequence


def test_pose_sequence_validation_names_the_field(tmp_path):
    kp = np.zeros((2, 133, 3), np.float32)
    with pytest.raises(PoseFormatError, match="keypoints: expected shape"):
        PoseSequence(np.zeros((2, 132, 3)), 10, 10, 24)
    bad = kp.copy()
    bad[1, 5, 0] = np.nan
    with pytest.raises(PoseFormatError, match="frame row 1"):
        PoseSequence(bad, 10, 10, 24)
    with pytest.raises(PoseFormatError, match="confidence"):
        PoseSequence(kp + np.array([0, 0, 2], np.float32), 10, 10, 24)
    with pytest.raises(PoseFormatError, match="fps"):
        PoseSequence(kp, 10, 10, 0)
    with pytest.raises(PoseFormatError, match="frames: 3 frame numbers"):
        PoseSequence(kp, 10, 10, 24, (1, 2, 3))
    seq = PoseSequence(kp + np.array([3.25, 4.5, 0.9], np.float32), 640, 480, 23.976, (7, 8))
    back = PoseSequence.load_json(seq.save_json(tmp_path / "a.json"))
    assert back.frames == (7, 8) and back.fps == pytest.approx(23.976) and np.allclose(back.keypoints, seq.keypoints)
    data = json.loads((tmp_path / "a.json").read_text())
    data["frames"][1]["keypoints"] = data["frames"][1]["keypoints"][:-1]
    with pytest.raises(PoseFormatError, match=r"frames\[1\].keypoints"):
        PoseSequence.from_json_dict(data)
    with pytest.raises(PoseFormatError, match="layout"):
        PoseSequence.from_json_dict({**data, "layout": "openpose_18"})
    assert np.allclose(seq.normalized()[0, 0, :2], [3.25 / 640, 4.5 / 480])


def test_point_specs_and_custom_map():
    spec = skeleton.PointSpec.parse("a:tail+b+c:mid")
    assert [(p.bone, p.end) for p in spec.parts] == [("a", "tail"), ("b", "head"), ("c", "mid")]
    assert str(spec) == "a:tail+b+c:mid"
    assert skeleton.PointSpec.parse("mixamorig:LeftHand").parts[0].bone == "mixamorig:LeftHand"  # ':' in names
    with pytest.raises(ValueError, match="empty"):
        skeleton.PointSpec.parse("  ")
    names = ["upper_arm.L", "forearm.L", "hand.L", "spine.006"]
    det = skeleton.match_preset(skeleton.PRESETS["METARIG"], names)
    assert det.specs["left_wrist"].bones == ("hand.L",) and "right_wrist" in det.missing
    over = skeleton.apply_overrides(det, {"right_wrist": "hand.L:tail", "left_elbow": ""}, names)
    assert str(over.specs["right_wrist"]) == "hand.L:tail" and "left_elbow" not in over.specs
    assert over.preset == "CUSTOM"
    with pytest.raises(ValueError, match="role 'right_wrist': bone 'nope'"):
        skeleton.apply_overrides(det, {"right_wrist": "nope"}, names)
    with pytest.raises(ValueError, match="unknown role"):
        skeleton.apply_overrides(det, {"tail_tip": "hand.L"}, names)
    assert skeleton.detect(["Bone", "Bone.001"]).preset == "NONE"


def test_face_template_is_ibug_ordered_and_symmetric():
    f = ft.FACE68
    assert f[0, 0] < 0 < f[16, 0] and f[8, 0] == 0 and f[8, 1] == f[:, 1].min()  # jaw from subject's right
    assert f[36, 0] < f[39, 0] < 0 < f[42, 0] < f[45, 0]  # right eye outer->inner, left eye inner->outer
    assert f[30, 2] == f[:, 2].max()  # nose tip is the most forward point
    mirror = {i: 16 - i for i in range(17)} | {17 + i: 26 - i for i in range(5)} | {36: 45, 37: 44, 38: 43, 39: 42,
                                                                                     40: 47, 41: 46, 48: 54, 60: 64}
    for a, b in mirror.items():
        assert np.allclose(f[a] * [-1, 1, 1], f[b]), (a, b)
    n = ft.outward_normal(f)
    assert np.allclose(np.linalg.norm(n, axis=1), 1) and (n[27:36, 2] > 0.5).all()


def test_binding_is_roll_independent():
    """Rotating a bone's rest frame about its own axis (roll) must not move template points."""
    def rig(roll):
        names, mats, lengths = [], [], []
        def bone(name, head, tail, roll_angle=0.0):
            y = np.array(tail, float) - head
            length = np.linalg.norm(y)
            y /= length
            x = np.cross(y, [0, 0, 1]) if abs(y[2]) < 0.9 else np.cross(y, [1, 0, 0])
            x /= np.linalg.norm(x)
            z = np.cross(x, y)
            c, s = np.cos(roll_angle), np.sin(roll_angle)
            x, z = c * x + s * z, -s * x + c * z
            m = np.eye(4)
            m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, head
            names.append(name), mats.append(m), lengths.append(length)
        bone("spine.006", (0, 0, 1.6), (0, 0, 1.8), roll)
        for s, sign in (("L", 1), ("R", -1)):
            bone(f"upper_arm.{s}", (0.2 * sign, 0, 1.45), (0.45 * sign, 0, 1.45))
            bone(f"thigh.{s}", (0.1 * sign, 0, 1.0), (0.1 * sign, 0, 0.55))
        return RestRig(tuple(names), np.array(mats), np.array(lengths))

    outs = []
    for roll in (0.0, 1.1):
        r = rig(roll)
        det = skeleton.match_preset(skeleton.PRESETS["METARIG"], r.names)
        b = bind(r, det)
        pts, normals = b.evaluate(r.matrix_local)
        outs.append(pts)
    assert np.allclose(outs[0], outs[1], atol=1e-9)
    nose = outs[0][KEYPOINT_INDEX["nose"]]
    assert nose[1] < -0.05 and 1.6 < nose[2] < 1.8  # in front (-Y) of the head, at head height


def test_preview_drawing_follows_dwpose_rules():
    kp = np.zeros((133, 3))
    kp[5] = (300, 200, 1.0)   # left shoulder
    kp[6] = (100, 200, 1.0)   # right shoulder
    kp[8] = (100, 300, 1.0)   # right elbow
    kp[91:112] = (350, 350, 0.2)  # left hand below the 0.3 threshold: not drawn
    img = preview.draw_pose(kp, 400, 400)
    assert img.shape == (400, 400, 3)
    # right upper arm (limb 2, colour 255,170,0) dimmed by 0.6
    assert tuple(img[250, 100]) == (153, 102, 0)
    # neck joint (mean of shoulders) at full joint colour (255, 85, 0)
    assert tuple(img[200, 200]) == (255, 85, 0)
    assert img[350, 350].sum() == 0
    assert preview.preview_size(1920, 1080, 512) == (512, 288)


def test_png_roundtrip_and_size_sniffing():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 5, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    assert (decode_png(encode_png(rgb)) == rgb).all() and (decode_png(encode_png(rgba)) == rgba).all()
    assert image_size(encode_png(rgb)) == (5, 7)
    jpeg = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffc0001108002a003703012200021101031101ffd9")
    assert image_size(jpeg) == (55, 42)
    with pytest.raises(ValueError, match="not a PNG or JPEG"):
        image_size(b"GIF89a....")
