"""Pose drawings against the official renderings (``pose/renders.json`` of the parity fixture folder).

Every record of ``pose/renders.json`` is discovered and run; the folder comes from ``O2A_PARITY_DIR`` (default
``../shared/fixtures/official_parity`` relative to the repo root), so the test runs unchanged on any folder of the
same layout.

Tolerance: pixel-exact except for at most 0.1% of the pixels of an image. Why not bit-exact everywhere: the
fixtures were made with numpy 1.26 / OpenCV 4.8; under numpy 2 (NEP 50) the official code itself rounds a few
border points differently (the README measured one pixel in each k4_border_cases 96x160 aligned render), and
OpenCV's bilinear resize may differ between major versions. We write the numpy-1 float64 steps explicitly, so in
practice the match is exact; the allowance only absorbs library drift.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from render_server.pose.draw import draw_pose_aligned, draw_pose_classic
from render_server.pose.openpose import OpenPose

_spec = importlib.util.spec_from_file_location("o2a_pose_parity_io", Path(__file__).parent / "pose" / "parity_io.py")
parity_io = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity_io)

ROOT = parity_io.parity_dir()
MAX_DIFF_FRACTION = 0.001  # at most 0.1% of an image's pixels may differ (see module docstring)


def _records() -> list:
    path = ROOT / "pose" / "renders.json"
    if not path.exists():
        return []
    return parity_io.load_json(path)


RECORDS = _records()


@pytest.fixture(scope="module")
def keypoint_sets() -> dict:
    decode = parity_io.Decoder(ROOT)
    raw = parity_io.load_json(ROOT / "pose" / "keypoints.json")
    return {name: decode(item["pose"]) for name, item in raw.items()}


def test_fixture_folder_has_records() -> None:
    assert RECORDS, f"no pose/renders.json records under {ROOT} (set O2A_PARITY_DIR)"


def _record_id(rec: dict) -> str:
    return Path(rec["expected_png"]).stem


@pytest.mark.parametrize("record", RECORDS, ids=[_record_id(r) for r in RECORDS])
def test_render_matches_official(record: dict, keypoint_sets: dict) -> None:
    pose = OpenPose.from_dict(keypoint_sets[record["keypoints"]])
    height, width = record["H"], record["W"]
    kwargs = dict(record.get("kwargs") or {})
    function = record["function"].split("::")[-1].split()[0]
    if function == "draw_pose_aligned":
        defaults = record.get("defaults_not_passed") or {}
        if defaults.get("pose_plan") is not None:
            pytest.fail("pose_plan (training augmentation) is not part of the renderer")
        ref_w = kwargs.pop("ref_w", defaults.get("ref_w", 2160))
        kwargs.pop("pose_plan", None)
        got = draw_pose_aligned(pose, height, width, ref_w=ref_w, **kwargs)
    elif function == "draw_pose":
        assert not kwargs, f"classic drawer takes no options, got {kwargs}"
        got = draw_pose_classic(pose, height, width)
    else:
        pytest.fail(f"unknown drawing function {record['function']}")
    expected = np.asarray(parity_io.load_png(ROOT / record["expected_png"], "RGB"))
    assert got.shape == expected.shape and got.dtype == np.uint8
    differing = np.any(got != expected, axis=-1)
    fraction = differing.mean()
    assert fraction <= MAX_DIFF_FRACTION, (
        f"{differing.sum()} of {differing.size} pixels differ ({fraction:.4%}), max abs diff "
        f"{np.abs(got.astype(int) - expected.astype(int)).max()}"
    )
