"""``OneToAllPipeline``: reference + pose video -> frames, chunk by chunk, with token-replace chaining.

Stages (as diffusers' ``WanPipeline``): ``prepare`` validates the shot and encodes what every chunk shares
(text, reference + mask latents, black-image latents, reference pose); ``run_chunk`` draws the chunk's noise
from (seed, chunk index), pins the re-encoded previous frames, runs the denoising loop with all guidance
passes of a step as one transformer batch, and decodes; ``generate`` loops over the chunks and stitches.

Everything a chunk needs is in ``PreparedShot`` plus the uint8 frames already delivered, so a job worker can
persist each chunk and resume an interrupted shot from its last finished chunk bit-identically.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .acceleration import reset_step_cache
from .chunking import Chunk, generate_shot
from .guidance import Guidance, GuidancePass, default_guidance_scales, guidance_for_scales
from .scheduling import DEFAULT_SHIFT, Schedule, euler_step, make_schedule
from .types import (
    Cancelled,
    ModeRules,
    PromptEmbeddings,
    ShotInputs,
    StepProgress,
    mode_rules,
    shot_plan,
    validate_shot,
)
from .vae import LatentCodec, mask_to_unit, uint8_to_unit, unit_to_uint8

logger = logging.getLogger(__name__)

OnStep = Callable[[StepProgress], None]
ShouldCancel = Callable[[], bool]
TextProvider = Callable[[Sequence[str]], list[torch.Tensor]]  # e.g. TextEmbeddingCache.get


@dataclass
class PreparedShot:
    """What every chunk of a shot shares; built once by ``OneToAllPipeline.prepare``."""

    shot: ShotInputs
    rules: ModeRules
    chunks: list[Chunk]
    schedule: Schedule
    guidance: Guidance
    prompt_embeds: torch.Tensor  # (1, L, D) in the transformer dtype
    negative_prompt_embeds: torch.Tensor | None
    image_latents: torch.Tensor  # (1, 32, 1, h, w) float32: reference ++ mask
    black_image_latents: torch.Tensor  # (1, 32, 1, h, w) float32: black ++ black
    image_pose: torch.Tensor  # (1, 3, 1, H, W) float32 in [-1, 1]

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)


@dataclass
class ChunkResult:
    """One chunk: all its frames (``chunk.num_frames``) and the tensors the parity tests compare."""

    chunk: Chunk
    frames: np.ndarray  # uint8 (T, H, W, 3)
    latents: torch.Tensor  # (1, 16, F, h, w) final normalised latents, float32
    decoded: torch.Tensor  # (1, 3, T, H, W) in [-1, 1], float32
    prev_latents: torch.Tensor | None  # (1, 16, 2, h, w) pinned latents of a token-replace chunk

    @property
    def delivered(self) -> np.ndarray:
        """Frames for global indices ``chunk.write_start:chunk.write_end``."""
        offset = self.chunk.write_start - self.chunk.start
        return self.frames[offset : offset + self.chunk.write_end - self.chunk.write_start]


class OneToAllPipeline:
    """Sampling pipeline around a ``OneToAllTransformer`` and an ``AutoencoderKLWan``.

    ``text`` maps prompts to (1, L, D) embeddings (a ``TextEmbeddingCache.get``); it may be None when every
    shot brings ``prompt_embeds``. ``pass_batch_size`` caps how many guidance passes share one transformer
    batch (None = all of them, the fastest; 1 = one pass per call, the least memory).
    """

    def __init__(
        self,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        text: TextProvider | None = None,
        *,
        shift: float = DEFAULT_SHIFT,
        model_size: str | None = None,
        pass_batch_size: int | None = None,
        vae_decode_dtype: torch.dtype | None = None,
    ) -> None:
        if pass_batch_size is not None and pass_batch_size < 1:
            raise ValueError(f"pass_batch_size must be >= 1 or None, got {pass_batch_size}")
        self.transformer = transformer
        self.codec = LatentCodec(vae, decode_dtype=vae_decode_dtype)
        self.text = text
        self.shift = shift
        self.model_size = model_size or _model_size(transformer)
        self.pass_batch_size = pass_batch_size
        self.execution_device: torch.device | None = None  # set by acceleration.accelerate for offloading

    @property
    def device(self) -> torch.device:
        # With group offloading the weights rest on the CPU between calls; work runs on the onload device.
        if self.execution_device is not None:
            return self.execution_device
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.patch_embedding.weight.dtype

    # ------------------------------------------------------------------------------------------
    # 1. Shot-level preparation
    # ------------------------------------------------------------------------------------------

    def prepare(self, shot: ShotInputs) -> PreparedShot:
        """Validate (``ValueError`` naming the field, before any heavy work) and encode the shared inputs."""
        validate_shot(shot)
        rules = mode_rules(shot.mode)
        default_image, default_pose = default_guidance_scales(self.model_size)
        image_scale = default_image if shot.image_guidance_scale is None else shot.image_guidance_scale
        pose_scale = default_pose if shot.pose_guidance_scale is None else shot.pose_guidance_scale
        guidance = guidance_for_scales(image_scale, pose_scale, shot.guidance_variant)
        chunks = shot_plan(shot)
        schedule = make_schedule(int(shot.steps), shift=self.shift, mode=rules.schedule)
        positive, negative = self._prompt_embeddings(shot, guidance)

        height, width = shot.height, shot.width
        reference = uint8_to_unit(shot.reference_image[None])
        mask = mask_to_unit(shot.mask if shot.mask is not None else np.zeros((height, width), np.uint8))
        black = torch.full_like(reference, -1.0)
        # Three single-image encodes, as the official code does (a batch of 3 differs in the last bits).
        reference_latents, mask_latents, black_latents = (self.codec.encode(x) for x in (reference, mask, black))
        image_latents = torch.cat([reference_latents, mask_latents], dim=1)
        black_image_latents = torch.cat([black_latents, black_latents], dim=1)
        return PreparedShot(
            shot=shot,
            rules=rules,
            chunks=chunks,
            schedule=schedule,
            guidance=guidance,
            prompt_embeds=positive,
            negative_prompt_embeds=negative,
            image_latents=image_latents,
            black_image_latents=black_image_latents,
            image_pose=uint8_to_unit(shot.reference_pose[None]),
        )

    def _prompt_embeddings(self, shot: ShotInputs, guidance: Guidance) -> tuple[torch.Tensor, torch.Tensor | None]:
        needs_negative = guidance.uses_negative_prompt
        if shot.prompt_embeds is not None:
            positive, negative = shot.prompt_embeds.positive, shot.prompt_embeds.negative
            if needs_negative and negative is None:
                raise ValueError(f"prompt_embeds.negative is required for {guidance.name} guidance")
        else:
            if self.text is None:
                raise ValueError("prompt_embeds must be given: this pipeline has no text encoder")
            prompts = [shot.prompt, shot.negative_prompt] if needs_negative else [shot.prompt]
            embeds = self.text(prompts)
            positive, negative = embeds[0], (embeds[1] if needs_negative else None)
        text_dim = self.transformer.config.text_dim
        for name, tensor in (("prompt_embeds.positive", positive), ("prompt_embeds.negative", negative)):
            if tensor is None:
                continue
            if not isinstance(tensor, torch.Tensor) or tensor.ndim != 3 or tensor.shape[0] != 1:
                raise ValueError(f"{name} must be a (1, L, {text_dim}) tensor, got {_shape(tensor)}")
            if tensor.shape[2] != text_dim:
                raise ValueError(f"{name} must have text_dim={text_dim} channels, got {tuple(tensor.shape)}")
            if not torch.isfinite(tensor).all():
                raise ValueError(f"{name} contains NaN or inf")
        if negative is not None and negative.shape != positive.shape:
            # Batched passes need one length; padding would change the result (no attention mask).
            raise ValueError(
                f"prompt_embeds.negative {tuple(negative.shape)} must have the shape of the positive {tuple(positive.shape)}"
            )
        cast = dict(device=self.device, dtype=self.dtype)
        return positive.to(**cast), (negative.to(**cast) if negative is not None else None)

    # ------------------------------------------------------------------------------------------
    # 2. Chunks
    # ------------------------------------------------------------------------------------------

    def generate(
        self, shot: ShotInputs, *, on_step: OnStep | None = None, should_cancel: ShouldCancel | None = None
    ) -> np.ndarray:
        """The whole shot -> uint8 (N, H, W, 3)."""
        return generate_shot(self, shot, on_step=on_step, should_cancel=should_cancel)

    def generate_chunk(
        self,
        prepared: PreparedShot,
        chunk: Chunk | int,
        chunk_index: int | None = None,
        previous_frames: np.ndarray | None = None,
        *,
        on_step: OnStep | None = None,
        should_cancel: ShouldCancel | None = None,
    ) -> np.ndarray:
        """One chunk -> its delivered uint8 frames, for global indices ``chunk.write_start:chunk.write_end``.

        ``previous_frames``: for a token-replace chunk, the uint8 frames already delivered at
        ``chunk.prev_frame_indices`` (5, H, W, 3); None otherwise.
        """
        return self.run_chunk(
            prepared, chunk, chunk_index, previous_frames, on_step=on_step, should_cancel=should_cancel
        ).delivered

    @torch.no_grad()
    def run_chunk(
        self,
        prepared: PreparedShot,
        chunk: Chunk | int,
        chunk_index: int | None = None,
        previous_frames: np.ndarray | None = None,
        *,
        on_step: OnStep | None = None,
        should_cancel: ShouldCancel | None = None,
        noise: torch.Tensor | None = None,
    ) -> ChunkResult:
        """Like ``generate_chunk`` but returns every frame and the latents; ``noise`` injects the initial noise."""
        chunk = self._resolve_chunk(prepared, chunk, chunk_index)
        shot, rules = prepared.shot, prepared.rules
        previous = self._check_previous(chunk, previous_frames, shot)
        device = self.device
        latent_shape = (
            1,
            self.codec.latent_channels,
            chunk.latent_frames,
            shot.height // 8,
            shot.width // 8,
        )
        if noise is None:
            noise = self.chunk_noise(prepared, chunk.index)
        elif tuple(noise.shape) != latent_shape:
            raise ValueError(f"noise must have shape {latent_shape}, got {tuple(noise.shape)}")
        storage = torch.float32 if rules.fp32_latents else self.dtype
        latents = noise.to(device, storage)

        prev_latents = None
        pinned = chunk.pinned_latent_frames
        if previous is not None:
            prev_latents = self.codec.encode(uint8_to_unit(previous)).to(device, storage)
            latents = torch.cat([prev_latents, latents[:, :, pinned:]], dim=2)

        pose_video = uint8_to_unit(shot.pose_frames[chunk.pose_frame_indices(shot.num_frames)])
        batches = self.build_pass_batches(prepared, pose_video)
        # Step caches (FirstBlockCache, TaylorSeer) hold residuals of the previous call: never across chunks
        # (other shapes and content; a resumed chunk would differ otherwise).
        reset_step_cache(self.transformer)

        schedule = prepared.schedule
        for step in range(schedule.num_steps):
            if should_cancel is not None and should_cancel():
                raise Cancelled(chunk.index, step)
            t = schedule.timesteps[step]
            predictions = {}
            for batch in batches:
                predictions.update(self.run_pass_batch(batch, latents, schedule, step, chunk.token_replace))
            if not rules.fp32_guidance:
                velocity = prepared.guidance.combine(predictions)
            else:
                velocity = prepared.guidance.combine({k: v.to(torch.float32) for k, v in predictions.items()})
            out_dtype = torch.float32 if rules.fp32_latents else velocity.dtype
            upcast = rules.fp32_guidance
            if prev_latents is not None:
                stepped = euler_step(latents[:, :, pinned:], velocity[:, :, pinned:], schedule, step, upcast_velocity=upcast)
                latents = torch.cat([prev_latents, stepped.to(out_dtype)], dim=2)
            else:
                latents = euler_step(latents, velocity, schedule, step, upcast_velocity=upcast).to(out_dtype)
            if on_step is not None:
                on_step(
                    StepProgress(
                        chunk_index=chunk.index,
                        num_chunks=prepared.num_chunks,
                        step_index=step,
                        num_steps=schedule.num_steps,
                        passes=prepared.guidance.pass_names,
                        timestep=float(t),
                    )
                )

        if should_cancel is not None and should_cancel():
            raise Cancelled(chunk.index, schedule.num_steps)  # before the (long) decode
        decoded = self.codec.decode(latents)
        frames = unit_to_uint8(decoded, round_values=rules.round_uint8)
        return ChunkResult(chunk, frames, latents.to(torch.float32), decoded, prev_latents)

    # ------------------------------------------------------------------------------------------
    # 3. Helpers
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _resolve_chunk(prepared: PreparedShot, chunk: Chunk | int, chunk_index: int | None) -> Chunk:
        index = chunk if isinstance(chunk, int) else chunk.index
        if chunk_index is not None and chunk_index != index:
            raise ValueError(f"chunk_index {chunk_index} does not match chunk {index}")
        if not 0 <= index < prepared.num_chunks:
            raise ValueError(f"chunk_index must be in [0, {prepared.num_chunks}), got {index}")
        planned = prepared.chunks[index]
        if not isinstance(chunk, int) and chunk != planned:
            raise ValueError(f"chunk {chunk} is not chunk {index} of this shot's plan ({planned})")
        return planned

    @staticmethod
    def _check_previous(chunk: Chunk, previous: np.ndarray | None, shot: ShotInputs) -> np.ndarray | None:
        if not chunk.token_replace:
            if previous is not None:
                raise ValueError(f"previous_frames must be None for chunk {chunk.index} (it starts from noise only)")
            return None
        expected = (len(chunk.prev_frame_indices), shot.height, shot.width, 3)
        if previous is None:
            raise ValueError(
                f"previous_frames are required for chunk {chunk.index}: the delivered frames {list(chunk.prev_frame_indices)}"
            )
        if not isinstance(previous, np.ndarray) or previous.dtype != np.uint8 or previous.shape != expected:
            raise ValueError(f"previous_frames must be uint8 {expected}, got {_shape(previous)}")
        return previous

    def chunk_noise(self, prepared: PreparedShot, chunk_index: int) -> torch.Tensor:
        """Initial noise (1, 16, F, h, w) float32 of a chunk: a function of (seed, chunk index) only.

        Drawn on the CPU so that it does not depend on the device. Official mode: a fresh generator seeded
        with the shot's seed for every chunk (quirk Q2: all chunks start from the same stream); default mode:
        a distinct stream per chunk.
        """
        chunk = prepared.chunks[chunk_index]
        shape = (1, self.codec.latent_channels, chunk.latent_frames, prepared.shot.height // 8, prepared.shot.width // 8)
        seed = int(prepared.shot.seed)
        if prepared.rules.seed_per_chunk:
            digest = hashlib.sha256(f"one-to-all/{seed}/{chunk_index}".encode()).digest()
            seed = int.from_bytes(digest[:8], "little") & (2**63 - 1)
        generator = torch.Generator(device="cpu").manual_seed(seed)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def build_pass_batches(self, prepared: PreparedShot, pose_video: torch.Tensor) -> list["_PassBatch"]:
        """Per-chunk constant inputs of every guidance pass, grouped into transformer batches.

        Extension point (with ``run_pass_batch``): the chunk loop calls this once per chunk and
        ``run_pass_batch`` once per batch and step, and merges the returned predictions by pass name.
        ``render_server.parallel.cfg_parallel`` overrides both to spread the passes over ranks; keep the
        signatures stable.
        """
        device, dtype = self.device, self.dtype
        passes = prepared.guidance.passes
        pose_tokens: dict[tuple[str, str], torch.Tensor] = {}
        for p in passes:
            key = (p.reference_pose, p.pose_video)
            if key not in pose_tokens:
                image_pose = prepared.image_pose if p.reference_pose == "pose" else torch.full_like(prepared.image_pose, -1.0)
                video = pose_video if p.pose_video == "pose" else torch.full_like(pose_video, -1.0)
                pose_tokens[key] = self.transformer.encode_pose(image_pose.to(device, dtype), video.to(device, dtype))
        size = self.pass_batch_size or len(passes)
        batches = []
        for start in range(0, len(passes), size):
            group = passes[start : start + size]
            refs = list(dict.fromkeys(p.reference for p in group))
            source = {"reference": prepared.image_latents, "black": prepared.black_image_latents}
            batches.append(
                _PassBatch(
                    passes=group,
                    text=torch.cat(
                        [prepared.prompt_embeds if p.text == "positive" else prepared.negative_prompt_embeds for p in group]
                    ),
                    unique_refs=torch.cat([source[r] for r in refs]).to(device, dtype),
                    ref_index=[refs.index(p.reference) for p in group],
                    image_latents=torch.cat([source[p.reference] for p in group]).to(device, dtype),
                    pose_tokens=torch.cat([pose_tokens[(p.reference_pose, p.pose_video)] for p in group]),
                    conditioning_scale=_conditioning_scale(group, device, dtype),
                )
            )
        return batches

    def run_pass_batch(
        self, batch: "_PassBatch", latents: torch.Tensor, schedule: Schedule, step: int, token_replace: bool
    ) -> dict[str, torch.Tensor]:
        n = len(batch.passes)
        device, dtype = self.device, self.dtype
        t = schedule.timesteps[step]
        timestep = t.to(device).expand(n)
        # Reference features depend on (reference latent, t) only: compute them once per distinct reference.
        features = self.transformer.compute_reference_features(
            batch.unique_refs, t.to(device).expand(batch.unique_refs.shape[0])
        )
        if batch.ref_index != list(range(n)):
            features = features.select(batch.ref_index)
        hidden = latents.to(dtype).expand(n, -1, -1, -1, -1)
        # One cache context per batch of passes: caching hooks see the same batch composition every step.
        context = dict(
            step_index=step,
            num_inference_steps=schedule.num_steps,
            timestep=float(t),
            sigma=float(schedule.sigmas[step]),
        )
        with self.transformer.cache_context("+".join(batch.names), **context):
            output = self.transformer(
                hidden_states=hidden,
                timestep=timestep,
                encoder_hidden_states=batch.text,
                image_latents=batch.image_latents,
                conditioning_scale=batch.conditioning_scale,
                token_replace=token_replace,
                return_dict=False,
                pose_tokens=batch.pose_tokens,
                reference_features=features,
            )[0]
        return {name: output[i : i + 1] for i, name in enumerate(batch.names)}


@dataclass
class _PassBatch:
    passes: tuple[GuidancePass, ...]
    text: torch.Tensor
    unique_refs: torch.Tensor
    ref_index: list[int]
    image_latents: torch.Tensor
    pose_tokens: torch.Tensor
    conditioning_scale: float | torch.Tensor

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]


def _conditioning_scale(group: Sequence[GuidancePass], device: torch.device, dtype: torch.dtype) -> float | torch.Tensor:
    scales = [p.conditioning_scale for p in group]
    if len(set(scales)) == 1:
        return float(scales[0])  # a Python 0 lets the model skip the control stream outright
    return torch.tensor(scales, device=device, dtype=dtype)


def _model_size(transformer: torch.nn.Module) -> str:
    config = transformer.config
    inner_dim = config.num_attention_heads * config.attention_head_dim
    return "14b" if inner_dim >= 5120 else "1.3b"


def _shape(value: object) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{getattr(value, 'dtype', '')} {tuple(value.shape)}"
    return type(value).__name__
