"""Wan VAE helpers: normalised latents in float32, and uint8 <-> [-1, 1] frame conversion.

Normalisation is the official ``(z - mean) * (1 / std)`` and ``z / (1 / std) + mean`` with a float32 ``1/std``
(fixture quirk Q9), applied to the VAE's ``latent_dist.mode()``. Encoding always runs in float32 (a low-precision
encode drifts chained token-replace generation), so the VAE is kept in float32; decoding may run under
autocast in ``decode_dtype`` (bfloat16 decode is visually lossless and faster on GPUs).
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKLWan


class LatentCodec:
    """Encode pixels to normalised latents and back with an ``AutoencoderKLWan``."""

    def __init__(self, vae: AutoencoderKLWan, *, decode_dtype: torch.dtype | None = None) -> None:
        config = vae.config
        if len(config.latents_mean) != config.z_dim or len(config.latents_std) != config.z_dim:
            raise ValueError(
                f"VAE config: latents_mean/latents_std must have z_dim={config.z_dim} entries, "
                f"got {len(config.latents_mean)}/{len(config.latents_std)}"
            )
        dtype = next(vae.parameters()).dtype
        if dtype != torch.float32:
            # Encoding must be float32, and rounded weights cannot be recovered by casting back.
            raise ValueError(
                f"vae must be kept in float32 (got {dtype}); pass decode_dtype=torch.bfloat16 for a faster decode"
            )
        self.vae = vae
        self.decode_dtype = decode_dtype
        shape = (1, config.z_dim, 1, 1, 1)
        self._mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(shape)
        self._inv_std = 1.0 / torch.tensor(config.latents_std, dtype=torch.float32).view(shape)

    @property
    def device(self) -> torch.device:
        return next(self.vae.parameters()).device

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.z_dim)

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> normalised latents (B, 16, (T-1)//4+1, H/8, W/8), float32."""
        if pixels.ndim != 5 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, T, H, W), got shape {tuple(pixels.shape)}")
        device = self.device
        latents = self.vae.encode(pixels.to(device, torch.float32)).latent_dist.mode()
        latents = latents.to(torch.float32)
        return (latents - self._mean.to(device)) * self._inv_std.to(device)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, 16, F, h, w) -> pixels (B, 3, 4F-3, 8h, 8w) in [-1, 1], float32."""
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"latents must be (B, {self.latent_channels}, F, h, w), got shape {tuple(latents.shape)}")
        device = self.device
        z = latents.to(device, torch.float32) / self._inv_std.to(device) + self._mean.to(device)
        if self.decode_dtype is None or self.decode_dtype == torch.float32:
            frames = self.vae.decode(z).sample
        else:
            # Autocast instead of a second, low-precision copy of the weights.
            with torch.autocast(device.type, dtype=self.decode_dtype):
                frames = self.vae.decode(z).sample
        return frames.to(torch.float32)


def uint8_to_unit(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) RGB -> float32 (1, 3, T, H, W) in [-1, 1] (``x / 255 * 2 - 1``, the official formula)."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    video = torch.from_numpy(np.array(frames, copy=True)).to(torch.float32) / 255.0 * 2.0 - 1.0
    return video.permute(3, 0, 1, 2).unsqueeze(0)


def mask_to_unit(mask: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) mask (255 = outpaint) -> float32 (1, 3, 1, H, W) grey image ``m * 2 - 1`` with m = mask/255."""
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise ValueError(f"mask must be uint8 (H, W), got {mask.dtype} {mask.shape}")
    m = torch.from_numpy(np.array(mask, copy=True)).to(torch.float32) / 255.0
    return (m * 2.0 - 1.0).view(1, 1, 1, *mask.shape).repeat(1, 3, 1, 1, 1)


def unit_to_uint8(video: torch.Tensor, *, round_values: bool) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3).

    ``round_values=False`` is the official truncation ``(clamp(x/2 + 0.5, 0, 1) * 255).astype(uint8)``;
    ``True`` rounds to nearest (half to even), which is unbiased.
    """
    if video.ndim != 5 or video.shape[0] != 1 or video.shape[1] != 3:
        raise ValueError(f"video must be (1, 3, T, H, W), got shape {tuple(video.shape)}")
    scaled = (video[0].to(torch.float32) / 2 + 0.5).clamp(0, 1).permute(1, 2, 3, 0) * 255
    if round_values:
        scaled = scaled.round()
    return scaled.to(torch.uint8).cpu().numpy()
