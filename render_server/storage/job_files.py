"""The folder of one job and the frame bookkeeping that makes resumption exact.

Layout under `<data>/jobs/<job_id>/`::

    inputs/driving.npy          float32 (N, 133, 3) driving keypoints (validated at submit)
    inputs/reference_pose.npy   float32 (133, 3), absent when the server detects the pose
    segments/0003/frame_000123.png   frames a finished segment delivered (kept until the job ends)
    frames/frame_000123.png     final output frames (0-based), published once no later segment can change them
    pose/pose_000123.png        drawn pose frames the model was conditioned on
    video.mp4, pose.mp4, reference.png, reference_pose.png, mask.png

A segment's frames go to its own folder first and only then is the segment recorded as finished in the store.
Later segments read their token-replace frames from those folders, so a crash in the middle of a segment can
never leave a half-overwritten frame that the resumed run would read.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .atomic import write_bytes_atomic
from .images import decode_png, encode_png

OUTPUT_FILE_RE = re.compile(r"^(video\.mp4|pose\.mp4|reference\.png|reference_pose\.png|mask\.png)$")


class JobFiles:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- inputs ---------------------------------------------------------------------------------------------------

    @property
    def driving_path(self) -> Path:
        return self.root / "inputs" / "driving.npy"

    @property
    def reference_pose_path(self) -> Path:
        return self.root / "inputs" / "reference_pose.npy"

    def write_inputs(self, driving: np.ndarray, reference_pose: np.ndarray | None) -> None:
        write_bytes_atomic(self.driving_path, _npy_bytes(np.asarray(driving, dtype=np.float32)))
        if reference_pose is not None:
            write_bytes_atomic(self.reference_pose_path, _npy_bytes(np.asarray(reference_pose, dtype=np.float32)))

    def read_driving(self) -> np.ndarray:
        return np.load(self.driving_path, allow_pickle=False)

    def read_reference_pose(self) -> np.ndarray | None:
        if not self.reference_pose_path.exists():
            return None
        return np.load(self.reference_pose_path, allow_pickle=False)

    # -- segments and frames --------------------------------------------------------------------------------------

    def segment_frame_path(self, segment: int, frame: int) -> Path:
        return self.root / "segments" / f"{segment:04d}" / f"frame_{frame:06d}.png"

    def frame_path(self, frame: int) -> Path:
        return self.root / "frames" / f"frame_{frame:06d}.png"

    def pose_path(self, frame: int) -> Path:
        return self.root / "pose" / f"pose_{frame:06d}.png"

    def write_segment(self, segment: int, first_frame: int, frames: np.ndarray) -> None:
        """Writes the frames a segment delivers (global indices first_frame, first_frame+1, ...)."""
        for offset, frame in enumerate(frames):
            write_bytes_atomic(self.segment_frame_path(segment, first_frame + offset), encode_png(frame))

    def read_segment_frame(self, segment: int, frame: int) -> np.ndarray:
        return decode_png(self.segment_frame_path(segment, frame).read_bytes())

    def publish(self, segment: int, frames: Iterable[int]) -> None:
        """Copies final frames of a finished segment to `frames/` (atomically; idempotent after a crash).

        A frame already in `frames/` is final by construction (only its last writer publishes it), so it is
        skipped: after a crash between writing the outputs and the SUCCEEDED event, the segment folders are gone
        but every final frame is there.
        """
        for frame in frames:
            target = self.frame_path(frame)
            if not target.exists():
                write_bytes_atomic(target, self.segment_frame_path(segment, frame).read_bytes())

    def write_pose_frames(self, pose_frames: np.ndarray) -> None:
        for i, frame in enumerate(pose_frames):
            write_bytes_atomic(self.pose_path(i), encode_png(frame), fsync=False)

    def write_image(self, name: str, image: np.ndarray) -> None:
        write_bytes_atomic(self.root / name, encode_png(image), fsync=False)

    def drop_segments(self) -> None:
        shutil.rmtree(self.root / "segments", ignore_errors=True)

    def output_path(self, name: str) -> Path:
        if not OUTPUT_FILE_RE.match(name):
            raise FileNotFoundError(name)
        return self.root / name


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def final_frames_after(segment: int, write_ranges: Sequence[tuple[int, int]]) -> list[int]:
    """Frames of `segment`'s write range that no later segment writes (so they are final once it finishes)."""
    start, end = write_ranges[segment]
    later = set()
    for s, e in write_ranges[segment + 1:]:
        later.update(range(s, e))
    return [f for f in range(start, end) if f not in later]


def latest_writer(frame: int, before_segment: int, write_ranges: Sequence[tuple[int, int]]) -> int:
    """The last segment before `before_segment` that wrote `frame` (the frame's current value in the stitch)."""
    for segment in range(before_segment - 1, -1, -1):
        start, end = write_ranges[segment]
        if start <= frame < end:
            return segment
    raise ValueError(f"no segment before {before_segment} writes frame {frame}")


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
