"""Loader behaviour on good and bad checkpoint folders, written in tmp_path from the parity fixture."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402

from render_server.models.loading import (  # noqa: E402
    CheckpointError,
    infer_config_from_state_dict,
    load_one_to_all_transformer,
)
from render_server.models.tiny import build_tiny_transformer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fixture_checkpoint() -> Path:
    folder = Path(os.environ.get("O2A_PARITY_DIR", "../shared/fixtures/official_parity"))
    folder = folder if folder.is_absolute() else (REPO_ROOT / folder).resolve()
    checkpoint = folder / "checkpoint"
    if not checkpoint.is_dir():
        pytest.skip(f"no fixture checkpoint at {checkpoint}")
    return checkpoint


@pytest.fixture(scope="module")
def state_dict(fixture_checkpoint: Path) -> dict[str, torch.Tensor]:
    merged = {}
    for file in sorted(fixture_checkpoint.glob("*.safetensors")):
        merged.update(load_file(file))
    return merged


@pytest.fixture(scope="module")
def reference_model(fixture_checkpoint: Path):
    return load_one_to_all_transformer(fixture_checkpoint)


def write_sharded(folder: Path, state: dict[str, torch.Tensor], shards: int, index: bool) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    names, weight_map = [], {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k].contiguous() for k in keys[i::shards]}
        save_file(part, folder / name)
        names.append(name)
        weight_map.update({k: name for k in part})
    if index:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return names


def assert_same_weights(model, reference) -> None:
    a, b = model.state_dict(), reference.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=0, rtol=0, msg=key)


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        load_one_to_all_transformer(path, **kwargs)
    return str(info.value)


# ------------------------------------------------------------------------------------------------
# Good folders
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("index", [True, False])
def test_sharded_checkpoint_without_configs_loads(tmp_path, state_dict, reference_model, index) -> None:
    write_sharded(tmp_path, state_dict, shards=3, index=index)
    model = load_one_to_all_transformer(tmp_path)
    for key in ("num_layers", "ref_num_layers", "control_num_layers", "ffn_dim", "text_dim", "freq_dim",
                "ref_ffn_dim", "control_ffn_dim", "num_attention_heads"):
        assert model.config[key] == reference_model.config[key], key
    assert_same_weights(model, reference_model)


def test_bf16_checkpoint_loads_in_bf16_and_fp32(tmp_path, state_dict, reference_model) -> None:
    write_sharded(tmp_path, {k: v.to(torch.bfloat16) for k, v in state_dict.items()}, shards=2, index=True)
    model = load_one_to_all_transformer(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    as_fp32 = load_one_to_all_transformer(tmp_path, dtype=torch.float32)
    assert {p.dtype for p in as_fp32.parameters()} == {torch.float32}
    for key, value in as_fp32.state_dict().items():
        assert torch.equal(value, state_dict[key].to(torch.bfloat16).float()), key
    # RoPE tables are never cast
    assert model.rope.freqs_cos.dtype == torch.float32 and model.refextractor.rope.freqs_cos.dtype == torch.float32


def test_keep_fp32_modules(tmp_path, fixture_checkpoint) -> None:
    model = load_one_to_all_transformer(fixture_checkpoint, dtype=torch.bfloat16, keep_fp32_modules=True)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["blocks.0.scale_shift_table"] == torch.float32
    assert dtypes["refextractor.condition_embedder.time_embedder.linear_1.weight"] == torch.float32
    assert dtypes["blocks.0.norm2.weight"] == torch.float32
    assert dtypes["blocks.0.attn1.to_q.weight"] == torch.bfloat16


def test_mixed_dtype_checkpoint_defaults_to_fp32(tmp_path, state_dict) -> None:
    mixed = {k: (v.to(torch.bfloat16) if k.startswith("blocks.") else v) for k, v in state_dict.items()}
    write_sharded(tmp_path, mixed, shards=1, index=False)
    model = load_one_to_all_transformer(tmp_path)
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_official_config_names_are_read(tmp_path, state_dict, fixture_checkpoint) -> None:
    write_sharded(tmp_path, state_dict, shards=1, index=False)
    shutil.copy(fixture_checkpoint / "transformer_config.json", tmp_path / "wan2.1_t2v_1.3b.json")
    shutil.copy(fixture_checkpoint / "refextractor_config.json",
                tmp_path / "wan2.1_t2v_1.3b_refextractor_2d_withmask2.json")
    shutil.copy(fixture_checkpoint / "controlnet_config.json", tmp_path / "wan2.1_t2v_1.3b_controlnet_2.json")
    (tmp_path / "configuration.json").write_text('{"framework": "pytorch"}')  # ModelScope metadata: ignored
    load_one_to_all_transformer(tmp_path)


def test_own_save_pretrained_config_round_trips(tmp_path) -> None:
    model = build_tiny_transformer(3)
    model.save_pretrained(tmp_path)
    loaded = load_one_to_all_transformer(tmp_path)
    assert loaded.config.num_layers == model.config.num_layers
    assert_same_weights(loaded, model)


def test_forward_runs_in_bf16(tmp_path, fixture_checkpoint) -> None:
    model = load_one_to_all_transformer(fixture_checkpoint, dtype=torch.bfloat16)
    x = torch.randn(1, 16, 2, 4, 4, dtype=torch.bfloat16)
    il = torch.randn(1, 32, 1, 4, 4, dtype=torch.bfloat16)
    pose = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    with torch.no_grad():
        out = model(x, torch.tensor([500.0]), torch.randn(1, 4, model.config.text_dim, dtype=torch.bfloat16), il,
                    pose[:, :, :1], pose, token_replace=True).sample
    assert out.dtype == torch.bfloat16 and out.shape == x.shape and torch.isfinite(out.float()).all()


# ------------------------------------------------------------------------------------------------
# Bad folders: one CheckpointError naming the file and the first keys
# ------------------------------------------------------------------------------------------------


def test_missing_folder(tmp_path) -> None:
    assert "no such checkpoint folder" in error_of(tmp_path / "nope")


def test_empty_folder(tmp_path) -> None:
    message = error_of(tmp_path)
    assert str(tmp_path) in message and "no *.safetensors" in message


def test_plain_wan_state_dict_is_refused(tmp_path, state_dict) -> None:
    wan_only = {k: v for k, v in state_dict.items()
                if not k.startswith(("refextractor.", "image_to_cond.", "input_hint_block.", "controlnet"))
                and ".add_" not in k and "norm_added_k" not in k}
    save_file(wan_only, tmp_path / "diffusion_pytorch_model.safetensors")
    message = error_of(tmp_path)
    assert "plain Wan2.1 transformer" in message and "diffusion_pytorch_model.safetensors" in message


def test_unrelated_state_dict_is_refused(tmp_path) -> None:
    save_file({"encoder.conv_in.weight": torch.zeros(3, 3)}, tmp_path / "vae.safetensors")
    assert "not a One-to-All transformer" in error_of(tmp_path)


def test_missing_shard(tmp_path, state_dict) -> None:
    names = write_sharded(tmp_path, state_dict, shards=3, index=True)
    (tmp_path / names[1]).unlink()
    message = error_of(tmp_path)
    assert names[1] in message and "model.safetensors.index.json" in message


def test_missing_key(tmp_path, state_dict) -> None:
    partial = dict(state_dict)
    del partial["blocks.1.attn1.add_v_proj.bias"]
    write_sharded(tmp_path, partial, shards=2, index=False)
    message = error_of(tmp_path)
    assert "missing keys (1)" in message and "blocks.1.attn1.add_v_proj.bias" in message


def test_extra_key(tmp_path, state_dict) -> None:
    names = write_sharded(tmp_path, {**state_dict, "blocks.0.attn1.norm_added_q.weight": torch.ones(128)},
                          shards=2, index=False)
    message = error_of(tmp_path)
    assert "unexpected keys (1)" in message and "norm_added_q" in message
    assert any(name in message for name in names)


def test_wrong_shape(tmp_path, state_dict) -> None:
    bad = dict(state_dict)
    bad["controlnet_zero.1.weight"] = torch.zeros(5, 7)
    write_sharded(tmp_path, bad, shards=1, index=False)
    message = error_of(tmp_path)
    assert "shape mismatch" in message and "controlnet_zero.1.weight" in message and "(5, 7)" in message
    assert "model-00001-of-00001.safetensors" in message


def test_config_that_disagrees_with_the_weights(tmp_path, state_dict, fixture_checkpoint) -> None:
    write_sharded(tmp_path, state_dict, shards=1, index=False)
    config = json.loads((fixture_checkpoint / "transformer_config.json").read_text())
    (tmp_path / "transformer_config.json").write_text(json.dumps({**config, "num_layers": config["num_layers"] + 1}))
    message = error_of(tmp_path)
    assert "transformer_config.json" in message and "missing keys" in message


def test_integer_tensor_is_refused(tmp_path, state_dict) -> None:
    save_file({**state_dict, "proj_out.bias": torch.zeros(64, dtype=torch.int32)}, tmp_path / "m.safetensors")
    assert "non-float dtype" in error_of(tmp_path)


def test_corrupt_file_is_refused(tmp_path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file at all")
    assert "model.safetensors" in error_of(tmp_path)


def test_duplicate_key_across_shards(tmp_path, state_dict) -> None:
    save_file(state_dict, tmp_path / "a.safetensors")
    save_file({"proj_out.bias": state_dict["proj_out.bias"]}, tmp_path / "b.safetensors")
    message = error_of(tmp_path)
    assert "proj_out.bias" in message and "a.safetensors" in message


def test_infer_config_rejects_odd_widths() -> None:
    with pytest.raises(CheckpointError, match="head_dim"):
        infer_config_from_state_dict({"patch_embedding.weight": (100, 16, 1, 2, 2)})


def test_index_decides_which_files_are_shards(tmp_path, state_dict, reference_model, caplog) -> None:
    write_sharded(tmp_path, state_dict, shards=2, index=True)
    save_file({"stale.weight": torch.zeros(1)}, tmp_path / "old-consolidated.safetensors")
    with caplog.at_level("WARNING"):
        model = load_one_to_all_transformer(tmp_path)
    assert "old-consolidated.safetensors" in caplog.text
    assert_same_weights(model, reference_model)
