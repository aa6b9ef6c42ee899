#!/usr/bin/env python3
"""Benchmark: keypoint extraction frames/second on a 60-bone rig (bpy wheel or Blender's Python).

    python bench/bench_extract.py [--frames 200] [--repeats 3] [--occlusion] [--no-append]

Builds a Mixamo-style 60-bone rig procedurally (body, 4-joint fingers), keys every bone, and times
``blender_addon.extract.extract`` over the range (frame_set + foreach_get + numpy projection).
Prints one JSON line and appends a row to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bpy  # noqa: E402

from blender_addon.extract import ExtractOptions, extract  # noqa: E402

_FINGERS = ("Thumb", "Index", "Middle", "Ring", "Pinky")


def _bones():
    """(name, head, tail, parent) of a 60-bone T-pose rig, Mixamo names, facing -Y."""
    out = [("Hips", (0, 0, 1.0), (0, 0, 1.1), None), ("Spine", (0, 0, 1.1), (0, 0, 1.25), "Hips"),
           ("Spine1", (0, 0, 1.25), (0, 0, 1.38), "Spine"), ("Spine2", (0, 0, 1.38), (0, 0, 1.5), "Spine1"),
           ("Neck", (0, 0, 1.5), (0, 0, 1.6), "Spine2"), ("Head", (0, 0, 1.6), (0, 0, 1.8), "Neck")]
    for side, s in (("Left", 1), ("Right", -1)):
        out += [(f"{side}Shoulder", (0.05 * s, 0, 1.45), (0.17 * s, 0, 1.45), "Spine2"),
                (f"{side}Arm", (0.17 * s, 0, 1.45), (0.45 * s, 0, 1.45), f"{side}Shoulder"),
                (f"{side}ForeArm", (0.45 * s, 0, 1.45), (0.7 * s, 0, 1.45), f"{side}Arm"),
                (f"{side}Hand", (0.7 * s, 0, 1.45), (0.78 * s, 0, 1.45), f"{side}ForeArm")]
        for fi, finger in enumerate(_FINGERS):
            y = -0.03 + 0.015 * fi
            x0 = 0.78 if finger != "Thumb" else 0.73
            parent = f"{side}Hand"
            joints = 4 if finger != "Pinky" else 3
            for j in range(1, joints + 1):
                name = f"{side}Hand{finger}{j}"
                out.append((name, ((x0 + 0.025 * (j - 1)) * s, y, 1.45), ((x0 + 0.025 * j) * s, y, 1.45), parent))
                parent = name
        out += [(f"{side}UpLeg", (0.1 * s, 0, 1.0), (0.1 * s, 0, 0.55), "Hips"),
                (f"{side}Leg", (0.1 * s, 0, 0.55), (0.1 * s, 0, 0.1), f"{side}UpLeg"),
                (f"{side}Foot", (0.1 * s, 0, 0.1), (0.1 * s, -0.12, 0.02), f"{side}Leg"),
                (f"{side}ToeBase", (0.1 * s, -0.12, 0.02), (0.1 * s, -0.2, 0.02), f"{side}Foot")]
    return out


def _add_limb_meshes(ob) -> int:
    """One box per bone, parented to it: a character mesh for the occlusion ray casts."""
    import bmesh

    count = 0
    for pb in ob.pose.bones:
        mesh = bpy.data.meshes.new(f"m_{pb.name}")
        bm = bmesh.new()
        bmesh.ops.create_cube(bm, size=max(0.02, pb.bone.length * 0.5))
        bm.to_mesh(mesh)
        bm.free()
        box = bpy.data.objects.new(f"m_{pb.name}", mesh)
        bpy.context.scene.collection.objects.link(box)
        box.parent, box.parent_type, box.parent_bone = ob, "BONE", pb.name
        box.location = (0, -pb.bone.length / 2, 0)
        count += 1
    return count


def build_scene(frames: int):
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    arm = bpy.data.armatures.new("Bench")
    ob = bpy.data.objects.new("Bench", arm)
    scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    bpy.ops.object.mode_set(mode="EDIT")
    made = {}
    for name, head, tail, parent in _bones():
        eb = arm.edit_bones.new(name)
        eb.head, eb.tail = head, tail
        if parent:
            eb.parent = made[parent]
        made[name] = eb
    bpy.ops.object.mode_set(mode="OBJECT")
    for i, f in enumerate((1, frames // 2, frames)):
        for pb in ob.pose.bones:
            pb.rotation_mode = "XYZ"
            pb.rotation_euler = (0.2 * math.sin(i + len(pb.name)), 0.1 * i, 0.15 * math.cos(i))
            pb.keyframe_insert("rotation_euler", frame=f)
    cam = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    cam.location, cam.rotation_euler = (0, -5, 1.0), (math.pi / 2, 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    scene.frame_start, scene.frame_end = 1, frames
    return scene, ob


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--occlusion", action="store_true")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args(argv)
    scene, ob = build_scene(args.frames)
    assert len(ob.data.bones) == 60, len(ob.data.bones)
    meshes = _add_limb_meshes(ob) if args.occlusion else 0
    options = ExtractOptions(1, args.frames, occlusion=args.occlusion)
    extract(scene, ob, ExtractOptions(1, 5))  # warm-up
    best = math.inf
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        seq = extract(scene, ob, options)
        best = min(best, time.perf_counter() - t0)
    result = {
        "bench": "extract", "bones": 60, "frames": len(seq), "occlusion": args.occlusion, "meshes": meshes,
        "fps": round(len(seq) / best, 1), "ms_per_frame": round(1000 * best / len(seq), 3),
        "blender": bpy.app.version_string, "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    if not args.no_append:
        path = REPO_ROOT / "docs" / "benchmarks.md"
        if not path.exists():
            path.write_text("# Benchmarks\n\n")
        with path.open("a") as fh:
            fh.write(
                f"\n- add-on extraction ({time.strftime('%Y-%m-%d')}, `bench/bench_extract.py`): 60-bone rig, "
                f"{result['frames']} frames, occlusion {'on (' + str(meshes) + ' limb meshes)' if args.occlusion else 'off'}: **{result['fps']} frames/s** "
                f"({result['ms_per_frame']} ms/frame), Blender {result['blender']} bpy module, Python {result['python']}, "
                f"{result['cpus']} CPUs (shared)\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
