"""Pose operators: export keypoints as JSON, local preview strip, bone-map detection and editing.

Thin UI adapters over ``extract``/``pose`` (style note 4.1): errors become one-line reports.
"""

from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import shot as shot_mod
from . import vse
from .extract import ExtractError, extract
from .pose import preview
from .pose.png import write_png
from .pose.types import PoseFormatError


def _range(op, scene) -> tuple[int, int]:
    start, end = shot_mod.frame_range(scene)
    if op.frame_start >= 0:
        start = op.frame_start
    if op.frame_end >= 0:
        end = op.frame_end
    return start, end


class _PoseOperator:
    armature: StringProperty(name="Armature", default="", description="Armature object name; empty = the shot's")
    frame_start: IntProperty(name="Start", default=-1, description="First frame; -1 = shot range")
    frame_end: IntProperty(name="End", default=-1, description="Last frame; -1 = shot range")

    def _rig(self, context):
        if self.armature:
            ob = bpy.data.objects.get(self.armature)
            if ob is None:
                raise ExtractError(f"armature: no object named {self.armature!r}")
            return ob
        return shot_mod.armature_of(context)

    def _extract(self, context):
        scene = context.scene
        rig = self._rig(context)
        start, end = _range(self, scene)
        options = shot_mod.extract_options(scene, rig, start, end)
        return extract(scene, rig, options), rig


class O2A_OT_export_pose(_PoseOperator, bpy.types.Operator):
    """Write the armature's COCO-WholeBody keypoints, seen by the scene camera, as JSON"""

    bl_idname = "o2a.export_pose"
    bl_label = "Export Pose JSON"
    bl_options = {"REGISTER"}

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = shot_mod.output_dir(context.scene, "pose.json")
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        if not self.filepath:
            self.report({"ERROR"}, "filepath: choose where to write the JSON file")
            return {"CANCELLED"}
        try:
            seq, rig = self._extract(context)
            path = seq.save_json(bpy.path.abspath(self.filepath))
        except (ExtractError, PoseFormatError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{rig.name}: {len(seq)} frames -> {path}")
        return {"FINISHED"}


class O2A_OT_preview_poses(_PoseOperator, bpy.types.Operator):
    """Draw the pose frames locally (no server) as an image sequence and add it to the sequencer"""

    bl_idname = "o2a.preview_poses"
    bl_label = "Preview Poses"
    bl_options = {"REGISTER"}

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="", description="Empty = output folder")
    add_strip: BoolProperty(name="Add strip", default=True)

    def execute(self, context):
        scene = context.scene
        try:
            seq, rig = self._extract(context)
        except ExtractError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        folder = bpy.path.abspath(self.directory) if self.directory else shot_mod.output_dir(scene, f"preview_{bpy.path.clean_name(rig.name)}")
        paths = []
        try:
            for frame, image in preview.draw_sequence(seq, scene.o2a_shot.preview_size):
                paths.append(write_png(os.path.join(folder, f"pose_{frame:05d}.png"), image))
        except OSError as exc:
            self.report({"ERROR"}, f"writing previews to {folder}: {exc}")
            return {"CANCELLED"}
        if self.add_strip:
            target = vse.sequencer_scene(context)
            try:
                strip = vse.insert_image_sequence(
                    target, paths, seq.frames[0], name=f"pose {rig.name}",
                    metadata={"kind": "pose_preview", "armature": rig.name, "frames": [seq.frames[0], seq.frames[-1]]},
                )
            except (RuntimeError, ValueError) as exc:
                self.report({"ERROR"}, f"previews written to {folder}, but adding the strip failed: {exc}")
                return {"CANCELLED"}
            self.report({"INFO"}, f"{len(paths)} preview frames -> {folder} (strip {strip.name!r}, channel {strip.channel})")
        else:
            self.report({"INFO"}, f"{len(paths)} preview frames -> {folder}")
        return {"FINISHED"}


class O2A_OT_detect_bones(bpy.types.Operator):
    """Match the armature's bone names against the known rig conventions and report what was found"""

    bl_idname = "o2a.detect_bones"
    bl_label = "Detect Bones"
    bl_options = {"REGISTER"}

    def execute(self, context):
        try:
            rig = shot_mod.armature_of(context)
            summary = shot_mod.detect_report(rig)
        except ExtractError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{rig.name}: {summary}")
        return {"FINISHED"}


class O2A_OT_fill_custom_map(bpy.types.Operator):
    """Copy the detected bone map into the editable custom map (then change single rows)"""

    bl_idname = "o2a.fill_custom_map"
    bl_label = "Edit Detected Map"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        from .extract import detection_for, rest_rig

        try:
            rig = shot_mod.armature_of(context)
            rest = rest_rig(rig)
            det = detection_for(rest.names, rig.o2a_rig.preset, rig.o2a_rig.override_map())
        except ExtractError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        rig.o2a_rig.overrides.clear()
        for role, spec in det.specs.items():
            if len(spec.parts) != 1:
                continue  # averaged points stay automatic
            item = rig.o2a_rig.overrides.add()
            item.role, item.bone, item.end = role, spec.parts[0].bone, spec.parts[0].end
        self.report({"INFO"}, f"{len(rig.o2a_rig.overrides)} rows copied; missing: {', '.join(det.missing[:8]) or 'none'}")
        return {"FINISHED"}


class O2A_OT_override_add(bpy.types.Operator):
    """Add a custom bone map row"""

    bl_idname = "o2a.override_add"
    bl_label = "Add Bone Map Row"
    bl_options = {"REGISTER", "UNDO"}

    role: StringProperty(default="nose")
    bone: StringProperty(default="")

    def execute(self, context):
        try:
            rig = shot_mod.armature_of(context)
        except ExtractError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        item = rig.o2a_rig.overrides.add()
        try:
            item.role = self.role
        except TypeError:
            self.report({"ERROR"}, f"role: unknown keypoint {self.role!r}")
            rig.o2a_rig.overrides.remove(len(rig.o2a_rig.overrides) - 1)
            return {"CANCELLED"}
        item.bone = self.bone
        rig.o2a_rig.active_override = len(rig.o2a_rig.overrides) - 1
        return {"FINISHED"}


class O2A_OT_override_remove(bpy.types.Operator):
    """Remove the selected custom bone map row"""

    bl_idname = "o2a.override_remove"
    bl_label = "Remove Bone Map Row"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            rig = shot_mod.armature_of(context)
        except ExtractError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        settings = rig.o2a_rig
        if 0 <= settings.active_override < len(settings.overrides):
            settings.overrides.remove(settings.active_override)
            settings.active_override = max(0, settings.active_override - 1)
        return {"FINISHED"}


classes = (O2A_OT_export_pose, O2A_OT_preview_poses, O2A_OT_detect_bones, O2A_OT_fill_custom_map,
           O2A_OT_override_add, O2A_OT_override_remove)
register, unregister = bpy.utils.register_classes_factory(classes)
