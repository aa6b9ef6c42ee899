"""Classifier-free guidance as data (diffusers ``guiders/`` style).

A ``Guidance`` lists the transformer passes it needs (which reference latent, pose video, reference pose,
text and controlnet scale each pass sees) and combines their predictions as
``base + w1 * (a1 - b1) + w2 * (a2 - b2) + ...`` evaluated left to right, which is exactly the official
expression order (so float32 results are bitwise the official ones). The pipeline runs all passes of a step
as one batch through the transformer.

Official passes (spec section 2.5; "pose" = real pose video at controlnet scale 1 with the real reference
pose, "no pose" = all -1 pose video and reference pose at controlnet scale 0):

* ``cond``        C  = model(reference, pose,    prompt)
* ``uncond``      U  = model(black,     no pose, negative prompt)
* ``ref_uncond``  R0 = model(black,     pose,    prompt)
* ``pose_uncond`` P0 = model(reference, black pose video at scale 1, black reference pose, prompt)  (case1)
* ``uncond_pose_kept`` U' = model(black, pose, negative prompt)  (official "image guidance only" branch)

Official gating (``guidance_for_scales``): image guidance is on when ``I > 1`` (exactly 1 is off), pose
guidance only when ``P > 1`` *and* image guidance is on; the driver always sets ``black_pose_cfg``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import torch

ReferenceSource = Literal["reference", "black"]
PoseSource = Literal["pose", "black"]
TextSource = Literal["positive", "negative"]
GuidanceVariant = Literal["auto", "3pass", "3pass_case1", "2pass", "2pass_pose_kept", "1pass"]

GUIDANCE_VARIANTS: tuple[str, ...] = ("auto", "3pass", "3pass_case1", "2pass", "2pass_pose_kept", "1pass")

# Official (image_guidance_scale, pose_guidance_scale) defaults of the inference scripts.
OFFICIAL_DEFAULT_SCALES: dict[str, tuple[float, float]] = {"1.3b": (2.5, 1.5), "14b": (2.0, 1.5)}


@dataclass(frozen=True)
class GuidancePass:
    """Inputs of one transformer pass, by source (the pipeline turns sources into tensors)."""

    name: str
    reference: ReferenceSource  # image_latents: reference + mask latents, or black + black
    pose_video: PoseSource  # controlnet_cond: the driving pose video or all -1
    reference_pose: PoseSource  # image_pose: the reference pose drawing or all -1
    text: TextSource
    conditioning_scale: float  # multiplier of the controlnet residuals


@dataclass(frozen=True)
class GuidanceTerm:
    """``weight * (pred[plus] - pred[minus])``."""

    weight: float
    plus: str
    minus: str


@dataclass(frozen=True)
class Guidance:
    """Passes plus the combination rule ``pred[base] + sum(term.weight * (pred[plus] - pred[minus]))``."""

    name: str
    passes: tuple[GuidancePass, ...]
    base: str
    terms: tuple[GuidanceTerm, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.passes]
        if len(set(names)) != len(names):
            raise ValueError(f"guidance {self.name!r}: duplicate pass names {names}")
        used = {self.base} | {t.plus for t in self.terms} | {t.minus for t in self.terms}
        missing = used - set(names)
        if missing:
            raise ValueError(f"guidance {self.name!r}: formula uses passes {sorted(missing)} that are not listed")
        for term in self.terms:
            if not math.isfinite(term.weight):
                raise ValueError(f"guidance {self.name!r}: weight {term.weight!r} is not finite")

    @property
    def num_passes(self) -> int:
        return len(self.passes)

    @property
    def pass_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.passes)

    @property
    def uses_negative_prompt(self) -> bool:
        return any(p.text == "negative" for p in self.passes)

    def combine(self, predictions: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Combine per-pass predictions (left-to-right, the official evaluation order)."""
        result = predictions[self.base]
        for term in self.terms:
            result = result + term.weight * (predictions[term.plus] - predictions[term.minus])
        return result


COND = GuidancePass("cond", "reference", "pose", "pose", "positive", 1.0)
UNCOND = GuidancePass("uncond", "black", "black", "black", "negative", 0.0)
REF_UNCOND = GuidancePass("ref_uncond", "black", "pose", "pose", "positive", 1.0)
POSE_UNCOND = GuidancePass("pose_uncond", "reference", "black", "black", "positive", 1.0)
UNCOND_POSE_KEPT = GuidancePass("uncond_pose_kept", "black", "pose", "pose", "negative", 1.0)


def three_pass(image_scale: float, pose_scale: float) -> Guidance:
    """Official default (case1=False): ``v = U + P (R0 - U) + I (C - R0)``."""
    return Guidance(
        "3pass",
        (COND, UNCOND, REF_UNCOND),
        base="uncond",
        terms=(GuidanceTerm(pose_scale, "ref_uncond", "uncond"), GuidanceTerm(image_scale, "cond", "ref_uncond")),
    )


def three_pass_case1(image_scale: float, pose_scale: float) -> Guidance:
    """Official ``case1=True``: ``v = U + I (P0 - U) + P (C - P0)``."""
    return Guidance(
        "3pass_case1",
        (COND, UNCOND, POSE_UNCOND),
        base="uncond",
        terms=(GuidanceTerm(image_scale, "pose_uncond", "uncond"), GuidanceTerm(pose_scale, "cond", "pose_uncond")),
    )


def two_pass(image_scale: float) -> Guidance:
    """Combined image + pose guidance: ``v = U + I (C - U)``."""
    return Guidance("2pass", (COND, UNCOND), base="uncond", terms=(GuidanceTerm(image_scale, "cond", "uncond"),))


def two_pass_pose_kept(image_scale: float) -> Guidance:
    """Official image-only branch (black_pose_cfg=False): ``v = U' + I (C - U')``, U' keeps the pose."""
    return Guidance(
        "2pass_pose_kept",
        (COND, UNCOND_POSE_KEPT),
        base="uncond_pose_kept",
        terms=(GuidanceTerm(image_scale, "cond", "uncond_pose_kept"),),
    )


def one_pass() -> Guidance:
    """No guidance: ``v = C``."""
    return Guidance("1pass", (COND,), base="cond")


def guidance_for_scales(
    image_scale: float, pose_scale: float, variant: GuidanceVariant = "auto"
) -> Guidance:
    """Build the guidance for the given scales.

    ``"auto"`` is the official gating: 3-pass (case1=False) when ``I > 1`` and ``P > 1``, 2-pass when only
    ``I > 1``, 1-pass when ``I <= 1``. The other variants force a formula whatever the scales. Raises
    ``ValueError`` naming the argument for non-finite scales or an unknown variant.
    """
    _check_scale("image_guidance_scale", image_scale)
    _check_scale("pose_guidance_scale", pose_scale)
    image_scale, pose_scale = float(image_scale), float(pose_scale)
    if variant == "auto":
        if image_scale <= 1.0:
            return one_pass()
        if pose_scale > 1.0:
            return three_pass(image_scale, pose_scale)
        return two_pass(image_scale)
    if variant == "3pass":
        return three_pass(image_scale, pose_scale)
    if variant == "3pass_case1":
        return three_pass_case1(image_scale, pose_scale)
    if variant == "2pass":
        return two_pass(image_scale)
    if variant == "2pass_pose_kept":
        return two_pass_pose_kept(image_scale)
    if variant == "1pass":
        return one_pass()
    raise ValueError(f"guidance variant must be one of {GUIDANCE_VARIANTS}, got {variant!r}")


def default_guidance_scales(model_size: str) -> tuple[float, float]:
    """Official ``(image_guidance_scale, pose_guidance_scale)`` for ``"1.3b"`` or ``"14b"``."""
    try:
        return OFFICIAL_DEFAULT_SCALES[model_size.lower()]
    except (KeyError, AttributeError):
        raise ValueError(
            f"model_size must be one of {sorted(OFFICIAL_DEFAULT_SCALES)}, got {model_size!r}"
        ) from None


def _check_scale(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
