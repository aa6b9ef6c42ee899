"""`o2a-demo`: the README's main job, end to end on the built-in tiny model.

1. starts `o2a-server --model tiny` on a free loopback port with a fresh data folder and waits for SERVING;
2. builds a shot procedurally and renders it (more than 81 frames, so two chained segments):
   * farm path (default when the `bpy` module is installed): Blender's human metarig walking in place and waving,
     a camera and the add-on's shot settings are saved to `shot.blend` (`o2a_demo.rig`, in a bpy subprocess), the
     reference picture is painted from the rig's own keypoints, and the add-on's headless entry
     `python -c "import blender_addon.farm as f; f.main()" -- --blend shot.blend ...` extracts, submits, follows
     and downloads the frames;
   * client path (`--via client`, or without bpy): a procedural stick figure (COCO-WholeBody 133 keypoints) and
     a painted reference are submitted through the client library directly;
3. downloads the drawn pose frames and the mp4, writes a contact sheet (pose frames above output frames) and
   prints where everything is.

The tiny model has random weights: the output frames are coloured noise shaped by the pose and the reference, the
point is the plumbing. Exits non-zero with a message (and the server log's tail) on any failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
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
    p.add_argument("--via", choices=("auto", "farm", "client"), default="auto",
                   help="farm = the add-on's headless path with a bpy rig; client = the client library with a "
                        "procedural keypoint sequence; auto = farm when the bpy module is installed")
    return p


def farm_available() -> bool:
    return importlib.util.find_spec("bpy") is not None and importlib.util.find_spec("blender_addon.farm") is not None


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
        via = args.via if args.via != "auto" else ("farm" if farm_available() else "client")
        if via == "farm" and not farm_available():
            raise DemoError("--via farm needs the bpy module (pip install bpy on Python 3.11) and blender_addon.farm")
        print(f"o2a-demo: rendering through the {'add-on farm path (bpy rig)' if via == 'farm' else 'client library'}",
              file=sys.stderr)
        run = run_farm_demo if via == "farm" else run_demo
        result = run(address, out, frames=args.frames, size=(width, height), steps=args.steps, seed=args.seed,
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
    for folder in (out / "frames", out / "pose"):
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
        return finish(client, job.job_id, out, frames, reference_path, bar)


def finish(client: RenderClient, job_id: str, out: Path, frames: int, reference_path: Path, bar: ProgressBar,
           *, frames_done: bool = False) -> dict[str, str]:
    """Checks the job succeeded, downloads what is missing and writes the contact sheet."""
    frames_dir, pose_dir = out / "frames", out / "pose"
    job = client.get_job(job_id)
    if job.state != pb.JOB_STATE_SUCCEEDED:
        raise DemoError(f"job {job_id} ended {state_name(job.state)}: {JobProgress.from_job(job).error}")
    bar.note("downloading frames, pose frames and video" if not frames_done else "downloading pose frames and video")
    output_paths = (sorted(frames_dir.glob("frame_*.png")) if frames_done
                    else client.download_frames(job_id, frames_dir))
    pose_paths = client.download_frames(job_id, pose_dir, kind=pb.FRAME_KIND_POSE, name="pose_{index:05d}.png")
    video = client.download_file(job_id, "video.mp4", out / "video.mp4")
    if len(output_paths) != frames or len(pose_paths) != frames:
        raise DemoError(f"expected {frames} frames, got {len(output_paths)} output and {len(pose_paths)} pose frames")
    indices = pick_frames(frames, 8)
    sheet = contact_sheet(read_rgb(reference_path), [read_rgb(pose_paths[i]) for i in indices],
                          [read_rgb(output_paths[i]) for i in indices], indices)
    sheet_path = write_png(out / "contact_sheet.png", sheet)
    return {"frames": f"{frames_dir}/frame_00000.png .. frame_{frames - 1:05d}.png",
            "pose frames": f"{pose_dir}/pose_00000.png .. pose_{frames - 1:05d}.png",
            "video": str(video), "contact sheet": str(sheet_path), "reference": str(reference_path),
            "keypoints": str(out / "keypoints.json"), "job": job_id}


def run_farm_demo(address: str, out: Path, *, frames: int, size: tuple[int, int], steps: int, seed: int,
                  timeout_s: float) -> dict[str, str]:
    """The add-on's headless path: a bpy rig saved to shot.blend, rendered by `blender_addon.farm`."""
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + (os.pathsep + os.environ["PYTHONPATH"]
                                                    if os.environ.get("PYTHONPATH") else "")}
    blend, reference_path, frames_dir = out / "shot.blend", out / "reference.png", out / "frames"
    for folder in (frames_dir, out / "pose"):
        shutil.rmtree(folder, ignore_errors=True)
    build = subprocess.run([sys.executable, "-m", "o2a_demo.rig", "--blend", str(blend), "--reference",
                            str(reference_path), "--frames", str(frames), "--canvas", *map(str, CANVAS)],
                           capture_output=True, text=True, env=env, cwd=repo, timeout=300)
    if build.returncode != 0 or not blend.exists():
        raise DemoError(f"building the rig in bpy failed (exit {build.returncode}):\n{_tail(build.stderr)}")
    cmd = [sys.executable, "-c", "import blender_addon.farm as f; f.main()", "--", "--blend", str(blend),
           "--server", address, "--out", str(frames_dir), "--steps", str(steps), "--seed", str(seed),
           "--size", str(size[0]), str(size[1]), "--fresh"]
    bar = ProgressBar()
    progress = JobProgress()
    job_id = ""
    log_path = out / "farm.log"  # stderr to a file: a full pipe must never block the farm process
    with open(log_path, "w") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                                      cwd=repo) as proc:
        try:
            for line in proc.stdout:  # the farm prints one `O2A {json}` line per event (Flamenco-parsable)
                if not line.startswith("O2A "):
                    continue
                event = json.loads(line[4:])
                kind = event.get("event")
                if kind == "submitted":
                    job_id = event["job_id"]
                    bar.note(f"farm: submitted {job_id}")
                elif kind == "extracted":
                    bar.note(f"farm: extracted {event['frames']} frames of keypoints from the rig")
                elif kind == "progress" and "progress" in event:
                    progress = JobProgress(job_id=job_id, state=event.get("state", ""),
                                           progress=event["progress"], eta_s=event.get("eta_s", -1.0),
                                           message=event.get("message", ""))
                    bar.update(progress)
            code = proc.wait(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
    bar.close()
    if code != 0:
        raise DemoError(f"the add-on farm command failed (exit {code}):\n{_tail(log_path.read_text())}")
    state = json.loads((frames_dir / "o2a_job.json").read_text())
    job_id = job_id or state["job_id"]
    shutil.copyfile(frames_dir / "poses.json", out / "keypoints.json")
    with RenderClient(address) as client:
        result = finish(client, job_id, out, frames, reference_path, bar, frames_done=True)
    result["blend"] = str(blend)
    return result


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
