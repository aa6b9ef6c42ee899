"""Main-thread side of the job pipeline: messages -> job records, strips, images, redraws."""

from __future__ import annotations

import json
from pathlib import Path

import bpy

from . import vse
from .jobs import Message, MsgDone, MsgProgress, MsgSubmitted


def find_record(key: str):
    """(scene, record) of the job record with this local key, in any scene."""
    for scene in bpy.data.scenes:
        for rec in getattr(scene, "o2a_jobs", ()):
            if rec.key == key:
                return scene, rec
    return None, None


def _redraw() -> None:
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "SEQUENCE_EDITOR", "STATUSBAR", "PREFERENCES"):
                area.tag_redraw()


def _show_in_image_editors(image) -> None:
    """Show a still in every open, unpinned Image Editor (previs: the result appears where you look)."""
    wm = bpy.context.window_manager
    for window in getattr(wm, "windows", ()):
        for area in window.screen.areas:
            if area.type == "IMAGE_EDITOR":
                space = area.spaces.active
                if not getattr(space, "use_image_pin", False):
                    space.image = image


def _insert_result(scene, rec, frames: tuple[str, ...]) -> str:
    metadata = {
        "kind": rec.kind, "job_id": rec.job_id, "server": rec.server_address,
        "settings": json.loads(rec.settings_json or "{}"), "frame_start": rec.frame_start,
    }
    if rec.kind == "still":
        image = bpy.data.images.load(frames[0], check_existing=False)
        image.name = f"O2A still {rec.job_id[:16]}"
        image["o2a"] = json.dumps(metadata, sort_keys=True)
        _show_in_image_editors(image)
        return image.name
    target = bpy.data.scenes.get(rec.target_scene) or scene  # 5.x: the sequencer may edit another scene
    strip = vse.insert_image_sequence(target, [Path(f) for f in frames], rec.frame_start,
                                      name=f"o2a {rec.job_id[:20]}", metadata=metadata)
    return strip.name


def apply_message(msg: Message) -> None:
    scene, rec = find_record(msg.key)
    if rec is None:
        return  # the record was deleted (or the file closed) while the job ran
    if isinstance(msg, MsgSubmitted):
        rec.job_id = msg.job_id
        rec.state = "QUEUED"
        rec.message = "submitted"
    elif isinstance(msg, MsgProgress):
        rec.state = msg.state if msg.state in ("QUEUED", "RUNNING", "DOWNLOADING") else rec.state
        if msg.progress >= 0:  # -1 = unknown (state changes, heartbeats)
            rec.progress = min(1.0, msg.progress)
            rec.eta_s = msg.eta_s
        if msg.message:
            rec.message = msg.message
    elif isinstance(msg, MsgDone):
        if msg.job_id:
            rec.job_id = msg.job_id
        rec.state = msg.state
        rec.message = msg.message
        rec.eta_s = -1.0
        if msg.settings:
            merged = json.loads(rec.settings_json or "{}")
            merged["server_settings"] = msg.settings
            rec.settings_json = json.dumps(merged, sort_keys=True)
        if msg.state == "SUCCEEDED":
            rec.progress = 1.0
            rec.frame_count = len(msg.frames)
            try:
                rec.strip_name = _insert_result(scene, rec, msg.frames)
            except (RuntimeError, ValueError, OSError) as exc:
                # A green "done" must never hide a missing strip.
                rec.state = "FAILED"
                rec.message = f"frames downloaded to {rec.out_dir} but inserting them failed: {exc}"
        bpy.context.window_manager.o2a_runtime.status = f"{rec.job_id or rec.key}: {rec.state.lower()} {rec.message}"


def apply_messages(msgs: list[Message]) -> None:
    for msg in msgs:
        apply_message(msg)
    if msgs:
        _redraw()
