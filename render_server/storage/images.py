"""Image encoding and safe decoding.

Reference images come from the network, so decoding is guarded: only PNG and JPEG, the pixel count is read from
the header and checked *before* any pixel is decompressed (a 100 KB PNG can expand to gigabytes), and truncated or
corrupt files are refused with a clear message.
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class ImageError(ValueError):
    """An image could not be accepted; the message says why."""


def sniff_format(data: bytes) -> str | None:
    if data.startswith(_PNG_MAGIC):
        return "PNG"
    if data.startswith(_JPEG_MAGIC):
        return "JPEG"
    return None


def decode_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the header only; raises ImageError for anything but a readable PNG or JPEG."""
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageError("not a PNG or JPEG file")
    if fmt == "PNG":
        # The IHDR chunk must come first: read the size without handing the file to a decoder.
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageError("PNG without an IHDR header")
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    try:
        with warnings.catch_warnings():
            # We apply our own (lower) pixel limit right after reading the header.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img_ctx = Image.open(io.BytesIO(data))
        with img_ctx as img:
            if img.format != fmt:
                raise ImageError(f"header says {fmt} but decodes as {img.format}")
            return int(img.size[0]), int(img.size[1])
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}") from None
    except Exception as exc:  # PIL raises many types for corrupt headers; all mean "bad image"
        raise ImageError(f"unreadable {fmt} header: {exc}") from None


def decode_rgb(data: bytes, *, max_pixels: int) -> np.ndarray:
    """Decodes PNG/JPEG bytes to a uint8 (H, W, 3) RGB array, refusing images above `max_pixels`."""
    width, height = decode_image_size(data)
    if width <= 0 or height <= 0:
        raise ImageError(f"empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} = {width * height} pixels exceeds the limit of {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                rgb = img.convert("RGB")
                return np.asarray(rgb, dtype=np.uint8).copy()
    except Exception as exc:  # truncated data, bad CRC, bomb warning turned error: all mean "bad image"
        raise ImageError(f"cannot decode image: {exc}") from None


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG of a uint8 (H, W, 3) RGB or (H, W) gray array (deterministic bytes for equal arrays)."""
    arr = np.ascontiguousarray(rgb)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decodes a PNG written by `encode_png` back to RGB uint8 (H, W, 3)."""
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ImageError("cannot decode PNG")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def preview_jpeg(rgb: np.ndarray, *, max_side_px: int = 256, quality: int = 80) -> tuple[bytes, int, int]:
    """A small JPEG (long side <= max_side_px) for progress previews; returns (bytes, width, height)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side_px / max(h, w))
    if scale < 1.0:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes(), w, h
