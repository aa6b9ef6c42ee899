"""The speed-minded paths of OneToAllTransformer give the plain path's result.

Tiny seeded model (every branch non-zero), CPU, float32.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from render_server.models.tiny import build_tiny_transformer  # noqa: E402
from render_server.models.reference_encoder import ReferenceFeatures  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return build_tiny_transformer(7)


def make_inputs(batch: int = 1, frames: int = 3, size: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    pixels = size * 8
    pose_frames = 4 * frames - 3
    return {
        "hidden_states": torch.randn(batch, 16, frames, size, size, generator=g),
        "timestep": torch.rand(batch, generator=g) * 1000,
        "encoder_hidden_states": torch.randn(batch, 5, 32, generator=g),
        "image_latents": torch.randn(batch, 32, 1, size, size, generator=g),
        "image_pose": torch.rand(batch, 3, 1, pixels, pixels, generator=g) * 2 - 1,
        "controlnet_cond": torch.rand(batch, 3, pose_frames, pixels, pixels, generator=g) * 2 - 1,
    }


def run(model, inputs: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs, **kwargs).sample


def batch_of(parts: list[dict]) -> dict:
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


@pytest.mark.parametrize("token_replace", [False, True])
def test_batched_branches_with_tensor_scale_equal_separate_calls(model, token_replace) -> None:
    parts = [make_inputs(seed=s) for s in range(3)]
    scales = [1.0, 0.5, 0.0]
    separate = torch.cat([run(model, p, conditioning_scale=s, token_replace=token_replace) for p, s in zip(parts, scales)])
    batched = run(model, batch_of(parts), conditioning_scale=torch.tensor(scales), token_replace=token_replace)
    torch.testing.assert_close(batched, separate, atol=1e-5, rtol=1e-5)


def test_zero_scale_skips_control_exactly(model) -> None:
    inputs = make_inputs()
    skipped = run(model, {**inputs, "image_pose": None, "controlnet_cond": None}, conditioning_scale=0.0)
    computed = run(model, inputs, conditioning_scale=torch.tensor([0.0]))
    assert torch.equal(skipped, computed)
    assert not torch.allclose(run(model, inputs, conditioning_scale=1.0), computed, atol=1e-3)


def test_shared_reference_features_serve_batched_branches(model) -> None:
    parts = [make_inputs(seed=s) for s in range(2)]
    # branches 0 and 2 share reference 0 (like the official uncond and ref-uncond passes)
    branches = [parts[0], parts[1], {**parts[1], "image_latents": parts[0]["image_latents"]}]
    inputs = batch_of(branches)
    inputs["timestep"] = torch.full((3,), 600.0)
    with torch.no_grad():
        distinct = model.compute_reference_features(
            torch.cat([parts[0]["image_latents"], parts[1]["image_latents"]]), torch.full((2,), 600.0)
        )
    features = distinct.select([0, 1, 0])
    assert isinstance(features, ReferenceFeatures) and features.batch_size == 3
    shared = run(model, inputs, reference_features=features)
    plain = run(model, inputs)
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)  # batch 2 vs 3 GEMMs
    joined = ReferenceFeatures.cat([distinct.select([0]), distinct.select([1, 0])])
    assert torch.equal(run(model, inputs, reference_features=joined), shared)


def test_first_block_cache_does_not_double_count_control(model) -> None:
    from diffusers.hooks import FirstBlockCacheConfig

    cached_model = build_tiny_transformer(7)
    inputs = make_inputs()
    expected = run(model, inputs)
    cached_model.enable_cache(FirstBlockCacheConfig(threshold=0.5))
    try:
        with cached_model.cache_context("cond"):
            first = run(cached_model, inputs)
            reused = run(cached_model, inputs)  # identical input: the cache skips blocks 1..L-1
    finally:
        cached_model.disable_cache()
    torch.testing.assert_close(first, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(reused, expected, atol=1e-5, rtol=0)


def test_attention_backend_switch_reaches_every_processor(model) -> None:
    inputs = make_inputs()
    expected = run(model, inputs, token_replace=True)
    switched = build_tiny_transformer(7)
    switched.set_attention_backend("_native_math")
    backends = {str(m.processor._attention_backend) for _, m in switched.named_modules() if hasattr(m, "processor")}
    assert backends == {"AttentionBackendName._NATIVE_MATH"}
    torch.testing.assert_close(run(switched, inputs, token_replace=True), expected, atol=1e-5, rtol=1e-5)


def test_regional_compile_is_graph_break_free(model) -> None:
    compiled = build_tiny_transformer(7)
    compiled.compile_repeated_blocks(fullgraph=True, backend="eager")
    inputs = make_inputs()
    # token replace is the path with the most Python-level branching; one variant keeps the test cheap
    torch.testing.assert_close(
        run(compiled, inputs, token_replace=True), run(model, inputs, token_replace=True), atol=1e-6, rtol=1e-6
    )


def test_token_replace_changes_only_what_it_should(model) -> None:
    inputs = make_inputs(frames=4)
    plain = run(model, inputs)
    replaced = run(model, inputs, token_replace=True)
    # pinned frames 0..1 change strongly; later frames only through attention
    assert (replaced[:, :, :2] - plain[:, :, :2]).abs().mean() > (replaced[:, :, 2:] - plain[:, :, 2:]).abs().mean()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"controlnet_cond": torch.zeros(1, 3, 8, 32, 32)}, "pose tokens"),
        ({"image_latents": torch.zeros(1, 16, 1, 4, 4)}, "image_latents"),
        ({"image_latents": torch.zeros(1, 32, 1, 4, 6)}, "image_latents size"),
        ({"encoder_hidden_states": torch.zeros(2, 5, 32)}, "encoder_hidden_states"),
        ({"timestep": torch.zeros(3)}, "timestep"),
        ({"image_pose": None}, "pose_tokens"),
        ({"hidden_states": torch.zeros(1, 16, 3, 5, 4)}, "patch size"),
    ],
)
def test_bad_inputs_name_the_argument(model, change, match) -> None:
    with pytest.raises(ValueError, match=match):
        run(model, {**make_inputs(), **change})


def test_select_by_list_and_by_tensor_agree(model) -> None:
    with torch.no_grad():
        features = model.compute_reference_features(torch.randn(2, 32, 1, 4, 4), torch.tensor([100.0, 900.0]))
    by_list, by_tensor = features.select([1, 0, 1]), features.select(torch.tensor([1, 0, 1]))
    for a, b in zip(by_list.samples, by_tensor.samples):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(by_list.samples[0][1], features.samples[0][0])
