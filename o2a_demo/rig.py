"""Builds the demo shot in Blender (run with the `bpy` module in its own process):

    python -m o2a_demo.rig --blend shot.blend --reference ref.png --frames 89 --canvas 288 512

Blender's human metarig (Rigify) walks in place and waves its right hand, seen by a camera; the add-on's shot
settings point at it; and the reference picture is painted from the rig's own keypoints at frame 0 (its rest pose),
so the add-on's "reference pose from the rig" matches the picture. The .blend is then rendered through the
add-on's headless farm entry (`blender_addon.farm`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import bpy  # noqa: E402  (this module only runs where bpy exists)


def _key_pose(rig, frame: int, rotations: dict[str, tuple[float, float, float]]) -> None:
    for name, euler in rotations.items():
        bone = rig.pose.bones[name]
        bone.rotation_mode = "XYZ"
        bone.rotation_euler = euler
        bone.keyframe_insert("rotation_euler", frame=frame)


def walk_and_wave(phase: float, amount: float = 1.0) -> dict[str, tuple[float, float, float]]:
    """Bone rotations (local XYZ Euler, radians) of the metarig at gait `phase`; amount 0 = rest pose."""
    s = math.sin(phase)
    return {
        "thigh.L": (0.45 * s * amount, 0.0, 0.0),
        "thigh.R": (-0.45 * s * amount, 0.0, 0.0),
        "shin.L": (-0.7 * max(0.0, -s) * amount, 0.0, 0.0),
        "shin.R": (-0.7 * max(0.0, s) * amount, 0.0, 0.0),
        "upper_arm.L": (-0.4 * s * amount, 0.0, -0.9 * amount),
        "forearm.L": (0.3 * amount, 0.0, 0.0),
        "upper_arm.R": (0.0, 0.0, -1.9 * amount),
        "forearm.R": (0.0, 0.0, (-0.9 + 0.5 * math.sin(2 * phase)) * amount),
        "spine.006": (0.0, 0.15 * s * amount, 0.0),
    }


def build(blend: Path, reference: Path, frames: int, width: int, height: int, fps: int = 16) -> None:
    import addon_utils

    import blender_addon
    from blender_addon.extract import extract
    from blender_addon.pose.png import write_png
    from blender_addon.shot import extract_options
    from o2a_demo.figure import paint_reference

    bpy.ops.wm.read_homefile(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    if not hasattr(bpy.types.Scene, "o2a_shot"):
        blender_addon.register()
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = 1, frames

    bpy.ops.object.armature_human_metarig_add()
    rig = bpy.context.object
    rig.name = "Walker"
    bpy.ops.object.mode_set(mode="POSE")
    _key_pose(rig, 0, walk_and_wave(0.0, amount=0.0))
    for frame in range(1, frames + 1, 2):
        _key_pose(rig, frame, walk_and_wave(2 * math.pi * (frame - 1) / fps))
    bpy.ops.object.mode_set(mode="OBJECT")

    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    cam.data.lens = 50.0
    # A three-quarter view, so the legs' forward swing shows as well as the raised, waving arm.
    cam.location = (2.6, -4.5, 1.05)
    cam.rotation_euler = (math.pi / 2, 0.0, math.pi / 6)
    scene.collection.objects.link(cam)
    scene.camera = cam

    shot = scene.o2a_shot
    shot.armature = rig
    shot.reference_source, shot.reference_file = "FILE", str(reference)
    shot.reference_pose_source, shot.reference_frame = "RIG", 0
    shot.same_skeleton = True  # the reference is this rig: keep its face at full brightness

    rest = extract(scene, rig, extract_options(scene, rig, 0, 0)).keypoints[0]
    write_png(reference, paint_reference(rest, width, height))
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="o2a_demo.rig")
    p.add_argument("--blend", type=Path, required=True)
    p.add_argument("--reference", type=Path, required=True)
    p.add_argument("--frames", type=int, default=89)
    p.add_argument("--canvas", type=int, nargs=2, default=(288, 512), metavar=("W", "H"))
    args = p.parse_args(argv)
    build(args.blend.resolve(), args.reference.resolve(), args.frames, *args.canvas)
    print(f"o2a_demo.rig: wrote {args.blend} and {args.reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
