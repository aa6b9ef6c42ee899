"""Headless / render-farm entry point: extract -> submit (or resume) -> wait -> frames on disk.

    blender -b shot.blend --python-exit-code 1 \\
        --python-expr "import blender_addon.farm as f; f.main()" -- --server HOST:PORT --out DIR

also with the bpy module: ``python -c "import blender_addon.farm as f; f.main()" -- --blend shot.blend ...``.
Progress goes to stdout as one JSON object per line prefixed with ``O2A `` (farm managers parse
``"event"``, ``"progress"``, ``"eta_s"``). The job id is written to ``DIR/o2a_job.json`` as soon as
the server accepts the job, so re-running the same command resumes the job instead of rendering
again (``--job-id`` resumes explicitly, ``--fresh`` ignores the state file).

Exit codes: 0 frames written; 1 job failed on the server; 2 bad arguments or scene (nothing sent);
3 job cancelled; 4 server unreachable / connection lost (safe to re-run: it resumes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED, EXIT_UNREACHABLE = 0, 1, 2, 3, 4
STATE_FILE = "o2a_job.json"


def _emit(event: str, **fields) -> None:
    fields = {"event": event, "time": round(time.time(), 3), **fields}
    print("O2A " + json.dumps(fields, sort_keys=True), flush=True)


def _argv(argv: list[str] | None) -> list[str]:
    if argv is not None:
        return argv
    return sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="blender_addon.farm", description="Render a shot's rig motion on the server.")
    p.add_argument("--server", required=True, help="render server host:port")
    p.add_argument("--out", required=True, type=Path, help="folder for frame_NNNNN.png, poses.json and the state file")
    p.add_argument("--blend", type=Path, help="open this .blend first (bpy-module runs; blender -b opens it itself)")
    p.add_argument("--scene", help="scene name (default: the active scene)")
    p.add_argument("--armature", help="armature object name (default: the shot's, else the only armature)")
    p.add_argument("--frame-start", type=int)
    p.add_argument("--frame-end", type=int)
    p.add_argument("--reference", help="reference picture file (default: the shot's reference setting)")
    p.add_argument("--reference-pose", choices=("rig", "detect"), help="default: the shot's setting")
    p.add_argument("--reference-frame", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), help="output size (default: from the reference)")
    p.add_argument("--job-id", help="resume this job instead of submitting")
    p.add_argument("--fresh", action="store_true", help="ignore a previous job recorded in --out")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--ca-file", default="")
    p.add_argument("--token-env", default="O2A_TOKEN", help="environment variable holding the bearer token")
    p.add_argument("--timeout", "--connect-timeout", dest="timeout", type=float, default=60.0,
                   help="deadline in seconds of each server call (progress streams have none)")
    p.add_argument("--insert-strip", action="store_true", help="add the frames as a strip and save the .blend")
    p.add_argument("--export-only", action="store_true", help="only write poses.json (no server)")
    return p


def _scene_and_rig(bpy, args):
    scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
    if scene is None:
        raise ValueError(f"--scene: no scene named {args.scene!r}")
    if args.armature:
        rig = bpy.data.objects.get(args.armature)
        if rig is None or rig.type != "ARMATURE":
            raise ValueError(f"--armature: no armature object named {args.armature!r}")
        return scene, rig
    if scene.o2a_shot.armature is not None:
        return scene, scene.o2a_shot.armature
    rigs = [o for o in scene.objects if o.type == "ARMATURE"]
    if len(rigs) != 1:
        raise ValueError(f"--armature: scene {scene.name!r} has {len(rigs)} armatures; name one")
    return scene, rigs[0]


def _snapshot(bpy, args, scene, rig):
    from dataclasses import replace

    from . import images
    from . import shot as shot_mod
    from .extract import extract
    from .jobs import ShotSnapshot

    start, end = shot_mod.frame_range(scene)
    start = args.frame_start if args.frame_start is not None else start
    end = args.frame_end if args.frame_end is not None else end
    poses = extract(scene, rig, shot_mod.extract_options(scene, rig, start, end),
                    progress=lambda i, n: _emit("extract", frame=i, frames=n) if i == n or i % 50 == 0 else None)
    shot = scene.o2a_shot
    ref = images.from_file(args.reference) if args.reference else images.from_shot(shot, scene)
    source = args.reference_pose or ("rig" if shot.reference_pose_source == "RIG" else "detect")
    ref_frame = args.reference_frame if args.reference_frame is not None else shot.reference_frame
    ref_pose = shot_mod.reference_pose(scene, rig, ref, ref_frame) if source == "rig" else None
    label = f"farm {Path(bpy.data.filepath).name or 'untitled'} {scene.name} {rig.name} {start}-{end}"
    options = shot_mod.render_options(scene, label=label)
    if args.steps is not None:
        options = replace(options, steps=args.steps)
    if args.seed is not None:
        options = replace(options, seed=args.seed)
    if args.size:
        options = replace(options, width=args.size[0], height=args.size[1])
    return ShotSnapshot(poses, ref.data, ref_pose, options), start


def run(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_argv(argv))
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    import bpy

    from . import register
    from .extract import ExtractError
    from .images import ReferencePictureError
    from .jobs import JobFailed, MsgDone, MsgProgress, MsgSubmitted, run_job
    from .settings import ServerSettings, resolve_token

    if args.blend:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend))
    if not hasattr(bpy.types.Scene, "o2a_shot"):
        register()  # farm runs import the package without enabling the add-on
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    try:
        settings = ServerSettings(address=args.server, use_tls=args.tls, ca_file=args.ca_file,
                                  token=resolve_token("", args.token_env), connect_timeout_s=args.timeout,
                                  rpc_timeout_s=args.timeout)
        scene, rig = _scene_and_rig(bpy, args)
        job_id = args.job_id or ""
        if not job_id and not args.fresh and state_path.exists() and not args.export_only:
            recorded = json.loads(state_path.read_text())
            if recorded.get("server") == args.server:
                job_id = recorded.get("job_id", "")
                _emit("resume", job_id=job_id, state_file=str(state_path))
        snapshot, start = (None, scene.frame_start)
        if not job_id:
            snapshot, start = _snapshot(bpy, args, scene, rig)
            snapshot.poses.save_json(out / "poses.json")
            _emit("extracted", frames=len(snapshot.poses), width=snapshot.poses.width,
                  height=snapshot.poses.height, path=str(out / "poses.json"))
            if args.export_only:
                return EXIT_OK
        elif args.frame_start is not None:
            start = args.frame_start
    except (ValueError, ExtractError, ReferencePictureError, OSError) as exc:
        _emit("error", message=str(exc), exit_code=EXIT_USAGE)
        print(f"o2a farm: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def emit(msg) -> None:
        if isinstance(msg, MsgSubmitted):
            state_path.write_text(json.dumps({"job_id": msg.job_id, "server": args.server, "frame_start": start}))
            _emit("submitted", job_id=msg.job_id)
        elif isinstance(msg, MsgProgress):
            fields = {"state": msg.state, "message": msg.message}
            if msg.progress >= 0:
                fields.update(progress=round(msg.progress, 4), eta_s=round(msg.eta_s, 1))
            _emit("progress", **fields)

    try:
        done: MsgDone = run_job(settings, out, emit, snapshot=snapshot, job_id=job_id)
    except JobFailed as exc:
        text = str(exc)
        code = EXIT_UNREACHABLE if exc.unreachable else EXIT_FAILED
        _emit("error", message=text, exit_code=code)
        print(f"o2a farm: error: {text}", file=sys.stderr)
        return code
    if done.state == "SUCCEEDED" and args.insert_strip:
        from . import vse

        vse.insert_image_sequence(scene, [Path(f) for f in done.frames], start, name=f"o2a {done.job_id[:20]}",
                                  metadata={"kind": "shot", "job_id": done.job_id, "server": args.server,
                                            "settings": {"server_settings": done.settings}})
        if bpy.data.filepath:
            bpy.ops.wm.save_mainfile()
    code = {"SUCCEEDED": EXIT_OK, "CANCELLED": EXIT_CANCELLED}.get(done.state, EXIT_FAILED)
    _emit("done", job_id=done.job_id, state=done.state, message=done.message, frames=len(done.frames),
          out=str(out), exit_code=code)
    if code != EXIT_OK:
        print(f"o2a farm: job {done.job_id} {done.state.lower()}: {done.message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> None:
    """Entry point for ``--python-expr``: exits the process with the farm exit code."""
    code = run(argv)
    sys.stdout.flush()
    sys.exit(code)
