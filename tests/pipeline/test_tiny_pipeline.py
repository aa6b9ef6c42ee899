"""The whole pipeline on CPU with the tiny real model: shapes, determinism, chunk boundaries, resume,
cancellation, progress, pose transfer and argument validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from render_server.models.tiny import TINY_TEXT_MAX_LENGTH, build_tiny_text_encoder, build_tiny_transformer, build_tiny_vae
from render_server.pipeline.pipeline import OneToAllPipeline
from render_server.pipeline.text import T5PromptEncoder, TextEmbeddingCache
from render_server.pipeline.types import Cancelled, ShotInputs
from render_server.pipeline.vae import uint8_to_unit

SIZE = 32
STEPS = 3


@pytest.fixture(scope="module")
def text_cache(tmp_path_factory):
    bundle = build_tiny_text_encoder(seed=0)
    encoder = T5PromptEncoder.from_modules(bundle.tokenizer, bundle.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
    return TextEmbeddingCache(tmp_path_factory.mktemp("text-cache"), encoder)


@pytest.fixture(scope="module")
def pipeline(text_cache) -> OneToAllPipeline:
    return OneToAllPipeline(build_tiny_transformer(seed=0), build_tiny_vae(seed=0), text_cache.get)


def make_shot(num_frames: int = 17, **overrides) -> ShotInputs:
    rng = np.random.default_rng(7)
    fields = dict(
        reference_image=rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (num_frames, SIZE, SIZE, 3), dtype=np.uint8),
        mask=(rng.random((SIZE, SIZE)) > 0.7).astype(np.uint8) * 255,
        seed=3,
        steps=STEPS,
        max_chunk_frames=13,  # two chunks (13 + 9 frames, 5 shared) for 17 frames: seconds on CPU
    )
    fields.update(overrides)
    return ShotInputs(**fields)


@pytest.fixture(scope="module")
def two_chunk_video(pipeline):
    return pipeline.generate(make_shot())


def test_two_chunk_shot_shapes_and_plan(pipeline, two_chunk_video):
    prepared = pipeline.prepare(make_shot())
    assert [(c.start, c.end, c.token_replace) for c in prepared.chunks] == [(0, 13, False), (8, 17, True)]
    assert prepared.guidance.pass_names == ("cond", "uncond", "ref_uncond")  # 1.3B defaults (2.5, 1.5)
    assert two_chunk_video.shape == (17, SIZE, SIZE, 3) and two_chunk_video.dtype == np.uint8
    assert two_chunk_video.std() > 1  # not a constant image


def test_determinism(pipeline, two_chunk_video):
    assert np.array_equal(pipeline.generate(make_shot()), two_chunk_video)
    other = pipeline.generate(make_shot(seed=4))
    assert not np.array_equal(other, two_chunk_video)
    # Chunks draw distinct noise streams from (seed, index) in the default mode.
    prepared = pipeline.prepare(make_shot())
    assert not torch.equal(pipeline.chunk_noise(prepared, 0)[:, :, :3], pipeline.chunk_noise(prepared, 1)[:, :, :3])


def test_chunk_boundary_pins_overlap_and_resume_is_bit_identical(pipeline, two_chunk_video):
    shot = make_shot()
    prepared = pipeline.prepare(shot)
    first = pipeline.run_chunk(prepared, 0)
    assert np.array_equal(first.delivered, two_chunk_video[:13])  # keep-earlier: chunk 0 owns 0..12
    # "Persist" chunk 0, then resume chunk 1 from a fresh preparation with only the stored frames.
    stored = first.delivered.copy()
    resumed_prepared = pipeline.prepare(shot)
    chunk = resumed_prepared.chunks[1]
    second = pipeline.run_chunk(resumed_prepared, chunk, previous_frames=stored[list(chunk.prev_frame_indices)])
    assert np.array_equal(second.delivered, two_chunk_video[13:])
    assert np.array_equal(
        pipeline.generate_chunk(resumed_prepared, 1, previous_frames=stored[8:13]), two_chunk_video[13:]
    )
    # The 2 pinned latent frames are exactly the re-encoded previous frames, unchanged by sampling.
    expected_pinned = pipeline.codec.encode(uint8_to_unit(stored[8:13]))
    assert torch.equal(second.prev_latents, expected_pinned)
    assert torch.equal(second.latents[:, :, :2], expected_pinned)
    assert second.latents.shape == (1, 16, 3, SIZE // 8, SIZE // 8)
    # Other previous frames give another continuation: the chain really depends on them.
    altered = pipeline.run_chunk(resumed_prepared, 1, previous_frames=255 - stored[8:13])
    assert not np.array_equal(altered.delivered, second.delivered)


def test_previous_frames_are_checked(pipeline):
    prepared = pipeline.prepare(make_shot())
    with pytest.raises(ValueError, match="previous_frames are required"):
        pipeline.generate_chunk(prepared, 1)
    with pytest.raises(ValueError, match="previous_frames must be uint8"):
        pipeline.generate_chunk(prepared, 1, previous_frames=np.zeros((4, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="previous_frames must be None"):
        pipeline.generate_chunk(prepared, 0, previous_frames=np.zeros((5, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ValueError, match="chunk_index"):
        pipeline.generate_chunk(prepared, 2)
    with pytest.raises(ValueError, match="chunk_index"):
        pipeline.generate_chunk(prepared, prepared.chunks[0], 1)


def test_progress_callback(pipeline):
    events = []
    pipeline.generate(make_shot(), on_step=events.append)
    assert len(events) == 2 * STEPS
    assert [(e.chunk_index, e.step_index) for e in events] == [(c, s) for c in range(2) for s in range(STEPS)]
    assert all(e.num_chunks == 2 and e.num_steps == STEPS for e in events)
    assert events[0].passes == ("cond", "uncond", "ref_uncond") and events[0].timestep == 1000.0
    assert events[-1].fraction == 1.0 and events[0].fraction == pytest.approx(1 / 6)


def test_cancellation_mid_chunk(pipeline, two_chunk_video):
    calls = []

    def should_cancel() -> bool:
        calls.append(1)
        # Checked before every step and before the decode: chunk 0 uses STEPS + 1 checks, then step 0 of chunk 1.
        return len(calls) > (STEPS + 1) + 1

    events = []
    with pytest.raises(Cancelled) as info:
        pipeline.generate(make_shot(), on_step=events.append, should_cancel=should_cancel)
    assert (info.value.chunk_index, info.value.step_index) == (1, 1)
    assert len(events) == STEPS + 1
    checks = []

    def cancel_during_last_step() -> bool:
        checks.append(1)
        return len(checks) == STEPS + 1  # the check after the last step, before decoding

    with pytest.raises(Cancelled) as info:
        pipeline.generate(make_shot(num_frames=1), should_cancel=cancel_during_last_step)
    assert (info.value.chunk_index, info.value.step_index) == (0, STEPS)
    # The pipeline holds no state from the cancelled run.
    assert np.array_equal(pipeline.generate(make_shot()), two_chunk_video)


def test_single_frame_pose_transfer(pipeline):
    shot = make_shot(num_frames=1)
    prepared = pipeline.prepare(shot)
    assert [(c.start, c.end, c.latent_frames) for c in prepared.chunks] == [(0, 1, 1)]
    image = pipeline.generate(shot)
    assert image.shape == (1, SIZE, SIZE, 3)
    assert not np.array_equal(image, pipeline.generate(make_shot(num_frames=1, seed=9)))


def test_padded_tail_and_guidance_variants(pipeline):
    # 7 frames -> one 9-frame chunk, the last pose frame held; 2 padded frames generated and dropped.
    shot = make_shot(num_frames=7, image_guidance_scale=1.5, pose_guidance_scale=0.0)
    prepared = pipeline.prepare(shot)
    assert prepared.guidance.pass_names == ("cond", "uncond")
    assert [(c.start, c.end, c.write_end) for c in prepared.chunks] == [(0, 9, 7)]
    assert pipeline.generate(shot).shape == (7, SIZE, SIZE, 3)
    one = make_shot(num_frames=5, image_guidance_scale=1.0, pose_guidance_scale=1.0)
    assert pipeline.prepare(one).guidance.pass_names == ("cond",)
    assert pipeline.generate(one).shape == (5, SIZE, SIZE, 3)


def test_official_mode_runs_tiny_shot(pipeline):
    # Official mode: same noise stream for every chunk, truncating uint8, double-shifted schedule.
    shot = make_shot(num_frames=13, mode="official", plan=[(0, 9), (4, 13)])
    prepared = pipeline.prepare(shot)
    assert torch.equal(pipeline.chunk_noise(prepared, 0), pipeline.chunk_noise(prepared, 1))
    assert prepared.schedule.sigmas[-2].item() > 0.04
    assert pipeline.generate(shot).shape == (13, SIZE, SIZE, 3)


def test_passes_batched_or_split_agree(text_cache):
    transformer, vae = build_tiny_transformer(seed=0), build_tiny_vae(seed=0)
    batched = OneToAllPipeline(transformer, vae, text_cache.get)
    split = OneToAllPipeline(transformer, vae, text_cache.get, pass_batch_size=1)
    shot = make_shot(num_frames=5)
    a = batched.run_chunk(batched.prepare(shot), 0)
    b = split.run_chunk(split.prepare(shot), 0)
    torch.testing.assert_close(a.latents, b.latents, atol=1e-4, rtol=1e-4)


def test_text_encoder_loaded_once(text_cache, pipeline):
    pipeline.prepare(make_shot())
    loads = text_cache.encoder.loads
    pipeline.prepare(make_shot(seed=11))
    assert text_cache.encoder.loads == loads <= 1


class _Spy:
    def __init__(self, codec):
        self.codec, self.calls = codec, 0

    def __getattr__(self, name):
        return getattr(self.codec, name)

    def encode(self, pixels):
        self.calls += 1
        return self.codec.encode(pixels)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"pose_frames": np.zeros((0, SIZE, SIZE, 3), np.uint8)}, "pose_frames"),
        ({"reference_image": np.zeros((0, SIZE, 3), np.uint8)}, "reference_image"),
        ({"reference_image": np.zeros((40, SIZE, 3), np.uint8)}, "height"),
        ({"reference_image": np.zeros((SIZE, 24, 3), np.uint8)}, "width"),
        ({"reference_image": np.zeros((SIZE, SIZE, 3), np.float32)}, "reference_image"),
        ({"reference_pose": np.zeros((SIZE, 48, 3), np.uint8)}, "reference_pose"),
        ({"pose_frames": np.zeros((4, SIZE, 48, 3), np.uint8)}, "pose_frames"),
        ({"mask": np.zeros((SIZE, 16), np.uint8)}, "mask"),
        ({"image_guidance_scale": math.nan}, "image_guidance_scale"),
        ({"pose_guidance_scale": math.inf}, "pose_guidance_scale"),
        ({"steps": 0}, "steps"),
        ({"steps": -2}, "steps"),
        ({"seed": -1}, "seed"),
        ({"mode": "fast"}, "mode"),
        ({"guidance_variant": "5pass"}, "guidance_variant"),
        ({"plan": "official"}, "num_frames"),
        ({"plan": [(0, 8)]}, "plan"),
        ({"max_chunk_frames": 12}, "max_chunk_frames"),
        ({"prompt": None}, "prompt"),
    ],
)
def test_bad_arguments_fail_before_heavy_work(pipeline, overrides, match):
    spy = _Spy(pipeline.codec)
    checked = OneToAllPipeline.__new__(OneToAllPipeline)
    checked.__dict__.update(pipeline.__dict__, codec=spy)
    with pytest.raises(ValueError, match=match):
        checked.prepare(make_shot(**overrides))
    assert spy.calls == 0


@pytest.mark.parametrize(("height", "width", "match"), [(0, 32, "height"), (-16, 32, "height"), (32, 40, "width"), (32, 16.0, "width")])
def test_check_size(height, width, match):
    from render_server.pipeline.types import check_size

    with pytest.raises(ValueError, match=match):
        check_size(height, width)


def test_bad_prompt_embeds(pipeline):
    from render_server.pipeline.types import PromptEmbeddings

    good = torch.zeros(1, 16, 32)
    with pytest.raises(ValueError, match="prompt_embeds.negative is required"):
        pipeline.prepare(make_shot(prompt_embeds=PromptEmbeddings(good)))
    with pytest.raises(ValueError, match="text_dim"):
        pipeline.prepare(make_shot(prompt_embeds=PromptEmbeddings(torch.zeros(1, 16, 8), torch.zeros(1, 16, 8))))
    with pytest.raises(ValueError, match="NaN"):
        pipeline.prepare(make_shot(prompt_embeds=PromptEmbeddings(good, torch.full((1, 16, 32), math.nan))))
    with pytest.raises(ValueError, match="shape of the positive"):
        pipeline.prepare(make_shot(prompt_embeds=PromptEmbeddings(good, torch.zeros(1, 8, 32))))


def test_step_cache_state_does_not_leak_between_chunks(text_cache):
    """With diffusers' FirstBlockCache on, a resumed chunk still equals the uninterrupted run."""
    from diffusers.hooks import FirstBlockCacheConfig

    transformer = build_tiny_transformer(seed=0)
    transformer.enable_cache(FirstBlockCacheConfig(threshold=10.0))  # reuse the cached residual whenever possible
    cached = OneToAllPipeline(transformer, build_tiny_vae(seed=0), text_cache.get)
    shot = make_shot()
    video = cached.generate(shot)
    prepared = cached.prepare(shot)
    cached.run_chunk(prepared, 0)  # leaves cache state behind, as an earlier job would
    resumed = cached.generate_chunk(prepared, 1, previous_frames=video[8:13])
    assert np.array_equal(resumed, video[13:])
