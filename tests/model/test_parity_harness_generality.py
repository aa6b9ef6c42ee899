"""The parity test runs unchanged on another fixture folder of the same layout.

Builds a folder with other shapes, head count and layer counts (sharded checkpoint with an index and no
config JSON, so the config is inferred) and runs the test functions of ``tests/test_model_parity.py`` on
it through ``O2A_PARITY_DIR``. The expected outputs come from our own model here: this checks the harness
and the loader path; the numbers themselves are checked against the official fixture by the parity test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import save_file  # noqa: E402

from render_server.models.tiny import build_tiny_transformer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_fixture(root: Path) -> None:
    model = build_tiny_transformer(11, num_layers=5, ref_num_layers=2, control_num_layers=3,
                                   num_attention_heads=3, ffn_dim=96, text_dim=24)
    (root / "checkpoint").mkdir(parents=True)
    (root / "cases").mkdir()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    keys, weight_map = sorted(state), {}
    for i in range(2):
        name = f"model-{i + 1:05d}-of-00002.safetensors"
        part = {k: state[k] for k in keys[i::2]}
        save_file(part, root / "checkpoint" / name)
        weight_map.update({k: name for k in part})
    (root / "checkpoint" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    g = torch.Generator().manual_seed(3)
    index = {}
    for name, (b, f, h, w, token_replace, scale) in {"alt_a": (1, 2, 6, 4, False, 1.0),
                                                     "alt_b": (2, 5, 4, 8, True, 0.25)}.items():
        case = {
            "hidden_states": torch.randn(b, 16, f, h, w, generator=g),
            "timestep": torch.rand(b, generator=g) * 1000,
            "encoder_hidden_states": torch.randn(b, 7, 24, generator=g),
            "image_latents": torch.randn(b, 32, 1, h, w, generator=g),
            "image_pose": torch.rand(b, 3, 1, 8 * h, 8 * w, generator=g) * 2 - 1,
            "controlnet_cond": torch.rand(b, 3, 4 * f - 3, 8 * h, 8 * w, generator=g) * 2 - 1,
        }
        with torch.no_grad():
            output = model(**case, conditioning_scale=scale, token_replace=token_replace).sample
        case.update(output=output, conditioning_scale=torch.tensor([scale]),
                    token_replace=torch.tensor([token_replace], dtype=torch.uint8))
        save_file(case, root / "cases" / f"{name}.safetensors")
        index[name] = {"file": f"cases/{name}.safetensors"}
    (root / "cases" / "index.json").write_text(json.dumps(index))


def load_parity_module():
    spec = importlib.util.spec_from_file_location("o2a_parity_suite", REPO_ROOT / "tests" / "test_model_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parity_suite_runs_on_another_fixture_folder(tmp_path, monkeypatch) -> None:
    write_fixture(tmp_path / "alt")
    monkeypatch.setenv("O2A_PARITY_DIR", str(tmp_path / "alt"))
    suite = load_parity_module()
    names = suite.case_names()
    assert names == ["alt_a", "alt_b"]
    model = suite.load_one_to_all_transformer(suite.parity_dir() / "checkpoint", dtype=torch.float32)
    assert model.config.num_layers == 5 and model.config.num_attention_heads == 3
    for name in names:  # the suite's own test functions, unchanged
        suite.test_forward_matches_official(model, name)
        suite.test_precomputed_pose_tokens_are_identical(model, name)
        suite.test_precomputed_reference_features_are_identical(model, name)
    suite.test_fixture_has_cases()
