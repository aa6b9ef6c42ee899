#!/usr/bin/env python3
"""GPU proof (issue 2, item 6): bf16 vs fp32 drift at a small shape, and the whole pipeline end to end with
the real 1.3B shape (81 frames, 576x1024, 3-pass guidance, a few steps), random weights, bf16.

    python bench/bench_gpu_proof.py [--steps 2] [--frames 81] [--height 576 --width 1024] [--skip-e2e] [--no-append]

Drift: the 1.3B config (all 30 + 14 + 2 blocks, real widths) at 17 frames 256x256, the same seeded weights in
float32 (PyTorch SDPA, TF32 off) and in bfloat16 (PyTorch SDPA and cuDNN), all three guidance-pass inputs;
reported as relative L2 of the velocity against float32.
End to end: ``OneToAllPipeline.generate`` of an 81-frame shot (VAE encode, all passes batched, VAE decode),
cuDNN attention, no compile (speed is ``bench_pipeline_speed.py``'s job). The 14B forward pass in bf16 is run by
``bench_pipeline_speed.py --model 14b`` (its eager reference is exactly that).
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import (  # noqa: E402
    EventClock,
    build_transformer,
    build_vae,
    compare,
    emit,
    environment,
    make_shot,
    peak_gb,
    timed,
)

from render_server.models.configs import ONE_TO_ALL_1_3B_CONFIG  # noqa: E402
from render_server.models.tiny import TINY_TRANSFORMER_CONFIG, build_tiny_vae  # noqa: E402
from render_server.pipeline.acceleration import AccelerationOptions, accelerate  # noqa: E402
from render_server.pipeline.pipeline import OneToAllPipeline  # noqa: E402


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--height", type=int, default=576)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--tiny", action="store_true", help="CPU smoke run with the tiny model")
    p.add_argument("--no-append", action="store_true")
    return p.parse_args()


def drift(config: dict, device: torch.device, frames: int, size: int) -> dict:
    """Velocity of the same weights in fp32 and bf16 (SDPA and, on CUDA, cuDNN) for the 3 guidance inputs."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    g = torch.Generator().manual_seed(3)
    latent = size // 8
    batch = 3
    inputs = {
        "hidden_states": torch.randn(batch, 16, frames, latent, latent, generator=g),
        "timestep": torch.tensor([900.0, 900.0, 900.0]),
        "encoder_hidden_states": torch.randn(batch, 512 if config["text_dim"] > 64 else 8, config["text_dim"], generator=g) * 0.1,
        "image_latents": torch.randn(batch, 32, 1, latent, latent, generator=g),
        "image_pose": torch.rand(batch, 3, 1, size, size, generator=g) * 2 - 1,
        "controlnet_cond": torch.rand(batch, 3, 4 * frames - 3, size, size, generator=g) * 2 - 1,
        "conditioning_scale": torch.tensor([1.0, 0.0, 1.0]),
    }

    def run(model, dtype):
        moved = {k: v.to(device, dtype if v.is_floating_point() and k != "timestep" else v.dtype) for k, v in inputs.items()}
        with torch.no_grad():
            return model(**moved, token_replace=True).sample.float()

    model = build_transformer(config, device, torch.float32, seed=0)
    model.set_attention_backend("native")
    reference = run(model, torch.float32)
    del model
    gc.collect()
    model = build_transformer(config, device, torch.bfloat16, seed=0)
    result = {"shape": f"{frames}f {size}x{size}, batch 3 (cond/uncond/ref-uncond inputs), token replace"}
    backends = ["native"] + (["_native_cudnn"] if device.type == "cuda" else [])
    for backend in backends:
        model.set_attention_backend(backend)
        result[f"bf16_{backend}_vs_fp32"] = compare(run(model, torch.bfloat16), reference)
    del model
    gc.collect()
    torch.backends.cuda.matmul.allow_tf32 = True
    return result


def end_to_end(config: dict, device: torch.device, dtype: torch.dtype, args, tiny: bool) -> dict:
    transformer = build_transformer(config, device, dtype, seed=0)
    vae = build_tiny_vae(0) if tiny else build_vae(device)
    pipe = OneToAllPipeline(transformer, vae, None, model_size="1.3b")
    options = AccelerationOptions(attention_backend="auto", vae_decode_dtype=None if tiny else torch.bfloat16)
    report = accelerate(pipe, options)
    shot = make_shot(args.frames, args.height, args.width, args.steps, config["text_dim"])
    clock = EventClock()
    peak_gb(reset=True)
    video, wall = timed(lambda: pipe.generate(shot, on_step=lambda progress: clock.mark()))
    steps = clock.intervals()
    return {
        "shape": f"{args.frames}f {args.height}x{args.width}, {args.steps} steps, 3 passes batched",
        "attention_backend": report.attention_backend,
        "video": list(video.shape),
        "video_std": round(float(video.std()), 2),
        "wall_s": round(wall, 2),
        "s_per_step": round(sum(steps) / len(steps), 3) if steps else None,
        "peak_gb": peak_gb(reset=True),
    }


def main() -> None:
    args = parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    config = dict(TINY_TRANSFORMER_CONFIG if args.tiny else ONE_TO_ALL_1_3B_CONFIG)
    result = {"bench": "gpu_proof", **environment()}
    result["drift"] = drift(config, device, frames=5 if args.tiny else 5, size=32 if args.tiny else 256)
    print("drift:", result["drift"], flush=True)
    if not args.skip_e2e:
        result["e2e_1_3b"] = end_to_end(config, device, torch.float32 if args.tiny else torch.bfloat16, args, args.tiny)
        print("e2e:", result["e2e_1_3b"], flush=True)
    d = result["drift"]
    e = result.get("e2e_1_3b", {})
    row = (
        f"- GPU proof ({result['date']}, `bench/bench_gpu_proof.py`, {result['device']}, torch {result['torch']}, "
        f"diffusers {result['diffusers']}): 1.3B config random weights, bf16 vs fp32 ({d['shape']}): rel L2 "
        + ", ".join(f"{k[5:].split('_vs')[0]} {v['rel_l2']:.2e}" for k, v in d.items() if k.startswith("bf16"))
        + f"; end to end `generate` {e.get('shape', '-')}: {e.get('wall_s', '-')} s, {e.get('s_per_step', '-')} s/step "
        f"(no compile), peak {e.get('peak_gb', '-')} GB"
    )
    emit(result, table_row=row, append=not args.no_append)


if __name__ == "__main__":
    main()
