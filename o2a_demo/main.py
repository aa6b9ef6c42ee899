"""`o2a-demo`: the README's main job, end to end on the built-in tiny model.

1. starts `o2a-server --model tiny` on a free loopback port with a fresh data folder and waits for SERVING;
2. builds a shot procedurally: a stick figure walking in place and waving (COCO-WholeBody 133 keypoints) and a
   painted reference character in its rest pose;
3. submits it through the client library, follows it with a progress bar (more than 81 frames, so the shot is
   rendered as two chained segments), downloads the frames, the drawn pose frames and the mp4;
4. writes a contact sheet (pose frames above output frames) and prints where everything is.

The tiny model has random weights: the output frames are coloured noise shaped by the pose and the reference, the
point is the plumbing. Exits non-zero with a message (and the server log's tail) on any failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from blender_addon.client._generated import render_service_pb2 as pb
from blender_addon.client.api import RenderClient
from blender_addon.client.convert import RenderOptions
from blender_addon.client.errors import ClientError
from blender_addon.client.events import JobProgress, state_name
from blender_addon.client.progress import ProgressBar

from .figure import paint_reference, rest_pose, walking_sequence
from .server_process import ServerProcess, ServerStartError
from .sheet import contact_sheet, pick_frames, read_rgb, write_png

CANVAS = (288, 512)  # keypoint canvas and reference image size (9:16 portrait)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="o2a-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default %(default)s)")
    p.add_argument("--frames", type=int, default=89, help="frames in the shot (> 81 gives two segments)")
    p.add_argument("--size", default="64x112", help="output WIDTHxHEIGHT (multiples of 16)")
    p.add_argument("--steps", type=int, default=4, help="denoising steps")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--server", help="use this running server (HOST:PORT) instead of starting one")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"o2a-demo: --size: expected WIDTHxHEIGHT, got {args.size!r}", file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    server = None
    data_dir = Path(tempfile.mkdtemp(prefix="o2a-demo-"))
    try:
        if args.server:
            address = args.server
        else:
            print("o2a-demo: starting o2a-server --model tiny ...", file=sys.stderr)
            server = ServerProcess(data_dir / "data", log_path=out / "server.log").start(ready_timeout_s=300)
            address = server.address
            print(f"o2a-demo: server ready on {address} ({time.monotonic() - started:.0f}s)", file=sys.stderr)
        result = run_demo(address, out, frames=args.frames, size=(width, height), steps=args.steps, seed=args.seed,
                          timeout_s=args.timeout)
    except (ClientError, ServerStartError, DemoError) as exc:
        print(f"o2a-demo: FAILED: {exc}", file=sys.stderr)
        if server is not None and not isinstance(exc, ServerStartError):
            print(server.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("o2a-demo: interrupted", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"o2a-demo: done in {time.monotonic() - started:.0f}s")
    for label, path in result.items():
        print(f"  {label:<14} {path}")
    return 0


class DemoError(RuntimeError):
    pass


def run_demo(address: str, out: Path, *, frames: int, size: tuple[int, int], steps: int, seed: int,
             timeout_s: float) -> dict[str, str]:
    """Drives a running server with the procedural shot; returns {label: path} of what it wrote."""
    poses = walking_sequence(frames, *CANVAS, fps=16.0)
    reference_pose = rest_pose(*CANVAS)
    reference = paint_reference(reference_pose, *CANVAS)
    reference_path = write_png(out / "reference.png", reference)
    poses.save_json(out / "keypoints.json")
    options = RenderOptions(width_px=size[0], height_px=size[1], steps=steps, seed=seed,
                            display_name="o2a-demo: walking and waving", same_skeleton=True)
    frames_dir, pose_dir = out / "frames", out / "pose"
    for folder in (frames_dir, pose_dir):
        shutil.rmtree(folder, ignore_errors=True)
    bar = ProgressBar()
    with RenderClient(address, watch_deadline_s=timeout_s) as client:
        response = client.submit_shot(poses, reference_path.read_bytes(), reference_pose, options)
        job = response.job
        bar.note(f"submitted {job.job_id}: {job.settings.frame_count} frames at {job.settings.width_px}x"
                 f"{job.settings.height_px}, {job.settings.segment_count} segments, {job.settings.steps} steps")
        progress = JobProgress.from_job(job)
        deadline = time.monotonic() + timeout_s
        for event in client.watch(job.job_id, heartbeats=True):
            progress = progress.apply(event)
            bar.update(progress)
            if time.monotonic() > deadline:
                client.cancel_job(job.job_id)
                raise DemoError(f"job {job.job_id} did not finish within {timeout_s:.0f}s; cancelled")
        bar.close()
        job = client.get_job(job.job_id)
        if job.state != pb.JOB_STATE_SUCCEEDED:
            raise DemoError(f"job {job.job_id} ended {state_name(job.state)}: {JobProgress.from_job(job).error}")
        bar.note("downloading frames, pose frames and video")
        output_paths = client.download_frames(job.job_id, frames_dir)
        pose_paths = client.download_frames(job.job_id, pose_dir, kind=pb.FRAME_KIND_POSE,
                                            name="pose_{index:05d}.png")
        video = client.download_file(job.job_id, "video.mp4", out / "video.mp4")
    if len(output_paths) != frames or len(pose_paths) != frames:
        raise DemoError(f"expected {frames} frames, got {len(output_paths)} output and {len(pose_paths)} pose frames")
    indices = pick_frames(frames, 8)
    sheet = contact_sheet(reference, [read_rgb(pose_paths[i]) for i in indices],
                          [read_rgb(output_paths[i]) for i in indices], indices)
    sheet_path = write_png(out / "contact_sheet.png", sheet)
    return {"frames": f"{frames_dir}/frame_00000.png .. frame_{frames - 1:05d}.png",
            "pose frames": f"{pose_dir}/pose_00000.png .. pose_{frames - 1:05d}.png",
            "video": str(video), "contact sheet": str(sheet_path), "reference": str(reference_path),
            "keypoints": str(out / "keypoints.json"), "job": job.job_id}


if __name__ == "__main__":
    sys.exit(main())
