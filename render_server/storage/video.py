"""MP4 encoding with PyAV (libx264 when the build has it, else MPEG-4 part 2), written atomically."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import av
import numpy as np

from .atomic import replace_atomic


def _codec_name() -> str:
    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # PyAV raises UnknownCodecError / ValueError depending on version
            continue
    raise RuntimeError("no usable H.264 or MPEG-4 encoder in this PyAV build")


def encode_mp4(frames: Iterable[np.ndarray], fps: float, path: str | os.PathLike[str]) -> None:
    """Encodes uint8 RGB frames (all the same even size) to `path` at `fps` (yuv420p, CRF 18 for x264)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}.mp4")
    rate = Fraction(fps).limit_denominator(1001)
    codec = _codec_name()
    try:
        with av.open(str(tmp), mode="w") as container:
            stream = None
            for frame in frames:
                if stream is None:
                    stream = container.add_stream(codec, rate=rate)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    if codec == "libx264":
                        stream.options = {"crf": "18", "preset": "veryfast"}
                    else:
                        stream.bit_rate = 8_000_000
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                for packet in stream.encode(video_frame):
                    container.mux(packet)
            if stream is None:
                raise ValueError("no frames to encode")
            for packet in stream.encode():
                container.mux(packet)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        replace_atomic(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
