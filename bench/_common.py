"""Shared helpers of the GPU benchmarks: random-weight real-shape models built on the device, an eager
reference sampler, timing, kernel-share profiling and the ``docs/benchmarks.md`` row writer.

Random weights follow the parity fixture's recipe (``render_server.models.tiny.randomize_parameters_``) but are
drawn on the device, parameter by parameter in the target dtype, from a meta-device skeleton: the 14B never
exists in float32 and never on the CPU.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
TEXT_LENGTH = 512  # UMT5 max length used by the official pipeline


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------


def build_transformer(config: dict, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """``OneToAllTransformer(**config)`` with seeded random weights made directly on ``device`` in ``dtype``.

    RoPE tables (buffers computed at construction) are rebuilt on the device in float32.
    """
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    from render_server.models.transformer_one_to_all import OneToAllTransformer

    with torch.device("meta"):
        model = OneToAllTransformer(**config)
    generator = torch.Generator(device=device).manual_seed(seed)
    keep_rule = getattr(OneToAllTransformer, "parameter_dtype", None)
    for name, param in list(model.named_parameters()):
        target = keep_rule(name, dtype, False) if keep_rule is not None else dtype
        value = torch.empty(param.shape, device=device, dtype=torch.float32 if target == torch.float32 else target)
        _init_(name, value, generator)
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
    for name, module in list(model.named_modules()):
        if isinstance(module, WanRotaryPosEmbed):
            fresh = WanRotaryPosEmbed(module.attention_head_dim, module.patch_size, module.max_seq_len)
            parent_name, _, leaf = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, leaf, fresh.to(device))
    leftovers = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftovers:
        raise RuntimeError(f"tensors left on the meta device: {leftovers[:5]}")
    return model.eval()


def _init_(name: str, value: torch.Tensor, generator: torch.Generator) -> None:
    """The fixture's recipe: matrices N(0,1)/sqrt(fan_in), tables N/sqrt(D), norms 1+0.1N, biases 0.05N."""
    with torch.no_grad():
        noise = torch.randn(value.shape, device=value.device, generator=generator, dtype=torch.float32)
        if name.endswith("scale_shift_table"):
            noise /= math.sqrt(value.shape[-1])
        elif value.ndim == 1 and name.endswith("bias"):
            noise *= 0.05
        elif value.ndim == 1:
            noise = 1 + 0.1 * noise
        else:
            noise /= math.sqrt(math.prod(value.shape[1:]))
        value.copy_(noise)


def build_vae(device: torch.device, seed: int = 0):
    """diffusers ``AutoencoderKLWan()`` (its defaults are the Wan2.1 VAE config), default init, float32."""
    from diffusers import AutoencoderKLWan

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKLWan()
    return vae.to(device).eval()


def make_shot(
    num_frames: int, height: int, width: int, steps: int, text_dim: int, seed: int = 0,
    text_length: int = TEXT_LENGTH, **fields: Any,
):
    """A shot of random uint8 images and random prompt embeddings given directly (no text encoder)."""
    from render_server.pipeline.types import PromptEmbeddings, ShotInputs

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    embeds = PromptEmbeddings(
        positive=torch.randn(1, text_length, text_dim, generator=g) * 0.1,
        negative=torch.randn(1, text_length, text_dim, generator=g) * 0.1,
    )
    return ShotInputs(
        reference_image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (num_frames, height, width, 3), dtype=np.uint8),
        mask=(rng.random((height, width)) > 0.8).astype(np.uint8) * 255,
        seed=seed,
        steps=steps,
        prompt_embeds=embeds,
        **fields,
    )


# ----------------------------------------------------------------------------------------------
# The eager reference sampler (a): every pass a full forward, one after another
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def eager_reference_chunk(pipeline, prepared, chunk_index: int, previous_frames, noise, *, on_pass=None):
    """Straightforward sampler of our model: per step, each guidance pass is its own full forward (reference
    extractor and pose encoder recomputed inside), float32 guidance and latents, float32 VAE decode.

    Same inputs and rules as ``pipeline.run_chunk`` in the default mode; returns (latents, uint8 frames).
    """
    from render_server.pipeline.scheduling import euler_step
    from render_server.pipeline.vae import uint8_to_unit, unit_to_uint8

    chunk = prepared.chunks[chunk_index]
    shot, guidance, schedule = prepared.shot, prepared.guidance, prepared.schedule
    device, dtype = pipeline.device, pipeline.dtype
    model = pipeline.transformer
    latents = noise.to(device, torch.float32)
    pinned = chunk.pinned_latent_frames
    prev = None
    if chunk.token_replace:
        prev = pipeline.codec.encode(uint8_to_unit(previous_frames)).to(device, torch.float32)
        latents = torch.cat([prev, latents[:, :, pinned:]], dim=2)
    pose_video = uint8_to_unit(shot.pose_frames[chunk.pose_frame_indices(shot.num_frames)]).to(device, dtype)
    inputs = {
        "reference": prepared.image_latents.to(device, dtype),
        "black": prepared.black_image_latents.to(device, dtype),
    }
    image_pose = prepared.image_pose.to(device, dtype)
    text = {"positive": prepared.prompt_embeds, "negative": prepared.negative_prompt_embeds}
    for step in range(schedule.num_steps):
        t = schedule.timesteps[step : step + 1].to(device)
        predictions = {}
        for p in guidance.passes:
            out = model(
                hidden_states=latents.to(dtype),
                timestep=t,
                encoder_hidden_states=text[p.text],
                image_latents=inputs[p.reference],
                image_pose=image_pose if p.reference_pose == "pose" else torch.full_like(image_pose, -1.0),
                controlnet_cond=pose_video if p.pose_video == "pose" else torch.full_like(pose_video, -1.0),
                conditioning_scale=p.conditioning_scale,
                token_replace=chunk.token_replace,
                return_dict=False,
            )[0]
            predictions[p.name] = out.float()
            if on_pass is not None:
                on_pass()
        velocity = guidance.combine(predictions)
        if prev is not None:
            stepped = euler_step(latents[:, :, pinned:], velocity[:, :, pinned:], schedule, step)
            latents = torch.cat([prev, stepped], dim=2)
        else:
            latents = euler_step(latents, velocity, schedule, step)
    decode_dtype = pipeline.codec.decode_dtype
    pipeline.codec.decode_dtype = None
    try:
        decoded = pipeline.codec.decode(latents)
    finally:
        pipeline.codec.decode_dtype = decode_dtype
    return latents, unit_to_uint8(decoded, round_values=prepared.rules.round_uint8)


# ----------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------


class EventClock:
    """CUDA events recorded without synchronising (no stall in the step loop); ``intervals()`` gives the
    seconds between consecutive marks. On a CPU-only machine (smoke runs) it reads the host clock."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def mark(self) -> None:
        if torch.cuda.is_available():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        else:
            self.events.append(time.perf_counter())

    def intervals(self) -> list[float]:
        if not torch.cuda.is_available():
            return [b - a for a, b in zip(self.events, self.events[1:])]
        torch.cuda.synchronize()
        return [a.elapsed_time(b) / 1000 for a, b in zip(self.events, self.events[1:])]


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    synchronize()
    start = time.perf_counter()
    result = fn()
    synchronize()
    return result, round(time.perf_counter() - start, 3)


def peak_gb(reset: bool = False) -> float:
    if not torch.cuda.is_available():
        return 0.0
    value = torch.cuda.max_memory_allocated() / 2**30
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return round(value, 2)


def compare(fast: torch.Tensor | np.ndarray, ref: torch.Tensor | np.ndarray) -> dict[str, float]:
    """Relative L2, max abs and (for uint8 frames) mean abs grey levels and PSNR of ``fast`` against ``ref``."""
    if isinstance(fast, np.ndarray):
        a, b = fast.astype(np.float64), ref.astype(np.float64)
        mse = float(((a - b) ** 2).mean())
        return {
            "mean_abs_grey": round(float(np.abs(a - b).mean()), 3),
            "max_abs_grey": float(np.abs(a - b).max()),
            "psnr_db": round(10 * math.log10(255**2 / mse), 2) if mse > 0 else float("inf"),
        }
    a, b = fast.double(), ref.double()
    return {
        "rel_l2": float((a - b).norm() / b.norm().clamp_min(1e-30)),
        "max_abs": float((a - b).abs().max()),
        "finite": bool(torch.isfinite(fast).all()),
    }


_KERNEL_CLASSES = (
    ("attention", ("flash", "fmha", "cudnn", "attention", "sdpa", "attn")),
    ("gemm", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "sm90", "scaled_mm", "cublas")),
    ("conv", ("conv", "implicit", "winograd")),
    ("fused_triton", ("triton",)),
    ("copy_cast", ("copy", "cast", "cat", "transpose", "permute")),
)


def kernel_shares(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` under torch.profiler; GPU kernel time shares by class (attention, gemm, ...) and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    if not torch.cuda.is_available():
        return {"gpu_kernel_s": 0.0, "shares": {}, "top_kernels": []}
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    per_kernel: dict[str, float] = {}
    for event in prof.events():
        if event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = event.device_time_total if hasattr(event, "device_time_total") else event.cuda_time_total
        name = event.name.lower()
        kind = next((k for k, keys in _KERNEL_CLASSES if any(s in name for s in keys)), "other")
        totals[kind] = totals.get(kind, 0.0) + us
        per_kernel[event.name[:80]] = per_kernel.get(event.name[:80], 0.0) + us
    total = sum(totals.values()) or 1.0
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:8]
    return {
        "gpu_kernel_s": round(total / 1e6, 3),
        "shares": {k: round(v / total, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "top_kernels": [(n, round(v / total, 3)) for n, v in top],
    }


# ----------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import diffusers

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        info["device"] = "cpu"
    return info


def emit(result: dict[str, Any], *, table_row: str | None, append: bool) -> None:
    """Print one JSON line; append the markdown row (and the JSON as a comment) to docs/benchmarks.md."""
    line = json.dumps(result, sort_keys=True, default=str)
    print(line, flush=True)
    if not append or table_row is None:
        return
    BENCHMARKS_MD.parent.mkdir(parents=True, exist_ok=True)
    if not BENCHMARKS_MD.exists():
        BENCHMARKS_MD.write_text("# Benchmarks\n\n")
    with BENCHMARKS_MD.open("a") as handle:
        handle.write(table_row.rstrip() + "\n")
        handle.write(f"<!-- {line} -->\n")
