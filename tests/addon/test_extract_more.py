"""Extraction details: occlusion ray casts, real Rigify-generated rigs, other naming variants, face
template placement, the bpy-free import contract."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
import bmesh  # noqa: E402
from bpy_extras.object_utils import world_to_camera_view  # noqa: E402

from blender_addon.extract import ExtractOptions, extract, rest_rig  # noqa: E402
from blender_addon.pose import skeleton  # noqa: E402
from blender_addon.pose.types import KEYPOINT_INDEX  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cube(name, center, size, parent=None, armature=None):
    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_cube(bm, size=size)
    bm.to_mesh(mesh)
    bm.free()
    ob = bpy.data.objects.new(name, mesh)
    ob.location = center
    bpy.context.scene.collection.objects.link(ob)
    if parent is not None:
        ob.parent = parent
    if armature is not None:
        mod = ob.modifiers.new("Armature", "ARMATURE")
        mod.object = armature
    return ob


def test_occlusion_lowers_confidence_only_behind_other_body_parts(empty_scene, rig_tools):
    scene = empty_scene
    scene.frame_start = scene.frame_end = 1
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    rig_tools.camera()
    bpy.context.view_layer.update()
    wrist = np.array(ob.matrix_world @ ob.pose.bones["hand.L"].head)
    elbow = np.array(ob.matrix_world @ ob.pose.bones["forearm.R"].head)
    # A "body part" of the character between the camera (at -Y) and the left wrist...
    _cube("Blocker", (wrist[0], wrist[1] - 0.5, wrist[2]), 0.2, armature=ob)
    # ...and a limb volume that merely encloses the right elbow (its own limb: stays visible).
    _cube("Sleeve", tuple(elbow), 0.12, parent=ob)
    # A non-character object in front of the right knee does not count.
    knee = np.array(ob.matrix_world @ ob.pose.bones["shin.R"].head)
    _cube("Prop", (knee[0], knee[1] - 0.5, knee[2]), 0.2)
    plain = extract(scene, ob, ExtractOptions(1, 1)).keypoints[0]
    occl = extract(scene, ob, ExtractOptions(1, 1, occlusion=True)).keypoints[0]
    lw, re, rk = KEYPOINT_INDEX["left_wrist"], KEYPOINT_INDEX["right_elbow"], KEYPOINT_INDEX["right_knee"]
    assert plain[lw, 2] == pytest.approx(0.9) and occl[lw, 2] == pytest.approx(0.2)
    assert occl[re, 2] == pytest.approx(0.9) and occl[rk, 2] == pytest.approx(0.9)
    assert np.allclose(plain[:, :2], occl[:, :2])
    others = [i for i in range(17) if i != lw and plain[i, 2] > 0]
    assert np.allclose(occl[others, 2], plain[others, 2])


def test_real_rigify_generated_rig_uses_org_bones(empty_scene, rigify_enabled):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 1, 3
    bpy.ops.object.armature_human_metarig_add()
    bpy.ops.pose.rigify_generate()
    rig = bpy.context.view_layer.objects.active
    assert rig.name == "rig" and "ORG-upper_arm.L" in rig.pose.bones
    det = skeleton.detect(rest_rig(rig).names)
    assert det.preset == "RIGIFY" and det.prefix == "ORG-"
    # Pose the FK controls (IK/FK switch at FK); ORG bones follow the final pose.
    fk = rig.pose.bones["upper_arm_fk.L"]
    fk.rotation_mode = "XYZ"
    for f, angle in ((1, 0.0), (3, 0.9)):
        fk.rotation_euler = (angle, 0, 0)
        fk.keyframe_insert("rotation_euler", frame=f)
    rig.pose.bones["upper_arm_parent.L"]["IK_FK"] = 1.0
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location, cam.rotation_euler = (0, -7, 1.2), (math.pi / 2, 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    seq = extract(scene, rig, ExtractOptions(1, 3))
    r = scene.render
    w, h = r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100
    for row, frame in enumerate(seq.frames):
        scene.frame_set(frame)
        for kp, bone in (("left_elbow", "ORG-forearm.L"), ("left_wrist", "ORG-hand.L"), ("right_knee", "ORG-shin.R"),
                         ("left_hand_index1", "ORG-f_index.01.L"), ("face_45", "ORG-lid.T.L")):
            co = world_to_camera_view(scene, cam, rig.matrix_world @ rig.pose.bones[bone].head)
            got = seq.keypoints[row, KEYPOINT_INDEX[kp]]
            assert np.abs(got[:2] - [co.x * w, (1 - co.y) * h]).max() < 0.5, (frame, kp)
    moved = np.abs(seq.keypoints[2, KEYPOINT_INDEX["left_wrist"], :2] - seq.keypoints[0, KEYPOINT_INDEX["left_wrist"], :2])
    assert moved.max() > 5, "FK rotation must move the wrist (ORG bones follow the controls)"


def _named_rig(scene, names_heads):
    arm = bpy.data.armatures.new("N")
    ob = bpy.data.objects.new("N", arm)
    scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    bpy.ops.object.mode_set(mode="EDIT")
    for name, head, tail in names_heads:
        eb = arm.edit_bones.new(name)
        eb.head, eb.tail = head, tail
    bpy.ops.object.mode_set(mode="OBJECT")
    return ob


def _humanoid(side_names, head_name, prefix=""):
    """(name, head, tail) for a simple T-pose humanoid under a naming convention (facing -Y)."""
    rows = [(prefix + head_name, (0, 0, 1.6), (0, 0, 1.8))]
    for s, sign in (("L", 1), ("R", -1)):
        x = 0.2 * sign
        joints = [("shoulder", (x, 0, 1.45), (2 * x, 0, 1.45)), ("elbow", (2 * x, 0, 1.45), (3 * x, 0, 1.45)),
                  ("wrist", (3 * x, 0, 1.45), (3.4 * x, 0, 1.45)), ("hip", (x / 2, 0, 1.0), (x / 2, 0, 0.55)),
                  ("knee", (x / 2, 0, 0.55), (x / 2, 0, 0.1)), ("ankle", (x / 2, 0, 0.1), (x / 2, -0.12, 0.02)),
                  ("toe", (x / 2, -0.12, 0.02), (x / 2, -0.2, 0.02))]
        rows += [(prefix + side_names[j].format(S=s, s=s.lower(), Side="Left" if s == "L" else "Right"), h, t)
                 for j, h, t in joints]
    return rows


ARP = {"shoulder": "arm_stretch.{s}", "elbow": "forearm_stretch.{s}", "wrist": "hand.{s}",
       "hip": "thigh_stretch.{s}", "knee": "leg_stretch.{s}", "ankle": "foot.{s}", "toe": "toes_01.{s}"}
MIXAMO = {"shoulder": "{Side}Arm", "elbow": "{Side}ForeArm", "wrist": "{Side}Hand", "hip": "{Side}UpLeg",
          "knee": "{Side}Leg", "ankle": "{Side}Foot", "toe": "{Side}ToeBase"}


@pytest.mark.parametrize("names, head, prefix, preset", [
    (ARP, "head.x", "", "AUTO_RIG_PRO"),
    (MIXAMO, "Head", "mixamorig1:", "MIXAMO"),
    (MIXAMO, "Head", "mixamorig_", "MIXAMO"),
    (MIXAMO, "Head", "Hero:", "MIXAMO"),
])
def test_other_conventions_detect_and_extract(empty_scene, rig_tools, names, head, prefix, preset):
    scene = empty_scene
    scene.frame_start = scene.frame_end = 1
    ob = _named_rig(scene, _humanoid(names, head, prefix))
    rig_tools.camera()
    det = skeleton.detect(rest_rig(ob).names)
    assert det.preset == preset and not [r for r in skeleton.CORE_ROLES if r not in det.specs], det.summary()
    kp = extract(scene, ob, ExtractOptions(1, 1)).keypoints[0]
    assert kp[KEYPOINT_INDEX["left_wrist"], 0] > kp[KEYPOINT_INDEX["right_wrist"], 0]
    # Feet: big toe in front of the ankle, heel below/behind it; on the image the toes are lower.
    for side in ("left", "right"):
        ankle, big, heel = (kp[KEYPOINT_INDEX[f"{side}_{n}"]] for n in ("ankle", "big_toe", "heel"))
        assert big[2] > 0 and heel[2] > 0 and big[1] > ankle[1] and heel[1] > ankle[1]
    # Face from the template around the head bone: eyes above the nose, mouth below, inside the head width.
    eyes = kp[[KEYPOINT_INDEX["left_eye"], KEYPOINT_INDEX["right_eye"]]]
    nose, mouth = kp[KEYPOINT_INDEX["nose"]], kp[KEYPOINT_INDEX["face_51"]]
    assert eyes[0, 0] > nose[0] > eyes[1, 0] and eyes[:, 1].max() < nose[1] < mouth[1]
    co = world_to_camera_view(scene, scene.camera, ob.matrix_world @ ob.pose.bones[prefix + head].tail)
    assert nose[1] > (1 - co.y) * scene.render.resolution_y * scene.render.resolution_percentage / 100  # below the crown


def test_face_template_follows_head_rotation(empty_scene, rig_tools):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 1, 2
    ob = rig_tools.rig("mixamo", fingers=False)
    rig_tools.camera(location=(0, -3, 1.7))
    head = ob.pose.bones["Head"]
    head.rotation_mode = "XYZ"
    head.keyframe_insert("rotation_euler", frame=1)
    head.rotation_euler = (0, 0, math.radians(35))  # turn the head (bone Y is up: Z roll turns it sideways)
    head.keyframe_insert("rotation_euler", frame=2)
    kp = extract(scene, ob, ExtractOptions(1, 2)).keypoints
    nose = KEYPOINT_INDEX["nose"]
    assert abs(kp[1, nose, 0] - kp[0, nose, 0]) > 3, "the nose must move with the head bone"
    sh = [KEYPOINT_INDEX["left_shoulder"], KEYPOINT_INDEX["right_shoulder"]]
    assert np.allclose(kp[0, sh, :2], kp[1, sh, :2], atol=1e-3), "shoulders do not move with the head"


def test_package_and_pure_modules_import_without_bpy_or_torch():
    code = ("import sys; import blender_addon, blender_addon.pose.binding, blender_addon.pose.preview, "
            "blender_addon.jobs, blender_addon.settings, blender_addon.remote, blender_addon.client; "
            "bad = [m for m in ('bpy', 'torch', 'mathutils') if m in sys.modules]; "
            "print('LEAK', bad) if bad else print('OK')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.stdout.strip() == "OK", proc.stdout + proc.stderr


def test_hidden_rig_is_still_evaluated_and_excluded_rig_is_an_error(empty_scene, rig_tools):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 1, 12
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    rig_tools.animate(ob)
    rig_tools.camera()
    visible = extract(scene, ob, ExtractOptions(1, 12)).keypoints
    ob.hide_viewport = True  # users hide rigs; a hidden rig is not evaluated by frame_set
    hidden = extract(scene, ob, ExtractOptions(1, 12)).keypoints
    assert ob.hide_viewport, "the flag is restored"
    assert np.allclose(visible, hidden, atol=1e-4)
    col = bpy.data.collections.new("Rigs")
    scene.collection.children.link(col)
    scene.collection.objects.unlink(ob)
    col.objects.link(ob)
    ob.hide_viewport = False
    col.hide_viewport = True
    assert np.allclose(extract(scene, ob, ExtractOptions(1, 12)).keypoints, visible, atol=1e-4)
    assert col.hide_viewport
    bpy.context.view_layer.layer_collection.children["Rigs"].exclude = True
    from blender_addon.extract import ExtractError

    with pytest.raises(ExtractError, match="excluded collection"):
        extract(scene, ob, ExtractOptions(1, 2))


def test_face_template_matches_metarig_face_bones_without_fitting(empty_scene, rig_tools):
    """Calibration guard: the template placed from the head bone alone lands near the metarig's face bones."""
    from blender_addon.pose import face_template as ft
    from blender_addon.pose.binding import _fit_template, head_frame

    ob = rig_tools.rig("metarig")
    rest = rest_rig(ob)
    det = skeleton.detect(rest.names)
    frame = head_frame(rest, det)
    roles = [r for r in ft.TEMPLATE_POINTS if det.has(r)]
    assert len(roles) == 43
    target = np.array([rest.spec_point(det.specs[r]) for r in roles])
    placed = frame.place(np.array([ft.TEMPLATE_POINTS[r] for r in roles]))
    err = np.linalg.norm(placed - target, axis=1) / frame.scale
    assert err.mean() < 0.07 and err.max() < 0.25, (err.mean(), roles[int(err.argmax())])
    fitted = _fit_template(frame, rest, det)
    assert 0.9 < fitted.scale / frame.scale < 1.1
