"""N-panels (3D view and sequencer, tab "O2A"), the custom bone map list, and the status-bar progress."""

from __future__ import annotations

import bpy

from . import shot as shot_mod


def _fmt_eta(eta_s: float) -> str:
    if eta_s is None or eta_s < 0:
        return "ETA ?"
    m, s = divmod(int(eta_s + 0.5), 60)
    return f"ETA {m}:{s:02d}" if m < 60 else f"ETA {m // 60}h{m % 60:02d}"


class O2A_UL_bone_map(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        rig = data.id_data
        row = layout.row(align=True)
        row.prop(item, "role", text="")
        if rig is not None and rig.type == "ARMATURE":
            row.prop_search(item, "bone", rig.data, "bones", text="")
        else:
            row.prop(item, "bone", text="")
        row.prop(item, "end", text="")


class O2A_UL_jobs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index):
        row = layout.row(align=True)
        icons = {"SUCCEEDED": "CHECKMARK", "FAILED": "ERROR", "CANCELLED": "X", "RUNNING": "RENDER_ANIMATION",
                 "QUEUED": "SORTTIME", "DOWNLOADING": "IMPORT", "DETACHED": "UNLINKED"}
        row.label(text=item.job_id or "(submitting)", icon=icons.get(item.state, "TIME"))
        if item.state in ("RUNNING", "QUEUED", "DOWNLOADING", "SUBMITTING"):
            row.progress(factor=item.progress, type="BAR", text=f"{item.progress * 100:.0f}% {_fmt_eta(item.eta_s)}")
        else:
            row.label(text=item.state.title())


def _rig_or_none(context):
    try:
        return shot_mod.armature_of(context)
    except ValueError:
        return None


def draw_shot(layout, context):
    scene = context.scene
    shot = scene.o2a_shot
    col = layout.column()
    col.prop(shot, "armature")
    row = col.row(align=True)
    row.prop(shot, "use_scene_range")
    sub = row.row(align=True)
    sub.enabled = not shot.use_scene_range
    sub.prop(shot, "frame_start")
    sub.prop(shot, "frame_end")
    cam = scene.camera
    col.label(text=f"Camera: {cam.name if cam else 'none (set a scene camera)'}", icon="CAMERA_DATA")
    row = col.row(align=True)
    row.prop(shot, "occlusion")
    row.prop(shot, "visible_confidence")
    row = col.row(align=True)
    row.operator("o2a.export_pose", icon="EXPORT")
    row.operator("o2a.preview_poses", icon="SEQUENCE")


def draw_rig(layout, context):
    rig = _rig_or_none(context)
    if rig is None:
        layout.label(text="Select an armature", icon="INFO")
        return
    settings = rig.o2a_rig
    col = layout.column()
    row = col.row(align=True)
    row.prop(settings, "preset", text="")
    row.operator("o2a.detect_bones", text="", icon="VIEWZOOM")
    if settings.report:
        col.label(text=settings.report)
    col.prop(settings, "use_face_template")
    col.label(text="Custom map (overrides the preset):")
    row = col.row()
    row.template_list("O2A_UL_bone_map", "", settings, "overrides", settings, "active_override", rows=3)
    ops = row.column(align=True)
    ops.operator("o2a.override_add", text="", icon="ADD")
    ops.operator("o2a.override_remove", text="", icon="REMOVE")
    ops.operator("o2a.fill_custom_map", text="", icon="COPYDOWN")


def draw_reference(layout, context):
    shot = context.scene.o2a_shot
    col = layout.column()
    col.prop(shot, "reference_source", text="")
    if shot.reference_source == "FILE":
        col.prop(shot, "reference_file")
    elif shot.reference_source == "IMAGE":
        col.template_ID(shot, "reference_image", open="image.open")
    col.prop(shot, "reference_pose_source")
    if shot.reference_pose_source == "RIG" or shot.reference_source == "RENDER":
        col.prop(shot, "reference_frame")


def draw_options(layout, context):
    shot = context.scene.o2a_shot
    col = layout.column()
    col.prop(shot, "steps")
    row = col.row(align=True)
    row.prop(shot, "use_seed")
    sub = row.row()
    sub.enabled = shot.use_seed
    sub.prop(shot, "seed")
    col.prop(shot, "guidance_mode")
    col.prop(shot, "use_guidance")
    if shot.use_guidance:
        row = col.row(align=True)
        row.prop(shot, "image_guidance")
        row.prop(shot, "pose_guidance")
    col.prop(shot, "face_lightening")
    col.prop(shot, "head_lightening")
    col.prop(shot, "same_skeleton")
    col.prop(shot, "alignment_mode")
    col.prop(shot, "chunk_plan")
    col.prop(shot, "prompt")
    col.prop(shot, "output_dir")
    col.prop(shot, "preview_size")


def draw_jobs(layout, context):
    scene = context.scene
    col = layout.column()
    row = col.row(align=True)
    row.scale_y = 1.4
    row.operator("o2a.submit_job", icon="RENDER_ANIMATION")
    row.operator("o2a.pose_transfer", text="Still", icon="IMAGE_DATA")
    col.template_list("O2A_UL_jobs", "", scene, "o2a_jobs", scene, "o2a_active_job", rows=3)
    if 0 <= scene.o2a_active_job < len(scene.o2a_jobs):
        job = scene.o2a_jobs[scene.o2a_active_job]
        if job.message:
            box = col.box()
            box.alert = job.state == "FAILED"
            box.label(text=job.message, icon="ERROR" if job.state == "FAILED" else "INFO")
        row = col.row(align=True)
        row.operator("o2a.cancel_job", icon="CANCEL").job_id = job.job_id
        row.operator("o2a.regenerate", icon="FILE_REFRESH").job_id = job.job_id
    col.operator("o2a.reattach_jobs", icon="LINKED")
    status = context.window_manager.o2a_runtime.status
    if status:
        col.label(text=status)


_SECTIONS = (
    ("shot", "Shot", draw_shot, None),
    ("rig", "Bone Map", draw_rig, {"DEFAULT_CLOSED"}),
    ("reference", "Reference", draw_reference, None),
    ("options", "Render Options", draw_options, {"DEFAULT_CLOSED"}),
    ("jobs", "Server Jobs", draw_jobs, None),
)


def _panel_classes():
    out = []
    for space, prefix in (("VIEW_3D", "VIEW3D"), ("SEQUENCE_EDITOR", "SEQUENCER")):
        parent_id = None
        for key, label, fn, options in _SECTIONS:
            attrs = {
                "bl_idname": f"{prefix}_PT_o2a_{key}",
                "bl_label": label if parent_id else "One-to-All",
                "bl_space_type": space,
                "bl_region_type": "UI",
                "bl_category": "O2A",
                "draw": (lambda f: lambda self, context: f(self.layout, context))(fn),
            }
            if parent_id:
                attrs["bl_parent_id"] = parent_id
            if options:
                attrs["bl_options"] = options
            cls = type(attrs["bl_idname"], (bpy.types.Panel,), attrs)
            out.append(cls)
            parent_id = parent_id or attrs["bl_idname"]
    return tuple(out)


def draw_status_bar(self, context):
    """Progress of running jobs in the status bar."""
    jobs = [j for j in getattr(context.scene, "o2a_jobs", ()) if j.state in ("RUNNING", "QUEUED", "DOWNLOADING")]
    if not jobs:
        return
    job = jobs[0]
    more = f" (+{len(jobs) - 1})" if len(jobs) > 1 else ""
    self.layout.progress(factor=job.progress, type="RING" if job.state == "QUEUED" else "BAR",
                         text=f"O2A {job.state.lower()} {job.progress * 100:.0f}% {_fmt_eta(job.eta_s)}{more}")


_CLASSES = (O2A_UL_bone_map, O2A_UL_jobs) + _panel_classes()


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.STATUSBAR_HT_header.append(draw_status_bar)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status_bar)
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
