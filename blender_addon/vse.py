"""Video Sequence Editor: insert image-sequence strips (Blender 4.2 - 5.x safe), read them back.

Only the data API is used (``strips.new_image`` + ``elements.append``): the add-strip operators need a
sequencer area and crashed peers on 5.0. ``sequences`` (removed in 5.0) is used only as a fallback
on old versions; handle properties are version-guarded (5.1 renamed them).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from collections.abc import Iterator, Sequence

import bpy

STRIP_PROP = "o2a"  # custom property on our strips: JSON with job id + settings


def sequencer_scene(context=None) -> bpy.types.Scene:
    context = context or bpy.context
    return getattr(context, "sequencer_scene", None) or context.scene


def _strips(ed):
    return ed.strips if hasattr(ed, "strips") else ed.sequences


def _all_strips(ed):
    return ed.strips_all if hasattr(ed, "strips_all") else ed.sequences_all


def strip_range(strip) -> tuple[int, int]:
    """[start, end) of a strip on the timeline, on any Blender version."""
    if hasattr(strip, "left_handle"):
        return int(strip.left_handle), int(strip.right_handle)
    return int(strip.frame_final_start), int(strip.frame_final_end)


def free_channel(scene: bpy.types.Scene, start: int, end: int, lowest: int = 2) -> int:
    """Lowest channel >= ``lowest`` with no strip overlapping [start, end)."""
    ed = scene.sequence_editor
    busy: set[int] = set()
    if ed is not None:
        for s in _strips(ed):
            s0, s1 = strip_range(s)
            if s0 < end and start < s1:
                busy.add(s.channel)
    channel = lowest
    while channel in busy:
        channel += 1
    if channel > 128:
        raise RuntimeError(f"no free sequencer channel for frames {start}-{end}")
    return channel


@contextmanager
def _no_prefetch(scene) -> Iterator[None]:
    """Prefetch/caches off while mutating (the prefetch thread races strip creation)."""
    saved = []
    for owner in (scene.render, scene.sequence_editor):
        for attr in ("use_prefetch", "use_cache_raw", "use_cache_final"):
            if owner is not None and hasattr(owner, attr):
                saved.append((owner, attr, getattr(owner, attr)))
                setattr(owner, attr, False)
    try:
        yield
    finally:
        for owner, attr, value in saved:
            setattr(owner, attr, value)


def insert_image_sequence(
    scene: bpy.types.Scene,
    paths: Sequence[str | Path],
    frame_start: int,
    *,
    name: str,
    channel: int | None = None,
    metadata: dict[str, Any] | None = None,
    fit: str = "FIT",
):
    """An image strip showing ``paths`` in order from ``frame_start``; returns the strip."""
    if not paths:
        raise ValueError("image sequence: no frames")
    paths = [Path(p) for p in paths]
    folder = paths[0].parent
    if any(p.parent != folder for p in paths):
        raise ValueError("image sequence: all frames must be in one folder")
    if scene.sequence_editor is None:
        scene.sequence_editor_create()
    ed = scene.sequence_editor
    end = frame_start + len(paths)
    if channel is None:
        channel = free_channel(scene, frame_start, end)
    with _no_prefetch(scene):
        strip = _strips(ed).new_image(name=name, filepath=str(paths[0]), channel=channel,
                                      frame_start=frame_start, fit_method=fit)
        for p in paths[1:]:
            strip.elements.append(p.name)
        if hasattr(strip, "colorspace_settings"):
            try:
                strip.colorspace_settings.name = "sRGB"
            except TypeError:
                pass  # a custom OCIO config without "sRGB": keep the default
        if metadata is not None:
            strip[STRIP_PROP] = json.dumps(metadata, sort_keys=True)
    return strip


def strip_metadata(strip) -> dict[str, Any] | None:
    raw = strip.get(STRIP_PROP) if strip is not None else None
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def find_strip(scene: bpy.types.Scene, name: str):
    ed = scene.sequence_editor
    if ed is None:
        return None
    return _all_strips(ed).get(name)


def our_strips(scene: bpy.types.Scene) -> list:
    ed = scene.sequence_editor
    if ed is None:
        return []
    return [s for s in _all_strips(ed) if s.get(STRIP_PROP)]
