"""`o2a`: the command line of the render client (submit, watch, cancel, download, status, list, capabilities).

    o2a --server gpu-box:50051 submit walk.json --reference hero.png --reference-pose hero_pose.json --out shot/
    o2a watch job-0f3c... --out shot/      # re-attach after a disconnect or from another machine
    o2a cancel job-0f3c...

Progress goes to stderr (a bar on a terminal, plain lines otherwise); results go to stdout (`--json` for one JSON
object). The token comes from `--token-file` or the O2A_TOKEN environment variable and is never printed. Exit codes:
0 done, 1 job failed, 2 invalid request, 3 server unavailable or busy (retry), 4 authentication, 5 not found,
6 not ready, 7 server or integrity error, 8 job cancelled, 130 interrupted (the job keeps running on the server
unless --cancel-on-interrupt).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from google.protobuf import json_format

from ._generated import render_service_pb2 as pb
from .api import ClientConfig, RenderClient
from .convert import RenderOptions, build_submit_request, enum_choices, load_pose, load_sequence
from .errors import ClientError, IntegrityError, InvalidRequest
from .events import JobProgress, state_name
from .progress import ProgressBar

EXIT_JOB_FAILED = 1
EXIT_JOB_CANCELLED = 8
EXIT_INTERRUPTED = 130
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="o2a", description="Client of the One-to-All render server.")
    _add_connection_args(p, suppress=False)
    # The connection options are also accepted after the command (`o2a submit ... --server HOST:PORT`).
    common = argparse.ArgumentParser(add_help=False)
    _add_connection_args(common, suppress=True)
    sub = p.add_subparsers(dest="command", required=True)
    add = lambda name, **kw: sub.add_parser(name, parents=[common], **kw)  # noqa: E731

    add("capabilities", help="show the server's model, limits and defaults")

    s = add("submit", help="submit a shot, follow it and download the frames")
    s.add_argument("keypoints", type=Path, help="pose sequence: .json (add-on export), .npz or .npy (N, 133, 3)")
    s.add_argument("--reference", type=Path, required=True, help="reference image of the character (PNG/JPEG)")
    ref = s.add_mutually_exclusive_group()
    ref.add_argument("--reference-pose", type=Path, help="(133, 3) keypoints of the reference image (.json/.npy)")
    ref.add_argument("--detect-pose", action="store_true", help="let the server detect the reference pose")
    s.add_argument("--canvas", metavar="WxH", help="canvas size of the keypoints when the file does not say it")
    s.add_argument("--size", metavar="WxH", help="output size in pixels (multiples of the model's size multiple)")
    s.add_argument("--fps", type=float, default=0.0, help="output fps (default: the sequence's)")
    s.add_argument("--seed", type=int)
    s.add_argument("--steps", type=int, default=0)
    s.add_argument("--image-guidance", type=float, dest="image_guidance_scale")
    s.add_argument("--pose-guidance", type=float, dest="pose_guidance_scale")
    s.add_argument("--guidance-mode", choices=enum_choices("guidance_mode"))
    s.add_argument("--face-lightening", choices=enum_choices("face_lightening"))
    s.add_argument("--head-lightening", action="store_true")
    s.add_argument("--same-skeleton", action="store_true", help="the driving poses come from the reference character")
    s.add_argument("--alignment", choices=enum_choices("alignment_mode"), dest="alignment_mode")
    s.add_argument("--chunk-plan", choices=enum_choices("chunk_plan"))
    s.add_argument("--image-pose-transfer", choices=enum_choices("image_pose_transfer"))
    s.add_argument("--priority", type=int, default=0)
    s.add_argument("--lease", type=int, dest="lease_s", help="cancel the job after S seconds without a watcher")
    s.add_argument("--prompt", default="")
    s.add_argument("--negative-prompt")
    s.add_argument("--name", default="", dest="display_name", help="label shown in job lists")
    s.add_argument("--request-id", default="", help="idempotency key: re-running with it re-attaches to the job")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return at once")
    _add_follow_args(s)

    w = add("watch", help="follow a job (re-attach) and optionally download its results")
    w.add_argument("job_id")
    w.add_argument("--after", type=int, default=0, help="only events after this sequence number")
    _add_follow_args(w)

    c = add("cancel", help="cancel a job")
    c.add_argument("job_id")
    c.add_argument("--wait", action="store_true", help="wait until the job has stopped")

    d = add("download", help="download the frames and files of a job")
    d.add_argument("job_id")
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--pose-frames", action="store_true", help="also download the drawn pose frames")
    d.add_argument("--no-video", action="store_true")

    g = add("status", help="show one job")
    g.add_argument("job_id")

    ls = add("list", help="list jobs, newest first")
    ls.add_argument("--state", action="append", default=[],
                    choices=[n.removeprefix("JOB_STATE_").lower() for n in pb.JobState.keys()][1:])
    ls.add_argument("--limit", type=int, default=20)
    return p


def _add_connection_args(p: argparse.ArgumentParser, *, suppress: bool) -> None:
    def default(value):
        return argparse.SUPPRESS if suppress else value

    def help_(text: str) -> str:
        return argparse.SUPPRESS if suppress else text

    p.add_argument("--server", default=default(os.environ.get("O2A_SERVER", "127.0.0.1:50051")),
                   help=help_("HOST:PORT of o2a-server (env O2A_SERVER; default 127.0.0.1:50051)"))
    p.add_argument("--token-file", type=Path, default=default(None),
                   help=help_("file holding the bearer token (default: env O2A_TOKEN)"))
    p.add_argument("--tls", action="store_true", default=default(False), help=help_("connect with TLS"))
    p.add_argument("--ca-cert", type=Path, default=default(None),
                   help=help_("PEM CA bundle for a private CA (implies --tls)"))
    p.add_argument("--tls-server-name", default=default(""), help=help_("name expected in the server certificate"))
    p.add_argument("--timeout", type=float, default=default(30.0),
                   help=help_("deadline of each unary call in seconds"))
    p.add_argument("--wait-ready", type=float, default=default(0.0), metavar="S",
                   help=help_("first wait up to S seconds for the server to be SERVING (e.g. while weights load)"))
    p.add_argument("--json", action="store_true", default=default(False),
                   help=help_("print results as one JSON object on stdout"))


def _add_follow_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, help="download frames (frame_00000.png ...) here as each segment finishes, "
                                            "and video.mp4 when the job is done")
    p.add_argument("--pose-frames", action="store_true", help="also download the drawn pose frames to OUT/pose/")
    p.add_argument("--no-video", action="store_true", help="do not download video.mp4")
    p.add_argument("--cancel-on-interrupt", action="store_true",
                   help="Ctrl-C cancels the job (default: detach; the job keeps running)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bar = ProgressBar()
    job_id = ""
    try:
        config = _config(args)
        with RenderClient(config) as client:
            if args.wait_ready:
                client.wait_ready(args.wait_ready)
            command = _COMMANDS[args.command]
            return command(client, args, bar)
    except KeyboardInterrupt:
        bar.close()
        job_id = getattr(args, "_job_id", "")
        if job_id:
            print(f"o2a: interrupted; job {job_id} keeps running (o2a watch {job_id} / o2a cancel {job_id})",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    except ClientError as exc:
        bar.close()
        print(f"o2a: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _config(args) -> ClientConfig:
    token = os.environ.get("O2A_TOKEN", "")
    if args.token_file:
        try:
            token = args.token_file.read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise InvalidRequest(f"--token-file: cannot read a token from {args.token_file}: {exc}",
                                 field="token") from None
    ca = None
    if args.ca_cert:
        try:
            ca = args.ca_cert.read_bytes()
        except OSError as exc:
            raise InvalidRequest(f"--ca-cert: {exc}", field="ca_cert") from None
    return ClientConfig(address=args.server, token=token, tls=args.tls or ca is not None, ca_cert=ca,
                        tls_server_name=args.tls_server_name, timeout_s=args.timeout)


# -- commands ------------------------------------------------------------------------------------------------------


def _capabilities(client: RenderClient, args, bar) -> int:
    caps = client.capabilities()
    if args.json:
        print(json_format.MessageToJson(caps, indent=None))
        return 0
    m, lim = caps.model, caps.limits
    print(f"protocol      {caps.protocol_version}.{caps.protocol_minor_version}  server {caps.server_version}")
    print(f"model         {m.model_id}  ready={m.ready}  devices={','.join(m.devices)}  workers={caps.worker_count}")
    print(f"defaults      steps={m.default_steps}  image_guidance={m.default_image_guidance_scale:g}  "
          f"pose_guidance={m.default_pose_guidance_scale:g}  max_short_side={m.default_max_short_side_px}px")
    print(f"sizes         multiple of {m.size_multiple_px}px, chunks of {m.chunk_frames} frames "
          f"(overlap {m.chunk_overlap_frames})")
    print(f"limits        frames<={lim.max_frames}  pixels<={lim.max_output_pixels}  steps<={lim.max_steps}  "
          f"upload<={lim.max_upload_bytes >> 20}MiB  queue<={lim.max_queued_jobs}")
    print(f"pose detect   {caps.pose_detection_available}   keypoints {caps.keypoint_format}")
    return 0


def _submit(client: RenderClient, args, bar: ProgressBar) -> int:
    canvas = _size(args.canvas, "--canvas") if args.canvas else (0, 0)
    poses = load_sequence(args.keypoints, width=canvas[0], height=canvas[1])
    reference = _read_image(args.reference)
    if args.reference_pose:
        reference_pose = load_pose(args.reference_pose)
    else:
        if not args.detect_pose and not client.capabilities().pose_detection_available:
            raise InvalidRequest("reference_pose: give --reference-pose FILE; this server cannot detect poses "
                                 "(start it with --pose-model)", field="reference_pose")
        reference_pose = None
    width, height = _size(args.size, "--size") if args.size else (0, 0)
    options = RenderOptions(
        width_px=width, height_px=height, fps=args.fps, seed=args.seed, steps=args.steps,
        image_guidance_scale=args.image_guidance_scale, pose_guidance_scale=args.pose_guidance_scale,
        guidance_mode=args.guidance_mode or "", face_lightening=args.face_lightening or "",
        alignment_mode=args.alignment_mode or "", chunk_plan=args.chunk_plan or "",
        image_pose_transfer=args.image_pose_transfer or "", priority=args.priority, lease_s=args.lease_s,
        prompt=args.prompt, negative_prompt=args.negative_prompt, display_name=args.display_name,
        head_lightening=args.head_lightening, same_skeleton=args.same_skeleton,
    )
    request = build_submit_request(poses, reference, reference_pose, options, client_request_id=args.request_id)
    response = client.submit(request)
    job = response.job
    args._job_id = job.job_id
    verb = "submitted" if response.created else "re-attached to existing"
    bar.note(f"{verb} {job.job_id} ({job.settings.frame_count} frames, {job.settings.width_px}x"
             f"{job.settings.height_px}, {job.settings.segment_count} segment(s), seed {job.settings.seed})")
    if args.no_wait:
        _print_result(args, {"job_id": job.job_id, "created": response.created,
                             "state": state_name(job.state)}, job.job_id)
        return 0
    return _follow(client, args, bar, job.job_id, 0)


def _watch(client: RenderClient, args, bar: ProgressBar) -> int:
    args._job_id = args.job_id
    return _follow(client, args, bar, args.job_id, args.after)


def _follow(client: RenderClient, args, bar: ProgressBar, job_id: str, after: int) -> int:
    progress = JobProgress.from_job(client.get_job(job_id))
    bar.update(progress)

    fetched: set[int] = set()

    def on_event(event: pb.JobEvent) -> None:
        nonlocal progress
        progress = progress.apply(event)
        bar.update(progress)
        if args.out and event.HasField("frame_ready"):
            # Frames are final once announced: fetch them now, so a long shot can be checked while it renders.
            ready = event.frame_ready
            paths = client.download_frames(job_id, args.out, first_frame=ready.first_frame,
                                           frame_count=ready.frame_count)
            fetched.update(range(ready.first_frame, ready.first_frame + len(paths)))

    def on_reconnect(attempt: int, delay: float, error: ClientError) -> None:
        bar.note(f"connection lost ({error.message}); reconnecting in {delay:.1f}s (attempt {attempt})")

    try:
        for event in client.watch(job_id, after, heartbeats=True, on_reconnect=on_reconnect):
            on_event(event)
    except KeyboardInterrupt:
        if args.cancel_on_interrupt:
            bar.close()
            client.cancel_job(job_id)
            print(f"o2a: interrupted; cancellation of {job_id} requested", file=sys.stderr)
        raise
    bar.close()
    job = client.get_job(job_id)
    state = state_name(job.state)
    result: dict = {"job_id": job_id, "state": state, "seed": job.settings.seed,
                    "frames": job.settings.frame_count}
    if job.state != pb.JOB_STATE_SUCCEEDED:
        error = JobProgress.from_job(job).error
        print(f"o2a: job {job_id} {state}" + (f": {error}" if error else ""), file=sys.stderr)
        result["error"] = error
        _print_result(args, result, f"{job_id} {state}")
        return EXIT_JOB_CANCELLED if job.state == pb.JOB_STATE_CANCELLED else EXIT_JOB_FAILED
    if args.out:
        result.update(_download(client, args, bar, job, skip=fetched))
    _print_result(args, result, str(args.out) if args.out else f"{job_id} {state}")
    return 0


def _download(client: RenderClient, args, bar: ProgressBar, job: pb.Job,
              skip: set[int] | frozenset[int] = frozenset()) -> dict:
    """Downloads every frame not in `skip` (fetched while watching), then pose frames, video and job.json."""
    out: Path = args.out
    total = job.settings.frame_count

    def on_frame(index: int, _path: Path) -> None:
        if (index + 1) % 25 == 0 or index + 1 == total:
            bar.note(f"downloaded {index + 1}/{total} frames")

    for first, count in _missing_ranges(total, skip):
        client.download_frames(job.job_id, out, first_frame=first, frame_count=count, on_frame=on_frame)
    frames = [out / f"frame_{i:05d}.png" for i in range(total)]
    missing = [p.name for p in frames if not p.exists()]
    if missing:
        raise IntegrityError(f"DownloadFrames: {len(missing)} frame(s) missing in {out}, e.g. {missing[0]}")
    result: dict = {"out": str(out), "frame_files": len(frames),
                    "first_frame": str(frames[0]) if frames else ""}
    if args.pose_frames:
        poses = client.download_frames(job.job_id, out / "pose", kind=pb.FRAME_KIND_POSE, name="pose_{index:05d}.png")
        result["pose_files"] = len(poses)
    names = {f.name for f in job.output_files}
    if not args.no_video and "video.mp4" in names:
        result["video"] = str(client.download_file(job.job_id, "video.mp4", out / "video.mp4"))
    (out / "job.json").write_text(json_format.MessageToJson(job, indent=2))
    return result


def _cancel(client: RenderClient, args, bar) -> int:
    job = client.cancel_job(args.job_id)
    if args.wait and job.state not in (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
        job = client.wait(args.job_id, after_sequence=job.last_event_sequence)
    _print_result(args, {"job_id": job.job_id, "state": state_name(job.state),
                         "cancel_requested": job.cancel_requested},
                  f"{job.job_id} {state_name(job.state)}" + (" (cancel requested)" if job.cancel_requested
                                                             and job.state == pb.JOB_STATE_RUNNING else ""))
    return 0


def _download_cmd(client: RenderClient, args, bar: ProgressBar) -> int:
    job = client.get_job(args.job_id)
    result = {"job_id": job.job_id, "state": state_name(job.state)}
    result.update(_download(client, args, bar, job))
    _print_result(args, result, str(args.out))
    return 0


def _status(client: RenderClient, args, bar) -> int:
    job = client.get_job(args.job_id)
    if args.json:
        print(json_format.MessageToJson(job, indent=None))
    else:
        print(f"{job.job_id} {JobProgress.from_job(job).describe()}")
    return 0


def _list(client: RenderClient, args, bar) -> int:
    states = [pb.JobState.Value("JOB_STATE_" + s.upper()) for s in args.state]
    jobs = list(client.list_jobs(states, limit=args.limit))
    if args.json:
        print(json.dumps({"jobs": [json_format.MessageToDict(j) for j in jobs]}))
        return 0
    for job in jobs:
        print(f"{job.job_id}  {state_name(job.state):<9}  {job.settings.frame_count:>5} frames  "
              f"{job.progress * 100:5.1f}%  {job.display_name}")
    return 0


_COMMANDS = {"capabilities": _capabilities, "submit": _submit, "watch": _watch, "cancel": _cancel,
             "download": _download_cmd, "status": _status, "list": _list}


# -- helpers -------------------------------------------------------------------------------------------------------


def _missing_ranges(total: int, have: set[int]) -> list[tuple[int, int]]:
    """[(first, count)] runs of frame indices in [0, total) that are not in `have`."""
    runs: list[tuple[int, int]] = []
    for i in range(total):
        if i in have:
            continue
        if runs and runs[-1][0] + runs[-1][1] == i:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def _print_result(args, result: dict, text: str) -> None:
    print(json.dumps(result) if args.json else text)


def _size(text: str, flag: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit() or not int(w) or not int(h):
        raise InvalidRequest(f"{flag}: expected WIDTHxHEIGHT in pixels, e.g. 576x1024; got {text!r}",
                             field=flag.lstrip("-"))
    return int(w), int(h)


def _read_image(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"--reference: {exc}", field="reference_image") from None
    if not data.startswith(_IMAGE_MAGIC):
        raise InvalidRequest(f"--reference: {path} is not a PNG or JPEG file", field="reference_image")
    return data


if __name__ == "__main__":
    sys.exit(main())
