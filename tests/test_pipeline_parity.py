"""Pipeline parity with the official driver (fixture folder ``$O2A_PARITY_DIR/pipeline``).

Every case of ``pipeline/params.json`` runs through our pipeline in official-compatibility mode: official (or
the case's forced) split plan with overwrite stitching, the stored initial noise injected per chunk, prompt
embeddings given directly, and - as the fixture README recommends - every token-replace chunk fed the stored
previous uint8 frames (teacher forcing). Shapes, chunk counts and steps all come from the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from render_server.models import load_one_to_all_transformer
from render_server.pipeline.pipeline import OneToAllPipeline
from render_server.pipeline.types import PromptEmbeddings, ShotInputs

REPO_ROOT = Path(__file__).resolve().parents[1]


def _parity_dir() -> Path:
    path = Path(os.environ.get("O2A_PARITY_DIR", "../shared/fixtures/official_parity"))
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


PARITY_DIR = _parity_dir()
PIPELINE_DIR = PARITY_DIR / "pipeline"


def _cases() -> list[str]:
    params = PIPELINE_DIR / "params.json"
    if not params.is_file():
        return []
    return sorted(json.loads(params.read_text())["cases"])


pytestmark = pytest.mark.skipif(not PIPELINE_DIR.is_dir(), reason=f"no pipeline fixtures at {PIPELINE_DIR}")


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)


@pytest.fixture(scope="module")
def official_pipeline() -> OneToAllPipeline:
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    transformer = load_one_to_all_transformer(PARITY_DIR / "checkpoint", dtype=torch.float32)
    vae = AutoencoderKLWan.from_pretrained(PIPELINE_DIR / "vae", torch_dtype=torch.float32, local_files_only=True)
    params = json.loads((PIPELINE_DIR / "params.json").read_text())
    return OneToAllPipeline(transformer, vae.eval(), shift=params["scheduler"]["shift"])


@pytest.fixture(scope="module")
def shared_inputs() -> dict:
    params = json.loads((PIPELINE_DIR / "params.json").read_text())
    inputs = PIPELINE_DIR / "inputs"
    frame_files = sorted((inputs / "pose_frames").glob("frame_*.png"))
    embeds = load_file(str(PIPELINE_DIR / params["prompt_embeds"]["file"]))
    return {
        "params": params,
        "reference_image": _rgb(inputs / "image_input.png"),
        "reference_pose": _rgb(inputs / "pose_input.png"),
        "mask": np.asarray(Image.open(inputs / "mask_input.png").convert("L"), dtype=np.uint8),
        "pose_frames": np.stack([_rgb(f) for f in frame_files]),
        "prompt_embeds": PromptEmbeddings(embeds["prompt_embeds"], embeds["negative_prompt_embeds"]),
    }


def _variant(params: dict, image_scale: float, pose_scale: float) -> str:
    """Our guidance variant for the official driver flags (case1, black_pose_cfg) and scales."""
    if image_scale > 1 and pose_scale > 1 and params.get("case1", False):
        return "3pass_case1"
    if image_scale > 1 and pose_scale <= 0 and not params.get("black_pose_cfg", True):
        return "2pass_pose_kept"  # the official image-only branch (pose_scale > 0 forces black_pose_cfg)
    return "auto"


def _official_shot(case: str, shared_inputs: dict) -> ShotInputs:
    """The case as the official driver ran it: official mode, the case's plan, embeddings given directly."""
    params = shared_inputs["params"]
    spec = params["cases"][case]
    return ShotInputs(
        reference_image=shared_inputs["reference_image"],
        reference_pose=shared_inputs["reference_pose"],
        pose_frames=shared_inputs["pose_frames"][: spec["num_frames_total"]],
        mask=shared_inputs["mask"],
        seed=params["seed"],
        steps=params["num_inference_steps"],
        image_guidance_scale=spec["image_guidance_scale"],
        pose_guidance_scale=spec["pose_guidance_scale"],
        guidance_variant=_variant(params, spec["image_guidance_scale"], spec["pose_guidance_scale"]),
        mode="official",
        plan=spec["plan"],
        prompt_embeds=shared_inputs["prompt_embeds"],
    )


def _describe(guidance_pass) -> dict:
    """Our pass in the vocabulary of the fixture's ``pass_order_step0``."""
    return {
        "text": guidance_pass.text,
        "controlnet_cond": "pose_video" if guidance_pass.pose_video == "pose" else "black(-1)",
        "image_pose": "pose_input" if guidance_pass.reference_pose == "pose" else "black(-1)",
        "image_latents": "image_latents(ref+mask)" if guidance_pass.reference == "reference" else "black_image_latents",
        "conditioning_scale": float(guidance_pass.conditioning_scale),
    }


def test_cases_are_discovered():
    assert _cases(), f"no cases in {PIPELINE_DIR / 'params.json'}"


@pytest.mark.parametrize("case", _cases())
def test_pipeline_matches_official_driver(case, official_pipeline, shared_inputs):
    expected_dir = PIPELINE_DIR / "expected" / case
    plan_json = json.loads((expected_dir / "plan.json").read_text())
    total = shared_inputs["params"]["cases"][case]["num_frames_total"]
    shot = _official_shot(case, shared_inputs)
    prepared = official_pipeline.prepare(shot)
    assert [[c.start, c.end] for c in prepared.chunks] == plan_json["split_plan_used"]
    noise = load_file(str(PIPELINE_DIR / "inputs" / f"noise_{case}.safetensors"))
    video = np.asarray(np.load(expected_dir / "video.npz")["combined"])
    width = shot.width
    expected_frames = video[:, :, width:]  # [overlay | generated]
    assert expected_frames.shape == (total, shot.height, width, 3)

    ours = np.zeros_like(expected_frames)
    for chunk, chunk_meta in zip(prepared.chunks, plan_json["chunks"]):
        expected = load_file(str(expected_dir / f"chunk_{chunk.index}.safetensors"))
        assert chunk.token_replace == chunk_meta["token_replace"]
        assert prepared.guidance.num_passes == chunk_meta["passes_per_step"]
        torch.testing.assert_close(prepared.schedule.timesteps, expected["timesteps"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(prepared.schedule.sigmas, expected["sigmas"], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(prepared.image_latents, expected["image_latents"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(prepared.black_image_latents, expected["black_image_latents"], atol=1e-4, rtol=1e-4)
        # Official mode draws exactly the official (CPU-generator) noise; the fixture noise is injected anyway.
        injected = noise[f"chunk_{chunk.index}"]
        assert torch.equal(official_pipeline.chunk_noise(prepared, chunk.index), injected)

        previous = None
        if chunk.token_replace:
            previous = expected["prev_frames_uint8"].numpy()
            assert list(chunk.prev_frame_indices) == chunk_meta["prev_frame_indices"]
            # Teacher forcing is legitimate only if our own earlier output is (almost) those frames.
            own = ours[list(chunk.prev_frame_indices)].astype(np.int16)
            assert np.abs(own - previous.astype(np.int16)).max() <= 1
        # Each official pass (order, inputs) is one of ours; compare the raw step-0 predictions pass by pass.
        ours_described = [_describe(p) for p in prepared.guidance.passes]
        order = []
        for official_pass in chunk_meta["pass_order_step0"]:
            wanted = {k: official_pass[k] for k in ours_described[0]}
            wanted["conditioning_scale"] = float(wanted["conditioning_scale"])
            assert wanted in ours_described, f"official pass {official_pass} has no counterpart"
            assert official_pass["token_replace"] == chunk.token_replace
            order.append(ours_described.index(wanted))
        calls = []
        hook = official_pipeline.transformer.register_forward_hook(lambda module, args, output: calls.append(output))
        try:
            result = official_pipeline.run_chunk(prepared, chunk.index, previous_frames=previous, noise=injected)
        finally:
            hook.remove()
        step0 = calls[0][0]  # return_dict=False: a 1-tuple; one batched call per step
        assert step0.shape[0] == len(order)
        torch.testing.assert_close(step0[order].unsqueeze(1), expected["step0_pass_outputs"], atol=1e-4, rtol=1e-4)
        if chunk.token_replace:
            torch.testing.assert_close(result.prev_latents, expected["prev_latents"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(result.latents, expected["latents_final"], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(result.decoded, expected["decoded"], atol=1e-3, rtol=1e-3)
        ours[chunk.write_start : chunk.write_end] = result.delivered

    diff = np.abs(ours.astype(np.int16) - expected_frames.astype(np.int16))
    assert diff.max() <= 1, f"stitched video differs by up to {diff.max()} grey levels"
    assert (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("case", _cases())
def test_free_running_generate_matches_official_video(case, official_pipeline, shared_inputs):
    """``generate`` end to end: own noise (official seeding) and own previous frames (README section 6.4)."""
    shot = _official_shot(case, shared_inputs)
    video = official_pipeline.generate(shot)
    expected = np.asarray(np.load(PIPELINE_DIR / "expected" / case / "video.npz")["combined"])[:, :, shot.width :]
    diff = np.abs(video.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 3 and (diff > 0).mean() <= 0.03, (diff.max(), (diff > 0).mean())


@pytest.mark.parametrize("case", _cases())
def test_official_preview_matches_driver_overlay(case, shared_inputs):
    """The left half of the driver's mp4 frames from the stored generated half and the pose frames."""
    from render_server.pipeline.preview import official_preview

    combined = np.asarray(np.load(PIPELINE_DIR / "expected" / case / "video.npz")["combined"])
    total, width = combined.shape[0], combined.shape[2] // 2
    preview = official_preview(shared_inputs["pose_frames"][:total], np.ascontiguousarray(combined[:, :, width:]))
    assert np.array_equal(preview, combined)
