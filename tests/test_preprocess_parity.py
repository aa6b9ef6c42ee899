"""Official preprocessing functions against ``preprocess/records.json`` of the parity fixture folder.

Every record is discovered and run through our implementation (table ``ADAPTERS``: official function -> ours);
the folder comes from ``O2A_PARITY_DIR`` (default ``../shared/fixtures/official_parity`` relative to the repo
root), so the test runs unchanged on any folder of the same layout. A record whose function has no adapter fails.
(The chunk split plan, ``preprocess/split_plan.json``, belongs to the pipeline's tests.)

Tolerances, per kind of value:
* numbers and numeric arrays: ``rtol=1e-5`` (``atol=1e-6`` for values near 0). The official code mixes float32 and
  float64 (numpy-1 promotion rules), we compute some steps in the other precision; results differ in the last bits
  of float32 only. Integer/bool values, shapes and dict keys must be equal.
* images resampled by OpenCV (``warp_ref_to_pose``: ``cv2.warpAffine`` bilinear image and pose drawing): every
  pixel within 8 grey levels and mean absolute difference < 1. OpenCV 5 interpolates slightly differently from the
  official OpenCV 4.8 pin (measured up to 6 levels).
* the outpaint mask (``cv2.warpAffine`` nearest, 0/255): at most 0.5% of the pixels may differ (a changed
  rounding of the border moves the mask edge by one pixel, which is a 255-level difference there).
* images resampled by Pillow (``resizecrop``): within 1 grey level (Pillow's fixed-point bicubic is the very
  resampler the official code calls; the allowance only covers Pillow version drift).
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from render_server.pose import align, retarget
from render_server.pose.openpose import OpenPose, WanMeta, dwpose_raw_to_openpose, meta_to_openpose

_spec = importlib.util.spec_from_file_location("o2a_pose_parity_io", Path(__file__).parent / "pose" / "parity_io.py")
parity_io = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity_io)

ROOT = parity_io.parity_dir()
RTOL, ATOL = 1e-5, 1e-6
CV_MAX_LEVELS, CV_MAX_MEAN = 8, 1.0
MASK_MAX_FRACTION = 0.005
PIL_MAX_LEVELS = 1


def _pose(d: dict) -> OpenPose:
    return OpenPose.from_dict(d)


def _pick_good_source_frame(ref: dict, poses: list, **kw: Any) -> tuple:
    index = align.find_anchor_frame(_pose(ref), [_pose(p) for p in poses], **kw)
    return poses[index], index


def _scale_and_translate_pose(tgt: dict, ref: dict, conf_th: float = 0.9, return_ratio: bool = False) -> Any:
    if return_ratio:
        return align.scale_ratio(_pose(tgt), _pose(ref), conf_th)
    pose, shoulder_ok, hip_ok = align.scale_and_translate(_pose(tgt), _pose(ref), conf_th)
    return pose.to_dict(), shoulder_ok, hip_ok


def _align_to_pose(ref: dict, poses: list, anchor_idx: int | None = None, conf_th: float = 0.9) -> list:
    # right_hand_index=1 reproduces the official hand/arm pairing (each hand follows the opposite arm)
    out = align.align_to_pose(_pose(ref), [_pose(p) for p in poses], anchor=anchor_idx, conf_th=conf_th,
                              right_hand_index=1)  # fmt: skip
    return [p.to_dict() for p in out]


def _align_to_reference(ref_meta: dict, metas: list, poses: list, anchor_idx: int | None = None) -> list:
    out = retarget.align_to_reference(
        WanMeta.from_dict(ref_meta), [WanMeta.from_dict(m) for m in metas], [_pose(p) for p in poses],
        anchor=anchor_idx,
    )  # fmt: skip
    return [p.to_dict() for p in out]


def _warp_ref_to_pose(img: np.ndarray, drv: dict, ref: dict, **kw: Any) -> tuple:
    return align.warp_ref_to_pose(img, _pose(drv), _pose(ref), **kw)


def _build_pose_dict(raw: dict, img_h: int, img_w: int, target_ratio: float | None = None) -> dict:
    return dwpose_raw_to_openpose(raw["candidate"], raw["score"], img_h, img_w, target_ratio).to_dict()


ADAPTERS: dict[str, Callable[..., Any]] = {
    "aaposemeta_to_dwpose": lambda meta: meta_to_openpose(WanMeta.from_dict(meta)).to_dict(),
    "build_pose_dict": _build_pose_dict,
    "pick_good_source_frame": _pick_good_source_frame,
    "scale_and_translate_pose": _scale_and_translate_pose,
    "compute_ratios_stepwise": align.bone_ratios,
    "align_to_pose": _align_to_pose,
    "align_to_reference": _align_to_reference,
    "warp_ref_to_pose": _warp_ref_to_pose,
    "resizecrop": align.resizecrop,
}


def _load() -> dict:
    path = ROOT / "preprocess" / "records.json"
    return parity_io.load_json(path) if path.exists() else {"shared_inputs": {}, "records": []}


DATA = _load()
RECORDS = DATA["records"]


def _record_id(i: int, rec: dict) -> str:
    return f"{i:02d}-{rec.get('group', '')}-{rec['function'].split('::')[-1].split()[0]}"


def test_fixture_folder_has_records() -> None:
    assert RECORDS, f"no preprocess/records.json records under {ROOT} (set O2A_PARITY_DIR)"


def _compare_image(expected_json: dict, got: Any, expected: Any, function: str, path: str) -> None:
    exp = np.asarray(expected).astype(int)
    arr = np.asarray(got)
    assert arr.shape == exp.shape, f"{path}: shape {arr.shape} != {exp.shape}"
    diff = np.abs(arr.astype(int) - exp)
    if function == "resizecrop":
        assert diff.max() <= PIL_MAX_LEVELS, f"{path}: max diff {diff.max()} grey levels"
    elif expected_json.get("mode") == "L" and set(np.unique(exp)) <= {0, 255}:
        fraction = (diff > 0).mean()
        assert fraction <= MASK_MAX_FRACTION, f"{path}: {fraction:.3%} of mask pixels differ"
    else:
        assert diff.max() <= CV_MAX_LEVELS and diff.mean() < CV_MAX_MEAN, (
            f"{path}: max diff {diff.max()}, mean {diff.mean():.3f}"
        )


def _compare(expected_json: Any, expected: Any, got: Any, function: str, path: str = "result") -> None:
    if isinstance(expected_json, dict) and "__png__" in expected_json:
        _compare_image(expected_json, got, expected, function, path)
    elif isinstance(expected_json, dict) and "__tuple__" in expected_json:
        assert isinstance(got, (tuple, list)) and len(got) == len(expected), f"{path}: {type(got)} len mismatch"
        for i, (ej, e, g) in enumerate(zip(expected_json["__tuple__"], expected, got)):
            _compare(ej, e, g, function, f"{path}[{i}]")
    elif isinstance(expected_json, dict) and "__tuplekeys__" in expected_json:
        assert set(got) == set(expected), f"{path}: keys {sorted(got)} != {sorted(expected)}"
        for key, value_json in expected_json["__tuplekeys__"]:
            _compare(value_json, expected[tuple(key)], got[tuple(key)], function, f"{path}[{tuple(key)}]")
    elif isinstance(expected, dict):
        assert isinstance(got, dict), f"{path}: expected dict, got {type(got)}"
        for key in expected:
            assert key in got, f"{path}: missing key {key!r}"
            sub_json = expected_json[key] if isinstance(expected_json, dict) else None
            _compare(sub_json, expected[key], got[key], function, f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(expected), f"{path}: length mismatch"
        for i, (e, g) in enumerate(zip(expected, got)):
            _compare(expected_json[i] if isinstance(expected_json, list) else None, e, g, function, f"{path}[{i}]")
    elif expected is None:
        assert got is None or np.asarray(got).size == 0, f"{path}: expected None, got {got!r}"
    elif isinstance(expected, (bool, np.bool_)):
        assert bool(got) == bool(expected), f"{path}: {got} != {expected}"
    elif isinstance(expected, np.ndarray) and expected.dtype == object:
        assert np.asarray(got).shape == expected.shape, f"{path}: shape mismatch"
    else:
        exp = np.asarray(expected)
        arr = np.asarray(got)
        assert arr.shape == exp.shape, f"{path}: shape {arr.shape} != {exp.shape}"
        if exp.dtype.kind in "iub":
            np.testing.assert_array_equal(arr, exp, err_msg=path)
        else:
            np.testing.assert_allclose(arr.astype(np.float64), exp.astype(np.float64), rtol=RTOL, atol=ATOL,
                                       err_msg=path)  # fmt: skip


@pytest.mark.parametrize("record", RECORDS, ids=[_record_id(i, r) for i, r in enumerate(RECORDS)])
def test_record_matches_official(record: dict) -> None:
    name = record["function"].split("::")[-1].split()[0]
    assert name in ADAPTERS, f"no implementation mapped for official function {record['function']}"
    decode = parity_io.Decoder(ROOT, DATA["shared_inputs"])
    args = decode(record["args"])
    kwargs = decode(record.get("kwargs") or {})
    snapshot = copy.deepcopy((args, kwargs))
    got = ADAPTERS[name](*args, **kwargs)
    expected = decode(record["expected"])
    _compare(record["expected"], expected, got, name)
    # our functions never mutate their inputs (the official align_to_reference does)
    _compare(None, snapshot, (args, kwargs), name, "inputs after call")
