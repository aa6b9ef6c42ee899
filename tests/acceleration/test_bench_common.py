"""The GPU benchmarks' helpers on the CPU: random real-structure models from a meta skeleton, the eager
reference sampler against the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _common import build_transformer, compare, eager_reference_chunk, make_shot  # noqa: E402

from render_server.models.tiny import TINY_TRANSFORMER_CONFIG, build_tiny_transformer, build_tiny_vae  # noqa: E402
from render_server.pipeline.pipeline import OneToAllPipeline  # noqa: E402


def test_meta_built_model_is_complete_seeded_and_has_real_rope_tables() -> None:
    model = build_transformer(dict(TINY_TRANSFORMER_CONFIG), torch.device("cpu"), torch.bfloat16, seed=1)
    again = build_transformer(dict(TINY_TRANSFORMER_CONFIG), torch.device("cpu"), torch.bfloat16, seed=1)
    other = build_transformer(dict(TINY_TRANSFORMER_CONFIG), torch.device("cpu"), torch.bfloat16, seed=2)
    plain = build_tiny_transformer(0)
    assert not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    assert {n: p.shape for n, p in model.named_parameters()} == {n: p.shape for n, p in plain.named_parameters()}
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    for name, buffer in plain.named_buffers():  # RoPE tables rebuilt in float32, not left uninitialised
        torch.testing.assert_close(dict(model.named_buffers())[name], buffer)
    assert torch.equal(model.blocks[0].attn1.to_q.weight, again.blocks[0].attn1.to_q.weight)
    assert not torch.equal(model.blocks[0].attn1.to_q.weight, other.blocks[0].attn1.to_q.weight)
    assert all(torch.isfinite(p.float()).all() and p.float().std() > 0 for p in model.parameters() if p.numel() > 1)


def test_eager_reference_matches_the_pipeline_on_a_token_replace_chunk() -> None:
    transformer = build_transformer(dict(TINY_TRANSFORMER_CONFIG), torch.device("cpu"), torch.float32, seed=0)
    pipe = OneToAllPipeline(transformer, build_tiny_vae(0), None, model_size="1.3b")
    shot = make_shot(17, 32, 32, steps=2, text_dim=TINY_TRANSFORMER_CONFIG["text_dim"], text_length=8, max_chunk_frames=13)
    prepared = pipe.prepare(shot)
    chunk = prepared.chunks[1]
    assert chunk.token_replace
    previous = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    noise = pipe.chunk_noise(prepared, 1)
    latents, frames = eager_reference_chunk(pipe, prepared, 1, previous, noise)
    result = pipe.run_chunk(prepared, 1, previous_frames=previous, noise=noise)
    assert compare(result.latents, latents)["rel_l2"] < 1e-5
    assert compare(result.frames, frames)["max_abs_grey"] <= 1
