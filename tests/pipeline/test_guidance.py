"""Guidance as data: official gating, formulas (bitwise the official expressions), validation."""

from __future__ import annotations

import math

import pytest
import torch

from render_server.pipeline.guidance import (
    Guidance,
    GuidancePass,
    GuidanceTerm,
    default_guidance_scales,
    guidance_for_scales,
)


@pytest.mark.parametrize(
    ("image", "pose", "name", "passes"),
    [
        (2.5, 1.5, "3pass", ("cond", "uncond", "ref_uncond")),
        (2.0, 1.5, "3pass", ("cond", "uncond", "ref_uncond")),
        (1.5, 0.0, "2pass", ("cond", "uncond")),
        (1.5, 1.0, "2pass", ("cond", "uncond")),  # exactly 1.0 is off
        (1.5, 0.5, "2pass", ("cond", "uncond")),
        (1.0, 1.0, "1pass", ("cond",)),
        (1.0, 3.0, "1pass", ("cond",)),  # pose guidance only together with image guidance
        (0.0, 0.0, "1pass", ("cond",)),
    ],
)
def test_official_gating(image, pose, name, passes):
    guidance = guidance_for_scales(image, pose)
    assert guidance.name == name and guidance.pass_names == passes


def test_official_pass_inputs():
    g = guidance_for_scales(2.5, 1.5)
    by_name = {p.name: p for p in g.passes}
    assert by_name["cond"] == GuidancePass("cond", "reference", "pose", "pose", "positive", 1.0)
    assert by_name["uncond"] == GuidancePass("uncond", "black", "black", "black", "negative", 0.0)
    assert by_name["ref_uncond"] == GuidancePass("ref_uncond", "black", "pose", "pose", "positive", 1.0)
    case1 = {p.name: p for p in guidance_for_scales(2.5, 1.5, "3pass_case1").passes}
    assert case1["pose_uncond"] == GuidancePass("pose_uncond", "reference", "black", "black", "positive", 1.0)
    kept = {p.name: p for p in guidance_for_scales(2.5, 0.0, "2pass_pose_kept").passes}
    assert kept["uncond_pose_kept"] == GuidancePass("uncond_pose_kept", "black", "pose", "pose", "negative", 1.0)


def test_formulas_are_bitwise_the_official_expressions():
    gen = torch.Generator().manual_seed(0)
    c, u, r, p = (torch.randn(2, 16, 5, 4, 4, generator=gen) for _ in range(4))
    preds = {"cond": c, "uncond": u, "ref_uncond": r, "pose_uncond": p, "uncond_pose_kept": r}
    image, pose = 2.5, 1.5
    assert torch.equal(guidance_for_scales(image, pose).combine(preds), u + pose * (r - u) + image * (c - r))
    assert torch.equal(
        guidance_for_scales(image, pose, "3pass_case1").combine(preds), u + image * (p - u) + pose * (c - p)
    )
    assert torch.equal(guidance_for_scales(image, 0.0).combine(preds), u + image * (c - u))
    assert torch.equal(guidance_for_scales(image, 0.0, "2pass_pose_kept").combine(preds), r + image * (c - r))
    assert torch.equal(guidance_for_scales(1.0, 1.0).combine(preds), c)
    # Forced variants ignore the gating.
    assert guidance_for_scales(1.0, 1.0, "3pass").num_passes == 3
    assert guidance_for_scales(3.0, 3.0, "1pass").num_passes == 1


def test_defaults_per_model_size():
    assert default_guidance_scales("1.3b") == (2.5, 1.5)
    assert default_guidance_scales("14B") == (2.0, 1.5)
    with pytest.raises(ValueError, match="model_size"):
        default_guidance_scales("7b")


@pytest.mark.parametrize(
    ("image", "pose", "variant", "match"),
    [
        (math.nan, 1.5, "auto", "image_guidance_scale"),
        (2.5, math.inf, "auto", "pose_guidance_scale"),
        (2.5, -math.inf, "auto", "pose_guidance_scale"),
        ("2.5", 1.5, "auto", "image_guidance_scale"),
        (True, 1.5, "auto", "image_guidance_scale"),
        (2.5, 1.5, "4pass", "variant"),
    ],
)
def test_bad_guidance_arguments(image, pose, variant, match):
    with pytest.raises(ValueError, match=match):
        guidance_for_scales(image, pose, variant)


def test_guidance_table_is_checked():
    cond = GuidancePass("cond", "reference", "pose", "pose", "positive", 1.0)
    with pytest.raises(ValueError, match="not listed"):
        Guidance("broken", (cond,), base="uncond")
    with pytest.raises(ValueError, match="duplicate"):
        Guidance("dup", (cond, cond), base="cond")
    with pytest.raises(ValueError, match="not finite"):
        Guidance("nan", (cond,), base="cond", terms=(GuidanceTerm(math.nan, "cond", "cond"),))
