"""Snapshot helpers: read the scene's shot settings into plain objects on the main thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

import bpy

from .extract import ExtractError, ExtractOptions, detection_for, rest_rig
from .pose.visibility import ConfidencePolicy

if TYPE_CHECKING:
    from .jobs import RenderOptions


def armature_of(context, scene: bpy.types.Scene | None = None) -> bpy.types.Object:
    """The shot's armature, else the active object when it is an armature."""
    scene = scene or context.scene
    shot = scene.o2a_shot
    if shot.armature is not None:
        return shot.armature
    ob = getattr(context, "active_object", None) or getattr(context, "object", None)
    if ob is not None and ob.type == "ARMATURE":
        return ob
    raise ExtractError("armature: set one in the shot settings or make an armature active")


def frame_range(scene: bpy.types.Scene) -> tuple[int, int]:
    shot = scene.o2a_shot
    if shot.use_scene_range:
        return scene.frame_start, scene.frame_end
    return shot.frame_start, shot.frame_end


def extract_options(scene: bpy.types.Scene, rig: bpy.types.Object, frame_start: int | None = None,
                    frame_end: int | None = None) -> ExtractOptions:
    shot = scene.o2a_shot
    start, end = frame_range(scene)
    rig_settings = rig.o2a_rig
    return ExtractOptions(
        frame_start=start if frame_start is None else frame_start,
        frame_end=end if frame_end is None else frame_end,
        preset=rig_settings.preset,
        overrides=rig_settings.override_map(),
        use_face_template=rig_settings.use_face_template,
        occlusion=shot.occlusion,
        policy=ConfidencePolicy(visible=shot.visible_confidence),
    )


def detect_report(rig: bpy.types.Object) -> str:
    """Run bone detection with the rig's preset + custom map and store/return a one-line summary."""
    rest = rest_rig(rig)
    det = detection_for(rest.names, rig.o2a_rig.preset, rig.o2a_rig.override_map())
    summary = det.summary() if det.specs else "no known bone naming found"
    rig.o2a_rig.report = summary
    return summary


def output_dir(scene: bpy.types.Scene, *parts: str) -> str:
    """Absolute output folder; ``//`` paths of an unsaved file go to the temp folder, not the cwd."""
    import os
    import tempfile

    setting = scene.o2a_shot.output_dir or "//o2a/"
    if setting.startswith("//") and not bpy.data.filepath:
        base = os.path.join(tempfile.gettempdir(), "o2a", setting[2:])
    else:
        base = bpy.path.abspath(setting)
    return os.path.join(os.path.abspath(base), *parts)


def render_options(scene: bpy.types.Scene, *, still: bool = False, label: str = "") -> RenderOptions:
    from .jobs import RenderOptions

    shot = scene.o2a_shot
    return RenderOptions(
        steps=shot.steps,
        seed=shot.seed if shot.use_seed else None,
        image_guidance=shot.image_guidance if shot.use_guidance else None,
        pose_guidance=shot.pose_guidance if shot.use_guidance else None,
        guidance_mode=shot.guidance_mode,
        face_lightening=shot.face_lightening,
        head_lightening=shot.head_lightening,
        same_skeleton=shot.same_skeleton or shot.reference_source == "RENDER",
        alignment_mode=shot.alignment_mode,
        chunk_plan=shot.chunk_plan,
        image_pose_transfer="PER_FRAME" if still else "UNSPECIFIED",
        prompt=shot.prompt,
        display_name=label,
    )


def reference_pose(scene, rig, reference, frame: int):
    """The rig's keypoints at ``frame`` scaled into the reference picture's pixels.

    Assumes the picture has the framing of the scene camera (true for a render of the frame;
    for other pictures pose the rig to match the picture at that frame, or use server detection).
    """
    from .extract import extract

    seq = extract(scene, rig, extract_options(scene, rig, frame, frame))
    kp = seq.keypoints[0].copy()
    kp[:, 0] *= reference.width / seq.width
    kp[:, 1] *= reference.height / seq.height
    return kp


def make_snapshot(context, scene: bpy.types.Scene, *, still: bool = False, options=None):
    """Everything a job needs, read on the main thread: (ShotSnapshot, timeline start frame)."""
    from . import images
    from .extract import extract
    from .jobs import ShotSnapshot

    rig = armature_of(context, scene)
    if still:
        start = end = scene.frame_current
    else:
        start, end = frame_range(scene)
    seq = extract(scene, rig, extract_options(scene, rig, start, end))
    ref = images.from_shot(scene.o2a_shot, scene)
    pose = None
    if scene.o2a_shot.reference_pose_source == "RIG":
        pose = reference_pose(scene, rig, ref, scene.o2a_shot.reference_frame)
    label = f"{bpy.path.basename(bpy.data.filepath) or 'untitled'} {scene.name} {rig.name} {start}-{end}"
    opts = options or render_options(scene, still=still, label=label)
    return ShotSnapshot(seq, ref.data, pose, opts), start
