"""VAE helpers: Wan latent normalisation, fp32 encode, uint8 conversions (truncating vs rounding)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from render_server.models.tiny import build_tiny_vae
from render_server.pipeline.vae import LatentCodec, mask_to_unit, uint8_to_unit, unit_to_uint8


@pytest.fixture(scope="module")
def vae():
    return build_tiny_vae(seed=0)


def test_normalisation_is_the_official_formula(vae):
    codec = LatentCodec(vae)
    pixels = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = codec.encode(pixels)
    mean = torch.tensor(vae.config.latents_mean).view(1, 16, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, 16, 1, 1, 1)
    raw = vae.encode(pixels).latent_dist.mode()
    assert latents.shape == (1, 16, 2, 4, 4)  # 5 frames -> 2 latent frames (token replace size)
    assert torch.equal(latents, (raw - mean) * inv_std)
    decoded = codec.decode(latents)
    assert torch.equal(decoded, vae.decode(latents / inv_std + mean).sample)
    assert decoded.shape == (1, 3, 5, 32, 32) and decoded.abs().max() <= 1


def test_vae_stays_fp32_and_decodes_under_autocast(vae):
    with pytest.raises(ValueError, match="float32"):
        LatentCodec(build_tiny_vae(seed=0).to(torch.bfloat16))
    z = torch.randn(1, 16, 2, 4, 4)
    fast = LatentCodec(vae, decode_dtype=torch.bfloat16).decode(z)
    assert fast.dtype == torch.float32
    assert (fast - LatentCodec(vae).decode(z)).abs().max() < 0.5


def test_uint8_conversions():
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    unit = uint8_to_unit(frames)
    assert unit.shape == (1, 3, 1, 16, 16) and unit.min() == -1 and unit.max() == 1
    # The official truncation loses values (x -> [-1, 1] -> x is not exact in float32); rounding round-trips.
    assert np.array_equal(unit_to_uint8(unit, round_values=True), frames)
    truncated = unit_to_uint8(unit, round_values=False)
    assert ((frames.astype(int) - truncated) >= 0).all() and (truncated != frames).any()
    assert unit_to_uint8(torch.full((1, 3, 1, 2, 2), 0.999), round_values=False).max() == 254
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    grey = mask_to_unit(mask)
    assert grey.shape == (1, 3, 1, 2, 2) and grey[0, :, 0].tolist() == [[[-1.0, 1.0], [1.0, -1.0]]] * 3
    with pytest.raises(ValueError, match="frames"):
        uint8_to_unit(frames.astype(np.float32))
    with pytest.raises(ValueError, match="mask"):
        mask_to_unit(mask[None])
