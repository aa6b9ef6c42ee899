#!/usr/bin/env python3
"""GPU benchmark: eager reference path (a) against the optimised pipeline (b), side by side in one run.

    python bench/bench_pipeline_speed.py --model 1.3b [--steps 3] [--frames 81] [--height 576 --width 1024]
        [--chunk 1] [--approx fp8] [--offload-cap-gb 48] [--skip-eager] [--no-append]

Builds the real 1.3B / 14B shapes with random weights on the GPU (meta skeleton, weights drawn on the device),
a random-weight ``AutoencoderKLWan`` of the real Wan2.1 config, random prompt embeddings given directly.

(a) eager: every guidance pass is its own full forward (PyTorch SDPA, its own kernel choice), passes one after
    another, float32 VAE decode (``bench/_common.eager_reference_chunk``).
(b) optimised: ``OneToAllPipeline.run_chunk`` after ``accelerate(AccelerationOptions.exact())``: all passes as
    one batch, pose tokens once per chunk, reference features once per step per distinct reference, cuDNN
    attention (FA3 where installed), compiled blocks, bf16 VAE decode.

A chunk is the whole pipeline: VAE encode of the overlap frames (token-replace chunk), all steps, VAE decode;
``prepare_s`` (reference/mask encode) is per shot and reported apart. Only ``--steps`` steps run; 30-step chunk
times are EXTRAPOLATED from the measured per-step time and say so. Prints one JSON line and appends a row
to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import (  # noqa: E402
    EventClock,
    build_transformer,
    build_vae,
    compare,
    eager_reference_chunk,
    emit,
    environment,
    kernel_shares,
    make_shot,
    peak_gb,
    timed,
)

from render_server.models.configs import RELEASED_CONFIGS  # noqa: E402
from render_server.models.tiny import TINY_TRANSFORMER_CONFIG, build_tiny_vae  # noqa: E402
from render_server.pipeline.acceleration import AccelerationOptions, CompileWatch, accelerate  # noqa: E402
from render_server.pipeline.chunking import plan_chunks  # noqa: E402
from render_server.pipeline.pipeline import OneToAllPipeline  # noqa: E402

FULL_STEPS = 30


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(RELEASED_CONFIGS), default="1.3b")
    p.add_argument("--frames", type=int, default=81, help="chunk length (4k+1)")
    p.add_argument("--height", type=int, default=576)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3, help="steps actually run (>= 2 for a per-step time)")
    p.add_argument("--chunk", type=int, choices=(0, 1), default=1, help="1 = token-replace chunk (overlap encode)")
    p.add_argument("--approx", default="", help="comma list of approximate modes to time and diff: fp8")
    p.add_argument("--skip-eager", action="store_true", help="no eager reference (no output diff)")
    p.add_argument("--profile", action="store_true", help="kernel time shares of one optimised step")
    p.add_argument("--offload-cap-gb", type=float, default=0.0, help="also run one step with block offload under this cap")
    p.add_argument("--offload-modes", default="block,leaf", help="offload modes tried under --offload-cap-gb")
    p.add_argument("--compile-mode", default=None)
    p.add_argument("--tiny", action="store_true", help="CPU smoke run with the tiny model (no numbers worth keeping)")
    p.add_argument("--no-append", action="store_true")
    return p.parse_args()


def dump(result: dict) -> None:
    """Partial results as they come (a later crash or timeout keeps them): $OUT/partial.json when set."""
    import json
    import os

    out = os.environ.get("OUT")
    if out:
        Path(out, f"partial_{result['model']}.json").write_text(json.dumps(result, default=str, indent=1))


def step_marks(clock: EventClock):
    return lambda progress: clock.mark()


def main() -> None:
    args = parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    config = dict(TINY_TRANSFORMER_CONFIG if args.tiny else RELEASED_CONFIGS[args.model])
    result: dict = {"bench": "pipeline_speed", "model": args.model, **environment()}
    shape = {"frames": args.frames, "height": args.height, "width": args.width, "steps_run": args.steps}
    result["shape"] = shape

    t0 = time.perf_counter()
    transformer = build_transformer(config, device, dtype, seed=0)
    vae = build_tiny_vae(0) if args.tiny else build_vae(device)
    pipe = OneToAllPipeline(transformer, vae, None, model_size=args.model)
    result["build_s"] = round(time.perf_counter() - t0, 1)
    result["weights_gb"] = peak_gb(reset=True)

    overlap = 5
    num_frames = args.frames if args.chunk == 0 else 2 * args.frames - overlap
    shot = make_shot(num_frames, args.height, args.width, args.steps, config["text_dim"], max_chunk_frames=args.frames)
    prepared, result["prepare_s"] = timed(lambda: pipe.prepare(shot))
    chunk = prepared.chunks[args.chunk]
    assert chunk.num_frames == args.frames, chunk
    rng = np.random.default_rng(1)
    previous = (
        rng.integers(0, 256, (len(chunk.prev_frame_indices), args.height, args.width, 3), dtype=np.uint8)
        if chunk.token_replace
        else None
    )
    noise = pipe.chunk_noise(prepared, chunk.index)
    passes = prepared.guidance.num_passes
    result["passes"] = passes
    tokens = (chunk.latent_frames + 1) * (args.height // 16) * (args.width // 16)
    result["tokens_per_pass"] = tokens

    # (a) eager reference ------------------------------------------------------------------------
    eager = None
    if not args.skip_eager:
        accelerate(pipe, AccelerationOptions.eager())
        clock = EventClock()
        peak_gb(reset=True)
        (lat_a, frames_a), wall_a = timed(
            lambda: eager_reference_chunk(pipe, prepared, chunk.index, previous, noise, on_pass=clock.mark)
        )
        pass_times = clock.intervals()
        per_pass = statistics.median(pass_times) if pass_times else float("nan")
        per_step = per_pass * passes
        eager = {
            "chunk_s_measured": round(wall_a, 2),
            "s_per_pass": round(per_pass, 3),
            "s_per_step": round(per_step, 3),
            "chunk_s_30_steps_extrapolated": round(wall_a + (FULL_STEPS - args.steps) * per_step, 1),
            "peak_gb": peak_gb(reset=True),
        }
        result["eager"] = eager
        print("eager:", eager, flush=True)
        dump(result)

    # (b) optimised --------------------------------------------------------------------------------
    options = AccelerationOptions.exact(compile_mode=args.compile_mode)
    if args.tiny:
        options = replace(options, compile_backend="eager", vae_decode_dtype=None)
    report = accelerate(pipe, options)
    result["acceleration"] = report.as_dict()
    warm_shot = replace(shot, steps=1)
    warm_prepared = pipe.prepare(warm_shot)
    try:
        _, warm_s = timed(lambda: pipe.run_chunk(warm_prepared, chunk.index, previous_frames=previous))
    except torch.OutOfMemoryError:
        # All passes in one batch do not fit: one pass per transformer call (same result, less memory).
        gc.collect()
        torch.cuda.empty_cache()
        options = replace(options, pass_batch_size=1)
        pipe.pass_batch_size = 1
        result["acceleration"]["pass_batch_size"] = 1
        _, warm_s = timed(lambda: pipe.run_chunk(warm_prepared, chunk.index, previous_frames=previous))
    result["warmup_compile_s"] = round(warm_s, 1)
    fast, fast_result = run_timed_chunk(pipe, prepared, chunk, previous, noise, args.steps, passes)
    result["optimised"] = fast
    _, result["prepare_s_optimised"] = timed(lambda: pipe.prepare(shot))
    print("optimised:", fast, flush=True)
    dump(result)
    if eager is not None:
        result["diff_optimised_vs_eager"] = {
            "latents": compare(fast_result.latents, lat_a),
            "frames": compare(fast_result.frames, frames_a),
        }
        result["speedup_per_step"] = round(eager["s_per_step"] / fast["s_per_step"], 2)
        result["speedup_chunk_30"] = round(
            eager["chunk_s_30_steps_extrapolated"] / fast["chunk_s_30_steps_extrapolated"], 2
        )

    if args.profile:
        try:
            result["kernel_shares_step"] = profile_step(pipe, prepared, chunk, noise)
            share = result["kernel_shares_step"]["shares"].get("attention", 0.0)
            result["long_shot_300_vs_81"] = long_shot_ratio(fast, share, args.frames)
        except Exception as error:  # a profiler failure must not lose the timings above
            result["kernel_shares_step"] = {"error": repr(error)[:300]}
        print("profile:", result["kernel_shares_step"], result.get("long_shot_300_vs_81"), flush=True)
        dump(result)

    # approximate modes ----------------------------------------------------------------------------
    for mode in [m for m in args.approx.split(",") if m]:
        if mode != "fp8":
            raise SystemExit(f"unknown --approx mode {mode!r}")
        try:
            result[f"approx_{mode}"] = approx_run(pipe, options, warm_prepared, prepared, chunk, previous, noise, args,
                                                   passes, fast_result, lat_a if eager else None, frames_a if eager else None)
        except Exception as error:
            result[f"approx_{mode}"] = {"error": repr(error)[:300]}
        print(mode, result[f"approx_{mode}"], flush=True)
        continue

    if args.offload_cap_gb:
        del pipe, transformer, fast_result
        gc.collect()
        torch._dynamo.reset()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        for mode in args.offload_modes.split(","):
            try:
                result[f"offload_{mode}"] = offload_run(config, vae, shot, chunk, previous, noise, args, mode)
            except Exception as error:
                result[f"offload_{mode}"] = {"error": repr(error)[:300]}
            print(f"offload {mode}:", result[f"offload_{mode}"], flush=True)
            gc.collect()
            torch.cuda.empty_cache()

    row = table_row(result)
    emit(result, table_row=row, append=not args.no_append)


def approx_run(pipe, options, warm_prepared, prepared, chunk, previous, noise, args, passes, fast_result, lat_a, frames_a):
    """FP8 linears on top of the exact setup (the compiled blocks recompile once for the new modules)."""
    report = accelerate(pipe, replace(options, fp8_linears=True, compile_blocks=False))  # blocks stay compiled
    _, warm = timed(lambda: pipe.run_chunk(warm_prepared, chunk.index, previous_frames=previous))
    approx, approx_result = run_timed_chunk(pipe, prepared, chunk, previous, noise, args.steps, passes)
    approx["fp8_linears"] = report.fp8_linears
    approx["warmup_s"] = warm
    if lat_a is not None:
        approx["diff_vs_eager"] = {"latents": compare(approx_result.latents, lat_a), "frames": compare(approx_result.frames, frames_a)}
    approx["diff_vs_exact"] = {
        "latents": compare(approx_result.latents, fast_result.latents),
        "frames": compare(approx_result.frames, fast_result.frames),
    }
    return approx


def run_timed_chunk(pipe, prepared, chunk, previous, noise, steps, passes):
    clock = EventClock()
    peak_gb(reset=True)
    with CompileWatch() as watch:
        out, wall = timed(
            lambda: pipe.run_chunk(prepared, chunk.index, previous_frames=previous, noise=noise, on_step=step_marks(clock))
        )
    step_times = clock.intervals()
    per_step = statistics.median(step_times) if step_times else float("nan")
    return (
        {
            "chunk_s_measured": round(wall, 2),
            "s_per_step": round(per_step, 3),
            "s_per_pass_equiv": round(per_step / passes, 3),
            "chunk_s_30_steps_extrapolated": round(wall + (FULL_STEPS - steps) * per_step, 1),
            "peak_gb": peak_gb(reset=True),
            "recompiles_in_timed_chunk": watch.new_graphs,
        },
        out,
    )


def profile_step(pipe, prepared, chunk, noise) -> dict:
    """Kernel time shares of one optimised step: the guidance passes as one batch through the public model API
    (reference features for the distinct references, cached pose tokens), after a warm-up call."""
    from render_server.pipeline.vae import uint8_to_unit

    model, device, dtype = pipe.transformer, pipe.device, pipe.dtype
    shot, passes = prepared.shot, prepared.guidance.passes
    video = uint8_to_unit(shot.pose_frames[chunk.pose_frame_indices(shot.num_frames)]).to(device, dtype)
    image_pose = prepared.image_pose.to(device, dtype)
    refs = {"reference": prepared.image_latents.to(device, dtype), "black": prepared.black_image_latents.to(device, dtype)}
    texts = {"positive": prepared.prompt_embeds, "negative": prepared.negative_prompt_embeds}
    with torch.no_grad():
        pose_tokens = torch.cat([
            model.encode_pose(
                image_pose if p.reference_pose == "pose" else torch.full_like(image_pose, -1.0),
                video if p.pose_video == "pose" else torch.full_like(video, -1.0),
            )
            for p in passes
        ])
    unique = list(dict.fromkeys(p.reference for p in passes))
    n = len(passes)
    t = prepared.schedule.timesteps[0].to(device)
    hidden = noise.to(device, dtype).expand(n, -1, -1, -1, -1)
    scale = torch.tensor([p.conditioning_scale for p in passes], device=device, dtype=dtype)

    def step():
        with torch.no_grad():
            features = model.compute_reference_features(torch.cat([refs[r] for r in unique]), t.expand(len(unique)))
            features = features.select([unique.index(p.reference) for p in passes])
            model(
                hidden_states=hidden,
                timestep=t.expand(n),
                encoder_hidden_states=torch.cat([texts[p.text] for p in passes]),
                image_latents=torch.cat([refs[p.reference] for p in passes]),
                conditioning_scale=scale,
                token_replace=chunk.token_replace,
                return_dict=False,
                pose_tokens=pose_tokens,
                reference_features=features,
            )

    step()
    return kernel_shares(step)


def long_shot_ratio(fast: dict, attention_share: float, chunk_frames: int) -> dict:
    """Cost per delivered frame of a 300-frame shot over an 81-frame shot (default plan), from the measured
    per-step time scaled by the FLOP model (linear part ~ tokens, attention part ~ tokens^2) per chunk length,
    plus the measured non-step chunk time (overlap encode + decode, scaled by frames)."""
    per_step = fast["s_per_step"]
    overhead = max(fast["chunk_s_30_steps_extrapolated"] - FULL_STEPS * per_step, 0.0)
    base_latent = (chunk_frames - 1) // 4 + 1

    def chunk_cost(frames: int) -> float:
        r = (((frames - 1) // 4 + 1) + 1) / (base_latent + 1)
        return FULL_STEPS * per_step * ((1 - attention_share) * r + attention_share * r * r) + overhead * frames / chunk_frames

    long_plan = plan_chunks(300, "default", max_chunk_frames=chunk_frames)
    long_cost = sum(chunk_cost(c.num_frames) for c in long_plan) / 300
    short_cost = chunk_cost(chunk_frames) / chunk_frames
    return {
        "plan_300": [c.num_frames for c in long_plan],
        "ratio_per_delivered_frame": round(long_cost / short_cost, 3),
        "method": "model: measured per-step time x FLOP scaling per chunk length + measured encode/decode",
    }


def offload_run(config, vae, shot, chunk, previous, noise, args, mode: str) -> dict:
    """Two steps of the same chunk with group offload ``mode``, under a memory cap (a smaller card)."""
    total = torch.cuda.get_device_properties(0).total_memory / 2**30
    torch.cuda.set_per_process_memory_fraction(1.0)
    transformer = build_transformer(config, torch.device("cuda"), torch.bfloat16, seed=0)
    pipe = OneToAllPipeline(transformer, vae, None, model_size=args.model)
    _, move_s = timed(lambda: accelerate(
        pipe, AccelerationOptions(attention_backend="auto", offload=mode, vae_decode_dtype=torch.bfloat16)
    ))
    del transformer
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, args.offload_cap_gb / total))
    prepared = pipe.prepare(replace(shot, steps=2))
    peak_gb(reset=True)
    clock = EventClock()
    try:
        _, wall = timed(
            lambda: pipe.run_chunk(prepared, chunk.index, previous_frames=previous, noise=noise, on_step=step_marks(clock))
        )
    except torch.OutOfMemoryError as error:
        return {"cap_gb": args.offload_cap_gb, "fits": False, "error": str(error)[:200]}
    steps = clock.intervals()
    del pipe
    torch.cuda.set_per_process_memory_fraction(1.0)
    return {
        "cap_gb": args.offload_cap_gb,
        "offload_setup_s": move_s,
        "fits": True,
        "chunk_s_measured_2_steps": round(wall, 1),
        "s_per_step": round(steps[0], 2) if steps else None,
        "peak_gb": peak_gb(reset=True),
        "mode": f"{mode} offload, no compile, cuDNN attention",
    }


def table_row(r: dict) -> str:
    """One bullet for docs/benchmarks.md (the full JSON follows it as a comment)."""
    e = r.get("eager") or {}
    o = r["optimised"]
    diff = r.get("diff_optimised_vs_eager", {})
    shares = r.get("kernel_shares_step", {}).get("shares", {})
    parts = [
        f"- pipeline speed ({r['date']}, `bench/bench_pipeline_speed.py`, {r['device']}, torch {r['torch']}, "
        f"diffusers {r['diffusers']}): {r['model']} random weights bf16, {r['shape']['frames']} frames "
        f"{r['shape']['height']}x{r['shape']['width']} ({r['tokens_per_pass']} tokens/pass), {r['passes']}-pass guidance, "
        f"{r['shape']['steps_run']} steps run, 30-step chunk times *extrapolated* from the per-step time"
    ]
    if e:
        parts.append(
            f"(a) eager: {e['s_per_pass']} s/pass, {e['s_per_step']} s/step, {e['chunk_s_30_steps_extrapolated']} s/chunk, "
            f"peak {e['peak_gb']} GB"
        )
    parts.append(
        f"(b) optimised ({r['acceleration']['attention_backend']}, compiled blocks, passes batched, bf16 decode): "
        f"**{o['s_per_pass_equiv']} s/pass**, {o['s_per_step']} s/step, **{o['chunk_s_30_steps_extrapolated']} s/chunk**, "
        f"peak **{o['peak_gb']} GB**, {o['recompiles_in_timed_chunk']} recompiles in the timed chunk"
    )
    if diff:
        parts.append(
            f"(b) vs (a): latents rel L2 {diff['latents']['rel_l2']:.3f}, frames {diff['frames']['mean_abs_grey']} grey mean "
            f"(PSNR {diff['frames']['psnr_db']} dB)"
        )
    if shares:
        parts.append("kernel time " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items() if v >= 0.005))
    if "long_shot_300_vs_81" in r:
        parts.append(f"300-frame shot per delivered frame {r['long_shot_300_vs_81']['ratio_per_delivered_frame']}x (model)")
    fp8 = r.get("approx_fp8", {})
    if "s_per_step" in fp8:
        d = fp8.get("diff_vs_exact", {}).get("frames", {})
        parts.append(
            f"FP8 linears (approximate): {fp8['s_per_step']} s/step, {fp8['chunk_s_30_steps_extrapolated']} s/chunk, "
            f"peak {fp8['peak_gb']} GB, frames vs exact {d.get('mean_abs_grey')} grey (PSNR {d.get('psnr_db')} dB)"
        )
    for mode in ("block", "leaf"):
        off = r.get(f"offload_{mode}", {})
        if off.get("fits"):
            parts.append(f"{mode} offload under a {off['cap_gb']:.0f} GB cap: {off['s_per_step']} s/step, peak {off['peak_gb']} GB")
    return "; ".join(parts)


if __name__ == "__main__":
    main()
