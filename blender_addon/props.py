"""Property groups: per-armature bone map (Object.o2a_rig), per-scene shot settings (Scene.o2a_shot),
job records saved with the file (Scene.o2a_jobs, ids + settings only), runtime state (WindowManager)."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty,
)

from .pose import skeleton

PRESET_ITEMS = [("AUTO", "Auto-detect", "Pick the convention that matches most bones")] + [
    (p.name, p.label, f"Bone names of {p.label}") for p in skeleton.PRESETS.values()
]
END_ITEMS = [("head", "Head", "Bone head (joint centre)"), ("tail", "Tail", "Bone tail"), ("mid", "Middle", "Bone middle")]
GUIDANCE_ITEMS = [
    ("UNSPECIFIED", "Server default", ""), ("STANDARD", "Standard", "Official two-scale CFG"),
    ("POSE_LAST", "Pose last", "Official case1 variant"), ("NONE", "None (fast)", "Single pass, no guidance"),
]
FACE_ITEMS = [("UNSPECIFIED", "Server default", ""), ("AUTO", "Auto", ""), ("ON", "On", "Lightened head skeleton"),
              ("OFF", "Off", "")]
ALIGN_ITEMS = [
    ("UNSPECIFIED", "Server default", ""),
    ("REFERENCE_RETARGET", "Retarget to reference", "Driving skeleton takes the reference's proportions"),
    ("REFERENCE", "As drawn", "Poses are used exactly as sent"),
    ("POSE", "Move reference", "Reference is moved onto the driving pose; outpaints"),
    ("POSE_RETARGET", "Move reference + retarget", "Officially unstable"),
]
CHUNK_ITEMS = [("UNSPECIFIED", "Server default", ""), ("DEFAULT", "Default", "Any frame count"),
               ("OFFICIAL", "Official", "81-frame chunks (>= 81 frames)")]
REF_SOURCE_ITEMS = [("FILE", "Image file", "A picture on disk"), ("IMAGE", "Image datablock", "An image in this file"),
                    ("RENDER", "Render current frame", "Render the scene camera at the reference frame")]
REF_POSE_ITEMS = [("RIG", "Rig at frame", "The rig's pose at the reference frame, seen by the scene camera"),
                  ("DETECT", "Server detection", "The server detects the pose in the picture")]
JOB_STATE_ITEMS = [(s, s.title(), "") for s in ("SUBMITTING", "QUEUED", "RUNNING", "DOWNLOADING", "SUCCEEDED",
                                                "FAILED", "CANCELLED", "DETACHED")]


def _is_armature(_self, obj) -> bool:
    return obj.type == "ARMATURE"


class O2A_BoneOverride(bpy.types.PropertyGroup):
    role: EnumProperty(name="Keypoint", items=[(r, r, "") for r in skeleton.ALL_ROLES],
                       description="COCO-WholeBody keypoint (or helper role) this bone gives")
    bone: StringProperty(name="Bone", description="Bone name; empty = drop this keypoint")
    end: EnumProperty(name="End", items=END_ITEMS, default="head")

    def spec(self) -> str:
        if not self.bone:
            return ""
        return self.bone if self.end == "head" else f"{self.bone}:{self.end}"


class O2A_RigSettings(bpy.types.PropertyGroup):
    preset: EnumProperty(name="Bone map", items=PRESET_ITEMS, default="AUTO")
    overrides: CollectionProperty(type=O2A_BoneOverride)
    active_override: IntProperty(default=0)
    use_face_template: BoolProperty(
        name="Face template", default=True,
        description="Place face, eye, ear and nose points the rig has no bones for from a canonical face on the head bone",
    )
    report: StringProperty(name="Detection", default="", description="Last bone map detection summary")

    def override_map(self) -> dict[str, str]:
        return {o.role: o.spec() for o in self.overrides}


class O2A_ShotSettings(bpy.types.PropertyGroup):
    armature: PointerProperty(type=bpy.types.Object, poll=_is_armature, name="Armature",
                              description="Character rig; empty = the active armature")
    use_scene_range: BoolProperty(name="Scene range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=81, min=0)
    occlusion: BoolProperty(name="Occlusion test", default=False,
                            description="Ray-cast the character's meshes; hidden joints get a low confidence")
    visible_confidence: FloatProperty(name="Confidence", default=0.9, min=0.0, max=1.0,
                                      description="Score of visible keypoints (0.9 is close to the training data)")
    reference_source: EnumProperty(name="Reference", items=REF_SOURCE_ITEMS, default="FILE")
    reference_file: StringProperty(name="Picture", subtype="FILE_PATH")
    reference_image: PointerProperty(type=bpy.types.Image, name="Image")
    reference_pose_source: EnumProperty(name="Reference pose", items=REF_POSE_ITEMS, default="RIG")
    reference_frame: IntProperty(name="Pose frame", default=1,
                                 description="Frame whose rig pose matches the reference picture")
    steps: IntProperty(name="Steps", default=0, min=0, max=200, description="Denoising steps; 0 = server default")
    use_guidance: BoolProperty(name="Custom guidance", default=False)
    image_guidance: FloatProperty(name="Image guidance", default=2.0, min=0.0, max=20.0)
    pose_guidance: FloatProperty(name="Pose guidance", default=1.5, min=0.0, max=20.0)
    guidance_mode: EnumProperty(name="Guidance", items=GUIDANCE_ITEMS, default="UNSPECIFIED")
    use_seed: BoolProperty(name="Fixed seed", default=False)
    seed: IntProperty(name="Seed", default=0, min=0)
    face_lightening: EnumProperty(name="Face lightening", items=FACE_ITEMS, default="UNSPECIFIED")
    alignment_mode: EnumProperty(name="Alignment", items=ALIGN_ITEMS, default="UNSPECIFIED")
    chunk_plan: EnumProperty(name="Chunk plan", items=CHUNK_ITEMS, default="UNSPECIFIED")
    head_lightening: BoolProperty(name="Head lightening", default=False,
                                  description="Dim the head skeleton too (cartoons, animals)")
    same_skeleton: BoolProperty(name="Reference is this rig", default=False,
                                description="The reference picture shows this character posed by this rig "
                                            "(always true for a render of the current frame)")
    prompt: StringProperty(name="Prompt", default="")
    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//o2a/",
                               description="Folder for downloaded frames and previews (// = next to the .blend)")
    preview_size: IntProperty(name="Preview size", default=512, min=64, max=4096,
                              description="Long side of local pose preview images in pixels")


class O2A_JobRecord(bpy.types.PropertyGroup):
    """A submitted job, saved with the file so it can be re-attached after reopening. No secrets."""

    key: StringProperty(name="Key", description="Local id of this record (the job id is known after submit)")
    job_id: StringProperty(name="Job")
    server_address: StringProperty(name="Server")
    state: EnumProperty(name="State", items=JOB_STATE_ITEMS, default="SUBMITTING")
    progress: FloatProperty(name="Progress", min=0.0, max=1.0, subtype="FACTOR")
    eta_s: FloatProperty(name="ETA", default=-1.0)
    message: StringProperty(name="Message")
    frame_start: IntProperty(name="Shot start")
    target_scene: StringProperty(name="Sequencer scene", description="Scene whose sequencer receives the strip")
    frame_count: IntProperty(name="Frames")
    out_dir: StringProperty(name="Frames folder", subtype="DIR_PATH")
    strip_name: StringProperty(name="Strip")
    settings_json: StringProperty(name="Settings", description="Submitted settings (JSON), for Re-generate")
    kind: StringProperty(name="Kind", default="shot", description="shot or still (single-image pose transfer)")


class O2A_Runtime(bpy.types.PropertyGroup):
    """Runtime-only state on the window manager (not meaningful across sessions)."""

    capabilities: StringProperty(name="Capabilities", default="")
    status: StringProperty(name="Status", default="")
    busy: BoolProperty(default=False)


classes = (O2A_BoneOverride, O2A_RigSettings, O2A_ShotSettings, O2A_JobRecord, O2A_Runtime)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Object.o2a_rig = PointerProperty(type=O2A_RigSettings)
    bpy.types.Scene.o2a_shot = PointerProperty(type=O2A_ShotSettings)
    bpy.types.Scene.o2a_jobs = CollectionProperty(type=O2A_JobRecord)
    bpy.types.Scene.o2a_active_job = IntProperty(default=0)
    bpy.types.WindowManager.o2a_runtime = PointerProperty(type=O2A_Runtime)


def unregister() -> None:
    for owner, name in ((bpy.types.WindowManager, "o2a_runtime"), (bpy.types.Scene, "o2a_active_job"),
                        (bpy.types.Scene, "o2a_jobs"), (bpy.types.Scene, "o2a_shot"), (bpy.types.Object, "o2a_rig")):
        if hasattr(owner, name):
            delattr(owner, name)
    _unregister_classes()
