"""Attention processors for One-to-All: HRFA (hybrid reference fusion attention) and a CP-free self-attention.

Both follow diffusers' split of weights and math: the parameters live in diffusers' ``WanAttention``
(``to_q/k/v``, ``norm_q/k``, ``add_k_proj``, ``add_v_proj``, ``norm_added_k``), the processors own the
math and reach the kernel only through ``dispatch_attention_fn(..., backend=self._attention_backend)``,
so ``model.set_attention_backend(name)`` switches every attention of the model, HRFA included.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import (
    WanAttention,
    WanAttnProcessor,
    _get_added_kv_projections,
    _get_qkv_projections,
)

RotaryEmb = tuple[torch.Tensor, torch.Tensor]


def apply_rotary_emb(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``hidden_states`` (B, S, H, D) with tables (1, S, 1, D).

    Same arithmetic as diffusers' ``WanAttnProcessor`` (its helper is a closure, so it is restated here).
    """
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def spatial_only_rotary_emb(rotary_emb: RotaryEmb, temporal_dim: int) -> RotaryEmb:
    """Return the RoPE tables with the first ``temporal_dim`` channels left unrotated (cos 1, sin 0).

    HRFA rotates the query only on its height/width channels: that equals placing every video token at
    temporal position 0, which is where the one-frame reference sits, so reference attention is
    position-aware in space but frame-invariant (the official ``apply_rotary_emb_split``).
    """
    cos, sin = rotary_emb
    cos = torch.cat([torch.ones_like(cos[..., :temporal_dim]), cos[..., temporal_dim:]], dim=-1)
    sin = torch.cat([torch.zeros_like(sin[..., :temporal_dim]), sin[..., temporal_dim:]], dim=-1)
    return cos, sin


class OneToAllAttnProcessor:
    """Self-attention of a main block plus the HRFA reference branch.

    ``out = to_out(SA + REF)`` where SA is Wan's self-attention with full 3-D RoPE and REF is a
    separately-softmaxed attention from the normed, un-rotated query (spatial-only RoPE) to the
    reference tokens: key ``norm_added_k(add_k_proj(ref))`` with the reference grid RoPE, value
    ``add_v_proj(ref)``. Without ``ref_states`` it is plain Wan self-attention.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: WanAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: RotaryEmb | None = None,
        ref_states: torch.Tensor | None = None,
        ref_rotary_emb: RotaryEmb | None = None,
        rotary_emb_2d: RotaryEmb | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("OneToAllAttnProcessor is a self-attention processor; encoder_hidden_states must be None")
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query = attn.norm_q(query)
        key = attn.norm_k(key)
        query = query.unflatten(2, (attn.heads, -1))
        key = key.unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))

        ref_output = None
        if ref_states is not None:
            ref_key, ref_value = _get_added_kv_projections(attn, ref_states)
            ref_key = attn.norm_added_k(ref_key).unflatten(2, (attn.heads, -1))
            ref_value = ref_value.unflatten(2, (attn.heads, -1))
            # The reference query is the normed query BEFORE the 3-D rotation.
            ref_query = query if rotary_emb_2d is None else apply_rotary_emb(query, *rotary_emb_2d)
            if ref_rotary_emb is not None:
                ref_key = apply_rotary_emb(ref_key, *ref_rotary_emb)
            ref_output = dispatch_attention_fn(
                ref_query,
                ref_key,
                ref_value,
                attn_mask=None,
                dropout_p=0.0,
                is_causal=False,
                backend=self._attention_backend,
                # Reference keys are replicated, never sequence-split: no context-parallel exchange here.
                parallel_config=None,
            )
            ref_output = ref_output.flatten(2, 3).type_as(query)

        if rotary_emb is not None:
            query = apply_rotary_emb(query, *rotary_emb)
            key = apply_rotary_emb(key, *rotary_emb)

        hidden_states = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            is_causal=False,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        if ref_output is not None:
            hidden_states = hidden_states + ref_output

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        return hidden_states


class LocalWanAttnProcessor(WanAttnProcessor):
    """diffusers' Wan self-attention that never takes part in context parallelism.

    The reference extractor's one-frame sequence is not split across ranks, so a context-parallel
    config that ``enable_parallelism`` writes onto every processor must be ignored here.
    """

    @property
    def _parallel_config(self):  # type: ignore[override]
        return None

    @_parallel_config.setter
    def _parallel_config(self, value) -> None:
        pass
