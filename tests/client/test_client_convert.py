"""Keypoints and options -> protocol messages and back; file loaders; the client's import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from client_helpers import CANVAS

from blender_addon.client import convert
from blender_addon.client._generated import render_service_pb2 as pb
from blender_addon.client.convert import RenderOptions, build_submit_request, options_from_request
from blender_addon.client.errors import InvalidRequest
from blender_addon.pose.types import PoseSequence
from o2a_demo.figure import rest_pose, walking_sequence

REPO = Path(__file__).resolve().parents[2]


def test_sequence_round_trip_is_exact_in_float32():
    seq = walking_sequence(7, *CANVAS, fps=23.976)
    kp = seq.keypoints.copy()
    kp[3, 100:, 2] = 0.0  # a hand out of view
    seq = PoseSequence(kp, seq.width, seq.height, seq.fps)
    message = convert.sequence_to_pb(seq)
    assert len(message.frames) == 7 and len(message.frames[0].keypoints) == 399
    back = convert.sequence_from_pb(pb.PoseSequence.FromString(message.SerializeToString()))
    np.testing.assert_array_equal(back.keypoints, seq.keypoints)
    assert (back.width, back.height, back.fps) == (seq.width, seq.height, seq.fps)


def test_request_round_trip_keeps_every_option():
    seq = walking_sequence(3, *CANVAS)
    options = RenderOptions(width_px=32, height_px=48, fps=12.5, seed=2**63 + 5, steps=7, image_guidance_scale=2.0,
                            pose_guidance_scale=1.25, guidance_mode="pose_last", face_lightening="OFF",
                            alignment_mode="ALIGNMENT_MODE_POSE", chunk_plan="official",
                            image_pose_transfer="per_frame", priority=-3, lease_s=60, prompt="a dancer",
                            negative_prompt="", display_name="shot 10", head_lightening=True, same_skeleton=True)
    pose = rest_pose(*CANVAS)
    request = build_submit_request(seq, b"\x89PNG\r\n\x1a\nfake", pose, options, client_request_id="abc")
    request = pb.SubmitJobRequest.FromString(request.SerializeToString())
    assert request.guidance_mode == pb.GUIDANCE_MODE_POSE_LAST
    assert request.alignment_mode == pb.ALIGNMENT_MODE_POSE
    assert request.HasField("negative_prompt") and request.negative_prompt == ""
    np.testing.assert_array_equal(convert.pose_from_pb(request.reference_pose.keypoints), pose)
    back = options_from_request(request)
    assert back == RenderOptions(**{**options.__dict__, "face_lightening": "off", "alignment_mode": "pose"})
    # Unset optionals stay unset (server defaults), and no reference pose means "detect".
    plain = build_submit_request(seq, b"x", None)
    assert not plain.HasField("seed") and not plain.HasField("image_guidance_scale")
    assert plain.reference_pose.detect


@pytest.mark.parametrize("kwargs, field", [
    ({"guidance_mode": "loud"}, "guidance_mode"),
    ({"width_px": 32}, "width_px"),
    ({"fps": float("nan")}, "fps"),
    ({"chunk_plan": 99}, "chunk_plan"),
])
def test_bad_options_name_the_field(kwargs, field):
    with pytest.raises(InvalidRequest) as info:
        RenderOptions(**kwargs)
    assert info.value.field == field


def test_bad_keypoints_name_the_field():
    with pytest.raises(InvalidRequest) as info:
        convert.pose_to_pb(np.zeros((17, 3)), "reference_pose.keypoints")
    assert info.value.field == "reference_pose.keypoints"
    kp = rest_pose(*CANVAS)
    kp[5, 0] = np.nan
    with pytest.raises(InvalidRequest, match="keypoint 5"):
        convert.pose_to_pb(kp)
    with pytest.raises(InvalidRequest, match="driving_poses"):
        convert.sequence_from_array(np.zeros((2, 133, 2)), 64, 64, 24)
    with pytest.raises(InvalidRequest):
        RenderOptions.from_dict({"stepz": 3})


def test_loaders_read_json_npz_npy(tmp_path):
    seq = walking_sequence(4, *CANVAS, fps=30)
    seq.save_json(tmp_path / "walk.json")
    np.savez(tmp_path / "walk.npz", keypoints=seq.keypoints, width=seq.width, height=seq.height, fps=seq.fps)
    np.save(tmp_path / "walk.npy", seq.keypoints)
    for name, kwargs in (("walk.json", {}), ("walk.npz", {}), ("walk.npy", {"width": 64, "height": 96, "fps": 30})):
        loaded = convert.load_sequence(tmp_path / name, **kwargs)
        np.testing.assert_allclose(loaded.keypoints, seq.keypoints, atol=1e-3)
        assert (loaded.width, loaded.height, loaded.fps) == (64, 96, 30.0)
    with pytest.raises(InvalidRequest, match="canvas"):
        convert.load_sequence(tmp_path / "walk.npy")
    with pytest.raises(InvalidRequest, match="no such file"):
        convert.load_sequence(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidRequest):
        convert.load_sequence(tmp_path / "bad.json")

    pose = rest_pose(*CANVAS)
    (tmp_path / "pose.json").write_text(json.dumps(pose.tolist()))
    (tmp_path / "pose_obj.json").write_text(json.dumps({"keypoints": pose.reshape(-1).tolist()}))
    for name in ("pose.json", "pose_obj.json"):
        np.testing.assert_allclose(convert.load_pose(tmp_path / name), pose)
    np.testing.assert_allclose(convert.load_pose(tmp_path / "walk.json"), seq.keypoints[0], atol=1e-3)
    (tmp_path / "short.json").write_text("[[1, 2, 3]]")
    with pytest.raises(InvalidRequest, match="reference_pose"):
        convert.load_pose(tmp_path / "short.json")


def test_client_imports_without_torch_bpy_or_server():
    code = (
        "import sys\n"
        "import blender_addon.client.api, blender_addon.client.cli, blender_addon.client.convert\n"
        "bad = [m for m in ('torch', 'bpy', 'render_server', 'cv2', 'diffusers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)
