"""``o2a-pose render``: keypoint JSON -> PNG files, and the Python function behind it."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np

from render_server.pose.cli import main, render_sequence
from render_server.pose.draw import PoseStyle, draw_pose_aligned
from render_server.pose.keypoints import PoseSequence, save_sequence
from render_server.pose.openpose import frame_to_openpose


def _sequence(person) -> PoseSequence:
    frames = np.stack([person(160, 240, shift=(0.02 * i, 0)) for i in range(3)])
    frames[2, :, 2] = 0.0  # a frame without pose
    return PoseSequence.from_array(frames, 160, 240, 24.0, first_frame=101)


def test_render_command_writes_pngs(person, tmp_path, capsys) -> None:
    seq = _sequence(person)
    path = tmp_path / "kps.json"
    save_sequence(seq, path)
    assert main(["render", str(path), str(tmp_path / "out"), "--workers", "2"]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    assert [f.name for f in files] == ["pose_00101.png", "pose_00102.png", "pose_00103.png"]
    first = cv2.imread(str(files[0]))[..., ::-1]
    expected = draw_pose_aligned(frame_to_openpose(seq.frames[0].keypoints, 160, 240), 240, 160, face_change=True)
    np.testing.assert_array_equal(first, expected)  # what the server draws by default for a rig
    assert not cv2.imread(str(files[2])).any()
    assert "wrote 3 frames" in capsys.readouterr().out


def test_render_function_options(person, tmp_path) -> None:
    seq = _sequence(person)
    paths = render_sequence(seq, tmp_path, style=PoseStyle(without_face=True), width=80, height=80)
    img = cv2.imread(str(paths[0]))
    assert img.shape == (80, 80, 3) and img.any()
    classic = render_sequence(seq, tmp_path / "c", drawer="classic")
    assert cv2.imread(str(classic[0])).shape == (240, 160, 3)


def test_bad_input_is_reported(person, tmp_path, capsys) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"layout": "coco_wholebody_133", "width": 0, "height": 10, "fps": 24, "frames": []}')
    assert main(["render", str(path), str(tmp_path / "out")]) == 2
    assert "width" in capsys.readouterr().err
    assert main(["render", str(tmp_path / "missing.json"), str(tmp_path / "out")]) == 2


def test_module_entry_point(person, tmp_path) -> None:
    path = tmp_path / "kps.json"
    save_sequence(_sequence(person), path)
    result = subprocess.run([sys.executable, "-m", "render_server.pose.cli", "render", str(path), str(tmp_path / "o"),
                             "--face", "off", "--head"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "o").glob("pose_*.png"))) == 3


def test_pose_package_never_imports_torch() -> None:
    code = ("import sys, render_server.pose.cli, render_server.pose.prepare, render_server.pose.detect; "
            "print(sorted(m for m in ('torch', 'diffusers', 'onnxruntime') if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"  # onnxruntime is loaded only when a detector is built
