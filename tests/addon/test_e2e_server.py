"""End to end against a real render server (tiny model, loopback): operator submit -> progress -> strip,
cancel, re-attach after reopening the file, and the headless farm command (exit codes, resume)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import runtime, vse  # noqa: E402
from blender_addon.apply import find_record  # noqa: E402
from blender_addon.operators_jobs import _new_record  # noqa: E402
from blender_addon.pose.png import decode_png, write_png  # noqa: E402
from blender_addon.prefs import server_settings  # noqa: E402
from blender_addon.shot import make_snapshot  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shot(addon, o2a_server, empty_scene, rig_tools, tmp_path):
    """A small shot wired to the loopback server: 5 frames at 11..15, 32x32 output, 1 step."""
    addon.server_address = o2a_server
    addon.ignore_online_access = True  # the bpy module runs with online access off
    addon.connect_timeout_s = 30.0
    scene = empty_scene
    scene.frame_start, scene.frame_end = 11, 15
    scene.render.resolution_x = scene.render.resolution_y = 64
    ob = rig_tools.rig("metarig", fingers=False)
    rig_tools.animate(ob, frames=(11, 15))
    rig_tools.camera(location=(0.0, -7.0, 1.0))
    bpy.context.view_layer.objects.active = ob
    ref = write_png(tmp_path / "ref.png", np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    s = scene.o2a_shot
    s.armature = ob
    s.reference_source, s.reference_file = "FILE", str(ref)
    s.reference_pose_source, s.reference_frame = "RIG", 11
    s.steps, s.guidance_mode = 1, "NONE"
    s.use_seed, s.seed = True, 5
    s.output_dir = str(tmp_path / "out") + "/"
    yield scene
    runtime.discard()


def _pump_until(pred, timeout=120.0):
    """Drive the timer callback the UI registers (timers never fire in the bpy module)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runtime._tick()
        if pred():
            return True
        time.sleep(0.05)
    runtime.pump_now()
    return pred()


def test_online_access_gate_and_test_connection(shot, addon):
    addon.ignore_online_access = False  # bpy.app.online_access is False in the module
    with pytest.raises(RuntimeError, match="Online access is disabled"):
        bpy.ops.o2a.submit_job()
    assert len(shot.o2a_jobs) == 0
    addon.ignore_online_access = True
    assert bpy.ops.o2a.test_connection() == {"FINISHED"}
    caps = bpy.context.window_manager.o2a_runtime.capabilities
    assert caps.startswith(f"Connected: {addon.server_address}") and "Model: tiny" in caps
    addon.server_address = "127.0.0.1:9"
    with pytest.raises(RuntimeError, match="unreachable"):
        bpy.ops.o2a.test_connection()


def test_submit_operator_puts_strip_at_shot_start(shot):
    scene = shot
    assert bpy.ops.o2a.submit_job() == {"FINISHED"}  # background mode: runs synchronously
    rec = scene.o2a_jobs[-1]
    assert rec.state == "SUCCEEDED", rec.message
    assert rec.job_id.startswith("job-") and rec.progress == 1.0
    strip = vse.find_strip(scene, rec.strip_name)
    assert strip is not None and vse.strip_range(strip) == (11, 16)
    assert len(strip.elements) == 5
    meta = vse.strip_metadata(strip)
    assert meta["job_id"] == rec.job_id and meta["settings"]["options"]["steps"] == 1
    assert meta["settings"]["server_settings"]["seed"] == 5
    frame0 = Path(strip.directory) / strip.elements[0].filename
    assert decode_png(frame0.read_bytes()).shape[:2] == (32, 32)
    assert "token" not in json.dumps(meta).lower()
    # Re-generate from the strip: same settings, new seed, a second strip on a free channel.
    ed = scene.sequence_editor
    ed.active_strip = strip
    assert bpy.ops.o2a.regenerate(new_seed=True) == {"FINISHED"}
    rec2 = scene.o2a_jobs[-1]
    assert rec2.state == "SUCCEEDED" and rec2.job_id != rec.job_id
    strip2 = vse.find_strip(scene, rec2.strip_name)
    assert vse.strip_range(strip2) == (11, 16) and strip2.channel != strip.channel


def test_threaded_runner_reports_progress_and_cancel_works(shot):
    """The UI path: worker thread + queue, drained by the same pump the timer calls."""
    scene = shot
    scene.o2a_shot.steps = 6
    scene.frame_end = 29  # 19 frames: 3 segments of the tiny model
    settings = server_settings(bpy.context)
    snapshot, start = make_snapshot(bpy.context, scene)
    rec = _new_record(scene, settings, start, snapshot.options, "shot")
    key = rec.key
    runner = runtime.get_runner()
    runner.start(key, settings, rec.out_dir, snapshot=snapshot)
    seen = []

    def progressed():
        _sc, r = find_record(key)
        seen.append((r.state, r.progress))
        return r.state == "RUNNING" and r.progress > 0

    assert _pump_until(progressed), seen[-5:]
    _sc, rec = find_record(key)
    assert rec.job_id and 0 < rec.progress < 1
    assert bpy.ops.o2a.cancel_job(job_id=rec.job_id) == {"FINISHED"}
    assert _pump_until(lambda: find_record(key)[1].state in ("CANCELLED", "FAILED", "SUCCEEDED"), 120)
    _sc, rec = find_record(key)
    assert rec.state == "CANCELLED", rec.message
    assert not rec.strip_name


def test_reattach_after_reopening_file(shot, tmp_path):
    scene = shot
    scene.o2a_shot.steps = 3  # still running when the file is reopened
    settings = server_settings(bpy.context)
    snapshot, start = make_snapshot(bpy.context, scene)
    rec = _new_record(scene, settings, start, snapshot.options, "shot")
    key = rec.key
    runtime.get_runner().start(key, settings, rec.out_dir, snapshot=snapshot)
    assert _pump_until(lambda: bool(find_record(key)[1].job_id))
    job_id = find_record(key)[1].job_id
    runtime.discard()  # what load_pre does: stop watching, the job keeps running
    blend = tmp_path / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    rec = next(r for r in scene.o2a_jobs if r.job_id == job_id)
    assert rec.state in ("QUEUED", "RUNNING", "DOWNLOADING")  # saved unfinished
    assert bpy.ops.o2a.reattach_jobs() == {"FINISHED"}
    rec = next(r for r in scene.o2a_jobs if r.job_id == job_id)
    assert rec.state == "SUCCEEDED", rec.message
    assert vse.strip_range(vse.find_strip(scene, rec.strip_name)) == (11, 16)


def _farm(args, cwd, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    code = "import blender_addon.farm as f; f.main()"
    return subprocess.run([sys.executable, "-c", code, "--", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def _events(stdout):
    return [json.loads(line[4:]) for line in stdout.splitlines() if line.startswith("O2A ")]


def test_farm_command_renders_resumes_and_fails_cleanly(shot, tmp_path, o2a_server):
    blend = tmp_path / "farm.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    out = tmp_path / "farm_out"
    proc = _farm(["--blend", str(blend), "--server", o2a_server, "--out", str(out), "--steps", "1"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    events = _events(proc.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "extract" and "extracted" in kinds and "submitted" in kinds and kinds[-1] == "done"
    assert any(e["event"] == "progress" and "progress" in e for e in events)
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 5 and (out / "poses.json").exists()
    job_id = json.loads((out / "o2a_job.json").read_text())["job_id"]
    # Re-running the same command resumes the recorded job: no new submission.
    again = _farm(["--blend", str(blend), "--server", o2a_server, "--out", str(out)], tmp_path)
    assert again.returncode == 0, again.stderr
    ev = _events(again.stdout)
    assert ev[0] == {**ev[0], "event": "resume", "job_id": job_id}
    assert "submitted" not in [e["event"] for e in ev]
    # --insert-strip: the frames become a strip at the shot's start and the .blend is saved.
    strip_run = _farm(["--blend", str(blend), "--server", o2a_server, "--out", str(out), "--insert-strip"], tmp_path)
    assert strip_run.returncode == 0, strip_run.stderr
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    strips = vse.our_strips(bpy.context.scene)
    assert len(strips) == 1 and vse.strip_range(strips[0]) == (11, 16)
    assert vse.strip_metadata(strips[0])["job_id"] == job_id
    # Server down: non-zero exit and a message that says so.
    down = _farm(["--blend", str(blend), "--server", "127.0.0.1:9", "--out", str(tmp_path / "down"),
                  "--connect-timeout", "2"], tmp_path)
    assert down.returncode == 4
    assert "unreachable" in down.stderr and "127.0.0.1:9" in down.stderr
    # Bad arguments: exit 2 before anything is sent.
    bad = _farm(["--blend", str(blend), "--server", o2a_server, "--out", str(tmp_path / "bad"),
                 "--armature", "NoSuchRig"], tmp_path)
    assert bad.returncode == 2 and "NoSuchRig" in bad.stderr


def test_pose_transfer_still_from_image_datablock_and_token_stays_out_of_blend(shot, addon, tmp_path):
    scene = shot
    img = bpy.data.images.new("RefPicture", 48, 32)
    px = np.random.default_rng(2).random((32, 48, 4)).astype(np.float32)
    px[..., 3] = 1.0
    img.pixels.foreach_set(px.ravel())
    scene.o2a_shot.reference_source, scene.o2a_shot.reference_image = "IMAGE", img
    addon.token = "SECRET-TOKEN-1234"  # the loopback server has no auth; the token must still not leak
    scene.frame_set(13)
    assert bpy.ops.o2a.pose_transfer() == {"FINISHED"}
    rec = scene.o2a_jobs[-1]
    assert rec.kind == "still" and rec.state == "SUCCEEDED", rec.message
    assert rec.frame_count == 1 and rec.frame_start == 13
    still = bpy.data.images[rec.strip_name]
    assert tuple(still.size) == (48, 32)  # output size follows the reference picture
    blend = tmp_path / "secret.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, compress=False)
    assert b"SECRET-TOKEN-1234" not in blend.read_bytes()
    addon.token = ""


def test_server_refusal_becomes_a_failed_record_and_a_report(shot):
    scene = shot
    scene.o2a_shot.reference_pose_source = "DETECT"  # the tiny server has no pose detector
    with pytest.raises(RuntimeError) as info:
        bpy.ops.o2a.submit_job()
    rec = scene.o2a_jobs[-1]
    assert rec.state == "FAILED" and rec.message
    assert rec.message in str(info.value)
    assert "detect" in rec.message.lower(), rec.message
    assert "Traceback" not in rec.message
