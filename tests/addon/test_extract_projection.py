"""Exported keypoints against an independent projection of bone heads (bpy_extras.world_to_camera_view)."""

from __future__ import annotations

import math

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402
from mathutils import Vector  # noqa: E402

from blender_addon.extract import ExtractError, ExtractOptions, extract  # noqa: E402
from blender_addon.pose.types import KEYPOINT_INDEX  # noqa: E402

# COCO body keypoints -> bone whose head is the joint, per naming convention (written out here,
# independently of the add-on's preset tables).
JOINTS = {
    "metarig": {
        "left_shoulder": "upper_arm.L", "right_shoulder": "upper_arm.R", "left_elbow": "forearm.L",
        "right_elbow": "forearm.R", "left_wrist": "hand.L", "right_wrist": "hand.R", "left_hip": "thigh.L",
        "right_hip": "thigh.R", "left_knee": "shin.L", "right_knee": "shin.R", "left_ankle": "foot.L",
        "right_ankle": "foot.R", "left_eye": "eye.L", "right_eye": "eye.R", "left_ear": "ear.L", "right_ear": "ear.R",
        "left_hand_index1": "f_index.01.L", "right_hand_pinky3": "f_pinky.03.R", "left_hand_thumb2": "thumb.02.L",
        "face_36": "lid.T.R", "face_45": "lid.T.L",
    },
    "mixamo": {
        "left_shoulder": "LeftArm", "right_shoulder": "RightArm", "left_elbow": "LeftForeArm",
        "right_elbow": "RightForeArm", "left_wrist": "LeftHand", "right_wrist": "RightHand", "left_hip": "LeftUpLeg",
        "right_hip": "RightUpLeg", "left_knee": "LeftLeg", "right_knee": "RightLeg", "left_ankle": "LeftFoot",
        "right_ankle": "RightFoot", "left_eye": "LeftEye", "right_eye": "RightEye",
        "left_hand_index4": "LeftHandIndex4", "right_hand_middle1": "RightHandMiddle1",
        "left_hand_thumb1": "LeftHandThumb1",
    },
}


def reference_px(scene, cam, world_point):
    r = scene.render
    w = r.resolution_x * r.resolution_percentage // 100
    h = r.resolution_y * r.resolution_percentage // 100
    co = world_to_camera_view(scene, cam, Vector(world_point))
    return np.array([co.x * w, (1.0 - co.y) * h]), co.z


def check_frames(scene, ob, seq, joints, prefix="", bone_prefix=""):
    checked = 0
    for row, frame in enumerate(seq.frames):
        scene.frame_set(frame)
        for kp_name, bone in joints.items():
            pb = ob.pose.bones[bone_prefix + prefix + bone]
            world = ob.matrix_world @ pb.head
            expect, depth = reference_px(scene, scene.camera, world)
            got = seq.keypoints[row, KEYPOINT_INDEX[kp_name]]
            assert depth > 0
            assert got[2] > 0, (frame, kp_name)
            assert np.abs(got[:2] - expect).max() < 0.5, (frame, kp_name, got, expect)
            checked += 1
    return checked


def options(scene, **kw):
    return ExtractOptions(scene.frame_start, scene.frame_end, **kw)


@pytest.mark.parametrize(
    "naming, prefix, fingers, face",
    [
        ("metarig", "", True, True),
        ("metarig", "", False, False),
        ("rigify", "", True, True),
        ("mixamo", "mixamorig:", True, False),
        ("mixamo", "", False, False),
    ],
)
def test_bone_heads_match_independent_projection(empty_scene, rig_tools, naming, prefix, fingers, face):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 1, 12
    scene.render.resolution_x, scene.render.resolution_y = 960, 540
    ob = rig_tools.rig(naming, prefix=prefix, fingers=fingers, face=face)
    rig_tools.animate(ob, prefix=prefix)
    rig_tools.camera()
    scene.frame_set(5)
    seq = extract(scene, ob, options(scene))
    assert scene.frame_current == 5  # restored
    assert (seq.width, seq.height) == (960, 540) and len(seq) == 12 and seq.frames[0] == 1
    table = JOINTS["mixamo" if naming == "mixamo" else "metarig"]
    joints = {k: v for k, v in table.items() if (fingers or "_hand_" not in k) and (face or not ("ear" in k or "face_" in k or ("eye" in k and naming != "mixamo")))}
    bone_prefix = "ORG-" if naming == "rigify" else ""
    assert check_frames(scene, ob, seq, joints, prefix=prefix, bone_prefix=bone_prefix) == len(joints) * 12
    hands = seq.keypoints[:, 91:133, 2]
    assert (hands > 0).all() if fingers else (hands[:, 1:21] == 0).all()
    # Face landmarks come from the template when the rig has no face bones: always present,
    # near the head (between the shoulders' x range, above the neck).
    face_pts = seq.keypoints[0, 23:91]
    assert (face_pts[:, 2] > 0).all()
    sh = seq.keypoints[0, [5, 6], :2]
    assert face_pts[:, 1].max() < sh[:, 1].min()
    assert sh[:, 0].min() < face_pts[:, 0].mean() < sh[:, 0].max()


def test_left_right_and_back_view(empty_scene, rig_tools):
    scene = empty_scene
    scene.frame_start = scene.frame_end = 1
    ob = rig_tools.rig("metarig")
    rig_tools.camera()
    front = extract(scene, ob, options(scene)).keypoints[0]
    # Facing the camera: the character's left is on the image's right.
    for left, right in (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_eye", "right_eye"),
                        ("left_hand_wrist", "right_hand_wrist"), ("face_45", "face_36"), ("face_16", "face_0")):
        assert front[KEYPOINT_INDEX[left], 0] > front[KEYPOINT_INDEX[right], 0], (left, right)
    assert (front[23:91, 2] > 0).all()
    ob.rotation_euler = (0, 0, math.pi)  # turn around: back to the camera
    back = extract(scene, ob, options(scene)).keypoints[0]
    assert back[KEYPOINT_INDEX["left_shoulder"], 0] < back[KEYPOINT_INDEX["right_shoulder"], 0]
    assert (back[23:91, 2] == 0).all(), "face seen from behind must be hidden"
    assert back[KEYPOINT_INDEX["nose"], 2] == 0 and back[KEYPOINT_INDEX["left_eye"], 2] == 0
    assert back[KEYPOINT_INDEX["left_ear"], 2] > 0 or back[KEYPOINT_INDEX["right_ear"], 2] > 0
    ob.rotation_euler = (0, 0, -math.pi / 2)  # profile: character's left side towards the camera
    side = extract(scene, ob, options(scene)).keypoints[0]
    assert side[KEYPOINT_INDEX["left_ear"], 2] > 0 and side[KEYPOINT_INDEX["right_ear"], 2] == 0
    assert side[KEYPOINT_INDEX["right_eye"], 2] == 0 and side[KEYPOINT_INDEX["nose"], 2] > 0


@pytest.mark.parametrize(
    "setup",
    ["percentage", "pixel_aspect", "shift_vertical_fit", "ortho", "border_crop"],
)
def test_camera_settings(empty_scene, rig_tools, setup):
    scene = empty_scene
    scene.frame_start = scene.frame_end = 1
    r = scene.render
    r.resolution_x, r.resolution_y = 1280, 720
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    cam = rig_tools.camera()
    if setup == "percentage":
        r.resolution_percentage = 37
    elif setup == "pixel_aspect":
        r.pixel_aspect_x, r.pixel_aspect_y = 2.0, 1.0
    elif setup == "shift_vertical_fit":
        cam.data.shift_x, cam.data.shift_y = 0.1, -0.05
        cam.data.sensor_fit = "VERTICAL"
        r.resolution_x, r.resolution_y = 720, 1280
    elif setup == "ortho":
        cam.data.type = "ORTHO"
        cam.data.ortho_scale = 3.0
    elif setup == "border_crop":
        r.use_border, r.use_crop_to_border = True, True
        r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.25, 0.75, 0.1, 0.9
    seq = extract(scene, ob, options(scene))
    scene.frame_set(1)
    w = r.resolution_x * r.resolution_percentage // 100
    h = r.resolution_y * r.resolution_percentage // 100
    for kp_name, bone in JOINTS["metarig"].items():
        if "_hand_" in kp_name or "face" in kp_name or "eye" in kp_name or "ear" in kp_name:
            continue
        expect, _ = reference_px(scene, cam, ob.matrix_world @ ob.pose.bones[bone].head)
        if setup == "border_crop":
            expect = expect - np.array([w * 0.25, h * 0.1])
        got = seq.keypoints[0, KEYPOINT_INDEX[kp_name]]
        assert np.abs(got[:2] - expect).max() < 0.5, (setup, kp_name, got, expect)
    if setup == "border_crop":
        assert (seq.width, seq.height) == (round(w * 0.5), round(h * 0.8))
    else:
        assert (seq.width, seq.height) == (w, h)


def test_camera_switching_markers_and_off_screen(empty_scene, rig_tools):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 1, 30
    ob = rig_tools.rig("metarig", face=False)
    rig_tools.animate(ob, frames=(1, 30))
    cam_a = rig_tools.camera("A")
    cam_b = rig_tools.camera("B", location=(5.0, -4.0, 1.5), rotation=(math.pi / 2, 0, math.radians(50)))
    scene.timeline_markers.new("a", frame=1).camera = cam_a
    scene.timeline_markers.new("b", frame=11).camera = cam_b
    # Frames 21-25: the character leaves the frame sideways; 26-30: it is behind camera A.
    scene.timeline_markers.new("a2", frame=21).camera = cam_a
    ob.keyframe_delete("location", frame=1)
    for f, loc in ((20, (0, 0, 0)), (21, (40, 0, 0)), (25, (40, 0, 0)), (26, (0, -12, 0)), (30, (0, -12, 0))):
        ob.location = loc
        ob.keyframe_insert("location", frame=f)
    seq = extract(scene, ob, options(scene))
    joints = {k: v for k, v in JOINTS["metarig"].items() if "ear" not in k and "face" not in k and "eye" not in k}
    for row in range(0, 20):
        frame = seq.frames[row]
        scene.frame_set(frame)
        expected_cam = cam_a if frame < 11 else cam_b
        assert scene.camera == expected_cam
        for kp_name, bone in joints.items():
            expect, _ = reference_px(scene, expected_cam, ob.matrix_world @ ob.pose.bones[bone].head)
            got = seq.keypoints[row, KEYPOINT_INDEX[kp_name]]
            assert np.abs(got[:2] - expect).max() < 0.5, (frame, kp_name)
    off = seq.keypoints[20:25]
    assert (off[..., 2] == 0).all()
    assert (np.abs(off[:, :17, 0]) > seq.width).any()  # off-canvas coordinates are kept
    behind = seq.keypoints[25:30]
    assert (behind == 0).all()


def test_errors_are_clear(empty_scene, rig_tools):
    scene = empty_scene
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    with pytest.raises(ExtractError, match="no active camera"):
        extract(scene, ob, ExtractOptions(1, 2))
    rig_tools.camera()
    with pytest.raises(ExtractError, match="frame_end"):
        extract(scene, ob, ExtractOptions(5, 2))
    with pytest.raises(ExtractError, match="custom map role 'left_wrist'"):
        extract(scene, ob, ExtractOptions(1, 1, overrides={"left_wrist": "no_such_bone"}))
    plain = bpy.data.objects.new("Empty", None)
    with pytest.raises(ExtractError, match="armature"):
        extract(scene, plain, ExtractOptions(1, 1))
    arm = bpy.data.armatures.new("Odd")
    odd = bpy.data.objects.new("Odd", arm)
    scene.collection.objects.link(odd)
    bpy.context.view_layer.objects.active = odd
    bpy.ops.object.mode_set(mode="EDIT")
    arm.edit_bones.new("bone_a").tail = (0, 0, 1)
    bpy.ops.object.mode_set(mode="OBJECT")
    with pytest.raises(ExtractError, match="custom bone map"):
        extract(scene, odd, ExtractOptions(1, 1))
