"""CFG-parallel sampling: the guidance passes of every step spread over ranks (one GPU each).

Every rank runs the same pipeline call on the same inputs in lockstep. At each step rank r runs only the
passes ``assign_passes`` gave it (as one transformer batch, like the single-GPU pipeline), then one
all-gather hands every rank every pass's velocity, and each rank combines them and takes the same Euler
step, so the latents stay identical without a broadcast per step. Communication per step: one all-gather
of ``max passes per rank`` velocity tensors (16 x F x h x w each: ~3 M values at 81 frames, 576x1024) plus
two 4-byte collectives (failure flags and the cancel vote).

Kept identical across ranks on purpose:

* VAE encodes (reference, mask, black image, overlap frames): rank 0's result is broadcast, because a
  convolution may pick a different kernel on another device and differ in the last bits;
* cancellation: every rank votes each step, any "yes" stops all ranks before the same step;
* failures: a rank whose passes raise still joins the all-gather with a failure flag, so the other
  ranks raise ``RankFailedError`` naming it at once instead of waiting for the collective timeout.

``CfgParallelPipeline`` is a ``OneToAllPipeline`` that does this; with one rank it is the plain pipeline.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..pipeline.guidance import Guidance, GuidancePass
from ..pipeline.chunking import Chunk
from ..pipeline.pipeline import ChunkResult, OneToAllPipeline, PreparedShot, _PassBatch

logger = logging.getLogger(__name__)

# Cost of one reference-extractor run relative to one main pass (it runs R blocks on a 1-frame sequence
# instead of L blocks on F+1 frames): small, only used to break ties between equally large groups.
REFERENCE_COST = 0.05


class RankFailedError(RuntimeError):
    """Another rank of a parallel group failed; the message names the rank and its error.

    ``failures`` = ``(rank, error type name, message)`` of every rank that failed at that exchange;
    ``in_step``: the vote spanned every rank of the job, so all of them left at the same point.
    """

    def __init__(self, message: str, failures: Sequence[tuple[int, str, str]] = (), in_step: bool = False) -> None:
        super().__init__(message)
        self.failures = tuple(failures)
        self.in_step = in_step


def failed_in_step(exc: BaseException) -> bool:
    """True when ``exc`` went through a failure vote of every rank of the job: all of them left at the same
    exchange, so the group can run the next command (an out-of-memory chunk does not end it). Not so with
    Ulysses: its peers wait inside the attention exchange, which has no vote."""
    if isinstance(exc, RankFailedError):
        return exc.in_step
    return getattr(exc, "_o2a_in_step", False)


def assign_passes(passes: Sequence[GuidancePass], world_size: int) -> tuple[tuple[GuidancePass, ...], ...]:
    """Split guidance passes over ``world_size`` ranks: group r runs on rank r (possibly empty).

    Minimises the slowest rank (passes per rank, then distinct reference latents, since passes that share
    a reference share its extractor features), then the total work, then prefers the pass order. For the
    default 3-pass guidance on 2 ranks this gives ``[cond]`` and ``[uncond, ref_uncond]`` (both black
    reference). Pure and deterministic: every rank computes the same assignment.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    passes = tuple(passes)
    if not passes:
        raise ValueError("passes must not be empty")

    def cost(group: Sequence[GuidancePass]) -> float:
        return len(group) + REFERENCE_COST * len({p.reference for p in group}) if group else 0.0

    if world_size >= len(passes):  # one pass per rank is optimal; the rest idle
        return tuple((p,) for p in passes) + ((),) * (world_size - len(passes))
    best_key, best = None, None
    # Fewer ranks than passes (<= 5 passes): exhaustive search over at most 4^5 assignments, once per chunk.
    for owners in itertools.product(range(world_size), repeat=len(passes)):
        groups = [tuple(p for p, o in zip(passes, owners) if o == r) for r in range(world_size)]
        # Canonical rank order (by first pass) so equivalent relabellings compare equal.
        ordered = sorted(groups, key=lambda g: (not g, passes.index(g[0]) if g else 0))
        costs = [cost(g) for g in ordered]
        key = (max(costs), sum(costs), [[passes.index(p) for p in g] for g in ordered])
        if best_key is None or key < best_key:
            best_key, best = key, tuple(ordered)
    assert best is not None
    return best


@dataclass
class CfgParallel:
    """The collectives of one CFG-parallel group (a ``torch.distributed`` process group, None = the default).

    Passes are split and gathered within ``group``; VAE encodes and cancel votes are shared over the whole
    default group (with ``cfg+ulysses`` that also spans the Ulysses ranks). Collective tensors live on
    ``comm_device``: the CPU for gloo, the rank's current GPU for NCCL.
    """

    group: dist.ProcessGroup | None = None

    def __post_init__(self) -> None:
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError("CFG parallelism needs torch.distributed initialised (see render_server.parallel.launch)")
        self.rank = dist.get_rank(self.group)
        self.world_size = dist.get_world_size(self.group)
        backend = dist.get_backend(self.group)
        self.comm_device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def local_passes(self, passes: tuple[GuidancePass, ...]) -> tuple[GuidancePass, ...]:
        return assign_passes(passes, self.world_size)[self.rank]

    def _check_all_ok(self, failure: BaseException | None, what: str, device: torch.device) -> None:
        """Collective: raise on every rank if any rank failed (the failing rank re-raises its own error)."""
        flag = torch.tensor([0 if failure is None else 1], dtype=torch.int32, device=device)
        flags = [torch.zeros_like(flag) for _ in range(self.world_size)]
        dist.all_gather(flags, flag, group=self.group)
        failed = [r for r, f in enumerate(torch.cat(flags).tolist()) if f]
        if not failed:
            return
        mine = None if failure is None else (self.rank, type(failure).__name__, str(failure))
        reports: list[tuple[int, str, str] | None] = [None] * self.world_size
        dist.all_gather_object(reports, mine, group=self.group)
        in_step = self.world_size == dist.get_world_size()  # a CFG subgroup (cfg+ulysses) is not the job
        if failure is not None:
            try:
                failure._o2a_in_step = in_step  # type: ignore[attr-defined]
            except AttributeError:  # an exception type without a __dict__: reported as out of step
                pass
            raise failure
        failures = [report for report in reports if report is not None]
        detail = "; ".join(f"rank {r}: {kind}: {text}" for r, kind, text in failures)
        raise RankFailedError(f"CFG-parallel {what} failed on {detail}", failures, in_step)

    def gather(
        self,
        compute: Callable[[], dict[str, torch.Tensor]],
        groups: tuple[tuple[GuidancePass, ...], ...],
        *,
        like: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Run ``compute`` (this rank's passes, ``groups[rank]``; ``groups`` = ``assign_passes(...)``) and
        return every pass's prediction (shape, dtype and device of ``like``) on every rank."""
        mine = groups[self.rank]
        device = self.comm_device
        failure: BaseException | None = None
        local: dict[str, torch.Tensor] = {}
        try:
            local = compute()
            if set(local) != {p.name for p in mine}:
                raise RuntimeError(f"rank {self.rank} computed {sorted(local)}, expected {[p.name for p in mine]}")
        except Exception as exc:  # forwarded to every rank below, then re-raised here
            failure = exc
        self._check_all_ok(failure, f"guidance passes {[[p.name for p in g] for g in groups]}", device)

        width = max(len(g) for g in groups)
        send = torch.zeros((width, *like.shape[1:]), dtype=like.dtype, device=device)
        for i, p in enumerate(mine):
            send[i] = local[p.name][0].to(device)
        received = [torch.empty_like(send) for _ in range(self.world_size)]
        dist.all_gather(received, send, group=self.group)
        return {
            p.name: received[r][i : i + 1].to(like.device) for r, group in enumerate(groups) for i, p in enumerate(group)
        }

    def agree_cancel(self, requested: bool) -> bool:
        vote = torch.tensor([1 if requested else 0], dtype=torch.int32, device=self.comm_device)
        dist.all_reduce(vote, op=dist.ReduceOp.MAX)
        return bool(vote.item())

    def same_everywhere(self, tensor: torch.Tensor) -> torch.Tensor:
        """Global rank 0's ``tensor`` on every rank (same shape and dtype everywhere)."""
        buffer = tensor.detach().to(self.comm_device).contiguous().clone()
        dist.broadcast(buffer, src=0)
        return buffer.to(tensor.device)

    def check(self, failure: BaseException | None, what: str) -> None:
        """Collective failure vote for work a caller runs on every rank (raises everywhere if any rank failed)."""
        self._check_all_ok(failure, what, self.comm_device)


@dataclass
class _GatheredBatches:
    """What ``CfgParallelPipeline.build_pass_batches`` returns in place of the pipeline's batches: this rank's
    batches, run and exchanged by one ``run_pass_batch`` call per step."""

    local: list[_PassBatch]
    groups: tuple[tuple[GuidancePass, ...], ...]  # assign_passes(...): the passes of every rank


class _SyncedCodec:
    """``LatentCodec`` whose encodes return rank 0's latents on every rank (decode stays local)."""

    def __init__(self, codec, parallel: CfgParallel) -> None:
        self._codec = codec
        self._parallel = parallel

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._parallel.same_everywhere(self._codec.encode(pixels))

    def __getattr__(self, name: str):
        return getattr(self._codec, name)


class CfgParallelPipeline(OneToAllPipeline):
    """``OneToAllPipeline`` whose guidance passes run spread over the ranks of ``parallel``.

    Every rank calls ``prepare`` / ``run_chunk`` / ``generate_chunk`` / ``generate`` with the same
    arguments (``render_server.parallel.launch`` does that); ``should_cancel`` and ``on_step`` may be given on
    rank 0 only. Results are identical on every rank.
    """

    parallel: CfgParallel

    @classmethod
    def from_pipeline(cls, pipeline: OneToAllPipeline, parallel: CfgParallel) -> "CfgParallelPipeline":
        """Share ``pipeline``'s modules and settings (no copy of any weight)."""
        if isinstance(pipeline, CfgParallelPipeline):
            raise TypeError("pipeline is already CFG-parallel")
        obj = cls.__new__(cls)
        obj.__dict__.update(pipeline.__dict__)
        obj.parallel = parallel
        obj.codec = _SyncedCodec(pipeline.codec, parallel)
        return obj

    def run_chunk(
        self,
        prepared: PreparedShot,
        chunk: Chunk | int,
        chunk_index: int | None = None,
        previous_frames: np.ndarray | None = None,
        *,
        on_step=None,
        should_cancel=None,
        noise: torch.Tensor | None = None,
    ) -> ChunkResult:
        # The pipeline asks should_cancel once before every step: make that a vote of all ranks.
        def agreed_cancel() -> bool:
            return self.parallel.agree_cancel(bool(should_cancel is not None and should_cancel()))

        return super().run_chunk(
            prepared, chunk, chunk_index, previous_frames, on_step=on_step, should_cancel=agreed_cancel, noise=noise
        )

    def build_pass_batches(self, prepared: PreparedShot, pose_video: torch.Tensor, *args, **kwargs) -> list:
        groups = assign_passes(prepared.guidance.passes, self.parallel.world_size)
        mine = groups[self.parallel.rank]
        local: list[_PassBatch] = []
        if mine:
            # The pipeline batches the guidance's passes: hand it a guidance made of this rank's passes only.
            subset = Guidance(f"{prepared.guidance.name}[rank {self.parallel.rank}]", mine, base=mine[0].name)
            local_prepared = _replace_guidance(prepared, subset)
            local = super().build_pass_batches(local_prepared, pose_video, *args, **kwargs)
        return [_GatheredBatches(local, groups)]

    def run_pass_batch(self, batch, latents: torch.Tensor, *args, **kwargs) -> dict[str, torch.Tensor]:
        # The step arguments after the latents (timestep or schedule + step, token_replace) pass through
        # untouched, so this override follows the pipeline's own signature.
        if not isinstance(batch, _GatheredBatches):
            return super().run_pass_batch(batch, latents, *args, **kwargs)

        def compute() -> dict[str, torch.Tensor]:
            predictions: dict[str, torch.Tensor] = {}
            for part in batch.local:
                predictions.update(super(CfgParallelPipeline, self).run_pass_batch(part, latents, *args, **kwargs))
            return predictions

        like = torch.empty(latents.shape, device=self.device, dtype=self.dtype)
        return self.parallel.gather(compute, batch.groups, like=like)


def _replace_guidance(prepared: PreparedShot, guidance: Guidance) -> PreparedShot:
    return dataclasses.replace(prepared, guidance=guidance)
