"""Reference-image encoders: the prefix-frame encoder ``image_to_cond`` and the reference extractor.

Both read the 32-channel reference latent (normalised VAE latent of the reference image, then of the
outpaint-mask image), shape (B, 32, 1, h, w).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed
from diffusers.models.unets.unet_2d_blocks import DownEncoderBlock2D

from .attention_processor import RotaryEmb
from .blocks import OneToAllSelfAttentionBlock

# Hard-coded in the official set_up_refextractor (MiniEncoder2D), not part of any config file.
PREFIX_ENCODER_CHANNELS = 16
PREFIX_ENCODER_GROUPS = 4
PREFIX_ENCODER_NUM_BLOCKS = 3


class ReferencePrefixEncoder(nn.Module):
    """Official ``image_to_cond`` (MiniEncoder2D): per-frame 2-D ResNet, ref_in_channels -> latent channels.

    Built from diffusers' ``DownEncoderBlock2D`` (no downsampling), so keys and numerics match exactly.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        channels = PREFIX_ENCODER_CHANNELS
        self.conv_in = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.down_blocks = nn.ModuleList(
            [
                DownEncoderBlock2D(
                    channels,
                    channels,
                    num_layers=1,
                    resnet_eps=1e-6,
                    resnet_act_fn="silu",
                    resnet_groups=PREFIX_ENCODER_GROUPS,
                    add_downsample=False,
                )
                for _ in range(PREFIX_ENCODER_NUM_BLOCKS)
            ]
        )
        self.conv_out = nn.Conv2d(channels, out_channels, kernel_size=3, padding=1)

    def forward(self, image_latents: torch.Tensor) -> torch.Tensor:
        """image_latents (B, C_ref, F, h, w) -> (B, C_out, F, h, w); frames are folded into the batch."""
        batch_size, _, num_frames, height, width = image_latents.shape
        hidden_states = image_latents.transpose(1, 2).flatten(0, 1)
        hidden_states = self.conv_in(hidden_states)
        for block in self.down_blocks:
            hidden_states = block(hidden_states)
        hidden_states = self.conv_out(hidden_states)
        return hidden_states.unflatten(0, (batch_size, num_frames)).transpose(1, 2)


class ReferenceTimeEmbedding(nn.Module):
    """Time half of Wan's condition embedder (no text embedder): same key names, same arithmetic."""

    def __init__(self, dim: int, time_freq_dim: int, time_proj_dim: int) -> None:
        super().__init__()
        self.timesteps_proj = Timesteps(num_channels=time_freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedder = TimestepEmbedding(in_channels=time_freq_dim, time_embed_dim=dim)
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, time_proj_dim)

    def forward(self, timestep: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """timestep (B,) -> temb (B, D) and time projection (B, 6D), both in ``dtype``."""
        timestep = self.timesteps_proj(timestep)
        embedder_dtype = next(iter(self.time_embedder.parameters())).dtype
        if timestep.dtype != embedder_dtype and embedder_dtype != torch.int8:
            timestep = timestep.to(embedder_dtype)
        temb = self.time_embedder(timestep).to(dtype)
        return temb, self.time_proj(self.act_fn(temb))


@dataclass
class ReferenceFeatures:
    """Output of the reference extractor for one timestep.

    ``samples[k]`` (B, L_ref, D) is feature k (``None`` where no main block reads it);
    ``rotary_emb`` is the RoPE table pair of the one-frame reference grid, each (1, L_ref, 1, d).
    Reusable by every forward call of the same step that has the same reference latent and timestep.
    """

    samples: tuple[torch.Tensor | None, ...]
    rotary_emb: RotaryEmb

    @property
    def batch_size(self) -> int:
        return next(s for s in self.samples if s is not None).shape[0]

    def select(self, index: torch.Tensor | list[int]) -> "ReferenceFeatures":
        """Rows ``index`` of the batch (e.g. ``[0, 0, 1]`` to serve three guidance branches from two refs).

        A Python list is served by slicing (no host-to-device index copy, so no stream sync); a tensor
        index should live on the features' device.
        """
        if isinstance(index, torch.Tensor):
            picked = tuple(None if s is None else s.index_select(0, index) for s in self.samples)
        else:
            rows = [int(i) for i in index]
            picked = tuple(None if s is None else torch.cat([s[i : i + 1] for i in rows]) for s in self.samples)
        return ReferenceFeatures(picked, self.rotary_emb)

    @staticmethod
    def cat(features: list["ReferenceFeatures"]) -> "ReferenceFeatures":
        """Concatenate along the batch (all computed at the same latent size)."""
        samples = tuple(
            None if parts[0] is None else torch.cat(parts, dim=0) for parts in zip(*(f.samples for f in features))
        )
        return ReferenceFeatures(samples, features[0].rotary_emb)


class ReferenceExtractor(nn.Module):
    """Official ``refextractor``: R text-free Wan blocks on the reference latent, R+1 zero-init Linear heads.

    Feature k is ``ref_blocks[k]`` applied to the input of block k (k < R) or to the final output (k = R).
    """

    def __init__(
        self,
        in_channels: int,
        num_layers: int,
        num_attention_heads: int,
        attention_head_dim: int,
        ffn_dim: int,
        freq_dim: int,
        patch_size: tuple[int, int, int],
        eps: float,
        rope_max_seq_len: int,
    ) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.rope = WanRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = ReferenceTimeEmbedding(inner_dim, freq_dim, inner_dim * 6)
        self.blocks = nn.ModuleList(
            [
                OneToAllSelfAttentionBlock(inner_dim, ffn_dim, num_attention_heads, eps, context_parallel=False)
                for _ in range(num_layers)
            ]
        )
        self.ref_blocks = nn.ModuleList([nn.Linear(inner_dim, inner_dim) for _ in range(num_layers + 1)])

    def forward(
        self, image_latents: torch.Tensor, timestep: torch.Tensor, used: frozenset[int] | None = None
    ) -> ReferenceFeatures:
        """image_latents (B, C_ref, 1, h, w), timestep (B,) -> features; ``used`` limits which ones are computed.

        Blocks after the last used feature are not run (their output could not change the result).
        """
        used = frozenset(range(len(self.ref_blocks))) if used is None else used
        rotary_emb = self.rope(image_latents)
        dtype = self.patch_embedding.weight.dtype
        hidden_states = self.patch_embedding(image_latents.to(dtype)).flatten(2).transpose(1, 2).contiguous()
        _, timestep_proj = self.condition_embedder(timestep, hidden_states.dtype)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))

        samples: list[torch.Tensor | None] = [None] * len(self.ref_blocks)
        last = max(used) if used else -1
        for k in range(last + 1):
            if k > 0:
                hidden_states = self.blocks[k - 1](hidden_states, timestep_proj, rotary_emb)
            if k in used:
                samples[k] = self.ref_blocks[k](hidden_states)
        return ReferenceFeatures(tuple(samples), rotary_emb)
