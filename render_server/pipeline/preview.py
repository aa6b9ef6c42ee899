"""The official driver's side-by-side preview frames: ``[0.6 * pose + 0.4 * frame | frame]`` (numpy only).

Reproduces ``inference_*.py`` exactly (fixture quirk Q11): the pose drawing goes through the float pose tensor
and back (``((v / 255 * 2 - 1) / 2 + 0.5) * 255`` truncated, which turns pose values 1..63 into v - 1), then
``round_half_even(0.6 * pose + 0.4 * frame)`` in float32.
"""

from __future__ import annotations

import numpy as np

POSE_ALPHA = 0.6


def official_preview(pose_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """uint8 pose drawings (N, H, W, 3) + generated frames (N, H, W, 3) -> uint8 (N, H, 2W, 3)."""
    if pose_frames.shape != frames.shape or pose_frames.ndim != 4 or pose_frames.shape[-1] != 3:
        raise ValueError(f"pose_frames {pose_frames.shape} and frames {frames.shape} must both be (N, H, W, 3)")
    if pose_frames.dtype != np.uint8 or frames.dtype != np.uint8:
        raise ValueError(f"pose_frames and frames must be uint8, got {pose_frames.dtype} and {frames.dtype}")
    unit = pose_frames.astype(np.float32) / np.float32(255.0) * np.float32(2) - np.float32(1)
    source = np.clip(unit / np.float32(2) + np.float32(0.5), 0, 1) * np.float32(255)
    source = source.astype(np.uint8)  # torch .byte(): truncation
    blended = np.float32(POSE_ALPHA) * source.astype(np.float32) + np.float32(1 - POSE_ALPHA) * frames.astype(np.float32)
    return np.concatenate([blended.round().astype(np.uint8), frames], axis=2)
