"""The README's main job: `o2a-demo` starts its own tiny server, renders a two-segment shot (through the add-on's
headless farm path with a bpy rig when bpy is installed) and leaves frames, pose frames, an mp4 and a contact
sheet. Run at a smaller size and one step to keep the suite fast; the frame count stays above 81 so the shot is
rendered as two chained segments as in the default demo. The client-library path runs against the shared server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from client_helpers import free_port, png_size

REPO = Path(__file__).resolve().parents[2]


def demo(*args: str, timeout: float = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "o2a_demo.main", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def test_demo_end_to_end(tmp_path):
    out = tmp_path / "demo_output"
    run = demo("--out", str(out), "--frames", "85", "--steps", "1", "--size", "32x64")
    assert run.returncode == 0, run.stdout + run.stderr
    frames = sorted((out / "frames").glob("frame_*.png"))
    poses = sorted((out / "pose").glob("pose_*.png"))
    assert len(frames) == 85 and len(poses) == 85
    assert png_size(frames[0]) == (32, 64) and png_size(poses[0]) == (32, 64)
    assert (out / "video.mp4").read_bytes()[4:8] == b"ftyp"
    sheet_w, sheet_h = png_size(out / "contact_sheet.png")
    assert sheet_w > 8 * 100 and sheet_h > 400  # reference + 8 columns of pose-over-output
    if importlib.util.find_spec("bpy") is not None:
        assert "add-on farm path" in run.stderr and (out / "shot.blend").exists()
        assert "extracted 85 frames" in run.stderr
    else:
        assert "2 segments" in run.stderr
    for name in ("video.mp4", "contact_sheet.png", "frames"):
        assert str(out / name) in run.stdout
    assert not list(out.rglob("*.part"))


def test_demo_client_path_on_running_server(server, tmp_path):
    out = tmp_path / "client_demo"
    run = demo("--via", "client", "--server", server.address, "--out", str(out), "--frames", "13", "--steps", "1",
               "--size", "32x48")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "client library" in run.stderr and "2 segments" in run.stderr  # the test server uses 9-frame chunks
    assert len(list((out / "frames").glob("frame_*.png"))) == 13
    assert len(list((out / "pose").glob("pose_*.png"))) == 13
    assert (out / "contact_sheet.png").exists() and (out / "keypoints.json").exists()


def test_demo_fails_clearly_without_server(tmp_path):
    run = demo("--out", str(tmp_path / "o"), "--server", f"127.0.0.1:{free_port()}", timeout=120)
    assert run.returncode != 0
    assert "FAILED" in run.stderr and "UNAVAILABLE" in run.stderr
