"""Transformer blocks of One-to-All, assembled from diffusers' Wan parts.

* ``OneToAllTransformerBlock``: a main DiT block (self-attention with HRFA, text cross-attention, FFN)
  that can also own one pose control block (``controlnet.blocks[c]`` + ``controlnet_zero[c]``), so the
  control residual is part of the block's output. That keeps diffusers' FirstBlockCache / MagCache
  correct: a skipped block skips its control residual too, instead of adding it twice.
* ``OneToAllSelfAttentionBlock``: the text-free block of the reference extractor and the control branch
  (keys ``scale_shift_table``, ``attn1.*``, ``ffn.*`` only).

Token replace: both blocks accept a second modulation ``temb_replace`` (t = 0) and a static token range
that uses it. The two (B, 6, D) modulations are applied per segment, so no per-token (B, L, 6, D) tensor
is ever built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from diffusers.models.attention import FeedForward
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor
from diffusers.utils.torch_utils import maybe_allow_in_graph

from .attention_processor import LocalWanAttnProcessor, OneToAllAttnProcessor, RotaryEmb

TokenRange = tuple[int, int]


@dataclass
class ControlStream:
    """Per-forward state of the pose control branch, threaded through the main blocks.

    ``pose_tokens`` (B, L, D) seed the first control block (added to the output of main block 0);
    ``hidden`` carries each control block's output to the next one; ``scale`` is the
    ``conditioning_scale`` (a float, or a (B,) tensor when guidance branches are batched).
    """

    pose_tokens: torch.Tensor
    scale: float | torch.Tensor
    hidden: torch.Tensor | None = None


def _modulation(table: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # table (1, 6, D) + temb (B, 6, D) -> six (B, 1, D) fp32 tensors, in Wan's order:
    # shift1, scale1, gate1, shift2, scale2, gate2.
    return (table + temb.float()).chunk(6, dim=1)


def modulate(
    normed: torch.Tensor,
    shift: torch.Tensor,
    scale: torch.Tensor,
    replace: tuple[torch.Tensor, torch.Tensor] | None = None,
    token_range: TokenRange | None = None,
) -> torch.Tensor:
    """AdaLN ``normed * (1 + scale) + shift``; tokens in ``token_range`` use the ``replace`` (shift, scale)."""
    out = normed * (1 + scale) + shift
    if replace is not None and token_range is not None:
        start, end = token_range
        out[:, start:end] = normed[:, start:end] * (1 + replace[1]) + replace[0]
    return out


def gated(
    update: torch.Tensor,
    gate: torch.Tensor,
    replace_gate: torch.Tensor | None = None,
    token_range: TokenRange | None = None,
) -> torch.Tensor:
    """``update * gate`` (fp32); tokens in ``token_range`` use ``replace_gate``."""
    out = update * gate
    if replace_gate is not None and token_range is not None:
        start, end = token_range
        out[:, start:end] = update[:, start:end] * replace_gate
    return out


class _ModulatedBlockMixin:
    """Shared self-attention / FFN halves of both block kinds (norm1, attn1, ffn, norm3, scale_shift_table)."""

    def _self_attention(self, hidden_states, mod, mod_r, token_range, rotary_emb, **attn_kwargs):
        replace = (mod_r[0], mod_r[1]) if mod_r is not None else None
        normed = modulate(self.norm1(hidden_states.float()), mod[0], mod[1], replace, token_range)
        attn_output = self.attn1(normed.type_as(hidden_states), None, None, rotary_emb, **attn_kwargs)
        update = gated(attn_output, mod[2], mod_r[2] if mod_r is not None else None, token_range)
        return (hidden_states.float() + update).type_as(hidden_states)

    def _feed_forward(self, hidden_states, mod, mod_r, token_range):
        replace = (mod_r[3], mod_r[4]) if mod_r is not None else None
        normed = modulate(self.norm3(hidden_states.float()), mod[3], mod[4], replace, token_range)
        ff_output = self.ffn(normed.type_as(hidden_states))
        update = gated(ff_output.float(), mod[5], mod_r[5] if mod_r is not None else None, token_range)
        return (hidden_states.float() + update).type_as(hidden_states)


@maybe_allow_in_graph
class OneToAllSelfAttentionBlock(nn.Module, _ModulatedBlockMixin):
    """Text-free Wan block (AdaLN self-attention + FFN) of the reference extractor and the control branch."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        eps: float = 1e-6,
        context_parallel: bool = True,
    ) -> None:
        super().__init__()
        # 1. Self-attention (full RoPE; the reference extractor's one-frame grid makes it spatial-only)
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(
            dim=dim,
            heads=num_heads,
            dim_head=dim // num_heads,
            eps=eps,
            processor=WanAttnProcessor() if context_parallel else LocalWanAttnProcessor(),
        )
        # 2. Feed-forward
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: RotaryEmb,
        temb_replace: torch.Tensor | None = None,
        token_range: TokenRange | None = None,
    ) -> torch.Tensor:
        """hidden_states (B, L, D); temb / temb_replace (B, 6, D) time projections; rotary_emb tables (1, L, 1, d)."""
        mod = _modulation(self.scale_shift_table, temb)
        mod_r = _modulation(self.scale_shift_table, temb_replace) if temb_replace is not None else None
        hidden_states = self._self_attention(hidden_states, mod, mod_r, token_range, rotary_emb)
        return self._feed_forward(hidden_states, mod, mod_r, token_range)


@maybe_allow_in_graph
class OneToAllTransformerBlock(nn.Module, _ModulatedBlockMixin):
    """Main One-to-All block: Wan block whose ``attn1`` carries the HRFA projections, plus optional control."""

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        cross_attn_norm: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        head_dim = dim // num_heads
        # 1. Self-attention + HRFA reference K/V (official: added_kv_proj_dim = D in every main attn1)
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.attn1 = WanAttention(
            dim=dim,
            heads=num_heads,
            dim_head=head_dim,
            eps=eps,
            added_kv_proj_dim=dim,
            is_cross_attention=False,
            processor=OneToAllAttnProcessor(),
        )
        # 2. Text cross-attention (no RoPE, no mask)
        self.attn2 = WanAttention(
            dim=dim,
            heads=num_heads,
            dim_head=head_dim,
            eps=eps,
            cross_attention_dim_head=head_dim,
            processor=WanAttnProcessor(),
        )
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        # 3. Feed-forward
        self.ffn = FeedForward(dim, inner_dim=ffn_dim, activation_fn="gelu-approximate")
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)
        # 4. Pose control, attached by the model (see attach_control); not registered here because its
        # weights live under controlnet.blocks / controlnet_zero in the checkpoint.
        object.__setattr__(self, "_control", None)

    def attach_control(self, control_block: OneToAllSelfAttentionBlock, zero_linear: nn.Linear, first: bool) -> None:
        """Make this block run ``control_block`` after itself and add ``zero_linear(ctrl) * scale``.

        ``first`` marks the block whose input (main block 0's output) seeds the control stream.
        Plain attributes (not submodules) so the state-dict keys stay ``controlnet.*``.
        """
        object.__setattr__(self, "_control", (control_block, zero_linear, first))

    @property
    def has_control(self) -> bool:
        return self._control is not None

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        temb: torch.Tensor,
        rotary_emb: RotaryEmb,
        ref_states: torch.Tensor | None = None,
        ref_rotary_emb: RotaryEmb | None = None,
        rotary_emb_2d: RotaryEmb | None = None,
        temb_replace: torch.Tensor | None = None,
        token_range: TokenRange | None = None,
        control: ControlStream | None = None,
    ) -> torch.Tensor:
        """hidden_states (B, L, D) video tokens (prefix frame first); encoder_hidden_states (B, L_text, D);
        temb / temb_replace (B, 6, D); ref_states (B, L_ref, D) this block's reference feature."""
        block_input = hidden_states
        mod = _modulation(self.scale_shift_table, temb)
        mod_r = _modulation(self.scale_shift_table, temb_replace) if temb_replace is not None else None

        # 1. Self-attention + HRFA
        hidden_states = self._self_attention(
            hidden_states,
            mod,
            mod_r,
            token_range,
            rotary_emb,
            ref_states=ref_states,
            ref_rotary_emb=ref_rotary_emb,
            rotary_emb_2d=rotary_emb_2d,
        )

        # 2. Cross-attention (no gate)
        normed = self.norm2(hidden_states.float()).type_as(hidden_states)
        hidden_states = hidden_states + self.attn2(normed, encoder_hidden_states, None, None)

        # 3. Feed-forward
        hidden_states = self._feed_forward(hidden_states, mod, mod_r, token_range)

        # 4. Pose control: control block c runs after main block c+1 and its zero-linear output is added.
        if self._control is not None and control is not None:
            control_block, zero_linear, first = self._control
            control_input = block_input + control.pose_tokens if first else control.hidden
            control_hidden = control_block(control_input, temb, rotary_emb, temb_replace, token_range)
            control.hidden = control_hidden
            hidden_states = hidden_states + zero_linear(control_hidden) * control.scale
        return hidden_states
