"""Model parity with the official One-to-All code on every case of a fixture folder.

The folder comes from ``O2A_PARITY_DIR`` (default ``../shared/fixtures/official_parity``; relative paths
are resolved against the repository root). Its ``checkpoint/`` is loaded through the same loader users
use, every case listed in ``cases/index.json`` is run in float32 and compared at atol = rtol = 1e-4.
Nothing here knows the fixture's shapes, head count or layer counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file  # noqa: E402

from render_server.models.loading import load_one_to_all_transformer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def parity_dir() -> Path:
    raw = os.environ.get("O2A_PARITY_DIR")
    folder = Path(raw or "../shared/fixtures/official_parity")
    folder = folder if folder.is_absolute() else (REPO_ROOT / folder).resolve()
    if not (folder / "cases" / "index.json").is_file():
        if raw:
            pytest.fail(f"O2A_PARITY_DIR={raw} has no cases/index.json")
        pytest.skip(f"no parity fixtures at {folder}")
    return folder


def case_names() -> list[str]:
    try:
        folder = parity_dir()
    except pytest.skip.Exception:
        return []
    return sorted(json.loads((folder / "cases" / "index.json").read_text()))


@pytest.fixture(scope="module")
def model():
    return load_one_to_all_transformer(parity_dir() / "checkpoint", dtype=torch.float32)


def load_case(name: str) -> tuple[dict, torch.Tensor]:
    """Forward kwargs exactly as the fixture README prescribes, and the expected output."""
    folder = parity_dir()
    entry = json.loads((folder / "cases" / "index.json").read_text())[name]
    tensors = load_file(folder / entry["file"])
    kwargs = {
        key: tensors[key]
        for key in ("hidden_states", "timestep", "encoder_hidden_states", "image_latents", "image_pose", "controlnet_cond")
    }
    kwargs["conditioning_scale"] = float(tensors["conditioning_scale"].item())
    kwargs["token_replace"] = bool(tensors["token_replace"].item())
    return kwargs, tensors["output"]


def run(model, kwargs: dict, **extra) -> torch.Tensor:
    with torch.no_grad():
        return model(**kwargs, **extra, return_dict=False)[0]


@pytest.fixture(autouse=True)
def _deterministic():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("name", case_names())
def test_forward_matches_official(model, name: str) -> None:
    kwargs, expected = load_case(name)
    out = run(model, kwargs)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("name", case_names())
def test_precomputed_pose_tokens_are_identical(model, name: str) -> None:
    kwargs, expected = load_case(name)
    plain = run(model, kwargs)
    with torch.no_grad():
        pose_tokens = model.encode_pose(kwargs["image_pose"], kwargs["controlnet_cond"])
    fast = run(model, {**kwargs, "image_pose": None, "controlnet_cond": None}, pose_tokens=pose_tokens)
    assert torch.equal(fast, plain)
    torch.testing.assert_close(fast, expected, atol=TOLERANCE, rtol=TOLERANCE)


@pytest.mark.parametrize("name", case_names())
def test_precomputed_reference_features_are_identical(model, name: str) -> None:
    kwargs, expected = load_case(name)
    plain = run(model, kwargs)
    with torch.no_grad():
        features = model.compute_reference_features(kwargs["image_latents"], kwargs["timestep"])
    fast = run(model, kwargs, reference_features=features)
    assert torch.equal(fast, plain)
    torch.testing.assert_close(fast, expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_fixture_has_cases() -> None:
    assert case_names(), f"no cases listed in {parity_dir() / 'cases' / 'index.json'}"
