"""``OneToAllTransformer``: the official One-to-All Animation transformer as a diffusers Wan subclass.

Attribute names are the checkpoint's state-dict prefixes (official keys load with ``strict=True``, no
renaming): ``patch_embedding``, ``condition_embedder``, ``blocks`` (HRFA in every ``attn1``),
``norm_out``/``proj_out``/``scale_shift_table`` from Wan, plus ``refextractor``, ``image_to_cond``,
``input_hint_block``, ``controlnet.blocks`` and ``controlnet_zero``.

Forward, for one call (shapes for latents (B, 16, F, h, w), tokens per frame n = h/2 * w/2):
  1. prefix frame ``image_to_cond(image_latents)`` in front of the latents -> F+1 frames, 3-D RoPE over them
  2. reference features ``refextractor(image_latents, t)``; main block i reads feature i // ceil(L/(R+1))
  3. pose tokens ``input_hint_block(image_pose) ++ input_hint_block(controlnet_cond)`` (prefix first)
  4. time/text embeddings (and the t = 0 modulation for token replace on latent frames 1..2)
  5. main blocks; block c+1 also runs control block c (seeded with block 0's output + pose tokens)
  6. output head, unpatchify, drop the prefix frame.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
from diffusers.configuration_utils import register_to_config
from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan import WanTransformer3DModel
from diffusers.utils import apply_lora_scale

from .attention_processor import spatial_only_rotary_emb
from .blocks import ControlStream, OneToAllSelfAttentionBlock, OneToAllTransformerBlock
from .pose_encoder import PoseEncoder
from .reference_encoder import ReferenceExtractor, ReferenceFeatures, ReferencePrefixEncoder

# Token replace pins this many latent frames (the VAE latent of the previous chunk's 5 overlap frames).
TOKEN_REPLACE_LATENT_FRAMES = 2


def register_block_metadata() -> None:
    """Tell diffusers' cache hooks (FirstBlockCache, MagCache, ...) how our blocks return hidden states.

    The registry is an exact-class lookup; registering again is harmless.
    """
    for block_class in (OneToAllTransformerBlock, OneToAllSelfAttentionBlock):
        TransformerBlockRegistry.register(
            model_class=block_class,
            metadata=TransformerBlockMetadata(return_hidden_states_index=0, return_encoder_hidden_states_index=None),
        )


def reference_feature_index(num_layers: int, num_features: int) -> list[int]:
    """Feature read by each main block: ``i // ceil(L / (R + 1))`` (official; may leave features unused)."""
    stride = math.ceil(num_layers / num_features)
    return [i // stride for i in range(num_layers)]


class OneToAllTransformer(WanTransformer3DModel):
    r"""One-to-All Animation transformer (Wan2.1-T2V + reference extractor, prefix frame, pose control).

    Args (beyond [`WanTransformer3DModel`]'s; defaults are the 1.3B model):
        ref_num_layers (`int`): reference-extractor blocks R (14 for 1.3B, 7 for 14B).
        ref_in_channels (`int`): channels of the reference latent (32 = image latent + mask latent).
        ref_ffn_dim (`int`, *optional*): reference-extractor FFN width (default: ``ffn_dim``).
        ref_freq_dim (`int`, *optional*): reference-extractor sinusoid width (default: ``freq_dim``).
        control_num_layers (`int`): pose control blocks C (2 for 1.3B, 1 for 14B).
        control_ffn_dim (`int`, *optional*): control-block FFN width (default: ``ffn_dim``).
        pose_in_channels (`int`): channels of the pose images (3, RGB).
    """

    _supports_gradient_checkpointing = False
    _skip_layerwise_casting_patterns = ["patch_embedding", "condition_embedder", "norm", "input_hint_block", "image_to_cond"]
    _no_split_modules = ["OneToAllTransformerBlock", "OneToAllSelfAttentionBlock", "PoseEncoder", "ReferencePrefixEncoder"]
    # Substring matches: also keep refextractor.rope / refextractor...time_embedder / the blocks' tables in fp32.
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]
    _keys_to_ignore_on_load_unexpected: list[str] = []
    _repeated_blocks = ["OneToAllTransformerBlock", "OneToAllSelfAttentionBlock"]
    # Context parallelism would have to split the pose tokens and the token-replace range as well; until
    # that is built, refuse it instead of inheriting Wan's plan and computing something wrong.
    _cp_plan = None

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 12,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 8960,
        num_layers: int = 30,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        ref_num_layers: int = 14,
        ref_in_channels: int = 32,
        ref_ffn_dim: int | None = None,
        ref_freq_dim: int | None = None,
        control_num_layers: int = 2,
        control_ffn_dim: int | None = None,
        pose_in_channels: int = 3,
    ) -> None:
        if image_dim is not None or added_kv_proj_dim is not None or pos_embed_seq_len is not None:
            raise ValueError(
                "One-to-All is built on Wan2.1-T2V: image_dim, added_kv_proj_dim and pos_embed_seq_len must be None "
                f"(got {image_dim!r}, {added_kv_proj_dim!r}, {pos_embed_seq_len!r}); the HRFA K/V projections are implied"
            )
        if qk_norm != "rms_norm_across_heads":
            raise ValueError(f"qk_norm must be 'rms_norm_across_heads' (Wan's only variant), got {qk_norm!r}")
        if ref_num_layers < 0 or control_num_layers < 0 or num_layers < 1:
            raise ValueError(f"layer counts must be positive, got {num_layers=}, {ref_num_layers=}, {control_num_layers=}")
        patch_size = tuple(patch_size)
        if len(patch_size) != 3 or patch_size[0] != 1:
            raise ValueError(f"patch_size must be (1, p_h, p_w): the reference prefix is one latent frame, got {patch_size}")
        # The parent builds Wan's blocks; build zero of them (they would be replaced) and record the
        # real count again below, because the parent's own config registration runs after ours.
        super().__init__(
            patch_size=patch_size,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            text_dim=text_dim,
            freq_dim=freq_dim,
            ffn_dim=ffn_dim,
            num_layers=0,
            cross_attn_norm=cross_attn_norm,
            qk_norm=qk_norm,
            eps=eps,
            rope_max_seq_len=rope_max_seq_len,
        )
        self.register_to_config(num_layers=num_layers, patch_size=patch_size)
        inner_dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels

        # 3. Main blocks (HRFA in every attn1)
        self.blocks = nn.ModuleList(
            [
                OneToAllTransformerBlock(inner_dim, ffn_dim, num_attention_heads, cross_attn_norm, eps)
                for _ in range(num_layers)
            ]
        )

        # 5. Reference: extractor (HRFA features) and prefix-frame encoder
        self.refextractor = ReferenceExtractor(
            in_channels=ref_in_channels,
            num_layers=ref_num_layers,
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            ffn_dim=ref_ffn_dim or ffn_dim,
            freq_dim=ref_freq_dim or freq_dim,
            patch_size=patch_size,
            eps=eps,
            rope_max_seq_len=rope_max_seq_len,
        )
        self.image_to_cond = ReferencePrefixEncoder(ref_in_channels, in_channels)

        # 6. Pose: encoder and control blocks, folded into main blocks 1..C (see OneToAllTransformerBlock)
        self.input_hint_block = PoseEncoder(inner_dim, pose_in_channels)
        self.controlnet = nn.Module()
        self.controlnet.blocks = nn.ModuleList(
            [
                OneToAllSelfAttentionBlock(inner_dim, control_ffn_dim or ffn_dim, num_attention_heads, eps)
                for _ in range(control_num_layers)
            ]
        )
        self.controlnet_zero = nn.ModuleList([nn.Linear(inner_dim, inner_dim) for _ in range(control_num_layers)])
        # Control block c runs after main block c+1; official: blocks with c+1 >= L never run.
        for c in range(min(control_num_layers, num_layers - 1)):
            self.blocks[c + 1].attach_control(self.controlnet.blocks[c], self.controlnet_zero[c], first=c == 0)

        self._ref_feature_index = reference_feature_index(num_layers, ref_num_layers + 1)
        register_block_metadata()

    @classmethod
    def parameter_dtype(cls, name: str, dtype: torch.dtype, keep_fp32_modules: bool) -> torch.dtype:
        """dtype of parameter ``name`` at runtime ``dtype`` (diffusers' rule: a kept name is a path component)."""
        if keep_fp32_modules and any(kept in name.split(".") for kept in cls._keep_in_fp32_modules):
            return torch.float32
        return dtype

    def set_runtime_dtype(self, dtype: torch.dtype, keep_fp32_modules: bool = False) -> "OneToAllTransformer":
        """Cast the parameters to ``dtype`` for autocast-free inference; RoPE tables always stay float32.

        ``keep_fp32_modules=True`` also keeps ``_keep_in_fp32_modules`` (time embedders, modulation tables,
        norms) in float32, like diffusers' ``from_pretrained(torch_dtype=...)``; ``False`` casts them as the
        official code does. Unlike ``model.to(dtype)`` this never rounds the RoPE tables.
        """
        with torch.no_grad():
            for name, param in self.named_parameters():
                target = self.parameter_dtype(name, dtype, keep_fp32_modules)
                if param.dtype != target:
                    param.data = param.data.to(target)
        return self

    # ------------------------------------------------------------------------------------------
    # Condition encoders that callers may run once and reuse
    # ------------------------------------------------------------------------------------------

    def encode_pose(self, image_pose: torch.Tensor, controlnet_cond: torch.Tensor) -> torch.Tensor:
        """Pose tokens (B, (1+F)·n, D), independent of t: compute once per chunk, pass as ``pose_tokens``.

        image_pose (B, 3, 1, H, W): the reference pose drawing; controlnet_cond (B, 3, T, H, W): the
        driving pose video (T = 4F-3 pixel frames), both in [-1, 1].
        """
        _check_rank("image_pose", image_pose, 5)
        _check_rank("controlnet_cond", controlnet_cond, 5)
        if image_pose.shape[2] != 1:
            raise ValueError(f"image_pose must hold one frame (B, 3, 1, H, W), got shape {tuple(image_pose.shape)}")
        if image_pose.shape[0] != controlnet_cond.shape[0] or image_pose.shape[3:] != controlnet_cond.shape[3:]:
            raise ValueError(
                f"image_pose {tuple(image_pose.shape)} and controlnet_cond {tuple(controlnet_cond.shape)} "
                "must share batch, height and width"
            )
        dtype = self.input_hint_block.conv_in.conv.weight.dtype
        prefix = self.input_hint_block(image_pose.to(dtype))
        video = self.input_hint_block(controlnet_cond.to(dtype))
        return torch.cat([prefix, video], dim=2).flatten(2).transpose(1, 2).contiguous()

    @property
    def used_reference_features(self) -> frozenset[int]:
        return frozenset(self._ref_feature_index)

    def compute_reference_features(self, image_latents: torch.Tensor, timestep: torch.Tensor) -> ReferenceFeatures:
        """Reference-extractor output for (image_latents (B, 32, 1, h, w), timestep (B,)).

        Depends on t, so it changes every step, but guidance branches of one step that share the
        reference latent can share it (pass it as ``reference_features``).
        """
        self._check_image_latents(image_latents)
        timestep = _batch_timestep(timestep, image_latents.shape[0], image_latents.device)
        return self.refextractor(image_latents, timestep, self.used_reference_features)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        image_latents: torch.Tensor,
        image_pose: torch.Tensor | None = None,
        controlnet_cond: torch.Tensor | None = None,
        conditioning_scale: float | torch.Tensor = 1.0,
        token_replace: bool = False,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
        *,
        pose_tokens: torch.Tensor | None = None,
        reference_features: ReferenceFeatures | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput:
        """Predict the flow velocity (noise - x0) of ``hidden_states``.

        Args:
            hidden_states: (B, 16, F, h, w) noisy normalised latents; with ``token_replace`` frames 0..1
                are the clean latents of the previous chunk's overlap.
            timestep: (B,) or scalar, in [0, 1000].
            encoder_hidden_states: (B, L_text, text_dim) UMT5 embeddings.
            image_latents: (B, 32, 1, h, w) reference latent (image latent ++ mask latent).
            image_pose: (B, 3, 1, 8h, 8w) reference pose image in [-1, 1].
            controlnet_cond: (B, 3, 4F-3, 8h, 8w) pose video in [-1, 1].
            conditioning_scale: control residual multiplier, float or (B,) tensor (0 = no pose).
            token_replace: modulate latent frames 0..1 with t = 0 (every chunk after the first).
            pose_tokens: precomputed ``encode_pose(image_pose, controlnet_cond)`` (then the pose images
                are not needed).
            reference_features: precomputed ``compute_reference_features(image_latents, timestep)``.

        Returns:
            (B, 16, F, h, w) velocity, as ``Transformer2DModelOutput`` or a 1-tuple.
        """
        # 0. Validate and prepare shapes (all from tensor shapes: no host-device sync)
        _check_rank("hidden_states", hidden_states, 5)
        batch_size, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        if height % p_h or width % p_w:
            raise ValueError(f"hidden_states {tuple(hidden_states.shape)} is not divisible by patch size {(p_t, p_h, p_w)}")
        self._check_image_latents(image_latents, batch_size, (height, width))
        _check_rank("encoder_hidden_states", encoder_hidden_states, 3)
        if encoder_hidden_states.shape[0] != batch_size:
            raise ValueError(f"encoder_hidden_states batch {encoder_hidden_states.shape[0]} != hidden_states batch {batch_size}")
        timestep = _batch_timestep(timestep, batch_size, hidden_states.device)
        tokens_per_frame = (height // p_h) * (width // p_w)

        # 1. Prefix frame, patch & position embedding
        prefix = self.image_to_cond(image_latents.to(self.image_to_cond.conv_in.weight.dtype))
        hidden_states = torch.cat([prefix.to(hidden_states.dtype), hidden_states], dim=2)
        rotary_emb = self.rope(hidden_states)
        rotary_emb_2d = spatial_only_rotary_emb(rotary_emb, self.rope.t_dim)
        hidden_states = self.patch_embedding(hidden_states.to(self.patch_embedding.weight.dtype))
        hidden_states = hidden_states.flatten(2).transpose(1, 2).contiguous()

        # 2. Reference features (HRFA)
        if reference_features is None:
            reference_features = self.refextractor(image_latents, timestep, self.used_reference_features)
        elif reference_features.batch_size != batch_size:
            raise ValueError(f"reference_features batch {reference_features.batch_size} != hidden_states batch {batch_size}")

        # 3. Time and text embeddings; token replace adds a t = 0 modulation in the same call
        if token_replace:
            timestep = torch.cat([timestep, torch.zeros_like(timestep)])
        text_dtype = self.condition_embedder.text_embedder.linear_1.weight.dtype
        temb, timestep_proj, encoder_hidden_states, _ = self.condition_embedder(
            timestep, encoder_hidden_states.to(text_dtype)
        )
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        temb_replace = timestep_proj_replace = token_range = None
        if token_replace:
            temb, temb_replace = temb.chunk(2)
            timestep_proj, timestep_proj_replace = timestep_proj.chunk(2)
            token_range = (tokens_per_frame, (1 + TOKEN_REPLACE_LATENT_FRAMES) * tokens_per_frame)

        # 4. Pose control stream (skipped outright when its scale is the Python number 0)
        control = None
        if not _is_zero(conditioning_scale) and len(self.controlnet.blocks) > 0 and len(self.blocks) > 1:
            if pose_tokens is None:
                if image_pose is None or controlnet_cond is None:
                    raise ValueError("pass image_pose and controlnet_cond, or precomputed pose_tokens")
                pose_tokens = self.encode_pose(image_pose, controlnet_cond)
            if pose_tokens.shape != hidden_states.shape:
                raise ValueError(
                    f"pose tokens {tuple(pose_tokens.shape)} do not match the video tokens {tuple(hidden_states.shape)}: "
                    f"the pose video must have 4*{num_frames}-3 frames at {height * 8}x{width * 8} pixels"
                )
            control = ControlStream(pose_tokens.to(hidden_states.dtype), _scale_for_batch(conditioning_scale, hidden_states))

        # 5. Transformer blocks
        ref_rotary_emb = reference_features.rotary_emb
        for block, feature_index in zip(self.blocks, self._ref_feature_index):
            hidden_states = block(
                hidden_states,
                encoder_hidden_states,
                timestep_proj,
                rotary_emb,
                ref_states=reference_features.samples[feature_index],
                ref_rotary_emb=ref_rotary_emb,
                rotary_emb_2d=rotary_emb_2d,
                temb_replace=timestep_proj_replace,
                token_range=token_range,
                control=control,
            )

        # 6. Output norm (shift first), projection, unpatchify, drop the prefix frame
        shift, scale = (self.scale_shift_table + temb.float().unsqueeze(1)).chunk(2, dim=1)
        normed = self.norm_out(hidden_states.float())
        out = normed * (1 + scale) + shift
        if token_range is not None:
            shift_r, scale_r = (self.scale_shift_table + temb_replace.float().unsqueeze(1)).chunk(2, dim=1)
            start, end = token_range
            out[:, start:end] = normed[:, start:end] * (1 + scale_r) + shift_r
        # The prefix frame's prediction is dropped, so it is not projected at all.
        hidden_states = self.proj_out(out[:, tokens_per_frame:].type_as(hidden_states))
        hidden_states = hidden_states.reshape(batch_size, num_frames, height // p_h, width // p_w, p_t, p_h, p_w, -1)
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)

        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def _check_image_latents(
        self, image_latents: torch.Tensor, batch_size: int | None = None, size: tuple[int, int] | None = None
    ) -> None:
        _check_rank("image_latents", image_latents, 5)
        b, c, f, h, w = image_latents.shape
        if c != self.config.ref_in_channels or f != 1:
            raise ValueError(
                f"image_latents must be (B, {self.config.ref_in_channels}, 1, h, w) (reference latent ++ mask latent), "
                f"got {tuple(image_latents.shape)}"
            )
        if batch_size is not None and b != batch_size:
            raise ValueError(f"image_latents batch {b} != hidden_states batch {batch_size}")
        if size is not None and (h, w) != size:
            raise ValueError(f"image_latents size {(h, w)} != hidden_states size {size}")


def _check_rank(name: str, tensor: torch.Tensor, ndim: int) -> None:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim != ndim:
        shape = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ValueError(f"{name} must be a {ndim}-D tensor, got {shape}")


def _batch_timestep(timestep: torch.Tensor | float, batch_size: int, device: torch.device) -> torch.Tensor:
    timestep = torch.as_tensor(timestep, device=device)
    if timestep.ndim == 0:
        timestep = timestep.expand(batch_size)
    if timestep.ndim != 1 or timestep.shape[0] not in (1, batch_size):
        raise ValueError(f"timestep must be a scalar or have shape ({batch_size},), got {tuple(timestep.shape)}")
    return timestep.expand(batch_size)


def _is_zero(scale: float | torch.Tensor) -> bool:
    return not isinstance(scale, torch.Tensor) and float(scale) == 0.0


def _scale_for_batch(scale: float | torch.Tensor, hidden_states: torch.Tensor) -> float | torch.Tensor:
    if not isinstance(scale, torch.Tensor):
        return float(scale)
    if scale.ndim == 0:
        return scale.to(hidden_states.dtype)
    if scale.shape != (hidden_states.shape[0],):
        raise ValueError(f"conditioning_scale must be a float or shape ({hidden_states.shape[0]},), got {tuple(scale.shape)}")
    return scale.to(hidden_states.dtype).view(-1, 1, 1)
