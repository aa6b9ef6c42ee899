"""Add-on registration and the local operators (export JSON, preview strip, bone detection, custom map)."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

import blender_addon  # noqa: E402
from blender_addon import vse  # noqa: E402
from blender_addon.pose.png import decode_png  # noqa: E402
from blender_addon.pose.types import KEYPOINT_INDEX, PoseSequence  # noqa: E402


@pytest.fixture
def registered(addon):
    return addon


def test_register_unregister_roundtrip(registered):
    assert hasattr(bpy.ops.o2a, "export_pose") and hasattr(bpy.types.Scene, "o2a_shot")
    blender_addon.unregister()
    assert not hasattr(bpy.types.Scene, "o2a_shot")
    blender_addon.register()
    assert hasattr(bpy.types.Scene, "o2a_shot") and hasattr(bpy.types, "VIEW3D_PT_o2a_shot")
    assert hasattr(bpy.types, "SEQUENCER_PT_o2a_jobs")


def test_export_pose_operator_writes_layout(registered, empty_scene, rig_tools, tmp_path):
    scene = empty_scene
    scene.render.resolution_x, scene.render.resolution_y = 640, 480
    scene.render.fps = 30
    ob = rig_tools.rig("mixamo", prefix="mixamorig:")
    rig_tools.animate(ob, prefix="mixamorig:")
    rig_tools.camera()
    bpy.context.view_layer.objects.active = ob
    out = tmp_path / "pose.json"
    result = bpy.ops.o2a.export_pose(filepath=str(out), frame_start=3, frame_end=7)
    assert result == {"FINISHED"}
    data = json.loads(out.read_text())
    assert data["layout"] == "coco_wholebody_133"
    assert (data["width"], data["height"], data["fps"]) == (640, 480, 30.0)
    assert [f["frame"] for f in data["frames"]] == [3, 4, 5, 6, 7]
    assert all(len(f["keypoints"]) == 133 and all(len(k) == 3 for k in f["keypoints"]) for f in data["frames"])
    seq = PoseSequence.load_json(out)
    assert scene.frame_current == 1
    scene.frame_set(3)
    wrist = ob.matrix_world @ ob.pose.bones["mixamorig:LeftHand"].head
    from bpy_extras.object_utils import world_to_camera_view

    co = world_to_camera_view(scene, scene.camera, wrist)
    got = seq.keypoints[0, KEYPOINT_INDEX["left_wrist"], :2]
    assert np.abs(got - [co.x * 640, (1 - co.y) * 480]).max() < 0.5


def test_export_pose_reports_errors(registered, empty_scene, rig_tools, tmp_path):
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    bpy.context.view_layer.objects.active = ob
    with pytest.raises(RuntimeError, match="no active camera"):
        bpy.ops.o2a.export_pose(filepath=str(tmp_path / "x.json"))


def test_preview_operator_inserts_strip(registered, empty_scene, rig_tools, tmp_path):
    scene = empty_scene
    scene.frame_start, scene.frame_end = 10, 14
    scene.render.resolution_x, scene.render.resolution_y = 800, 600
    ob = rig_tools.rig("metarig")
    rig_tools.animate(ob, frames=(10, 14))
    rig_tools.camera()
    bpy.context.view_layer.objects.active = ob
    scene.o2a_shot.preview_size = 200
    # Something already on channel 2 at those frames: the preview must pick a free channel.
    scene.sequence_editor_create()
    busy = vse.insert_image_sequence(scene, [_dummy_png(tmp_path / "busy" / "a.png")], 11, name="busy", channel=2)
    assert busy.channel == 2
    assert bpy.ops.o2a.preview_poses(directory=str(tmp_path / "prev")) == {"FINISHED"}
    strips = [s for s in vse.our_strips(scene) if vse.strip_metadata(s)["kind"] == "pose_preview"]
    assert len(strips) == 1
    strip = strips[0]
    assert vse.strip_range(strip) == (10, 15) and strip.channel == 3
    files = sorted((tmp_path / "prev").glob("pose_*.png"))
    assert [f.name for f in files] == [f"pose_{i:05d}.png" for i in range(10, 15)]
    img = decode_png(files[0].read_bytes())
    assert img.shape == (150, 200, 3) and img.max() > 100  # something was drawn


def test_detect_and_custom_map(registered, empty_scene, rig_tools, tmp_path):
    ob = rig_tools.rig("rigify", fingers=False, face=False)
    rig_tools.camera()
    bpy.context.view_layer.objects.active = ob
    assert bpy.ops.o2a.detect_bones() == {"FINISHED"}
    assert ob.o2a_rig.report.startswith("RIGIFY (ORG-)")
    assert bpy.ops.o2a.fill_custom_map() == {"FINISHED"}
    rows = {o.role: o for o in ob.o2a_rig.overrides}
    assert rows["left_wrist"].bone == "ORG-hand.L"
    # Remap the left wrist onto the forearm's head and check the export follows the custom map.
    rows["left_wrist"].bone = "ORG-forearm.L"
    out = tmp_path / "p.json"
    bpy.ops.o2a.export_pose(filepath=str(out), frame_start=1, frame_end=1)
    kp = PoseSequence.load_json(out).keypoints[0]
    assert np.allclose(kp[KEYPOINT_INDEX["left_wrist"]], kp[KEYPOINT_INDEX["left_elbow"]])


def _dummy_png(path):
    from blender_addon.pose.png import write_png

    return write_png(path, np.full((4, 4, 3), 128, np.uint8))


def test_reference_from_render_and_rig_pose(registered, empty_scene, rig_tools):
    from blender_addon import images, shot

    scene = empty_scene
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 48, 100
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    rig_tools.camera()
    scene.frame_set(4)
    ref = images.from_render(scene, 1)
    assert (ref.width, ref.height) == (64, 48) and ref.data.startswith(b"\x89PNG")
    assert scene.frame_current == 4
    pose = shot.reference_pose(scene, ob, ref, 1)
    assert pose.shape == (133, 3) and pose[KEYPOINT_INDEX["left_wrist"], 2] > 0
    # Same size as the render canvas: the reference pose is the frame's keypoints unchanged...
    from blender_addon.extract import extract

    frame1 = extract(scene, ob, shot.extract_options(scene, ob, 1, 1)).keypoints[0]
    assert np.allclose(frame1, pose)
    # ...and scaled into a picture of another size.
    half = images.ReferenceImage(ref.data, 32, 24, "half")
    assert np.allclose(shot.reference_pose(scene, ob, half, 1)[:, :2], frame1[:, :2] / 2, atol=1e-4)
