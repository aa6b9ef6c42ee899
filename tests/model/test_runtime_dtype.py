"""Autocast-free reduced-precision running: parameter casting rules and mixed-dtype inputs."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from render_server.models.tiny import build_tiny_transformer  # noqa: E402


def inputs(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(1, 16, 3, 4, 4, generator=g),
        "timestep": 640.0,
        "encoder_hidden_states": torch.randn(1, 5, 32, generator=g),
        "image_latents": torch.randn(1, 32, 1, 4, 4, generator=g),
        "image_pose": torch.rand(1, 3, 1, 32, 32, generator=g) * 2 - 1,
        "controlnet_cond": torch.rand(1, 3, 9, 32, 32, generator=g) * 2 - 1,
    }


@pytest.mark.parametrize("keep", [False, True])
def test_bf16_runs_from_fp32_inputs_and_stays_close(keep) -> None:
    reference = build_tiny_transformer(5)
    model = build_tiny_transformer(5).set_runtime_dtype(torch.bfloat16, keep_fp32_modules=keep)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["blocks.0.attn1.add_k_proj.weight"] == torch.bfloat16
    assert dtypes["blocks.0.scale_shift_table"] == (torch.float32 if keep else torch.bfloat16)
    assert dtypes["refextractor.condition_embedder.time_embedder.linear_2.weight"] == (
        torch.float32 if keep else torch.bfloat16
    )
    assert model.rope.freqs_cos.dtype == torch.float32 and model.refextractor.rope.freqs_sin.dtype == torch.float32
    with torch.no_grad():
        expected = reference(**inputs(), token_replace=True).sample
        out = model(**inputs(), token_replace=True).sample
    assert out.dtype == torch.bfloat16 and out.shape == expected.shape
    relative = (out.float() - expected).norm() / expected.norm()
    assert relative < 0.05, relative


def test_fp32_round_trip_is_exact() -> None:
    model = build_tiny_transformer(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.set_runtime_dtype(torch.float32, keep_fp32_modules=True)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
