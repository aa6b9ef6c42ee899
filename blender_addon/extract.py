"""Rig -> keypoints: step the frames, read bone matrices with ``foreach_get``, project with numpy.

Runs on Blender's main thread (it calls ``scene.frame_set``); the result is a plain
``PoseSequence``. The scene's current frame is restored afterwards, even on error.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from collections.abc import Callable, Iterator, Mapping

import bpy
import numpy as np

from .pose import skeleton
from .pose.binding import RestRig, RigBinding, bind
from .pose.projection import CameraView, project, render_size
from .pose.types import NUM_KEYPOINTS, PoseSequence
from .pose.visibility import ConfidencePolicy, confidences, facing_camera, keypoints_array


class ExtractError(ValueError):
    """The scene cannot be extracted (no camera, not an armature, empty range...)."""


@dataclass(frozen=True)
class ExtractOptions:
    frame_start: int
    frame_end: int
    frame_step: int = 1
    preset: str = "AUTO"  # AUTO or a key of skeleton.PRESETS
    overrides: Mapping[str, str] = field(default_factory=dict)  # custom map: role -> point spec
    use_face_template: bool = True
    occlusion: bool = False
    policy: ConfidencePolicy = field(default_factory=ConfidencePolicy)

    def frames(self) -> range:
        if self.frame_step < 1:
            raise ExtractError(f"frame_step must be >= 1, got {self.frame_step}")
        if self.frame_end < self.frame_start:
            raise ExtractError(f"frame_end ({self.frame_end}) is before frame_start ({self.frame_start})")
        return range(self.frame_start, self.frame_end + 1, self.frame_step)


def _matrices(collection, attr: str) -> np.ndarray:
    buf = np.empty(len(collection) * 16, np.float32)
    collection.foreach_get(attr, buf)
    # foreach_get flattens Blender matrices column by column.
    return buf.reshape(-1, 4, 4).transpose(0, 2, 1).astype(np.float64)


def rest_rig(armature_obj: bpy.types.Object) -> RestRig:
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise ExtractError("armature: pick an armature object")
    bones = armature_obj.data.bones
    names = tuple(b.name for b in bones)
    pose_names = tuple(pb.name for pb in armature_obj.pose.bones)
    if names != pose_names:  # never seen, but the binding relies on the same order
        raise ExtractError(f"armature {armature_obj.name!r}: pose bones are out of sync; leave edit mode")
    lengths = np.empty(len(bones), np.float32)
    bones.foreach_get("length", lengths)
    return RestRig(names, _matrices(bones, "matrix_local"), lengths.astype(np.float64))


def detection_for(bone_names, preset: str = "AUTO", overrides: Mapping[str, str] | None = None) -> skeleton.Detection:
    """Detection by preset (AUTO = best preset) plus the custom-map overrides."""
    if preset == "AUTO":
        det = skeleton.detect(bone_names)
    elif preset in skeleton.PRESETS:
        det = skeleton.match_preset(skeleton.PRESETS[preset], bone_names)
    else:
        raise ExtractError(f"bone map preset: unknown {preset!r}")
    if overrides:
        try:
            det = skeleton.apply_overrides(det, overrides, bone_names)
        except ValueError as exc:
            raise ExtractError(str(exc)) from exc
    return det


def binding_for(armature_obj: bpy.types.Object, options: ExtractOptions) -> tuple[RigBinding, skeleton.Detection]:
    rest = rest_rig(armature_obj)
    det = detection_for(rest.names, options.preset, options.overrides)
    if not det.specs:
        raise ExtractError(
            f"armature {armature_obj.name!r}: no known bone naming found (Rigify, metarig, Mixamo, "
            "Auto-Rig Pro); set the bones in the custom bone map"
        )
    try:
        return bind(rest, det, use_face_template=options.use_face_template), det
    except ValueError as exc:
        raise ExtractError(f"armature {armature_obj.name!r}: {exc}") from exc


def camera_view(scene: bpy.types.Scene, camera_obj: bpy.types.Object, depsgraph) -> CameraView:
    if camera_obj is None:
        raise ExtractError(f"scene {scene.name!r} has no active camera")
    if camera_obj.type != "CAMERA":
        raise ExtractError(f"scene camera {camera_obj.name!r} is not a camera")
    r = scene.render
    width, height = render_size(r.resolution_x, r.resolution_y, r.resolution_percentage)
    projection = camera_obj.calc_matrix_camera(
        depsgraph, x=width, y=height, scale_x=r.pixel_aspect_x, scale_y=r.pixel_aspect_y
    )
    view = camera_obj.matrix_world.normalized().inverted()
    border = None
    if r.use_border and r.use_crop_to_border:
        border = (r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y)
    return CameraView(
        np.array(projection, dtype=np.float64), np.array(view, dtype=np.float64), width, height,
        camera_obj.data.type == "ORTHO", border, camera_obj.name,
    )


def character_meshes(armature_obj: bpy.types.Object) -> set[str]:
    """Names of mesh objects deformed by (or parented to) the armature."""
    names = set()
    for ob in bpy.data.objects:
        if ob.type != "MESH":
            continue
        if ob.parent == armature_obj or any(
            m.type == "ARMATURE" and m.object == armature_obj for m in ob.modifiers
        ):
            names.add(ob.name)
    return names


def occluded_points(scene, depsgraph, cam: CameraView, points: np.ndarray, candidates: np.ndarray, meshes: set[str]) -> np.ndarray:
    """(N,) bool: the ray from the camera passes through another part of the character first.

    A joint lies inside its own limb, so the first surface the ray meets is often the limb itself.
    Counting surface hits on the character's meshes before the point: one hit (entering the own
    limb) is normal; two or more mean the ray entered and left another body part on the way.
    """
    out = np.zeros(len(points), bool)
    if not meshes:
        return out
    from mathutils import Vector

    origin_cam = cam.location
    for i in np.flatnonzero(candidates):
        target = points[i]
        if cam.orthographic:
            direction = cam.forward
            origin = target - direction * (float((target - origin_cam) @ direction) + 1e-3)
        else:
            origin = origin_cam
            direction = target - origin
        dist = float(np.linalg.norm(target - origin)) if not cam.orthographic else float((target - origin) @ direction)
        direction = direction / max(float(np.linalg.norm(direction)), 1e-12)
        hits, travelled, start = 0, 0.0, origin.copy()
        for _ in range(16):
            remaining = dist - travelled - 1e-4
            if remaining <= 0:
                break
            ok, loc, _n, _idx, obj, _m = scene.ray_cast(depsgraph, Vector(start), Vector(direction), distance=remaining)
            if not ok:
                break
            loc = np.array(loc)
            travelled += float(np.linalg.norm(loc - start)) + 1e-4
            start = loc + direction * 1e-4
            if obj is not None and obj.original.name in meshes:
                hits += 1
        out[i] = hits >= 2
    return out


def _in_view_layer(obj: bpy.types.Object, view_layer) -> bool:
    """True when some non-excluded layer collection of ``view_layer`` holds ``obj``."""
    def walk(layer_collection) -> bool:
        if layer_collection.exclude:
            return False
        if obj.name in layer_collection.collection.objects:
            return True
        return any(walk(child) for child in layer_collection.children)

    return walk(view_layer.layer_collection)


@contextmanager
def _evaluated(armature_obj: bpy.types.Object, view_layer) -> Iterator[None]:
    """Make sure the depsgraph evaluates the rig: a rig disabled in viewports (object or collection
    monitor icon) keeps a frozen pose under ``frame_set``. Those flags are cleared for the duration
    and restored; a rig outside the view layer (excluded collection) is an error."""
    if not _in_view_layer(armature_obj, view_layer):
        raise ExtractError(
            f"armature {armature_obj.name!r} is not in view layer {view_layer.name!r} (excluded collection?); "
            "include its collection so its animation is evaluated"
        )
    flagged = [armature_obj] if armature_obj.hide_viewport else []
    flagged += [c for c in bpy.data.collections if c.hide_viewport and armature_obj.name in c.all_objects]
    for owner in flagged:
        owner.hide_viewport = False
    try:
        yield
    finally:
        for owner in flagged:
            owner.hide_viewport = True


def extract(
    scene: bpy.types.Scene,
    armature_obj: bpy.types.Object,
    options: ExtractOptions,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> PoseSequence:
    """Keypoints of ``armature_obj`` seen through the scene camera, one row per frame.

    The camera is re-read every frame, so camera-switch markers are honoured.
    """
    frames = options.frames()
    binding, _det = binding_for(armature_obj, options)
    available = binding.available
    meshes = character_meshes(armature_obj) if options.occlusion else set()
    rows = np.zeros((len(frames), NUM_KEYPOINTS, 3), np.float32)
    saved = (scene.frame_current, scene.frame_subframe)
    canvas = None
    view_layer = bpy.context.view_layer if bpy.context.scene == scene else scene.view_layers[0]
    with _evaluated(armature_obj, view_layer):
        try:
            for row, frame in enumerate(frames):
                scene.frame_set(frame)
                depsgraph = bpy.context.evaluated_depsgraph_get()
                cam = camera_view(scene, scene.camera, depsgraph)
                if canvas is None:
                    canvas = cam.canvas
                pose = _matrices(armature_obj.pose.bones, "matrix")
                local_pts, local_normals = binding.evaluate(pose)
                world = np.array(armature_obj.matrix_world, dtype=np.float64)
                pts = local_pts @ world[:3, :3].T + world[:3, 3]
                normals = local_normals @ world[:3, :3].T
                proj = project(pts, cam)
                facing = facing_camera(pts, normals, cam)
                occluded = None
                if options.occlusion:
                    candidates = available & proj.in_frame & facing
                    occluded = occluded_points(scene, depsgraph, cam, pts, candidates, meshes)
                conf = confidences(available, proj, facing, occluded, options.policy)
                rows[row] = keypoints_array(proj, conf, available)
                if progress is not None:
                    progress(row + 1, len(frames))
        finally:
            scene.frame_set(saved[0], subframe=saved[1])
    width, height = canvas if canvas is not None else render_size(
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage
    )
    fps = scene.render.fps / scene.render.fps_base / options.frame_step  # every n-th frame: slower motion clock
    return PoseSequence(rows, width, height, fps, tuple(frames))
