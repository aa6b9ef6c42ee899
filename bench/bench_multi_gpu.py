#!/usr/bin/env python3
"""Benchmark: one shot on 1 GPU vs N GPUs (CFG-parallel by default; target 2 GPUs <= 0.6x the 1-GPU time).

    python bench/bench_multi_gpu.py [--size 1.3b|14b] [--frames 81] [--height 576] [--width 1024] [--steps 30]
                                    [--parallel cfg|ulysses|cfg+ulysses] [--gpus 2] [--no-append]
    python bench/bench_multi_gpu.py --tiny --device cpu --no-append      # smoke run of this script (gloo)

Builds the released transformer shape with random weights (bf16) and a Wan2.1-shaped VAE (random, float32,
bf16 decode) on every GPU, random text embeddings (no T5), and times the same 1-chunk shot with the default
3-pass guidance: first on cuda:0 in this process, then through ``ParallelGroup`` (one process per GPU, as the
server runs it). Each side gets a 2-step warm-up first. Reports wall seconds per chunk (VAE encode, all steps,
VAE decode), median seconds per step, the ratio, and the largest uint8 difference between the two outputs
(bf16: the parallel run splits the pass batch, so rounding differs slightly). Prints one JSON line and
appends a line to docs/benchmarks.md.

Needs >= 2 GPUs; not run in the development session that wrote it (no multi-GPU machine was lent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from render_server.parallel.config import parse_parallel  # noqa: E402
from render_server.parallel.launch import ParallelGroup, TinyPipelineFactory  # noqa: E402
from render_server.pipeline.types import PromptEmbeddings, ShotInputs  # noqa: E402

TARGET_RATIO = 0.6
TEXT_LENGTH = 512


@dataclass(frozen=True)
class RandomPipelineFactory:
    """Released-shape transformer with seeded random weights + a random Wan2.1-shaped VAE, on ``device``
    (``size="tiny"``: the tiny test pipeline)."""

    size: str = "1.3b"
    seed: int = 0

    def __call__(self, device: str):
        from diffusers import AutoencoderKLWan

        if self.size == "tiny":  # --tiny: the same factory class, so a smoke run checks the spawn pickling too
            return TinyPipelineFactory(seed=self.seed)(device)

        from render_server.models.configs import RELEASED_CONFIGS
        from render_server.models.transformer_one_to_all import OneToAllTransformer
        from render_server.pipeline.pipeline import OneToAllPipeline

        cuda = device.startswith("cuda")
        dtype = torch.bfloat16 if cuda else torch.float32
        torch.manual_seed(self.seed)  # the same weights on every rank
        default = torch.get_default_dtype()
        try:
            # Parameters are created in bf16 on the device (the 14B never exists in float32); the RoPE
            # tables are computed in an explicit float dtype and stay exact.
            torch.set_default_dtype(dtype)
            with torch.device(device):
                transformer = OneToAllTransformer(**RELEASED_CONFIGS[self.size]).eval()
        finally:
            torch.set_default_dtype(default)
        with torch.device(device):
            vae = AutoencoderKLWan().eval()  # diffusers' defaults are the Wan2.1 VAE shape, float32
        return OneToAllPipeline(transformer, vae, None, model_size=self.size,
                                vae_decode_dtype=torch.bfloat16 if cuda else None)


def make_shot(frames: int, height: int, width: int, steps: int, text_dim: int, seed: int = 0) -> ShotInputs:
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    embeds = [torch.randn(1, TEXT_LENGTH, text_dim, generator=generator) * 0.1 for _ in range(2)]
    return ShotInputs(
        reference_image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
        mask=None,
        seed=seed,
        steps=steps,
        max_chunk_frames=81,
        prompt_embeds=PromptEmbeddings(positive=embeds[0], negative=embeds[1]),
    )


def _timed(run) -> tuple[np.ndarray, float, list[float]]:
    stamps: list[float] = []
    start = time.perf_counter()
    video = run(lambda _progress: stamps.append(time.perf_counter()))
    total = time.perf_counter() - start
    steps = [b - a for a, b in zip([start] + stamps[:-1], stamps)][1:]  # drop step 0 (includes the VAE encode)
    return video, total, steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("1.3b", "14b"), default="1.3b")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--parallel", choices=("cfg", "ulysses", "cfg+ulysses"), default="cfg")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--device", default="cuda", help="cuda (GPUs 0..N-1) or cpu (gloo smoke run with --tiny)")
    parser.add_argument("--tiny", action="store_true", help="the tiny model (checks this script on a CPU)")
    parser.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = parser.parse_args()

    if args.device == "cuda":
        if torch.cuda.device_count() < args.gpus:
            print(f"bench_multi_gpu: needs {args.gpus} GPUs, {torch.cuda.device_count()} visible", file=sys.stderr)
            return 2
        devices = [f"cuda:{i}" for i in range(args.gpus)]
    else:
        devices = ["cpu"] * args.gpus
        torch.set_num_threads(1)
    factory = RandomPipelineFactory("tiny" if args.tiny else args.size)
    config = parse_parallel(args.parallel, args.gpus)
    text_dim = 32 if args.tiny else 4096
    shot = make_shot(args.frames, args.height, args.width, args.steps, text_dim)
    warmup = make_shot(args.frames, args.height, args.width, 2, text_dim)

    # 1 GPU, in this process.
    single = factory(devices[0])
    single.generate(warmup)
    _sync(devices[0])
    one, one_total, one_steps = _timed(lambda on_step: _sync_after(single.generate(shot, on_step=on_step), devices[0]))
    passes = list(single.prepare(shot).guidance.pass_names)
    peak_one = torch.cuda.max_memory_allocated(devices[0]) if devices[0].startswith("cuda") else 0
    del single
    if devices[0].startswith("cuda"):
        torch.cuda.empty_cache()

    # N GPUs, one process each (the server's way).
    with ParallelGroup.start(factory, devices, config) as group:
        group.generate(warmup)
        many, many_total, many_steps = _timed(lambda on_step: group.generate(shot, on_step=on_step))

    ratio = many_total / one_total
    result = {
        "benchmark": "multi_gpu",
        "date": dt.date.today().isoformat(),
        "mode": args.parallel,
        "gpus": args.gpus,
        "device": torch.cuda.get_device_name(0) if devices[0].startswith("cuda") else platform.processor() or "cpu",
        "model": "tiny" if args.tiny else args.size,
        "shape": {"frames": args.frames, "height": args.height, "width": args.width, "steps": args.steps},
        "passes": passes,
        "seconds_1gpu": round(one_total, 3),
        f"seconds_{args.gpus}gpu": round(many_total, 3),
        "step_s_1gpu": round(statistics.median(one_steps), 4) if one_steps else None,
        f"step_s_{args.gpus}gpu": round(statistics.median(many_steps), 4) if many_steps else None,
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "max_uint8_diff": int(np.abs(one.astype(np.int16) - many.astype(np.int16)).max()),
        "peak_gb_1gpu": round(peak_one / 1e9, 2),
        "torch": torch.__version__,
        "diffusers": __import__("diffusers").__version__,
    }
    print(json.dumps(result))
    if not args.no_append:
        line = (
            f"\n- multi-GPU one shot ({result['date']}, `bench/bench_multi_gpu.py`): {result['model']}, "
            f"{args.frames} frames {args.height}x{args.width}, {args.steps} steps, {len(passes)}-pass guidance, "
            f"{args.parallel} on {args.gpus}x {result['device']}: **{many_total:.1f} s vs {one_total:.1f} s on 1 GPU "
            f"= {ratio:.2f}x** (target <= {TARGET_RATIO}x), max uint8 diff {result['max_uint8_diff']}, "
            f"torch {result['torch']}, diffusers {result['diffusers']}\n"
        )
        with open(REPO_ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as f:
            f.write(line)
    return 0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def _sync_after(video: np.ndarray, device: str) -> np.ndarray:
    _sync(device)
    return video


if __name__ == "__main__":
    sys.exit(main())
