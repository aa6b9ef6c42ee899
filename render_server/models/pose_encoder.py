"""Pose encoder ``input_hint_block``: pose pixels -> D-dim tokens on the latent token grid.

The official ``MiniHunyuanEncoder`` rebuilt from diffusers' HunyuanVideo-VAE blocks (same key names,
bit-exact): causal 3-D convs (replicate padding, 2 frames in front), 4 down blocks with strides
(1,2,2), (2,2,2), (2,2,2), (1,2,2), so (B, 3, 4k+1, H, W) -> (B, D, k+1, H/16, W/16).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.models.autoencoders.autoencoder_kl_hunyuan_video import (
    HunyuanVideoCausalConv3d,
    HunyuanVideoDownBlock3D,
)

# Hard-coded in the official set_up_controlnet (not part of any config file).
POSE_ENCODER_CHANNELS = 16
POSE_ENCODER_GROUPS = 4
POSE_ENCODER_STRIDES = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))


class PoseEncoder(nn.Module):
    """Causal 3-D conv encoder of the pose video (official ``input_hint_block``)."""

    def __init__(self, out_channels: int, in_channels: int = 3) -> None:
        super().__init__()
        channels = POSE_ENCODER_CHANNELS
        self.conv_in = HunyuanVideoCausalConv3d(in_channels, channels, kernel_size=3, stride=1)
        self.down_blocks = nn.ModuleList(
            [
                HunyuanVideoDownBlock3D(
                    channels,
                    channels,
                    num_layers=1,
                    resnet_eps=1e-6,
                    resnet_act_fn="silu",
                    resnet_groups=POSE_ENCODER_GROUPS,
                    add_downsample=True,
                    downsample_stride=stride,
                    downsample_padding=0,
                )
                for stride in POSE_ENCODER_STRIDES
            ]
        )
        self.conv_out = HunyuanVideoCausalConv3d(channels, out_channels, kernel_size=3)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        """pose (B, 3, T, H, W) in [-1, 1] -> (B, D, (T-1)//4+1, H/16, W/16)."""
        hidden_states = self.conv_in(pose)
        for block in self.down_blocks:
            hidden_states = block(hidden_states)
        return self.conv_out(hidden_states)
