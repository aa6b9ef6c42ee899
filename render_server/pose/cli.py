"""``o2a-pose``: draw a keypoint sequence to PNGs, to check a pose export before spending GPU time.

    o2a-pose render keypoints.json out_dir/ [--face on|off] [--head] [--without-face] [--style aligned|classic]
                                            [--width W --height H] [--workers N]

Frames are drawn exactly as the server draws them for the model (official aligned drawer); files are named
``pose_<frame number>.png``. ``render_sequence`` is the same as a Python function.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np

from .draw import PoseStyle, draw_pose_classic, draw_pose_styled
from .keypoints import KeypointError, PoseSequence, load_sequence, validate_canvas
from .openpose import frame_to_openpose
from .prepare import map_to_canvas


def render_sequence(
    sequence: PoseSequence,
    out_dir: str | os.PathLike[str],
    *,
    style: PoseStyle = PoseStyle(face_change=True),
    drawer: Literal["aligned", "classic"] = "aligned",
    width: int | None = None,
    height: int | None = None,
    workers: int = 0,
) -> list[Path]:
    """Draw every frame of ``sequence`` to ``out_dir/pose_<frame>.png`` and return the paths.

    With ``width``/``height`` the keypoints are brought to that size the way the server does (centre crop to the
    aspect, then scale); by default the sequence's own canvas is used.
    """
    if drawer not in ("aligned", "classic"):
        raise ValueError(f"drawer: expected 'aligned' or 'classic', got {drawer!r}")
    out_w, out_h = validate_canvas(width or sequence.width, height or sequence.height)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digits = max(5, len(str(max((f.frame for f in sequence.frames), default=0))))

    def one(i: int) -> Path:
        frame = sequence.frames[i]
        kps = map_to_canvas(frame.keypoints, sequence.width, sequence.height, out_w, out_h)
        pose = frame_to_openpose(kps, out_w, out_h)
        if drawer == "aligned":
            img = draw_pose_styled(pose, out_h, out_w, style)
        else:
            img = draw_pose_classic(pose, out_h, out_w)
        path = out / f"pose_{frame.frame:0{digits}d}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(img[..., ::-1])):
            raise OSError(f"could not write {path}")
        return path

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(one, range(len(sequence))))
    return [one(i) for i in range(len(sequence))]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="o2a-pose", description="Pose keypoint tools for One-to-All render.")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="draw a keypoint sequence JSON to PNG files")
    render.add_argument("keypoints", help="keypoint sequence JSON (layout coco_wholebody_133)")
    render.add_argument("out_dir", help="folder for pose_<frame>.png files (created if needed)")
    render.add_argument("--face", choices=["on", "off"], default="on",
                        help="face lightening: 'on' = face landmarks at 35%% brightness, as the server draws a rig "
                             "driving a photo (default); 'off' = full brightness")  # fmt: skip
    render.add_argument("--head", action="store_true", help="also lighten head limbs, black head joints")
    render.add_argument("--without-face", action="store_true", help="do not draw face landmarks")
    render.add_argument("--style", choices=["aligned", "classic"], default="aligned",
                        help="'aligned' = what the model sees (default); 'classic' = DWPose look")  # fmt: skip
    render.add_argument("--width", type=int, help="output width (default: the sequence's)")
    render.add_argument("--height", type=int, help="output height (default: the sequence's)")
    render.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="drawing threads")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        sequence = load_sequence(args.keypoints)
        style = PoseStyle(without_face=args.without_face, face_change=args.face == "on", head_change=args.head)
        paths = render_sequence(
            sequence, args.out_dir, style=style, drawer=args.style, width=args.width, height=args.height,
            workers=args.workers,
        )  # fmt: skip
    except (KeypointError, OSError) as exc:
        print(f"o2a-pose: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} frames to {args.out_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
