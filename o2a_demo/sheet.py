"""Contact sheet: the reference, then columns of (drawn pose frame above rendered frame) for a few frame indices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def pick_frames(total: int, count: int = 8) -> list[int]:
    """`count` evenly spaced frame indices in [0, total), first and last included."""
    if total <= count:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / (count - 1))) for i in range(count)})


def contact_sheet(reference: np.ndarray, pose_frames: Sequence[np.ndarray], output_frames: Sequence[np.ndarray],
                  indices: Sequence[int], cell_height: int = 224) -> np.ndarray:
    """uint8 RGB image: the reference on the left, then one column per index: pose on top, output below."""
    import cv2

    if not (len(pose_frames) == len(output_frames) == len(indices)):
        raise ValueError("pose_frames, output_frames and indices must have the same length")

    def fit(img: np.ndarray, height: int) -> np.ndarray:
        width = max(1, int(round(img.shape[1] * height / img.shape[0])))
        interp = cv2.INTER_NEAREST if height >= img.shape[0] else cv2.INTER_AREA
        return cv2.resize(img, (width, height), interpolation=interp)

    label_h, gap = 22, 6
    ref = fit(reference, 2 * cell_height + gap)
    columns = []
    for index, pose, out in zip(indices, pose_frames, output_frames, strict=True):
        top, bottom = fit(pose, cell_height), fit(out, cell_height)
        width = max(top.shape[1], bottom.shape[1])
        col = np.full((label_h + 2 * cell_height + gap, width, 3), 255, np.uint8)
        cv2.putText(col, f"frame {index}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
        col[label_h:label_h + cell_height, :top.shape[1]] = top
        col[label_h + cell_height + gap:, :bottom.shape[1]] = bottom
        columns.append(col)
    head = np.full((label_h + ref.shape[0], ref.shape[1], 3), 255, np.uint8)
    cv2.putText(head, "reference", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    head[label_h:] = ref
    parts = [head]
    for col in columns:
        parts += [np.full((head.shape[0], gap, 3), 255, np.uint8), col]
    return np.concatenate(parts, axis=1)


def read_rgb(path: str | Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return bgr[..., ::-1].copy()


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    import cv2

    path = Path(path)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())
    return path
