"""AccelerationOptions on the tiny real pipeline (CPU): exact options keep the output, compiled blocks do not
recompile across steps and chunks of one size, step caches stay correct with the folded control branch and
across chunks, FP8 linears and offloading stay within tolerance."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from render_server.models.tiny import build_tiny_transformer, build_tiny_vae  # noqa: E402
from render_server.pipeline.acceleration import (  # noqa: E402
    AccelerationOptions,
    CompileWatch,
    Float8Linear,
    accelerate,
    quantize_linears_fp8,
    resolve_attention_backend,
    warm_up,
)
from render_server.pipeline.pipeline import OneToAllPipeline  # noqa: E402
from render_server.pipeline.types import PromptEmbeddings, ShotInputs  # noqa: E402

SIZE = 32
TEXT_DIM = 32


def make_shot(num_frames: int = 17, steps: int = 2, **overrides) -> ShotInputs:
    rng = np.random.default_rng(11)
    g = torch.Generator().manual_seed(11)
    fields = dict(
        reference_image=rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (num_frames, SIZE, SIZE, 3), dtype=np.uint8),
        mask=(rng.random((SIZE, SIZE)) > 0.7).astype(np.uint8) * 255,
        seed=5,
        steps=steps,
        max_chunk_frames=13,  # 17 frames -> chunks of 13 and 9 frames (token replace on the second);
        # 13 frames with max_chunk_frames=9 -> two 9-frame chunks
        prompt_embeds=PromptEmbeddings(torch.randn(1, 6, TEXT_DIM, generator=g), torch.randn(1, 6, TEXT_DIM, generator=g)),
    )
    fields.update(overrides)
    return ShotInputs(**fields)


def make_pipeline() -> OneToAllPipeline:
    return OneToAllPipeline(build_tiny_transformer(seed=3), build_tiny_vae(seed=3), None)


@pytest.fixture(scope="module")
def reference_video() -> np.ndarray:
    return make_pipeline().generate(make_shot())


def chunk_latents(pipe: OneToAllPipeline, shot: ShotInputs) -> list[torch.Tensor]:
    prepared = pipe.prepare(shot)
    video = np.zeros((shot.num_frames, SIZE, SIZE, 3), np.uint8)
    latents = []
    for chunk in prepared.chunks:
        previous = video[list(chunk.prev_frame_indices)] if chunk.token_replace else None
        result = pipe.run_chunk(prepared, chunk, previous_frames=previous)
        video[chunk.write_start : chunk.write_end] = result.delivered
        latents.append(result.latents)
    return latents


def test_exact_preset_with_one_pass_per_batch_keeps_the_output(reference_video) -> None:
    pipe = make_pipeline()
    report = accelerate(pipe, AccelerationOptions.exact(compile_blocks=False, vae_decode_dtype=None, pass_batch_size=1))
    assert report.attention_backend == "native" and pipe.pass_batch_size == 1
    video = pipe.generate(make_shot())
    # Separate passes vs one batch: float32 GEMM blocking differences only.
    assert np.abs(video.astype(int) - reference_video.astype(int)).max() <= 1


def test_compiled_blocks_match_and_never_recompile_for_the_same_size() -> None:
    shot = make_shot(num_frames=13, max_chunk_frames=9)  # two chunks of the same size
    plain = make_pipeline()
    expected = chunk_latents(plain, shot)
    pipe = make_pipeline()
    report = accelerate(pipe, AccelerationOptions.exact(compile_backend="eager", vae_decode_dtype=None))
    assert report.compiled_modules == 4 + 1 + 2  # main, reference-extractor and control blocks
    torch._dynamo.reset()
    first = chunk_latents(pipe, shot)  # compiles: chunk 0 plain, chunk 1 token replace
    for got, want in zip(first, expected):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with CompileWatch() as watch:
        chunk_latents(pipe, make_shot(num_frames=13, max_chunk_frames=9, steps=3, seed=9))  # same shapes
    assert watch.new_graphs == 0
    # 3 main-block variants x (plain, token replace) x 2 chunk lengths + reference/control blocks: past
    # dynamo's default limit of 8 per function, which would silently fall back to eager.
    assert torch._dynamo.config.recompile_limit >= 16


def test_warm_up_compiles_what_a_served_shot_needs() -> None:
    pipe = make_pipeline()
    accelerate(pipe, AccelerationOptions.exact(compile_backend="eager", vae_decode_dtype=None))
    torch._dynamo.reset()
    compiled = warm_up(pipe, height=SIZE, width=SIZE, chunk_frames=(9,), text_length=6)
    assert compiled > 0
    with CompileWatch() as watch:
        pipe.generate(make_shot(num_frames=13, max_chunk_frames=9, steps=2))  # two 9-frame chunks
    assert watch.new_graphs == 0


def test_first_block_cache_resets_between_chunks_and_is_exact_when_it_never_skips(reference_video) -> None:
    pipe = make_pipeline()
    accelerate(pipe, AccelerationOptions(step_cache="first_block", step_cache_threshold=1e-9))
    # Chunks of 13 and 9 frames: a cache state carried across chunks would compare different shapes.
    assert np.array_equal(pipe.generate(make_shot()), reference_video)


def test_first_block_cache_skipping_stays_close_and_differs(reference_video) -> None:
    pipe = make_pipeline()
    accelerate(pipe, AccelerationOptions(step_cache="first_block", step_cache_threshold=10.0))
    video = pipe.generate(make_shot(steps=4))
    exact = make_pipeline().generate(make_shot(steps=4))
    assert video.shape == exact.shape and not np.array_equal(video, exact)  # blocks were skipped
    assert np.abs(video.astype(float) - exact.astype(float)).mean() < 40  # same picture, not noise


def test_taylorseer_cache_runs_across_chunks() -> None:
    pipe = make_pipeline()
    accelerate(pipe, AccelerationOptions(step_cache="taylorseer"))
    video = pipe.generate(make_shot(steps=4))
    assert video.shape == (17, SIZE, SIZE, 3) and video.std() > 1


def test_float8_linear_is_close_to_the_linear() -> None:
    g = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(64, 48)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, 64, generator=g) / 8)
        linear.bias.copy_(torch.randn(48, generator=g) * 0.1)
    x = torch.randn(2, 10, 64, generator=g)
    fp8 = Float8Linear(linear)
    assert fp8.weight_fp8.dtype == torch.float8_e4m3fn and fp8.weight_scale.shape == (1, 48)
    with torch.no_grad():
        want, got = linear(x), fp8(x)
    relative = float((got - want).norm() / want.norm())
    assert 0 < relative < 0.08  # e4m3 keeps ~3 mantissa bits; exactly 0 would mean nothing was quantised


def test_fp8_linears_replace_only_block_linears_and_stay_close() -> None:
    pipe = make_pipeline()
    count = quantize_linears_fp8(pipe.transformer)
    names = [n for n, m in pipe.transformer.named_modules() if isinstance(m, Float8Linear)]
    assert count == len(names) > 0
    assert all(n.startswith(("blocks.", "controlnet.blocks.")) for n in names)
    assert not any(n.startswith(("refextractor", "controlnet_zero", "proj_out", "condition_embedder")) for n in names)
    exact = chunk_latents(make_pipeline(), make_shot(num_frames=13))
    approx = chunk_latents(pipe, make_shot(num_frames=13))
    relative = float((approx[0] - exact[0]).norm() / exact[0].norm())
    assert 0 < relative < 0.1


@pytest.mark.parametrize("mode", ["block", "leaf"])
def test_group_offload_keeps_the_output(mode, reference_video) -> None:
    pipe = make_pipeline()
    report = accelerate(pipe, AccelerationOptions(offload=mode))
    assert report.offload == mode and pipe.execution_device == torch.device("cpu")
    # CPU -> CPU offload runs every hook (pose encoder and reference extractor are called outside forward).
    assert np.array_equal(pipe.generate(make_shot()), reference_video)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"offload": "disk"}, "offload"),
        ({"step_cache": "teacache"}, "step_cache"),
        ({"pass_batch_size": 0}, "pass_batch_size"),
        ({"offload_blocks_per_group": 0}, "offload_blocks_per_group"),
        ({"step_cache_threshold": 0.0}, "step_cache_threshold"),
        ({"offload": "block", "compile_blocks": True}, "compile_blocks"),
    ],
)
def test_bad_options_name_the_field(kwargs, field) -> None:
    with pytest.raises(ValueError, match=field):
        AccelerationOptions(**kwargs)


def test_attention_backend_resolution() -> None:
    assert resolve_attention_backend("auto", torch.device("cpu")) == "native"
    # cuDNN / FlashAttention take half precision only: a float32 model on a GPU keeps PyTorch SDPA.
    assert resolve_attention_backend("auto", torch.device("cuda"), torch.float32) == "native"
    assert resolve_attention_backend("_native_math", torch.device("cpu")) == "_native_math"
    with pytest.raises(ValueError, match="attention_backend"):
        resolve_attention_backend("fastest", torch.device("cpu"))
