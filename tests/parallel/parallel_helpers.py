"""Shot builder, picklable factories and rank targets for the parallel tests.

Spawned rank processes import this module by name: the tests put this folder on ``sys.path`` (spawn hands
the parent's ``sys.path`` to the children).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from render_server.parallel.launch import TinyPipelineFactory
from render_server.pipeline.types import ShotInputs

SIZE = 32
POISON_WIDTH_PX = 48  # a shot this wide makes the failing factory's rank misbehave (``how``)
OOM_WIDTH_PX = 64  # a shot this wide makes it raise torch.OutOfMemoryError
STEPS = 3


def make_shot(num_frames: int = 17, **overrides) -> ShotInputs:
    """17 frames at 32x32 -> two chunks (13 + 9 frames, 5 shared: the second one token-replaces)."""
    rng = np.random.default_rng(7)
    width = overrides.pop("width", SIZE)
    fields = dict(
        reference_image=rng.integers(0, 256, (SIZE, width, 3), dtype=np.uint8),
        reference_pose=rng.integers(0, 256, (SIZE, width, 3), dtype=np.uint8),
        pose_frames=rng.integers(0, 256, (num_frames, SIZE, width, 3), dtype=np.uint8),
        mask=(rng.random((SIZE, width)) > 0.7).astype(np.uint8) * 255,
        seed=3,
        steps=STEPS,
        max_chunk_frames=13,
    )
    fields.update(overrides)
    return ShotInputs(**fields)


@dataclass(frozen=True)
class FailingFactory:
    """The tiny pipeline, whose transformer on ``fail_rank`` raises (``how="raise"``) or kills its process
    (``how="exit"``) on its second call for a shot ``POISON_WIDTH_PX`` wide, and raises an out-of-memory
    error on the second call for a shot ``OOM_WIDTH_PX`` wide; other shots run normally."""

    text_cache_dir: str
    fail_rank: int = 1
    how: str = "raise"

    def __call__(self, device: str):
        import torch.distributed as dist

        pipeline = TinyPipelineFactory(seed=0, text_cache_dir=self.text_cache_dir)(device)
        calls = {POISON_WIDTH_PX: 0, OOM_WIDTH_PX: 0}
        rank = dist.get_rank()

        def hook(module, args, kwargs):
            width = kwargs.get("hidden_states", args[0] if args else None).shape[-1] * 8
            if rank != self.fail_rank or width not in calls:
                return
            calls[width] += 1
            if calls[width] == 2 and width == OOM_WIDTH_PX:
                raise torch.OutOfMemoryError("injected: CUDA out of memory")
            if calls[width] == 2:
                if self.how == "exit":
                    os._exit(3)
                raise RuntimeError("injected failure in the transformer")

        pipeline.transformer.register_forward_pre_hook(hook, with_kwargs=True)
        return pipeline


def cfg_worker(rank: int, device: str, outdir: str, text_cache_dir: str) -> None:
    """Inside a 2-rank gloo group: CFG-parallel latents of a 2-chunk 3-pass shot and a 2-pass chunk, then a
    cancel asked by rank 1 only, then a failure injected on rank 1, then Ulysses-2 latents of the 2-chunk
    shot, then a stalled rank 1 under a short collective timeout. Writes ``rank{r}.pt`` and ``rank{r}.json``."""
    from render_server.parallel.cfg_parallel import CfgParallel, CfgParallelPipeline, RankFailedError
    from render_server.pipeline.types import Cancelled

    base = TinyPipelineFactory(seed=0, text_cache_dir=text_cache_dir)(device)
    pipeline = CfgParallelPipeline.from_pipeline(base, CfgParallel())
    tensors, report = {}, {}
    shot = make_shot()
    prepared = pipeline.prepare(shot)
    first = pipeline.run_chunk(prepared, 0)
    second = pipeline.run_chunk(prepared, 1, previous_frames=_previous(first, prepared))
    two_pass = pipeline.prepare(make_shot(image_guidance_scale=2.0, pose_guidance_scale=1.0))
    tensors.update(three_pass_0=first.latents, three_pass_1=second.latents, two_pass_0=pipeline.run_chunk(two_pass, 0).latents)

    steps_seen = []
    try:
        pipeline.run_chunk(prepared, 0, on_step=lambda p: steps_seen.append(p.step_index),
                           should_cancel=(lambda: len(steps_seen) >= 1) if rank == 1 else None)
    except Cancelled as exc:
        report["cancelled_at"] = [exc.chunk_index, exc.step_index]

    def fail(module, args, kwargs):
        if rank == 1:
            raise RuntimeError("injected failure")

    handle = pipeline.transformer.register_forward_pre_hook(fail, with_kwargs=True)
    try:
        pipeline.run_chunk(prepared, 0)
    except RankFailedError as exc:
        report["error"] = ["RankFailedError", str(exc)]
    except RuntimeError as exc:
        report["error"] = ["RuntimeError", str(exc)]
    handle.remove()

    # The same group again, now as Ulysses degree 2 on a fresh copy of the model (the failure above left
    # every rank at the same point, so the group goes on).
    ulysses = _ulysses_run(device, text_cache_dir, "ulysses", 2)
    tensors.update({f"ulysses_{k}": v for k, v in ulysses.items() if k != "seen"})
    report["ulysses_seen"] = ulysses["seen"]
    report["hang"] = _hang_run(rank, base, prepared)
    torch.save(tensors, Path(outdir) / f"rank{rank}.pt")
    (Path(outdir) / f"rank{rank}.json").write_text(json.dumps(report))


def _previous(result, prepared) -> np.ndarray:
    chunk = prepared.chunks[1]
    offset = prepared.chunks[0].start
    return result.frames[[i - offset for i in chunk.prev_frame_indices]]


def ulysses_worker(rank: int, device: str, outdir: str, text_cache_dir: str, mode: str, gpus: int) -> None:
    """Inside a ``gpus``-rank gloo group: ``_ulysses_run`` -> ``rank{r}.pt``."""
    torch.save(_ulysses_run(device, text_cache_dir, mode, gpus), Path(outdir) / f"rank{rank}.pt")


def _ulysses_run(device: str, text_cache_dir: str, mode: str, gpus: int) -> dict:
    """``mode`` (ulysses / cfg+ulysses) latents of the 2-chunk 3-pass shot, plus the sequence length that main
    block 1 and control block 0 saw (the whole sequence is 20 tokens)."""
    from render_server.parallel.config import parse_parallel
    from render_server.parallel.context_parallel import make_context_parallel_pipeline

    base = TinyPipelineFactory(seed=0, text_cache_dir=text_cache_dir)(device)
    pipeline = make_context_parallel_pipeline(base, parse_parallel(mode, gpus))
    seen = {}

    def record(name):
        def hook(module, args, kwargs):
            seen.setdefault(name, int(args[0].shape[1]))

        return hook

    pipeline.transformer.blocks[1].register_forward_pre_hook(record("main"), with_kwargs=True)
    pipeline.transformer.controlnet.blocks[0].register_forward_pre_hook(record("control"), with_kwargs=True)
    prepared = pipeline.prepare(make_shot())
    first = pipeline.run_chunk(prepared, 0)
    second = pipeline.run_chunk(prepared, 1, previous_frames=_previous(first, prepared))
    return {"three_pass_0": first.latents, "three_pass_1": second.latents, "seen": seen}


HANG_TIMEOUT_S = 3.0


def _hang_run(rank: int, pipeline, prepared) -> list | None:
    """Rank 1 stalls (alive, but not joining the exchange) for 2.5x the timeout of a fresh group: rank 0 must
    get an error after about the timeout. Returns [error type, seconds until it came] (or None)."""
    import time
    from datetime import timedelta

    import torch.distributed as dist

    from render_server.parallel.cfg_parallel import CfgParallel, CfgParallelPipeline

    group = dist.new_group(backend="gloo", timeout=timedelta(seconds=HANG_TIMEOUT_S))
    stalled = CfgParallelPipeline.from_pipeline(pipeline, CfgParallel(group))

    def stall(module, args, kwargs):
        if rank == 1:
            time.sleep(2.5 * HANG_TIMEOUT_S)

    handle = pipeline.transformer.register_forward_pre_hook(stall, with_kwargs=True)
    started = time.monotonic()
    outcome = None
    try:
        stalled.run_chunk(prepared, 0)
    except Exception as exc:  # noqa: BLE001 - the type is the result
        outcome = [type(exc).__name__, round(time.monotonic() - started, 1)]
    handle.remove()
    return outcome
