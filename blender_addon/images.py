"""Reference picture of the character: from a file, an image datablock, or a render of the scene."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .pose.png import encode_png, image_size

MAX_INLINE_BYTES = 3 * 1024 * 1024  # above this the client uploads the picture as an asset


class ReferencePictureError(ValueError):
    """The reference picture cannot be used; the message says why."""


@dataclass(frozen=True)
class ReferenceImage:
    data: bytes    # PNG or JPEG bytes as sent to the server
    width: int
    height: int
    label: str     # where it came from, for reports and strip metadata


def from_file(path: str) -> ReferenceImage:
    real = bpy.path.abspath(path) if path.startswith("//") else path
    if not real:
        raise ReferencePictureError("reference picture: no file chosen")
    try:
        data = Path(real).read_bytes()
    except OSError as exc:
        raise ReferencePictureError(f"reference picture {real!r}: {exc.strerror or exc}") from exc
    try:
        w, h = image_size(data)
    except ValueError as exc:
        raise ReferencePictureError(f"reference picture {real!r}: {exc}") from exc
    return ReferenceImage(data, w, h, os.path.basename(real))


def _srgb(linear: np.ndarray) -> np.ndarray:
    a = np.clip(linear, 0.0, 1.0)
    return np.where(a <= 0.0031308, a * 12.92, 1.055 * np.power(a, 1 / 2.4) - 0.055)


def from_datablock(image: bpy.types.Image) -> ReferenceImage:
    """Use the file on disk when the image is an unmodified PNG/JPEG, else encode its pixels."""
    if image is None:
        raise ReferencePictureError("reference picture: no image datablock chosen")
    path = bpy.path.abspath(image.filepath) if image.filepath else ""
    if path and os.path.isfile(path) and not image.is_dirty and image.packed_file is None:
        try:
            return from_file(path)
        except ReferencePictureError:
            pass  # e.g. EXR or TIFF: fall through to the pixels
    w, h = image.size
    if w == 0 or h == 0:
        raise ReferencePictureError(f"reference image {image.name!r} has no pixels (not loaded?)")
    px = np.empty(w * h * 4, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, 4)[::-1]  # Blender stores rows bottom-up
    rgb = _srgb(px[..., :3]) if image.is_float else np.clip(px[..., :3], 0, 1)
    return ReferenceImage(encode_png((rgb * 255 + 0.5).astype(np.uint8)), w, h, image.name)


def from_render(scene: bpy.types.Scene, frame: int) -> ReferenceImage:
    """Render the scene camera at ``frame`` (restores the current frame) and take the result."""
    if scene.camera is None:
        raise ReferencePictureError(f"scene {scene.name!r} has no camera to render the reference with")
    saved = (scene.frame_current, scene.frame_subframe)
    fd, tmp = tempfile.mkstemp(suffix=".png", prefix="o2a_ref_")
    os.close(fd)
    try:
        scene.frame_set(frame)
        with bpy.context.temp_override(scene=scene):
            bpy.ops.render.render(write_still=False, scene=scene.name)
        result = bpy.data.images.get("Render Result")
        if result is None:
            raise ReferencePictureError("render produced no image")
        result.save_render(tmp, scene=scene)
        data = Path(tmp).read_bytes()
    except RuntimeError as exc:
        raise ReferencePictureError(f"rendering the reference failed: {exc}") from exc
    finally:
        scene.frame_set(saved[0], subframe=saved[1])
        Path(tmp).unlink(missing_ok=True)
    w, h = image_size(data)
    return ReferenceImage(data, w, h, f"render of frame {frame}")


def from_shot(shot, scene: bpy.types.Scene) -> ReferenceImage:
    """The reference chosen in the shot settings (Scene.o2a_shot)."""
    if shot.reference_source == "FILE":
        return from_file(shot.reference_file)
    if shot.reference_source == "IMAGE":
        return from_datablock(shot.reference_image)
    return from_render(scene, shot.reference_frame)
