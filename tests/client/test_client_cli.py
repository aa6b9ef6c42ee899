"""`o2a` end to end as a separate process against the tiny server: submit with a progress display, files on disk,
status/list/capabilities/download/cancel, and the exit codes of the failure classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from client_helpers import CANVAS, SIZE, free_port, png_size, reference_png

from o2a_demo.figure import rest_pose, walking_sequence

REPO = Path(__file__).resolve().parents[2]


def o2a(*args: str, server: str, timeout: float = 240, server_last: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("O2A_TOKEN", None)
    args = (*args, "--server", server) if server_last else ("--server", server, *args)
    return subprocess.run([sys.executable, "-m", "blender_addon.client.cli", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def _inputs(tmp_path: Path, frames: int) -> tuple[Path, Path, Path]:
    keypoints = walking_sequence(frames, *CANVAS, fps=12).save_json(tmp_path / "walk.json")
    pose = rest_pose(*CANVAS)
    ref = tmp_path / "ref.png"
    ref.write_bytes(reference_png(pose))
    ref_pose = tmp_path / "ref_pose.json"
    ref_pose.write_text(json.dumps(pose.tolist()))
    return keypoints, ref, ref_pose


def test_submit_follow_download(server, tmp_path):
    keypoints, ref, ref_pose = _inputs(tmp_path, 11)
    out = tmp_path / "shot"
    run = o2a("submit", str(keypoints), "--reference", str(ref), "--reference-pose", str(ref_pose),
              "--size", f"{SIZE[0]}x{SIZE[1]}", "--steps", "1", "--guidance-mode", "none", "--seed", "3",
              "--name", "cli test", "--pose-frames", "--out", str(out), "--json", server=server.address,
              server_last=True)  # the documented form: o2a submit ... --server HOST:PORT --out DIR
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["state"] == "SUCCEEDED" and result["frame_files"] == 11 and result["seed"] == 3
    assert "submitted job-" in run.stderr and "SUCCEEDED" in run.stderr  # progress on stderr, not stdout
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 11 and png_size(frames[0]) == SIZE
    assert len(list((out / "pose").glob("pose_*.png"))) == 11
    assert (out / "video.mp4").stat().st_size > 0
    job = json.loads((out / "job.json").read_text())
    assert job["jobId"] == result["job_id"] and job["displayName"] == "cli test"

    job_id = result["job_id"]
    status = o2a("status", job_id, server=server.address)
    assert status.returncode == 0 and "SUCCEEDED" in status.stdout
    listing = o2a("list", "--state", "succeeded", "--json", server=server.address)
    assert job_id in [j["jobId"] for j in json.loads(listing.stdout)["jobs"]]
    caps = o2a("capabilities", server=server.address)
    assert caps.returncode == 0 and "tiny" in caps.stdout
    again = o2a("download", job_id, "--out", str(tmp_path / "again"), "--no-video", server=server.address)
    assert again.returncode == 0, again.stderr
    assert sorted(p.read_bytes() for p in (tmp_path / "again").glob("frame_*.png")) == \
        sorted(p.read_bytes() for p in frames)
    watched = o2a("watch", job_id, server=server.address)  # re-attach to a finished job: returns at once
    assert watched.returncode == 0 and "SUCCEEDED" in watched.stdout


def test_no_wait_then_cancel(server, tmp_path):
    keypoints, ref, ref_pose = _inputs(tmp_path, 21)
    run = o2a("submit", str(keypoints), "--reference", str(ref), "--reference-pose", str(ref_pose),
              "--size", f"{SIZE[0]}x{SIZE[1]}", "--steps", "100", "--no-wait", "--json", server=server.address)
    assert run.returncode == 0, run.stderr
    job_id = json.loads(run.stdout)["job_id"]
    cancel = o2a("cancel", job_id, "--wait", "--json", server=server.address)
    assert cancel.returncode == 0, cancel.stderr
    assert json.loads(cancel.stdout)["state"] == "CANCELLED"
    watched = o2a("watch", job_id, server=server.address)
    assert watched.returncode == 8 and "CANCELLED" in watched.stderr


def test_exit_codes(server, tmp_path):
    keypoints, ref, ref_pose = _inputs(tmp_path, 3)
    missing = o2a("status", "job-" + "a" * 32, server=server.address)
    assert missing.returncode == 5 and "NOT_FOUND" in missing.stderr
    bad_size = o2a("submit", str(keypoints), "--reference", str(ref), "--reference-pose", str(ref_pose),
                   "--size", "33x48", server=server.address)
    assert bad_size.returncode == 2 and "width_px" in bad_size.stderr
    not_image = o2a("submit", str(keypoints), "--reference", str(keypoints), "--reference-pose", str(ref_pose),
                    server=server.address)
    assert not_image.returncode == 2 and "--reference" in not_image.stderr
    no_pose = o2a("submit", str(keypoints), "--reference", str(ref), server=server.address)
    assert no_pose.returncode == 2 and "--reference-pose" in no_pose.stderr
    down = o2a("--timeout", "2", "capabilities", server=f"127.0.0.1:{free_port()}", timeout=60)
    assert down.returncode == 3 and "UNAVAILABLE" in down.stderr
    bad_address = o2a("capabilities", server="nowhere")
    assert bad_address.returncode == 2 and "HOST:PORT" in bad_address.stderr


def test_missing_ranges_of_frames_fetched_while_watching():
    from blender_addon.client.cli import _missing_ranges

    assert _missing_ranges(10, set()) == [(0, 10)]
    assert _missing_ranges(10, set(range(10))) == []
    assert _missing_ranges(10, {0, 1, 5, 9}) == [(2, 3), (6, 3)]
