"""Inputs, progress events and mode rules of the sampling pipeline (numpy only, no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np

from .chunking import Chunk, plan_chunks
from .guidance import GUIDANCE_VARIANTS

PipelineMode = Literal["default", "official"]

# The official demo scripts' negative prompt (spec section 2.3).
OFFICIAL_NEGATIVE_PROMPT = (
    "black background, Aerial view, aerial view, overexposed, low quality, deformation, a poor composition, "
    "bad hands, bad teeth, bad eyes, bad limbs, distortion"
)
OFFICIAL_SEED = 42
SIZE_MULTIPLE = 16


class Cancelled(Exception):
    """Raised by the pipeline when ``should_cancel()`` returned True (checked before every step and before the
    decode; ``step_index == num_steps`` means "before the decode")."""

    def __init__(self, chunk_index: int, step_index: int) -> None:
        super().__init__(f"cancelled before step {step_index} of chunk {chunk_index}")
        self.chunk_index = chunk_index
        self.step_index = step_index


@dataclass(frozen=True)
class ModeRules:
    """Everything that differs between official compatibility and our default mode (docs/pipeline.md)."""

    schedule: Literal["default", "official"]
    plan: Literal["default", "official"]
    seed_per_chunk: bool  # official: a fresh generator with the same seed for every chunk (quirk Q2)
    round_uint8: bool  # official: truncation (Q8)
    fp32_guidance: bool  # official: the guidance combination runs in the transformer's dtype
    fp32_latents: bool  # official: latents are stored in the transformer's dtype between steps (Q14)


MODE_RULES: dict[str, ModeRules] = {
    "official": ModeRules("official", "official", False, False, False, False),
    "default": ModeRules("default", "default", True, True, True, True),
}


def mode_rules(mode: str) -> ModeRules:
    try:
        return MODE_RULES[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {sorted(MODE_RULES)}, got {mode!r}") from None


@dataclass(frozen=True)
class PromptEmbeddings:
    """UMT5 embeddings given directly: ``positive`` (1, L, D) and, for guided modes, ``negative`` (1, L, D)."""

    positive: object  # torch.Tensor; typed loosely so this module stays torch-free
    negative: object | None = None


@dataclass(frozen=True)
class ShotInputs:
    """One shot: images at the output size (all uint8 RGB, the same H x W, multiples of 16).

    reference_image (H, W, 3); reference_pose (H, W, 3): the pose drawn for the reference image;
    pose_frames (N, H, W, 3): the driving pose drawings; mask (H, W) or None: 255 = area to outpaint,
    0 = valid reference pixels (None = all valid, the official "ref" mode). Guidance scales default to the
    official ones for the model size. ``plan`` defaults to the mode's plan; ``max_chunk_frames`` (4k+1) caps
    the default plan's chunk length. ``prompt_embeds`` bypasses the text encoder.
    """

    reference_image: np.ndarray
    reference_pose: np.ndarray
    pose_frames: np.ndarray
    mask: np.ndarray | None = None
    seed: int = OFFICIAL_SEED
    steps: int = 30
    image_guidance_scale: float | None = None
    pose_guidance_scale: float | None = None
    guidance_variant: str = "auto"
    mode: PipelineMode = "default"
    plan: str | Sequence[Sequence[int]] | None = None
    max_chunk_frames: int = 81  # default plan only: shorter chunks need less GPU memory
    prompt: str = ""
    negative_prompt: str = OFFICIAL_NEGATIVE_PROMPT
    prompt_embeds: PromptEmbeddings | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.pose_frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.reference_image.shape[0])

    @property
    def width(self) -> int:
        return int(self.reference_image.shape[1])


def validate_shot(shot: ShotInputs) -> None:
    """Check every field before any heavy work; raises ``ValueError`` naming the field."""
    mode_rules(shot.mode)
    image = _check_uint8("reference_image", shot.reference_image, 3)
    if image.shape[2] != 3:
        raise ValueError(f"reference_image must be (H, W, 3) RGB, got shape {image.shape}")
    height, width = image.shape[:2]
    check_size(height, width)
    pose = _check_uint8("reference_pose", shot.reference_pose, 3)
    if pose.shape != (height, width, 3):
        raise ValueError(f"reference_pose must be (H, W, 3) = {(height, width, 3)} like reference_image, got {pose.shape}")
    frames = _check_uint8("pose_frames", shot.pose_frames, 4)
    if frames.shape[0] <= 0:
        raise ValueError("pose_frames must hold at least 1 frame, got 0")
    if frames.shape[1:] != (height, width, 3):
        raise ValueError(
            f"pose_frames must be (N, H, W, 3) with H, W = {(height, width)} like reference_image, got {frames.shape}"
        )
    if shot.mask is not None:
        mask = _check_uint8("mask", shot.mask, 2)
        if mask.shape != (height, width):
            raise ValueError(f"mask must be (H, W) = {(height, width)} like reference_image, got {mask.shape}")
    if isinstance(shot.seed, bool) or not isinstance(shot.seed, (int, np.integer)) or not 0 <= shot.seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {shot.seed!r}")
    if isinstance(shot.steps, bool) or not isinstance(shot.steps, (int, np.integer)) or shot.steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {shot.steps!r}")
    for name in ("image_guidance_scale", "pose_guidance_scale"):
        value = getattr(shot, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if shot.guidance_variant not in GUIDANCE_VARIANTS:
        raise ValueError(f"guidance_variant must be one of {GUIDANCE_VARIANTS}, got {shot.guidance_variant!r}")
    if not isinstance(shot.prompt, str):
        raise ValueError(f"prompt must be a str, got {type(shot.prompt).__name__}")
    if not isinstance(shot.negative_prompt, str):
        raise ValueError(f"negative_prompt must be a str, got {type(shot.negative_prompt).__name__}")
    shot_plan(shot)  # raises ValueError naming num_frames / plan / max_chunk_frames


def shot_plan(shot: ShotInputs) -> list[Chunk]:
    """The shot's chunks: its explicit plan, else the mode's plan (default plan capped at max_chunk_frames)."""
    plan = shot.plan if shot.plan is not None else mode_rules(shot.mode).plan
    if plan == "default":
        return plan_chunks(shot.num_frames, plan, max_chunk_frames=shot.max_chunk_frames)
    return plan_chunks(shot.num_frames, plan)


def check_size(height: int, width: int) -> None:
    """Output size rule of the Wan VAE + patching: positive multiples of 16."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % SIZE_MULTIPLE:
            raise ValueError(f"{name} must be a positive multiple of {SIZE_MULTIPLE}, got {value!r}")


@dataclass(frozen=True)
class StepProgress:
    """Sent to ``on_step`` after every finished denoising step.

    ``chunk_index`` (0-based) of ``num_chunks``; ``step_index`` (0-based) of ``num_steps``; ``passes`` = the
    guidance passes that ran (batched) in this step; ``timestep`` = the transformer timestep of the step.
    """

    chunk_index: int
    num_chunks: int
    step_index: int
    num_steps: int
    passes: tuple[str, ...]
    timestep: float

    @property
    def fraction(self) -> float:
        """Share of the shot's denoising steps done (0..1), counting chunks as equal."""
        return (self.chunk_index * self.num_steps + self.step_index + 1) / (self.num_chunks * self.num_steps)


def _check_uint8(name: str, array: object, ndim: int) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name} must be a numpy uint8 array, got {type(array).__name__}")
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {array.dtype}")
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} has an empty dimension: shape {array.shape}")
    return array
