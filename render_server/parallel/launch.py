"""Run one shot on N local GPUs: one process per GPU, the calling (server) process owns the job.

``ParallelGroup.start(factory, devices, config)`` spawns one rank process per device. Each rank builds its
own pipeline with ``factory(device)`` (weights are loaded once per GPU), joins a ``torch.distributed``
group (NCCL on GPUs, gloo on CPUs; rendezvous through a file, so no port can clash) and waits for commands.
The group has the segment-level API of ``OneToAllPipeline`` (``prepare`` / ``generate_chunk`` /
``generate``), so the job worker drives it like a single-GPU pipeline:

* ``prepare(shot)`` validates on the server side (``ValueError`` naming the field before any GPU work),
  sends the shot to every rank, and returns a ``RemoteShot`` (its chunk plan, computed in pure Python);
  rank 0 encodes the prompt (from its text cache) and shares the embeddings, so other ranks never load T5;
* ``generate_chunk(...)`` runs the chunk on all ranks in lockstep; progress comes from rank 0; cancellation
  sets an event that rank 0 reads before every step and all ranks agree on (``Cancelled`` as usual);
* a rank whose guidance passes raise (out of memory, say) makes every rank leave the chunk at the same
  exchange: the call raises (``torch.OutOfMemoryError`` or ``ParallelRankError`` naming the rank) and the
  group goes on. Any other failure, a rank that dies (noticed within ``POLL_S``) or a hung collective (ended
  after ``config.timeout_s``) closes the group (its ranks may be out of step): later calls raise; start a
  new group to go on.

The server process itself imports no CUDA context: a crashed GPU process cannot take the gRPC server down.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import logging
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..pipeline.chunking import generate_shot
from .config import ParallelConfig

logger = logging.getLogger(__name__)

POLL_S = 0.1  # how often the server checks rank liveness while it waits
DEATH_SETTLE_S = 0.5  # after a rank's failure report, time for a dead peer's exit to become visible
PARENT_CHECK_S = 1.0  # an idle rank checks this often whether the server process still exists
STOP_GRACE_S = 10.0
PipelineFactory = Callable[[str], Any]  # device -> OneToAllPipeline; must be picklable (spawned processes)


class ParallelRankError(RuntimeError):
    """A rank of a parallel group failed or died; the group is closed."""


# ------------------------------------------------------------------------------------------------------
# Process-group set-up (used by the rank processes and by tests that spawn their own ranks)
# ------------------------------------------------------------------------------------------------------


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def init_rank(rank: int, world_size: int, rendezvous: str | Path, device: str, timeout_s: float) -> None:
    """Join the group: set the CUDA device first (NCCL binds to it), rendezvous through ``rendezvous`` (a file)."""
    import torch
    import torch.distributed as dist

    if str(device).startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group(
        backend_for(device),
        init_method=f"file://{Path(rendezvous).resolve()}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )


def spawn_ranks(
    target: Callable[..., None], args: Sequence[Any], devices: Sequence[str], timeout_s: float, workdir: str | Path
) -> list[mp.Process]:
    """Start ``len(devices)`` processes running ``target(rank, device, *args)`` inside an initialised group."""
    context = mp.get_context("spawn")
    rendezvous = Path(workdir) / "rendezvous"
    processes = []
    for rank, device in enumerate(devices):
        process = context.Process(
            target=_rank_entry,
            args=(rank, len(devices), str(rendezvous), device, timeout_s, target, tuple(args)),
            name=f"o2a-rank{rank}",
            daemon=True,
        )
        process.start()
        processes.append(process)
    return processes


def _rank_entry(rank, world_size, rendezvous, device, timeout_s, target, args) -> None:
    import torch.distributed as dist

    init_rank(rank, world_size, rendezvous, device, timeout_s)
    try:
        target(rank, device, *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------------
# What a rank runs
# ------------------------------------------------------------------------------------------------------


def make_parallel_pipeline(pipeline: Any, config: ParallelConfig) -> Any:
    """Turn a rank's plain pipeline into its parallel form for ``config.mode`` (inside an initialised group)."""
    from .cfg_parallel import CfgParallel, CfgParallelPipeline

    if config.mode == "cfg":
        return CfgParallelPipeline.from_pipeline(pipeline, CfgParallel())
    if config.mode in ("ulysses", "cfg+ulysses"):
        from .context_parallel import make_context_parallel_pipeline

        return make_context_parallel_pipeline(pipeline, config)
    raise ValueError(f"parallel mode {config.mode!r} runs no group")


def _serve(rank: int, device: str, factory: PipelineFactory, config: ParallelConfig, commands, results, cancel) -> None:
    """A rank's loop: build the pipeline, then run every command the server broadcasts, in order; leave
    on "stop", after a failure that may have put the ranks out of step, or when the server process is gone."""
    import torch

    from ..pipeline.types import Cancelled
    from .cfg_parallel import CfgParallel, RankFailedError, failed_in_step

    leader = rank == 0
    commands = commands[rank]
    try:
        pipeline = make_parallel_pipeline(factory(device), config)
        votes = CfgParallel()
    except Exception as exc:
        results.put(("fatal", rank, type(exc).__name__, str(exc), traceback.format_exc()))
        return
    results.put(("ready", rank, pipeline.model_size))
    prepared: dict[int, Any] = {}
    frames_block: shared_memory.SharedMemory | None = None
    parent = os.getppid()
    while True:
        try:
            command = commands.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if os.getppid() != parent:  # the server died without stopping us: free the GPU
                return
            continue
        kind = command[0]
        if kind == "stop":
            return
        try:
            if kind == "prepare":
                _, shot_id, shot, (shm_name, shape) = command
                prepared.clear()  # one shot at a time: the worker runs a job to its end before the next
                frames_block = _attach(frames_block, shm_name)
                shot = dataclasses.replace(shot, pose_frames=np.ndarray(shape, np.uint8, buffer=frames_block.buf))
                shot = _share_prompt_embeds(pipeline, shot, votes, leader)
                prepared[shot_id] = pipeline.prepare(shot)
                if leader:
                    results.put(("prepared", shot_id))
            elif kind == "chunk":
                _, shot_id, chunk_index, previous = command
                frames = pipeline.generate_chunk(
                    prepared[shot_id],
                    chunk_index,
                    previous_frames=previous,
                    on_step=(lambda progress: results.put(("step", progress))) if leader else None,
                    should_cancel=cancel.is_set if leader else None,
                )
                if leader:
                    results.put(("frames", frames))
            else:
                raise ValueError(f"unknown command {kind!r}")
        except Cancelled as exc:  # every rank stops at the same step (agreed cancel vote)
            if leader:
                results.put(("cancelled", exc.chunk_index, exc.step_index))
        except ValueError as exc:  # input errors: the same on every rank, the group stays in step
            if leader:
                results.put(("invalid", str(exc)))
        except Exception as exc:
            if failed_in_step(exc):  # every rank left at the same exchange: report, and go on serving
                if leader:
                    failures = exc.failures if isinstance(exc, RankFailedError) else ((rank, type(exc).__name__, str(exc)),)
                    results.put(("failed", tuple(failures)))
                continue
            # Otherwise the group may be out of step: report and leave.
            oom = isinstance(exc, torch.OutOfMemoryError)
            results.put(("fatal", rank, "OutOfMemoryError" if oom else type(exc).__name__, str(exc), traceback.format_exc()))
            return


def _attach(previous: shared_memory.SharedMemory | None, name: str) -> shared_memory.SharedMemory:
    """Map the server's pose-frame block ``name``; unmap the previous shot's (its views are gone by now)."""
    if previous is not None:
        gc.collect()  # drop the last views of the old block, or close() refuses
        try:
            previous.close()
        except BufferError:
            pass  # still viewed somewhere: unmapped when that view dies
    # Spawned ranks share the server's resource tracker, so attaching registers nothing new: the server
    # unlinks the block, and the tracker does if the server dies first.
    return shared_memory.SharedMemory(name=name)


def _release(block: shared_memory.SharedMemory | None) -> None:
    if block is None:
        return
    block.close()
    try:
        block.unlink()
    except FileNotFoundError:
        pass


def _share_prompt_embeds(pipeline: Any, shot: Any, votes: Any, leader: bool) -> Any:
    """Rank 0 encodes the prompts (text cache, T5 on a miss) and sends the embeddings to the other ranks."""
    import torch.distributed as dist

    from ..pipeline.types import PromptEmbeddings

    if shot.prompt_embeds is not None or pipeline.text is None:
        return shot
    payload, failure = [None], None
    if leader:
        try:
            positive, negative = pipeline.text([shot.prompt, shot.negative_prompt])
            payload = [(positive.cpu(), negative.cpu())]
        except Exception as exc:
            failure = exc
    votes.check(failure, "prompt encoding")
    dist.broadcast_object_list(payload, src=0)
    positive, negative = payload[0]
    return dataclasses.replace(shot, prompt_embeds=PromptEmbeddings(positive=positive, negative=negative))


# ------------------------------------------------------------------------------------------------------
# The server's side
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteShot:
    """A shot prepared on every rank of a group (stands in for ``PreparedShot`` on the server side)."""

    shot_id: int
    shot: Any = dataclasses.field(repr=False)
    chunks: list

    @property
    def num_chunks(self) -> int:
        return len(self.chunks)


class ParallelGroup:
    """N rank processes running one shot together; the pipeline API of a single ``OneToAllPipeline``."""

    def __init__(self, processes, commands, results, cancel, workdir: str, config: ParallelConfig, devices) -> None:
        self._processes = processes
        self._commands = commands
        self._results = results
        self._cancel = cancel
        self._workdir = workdir
        self.config = config
        self.devices = tuple(devices)
        self.model_size: str | None = None
        self._shot_ids = itertools.count()
        self._shm: shared_memory.SharedMemory | None = None  # the current shot's pose frames
        self._closed = False

    @classmethod
    def start(cls, factory: PipelineFactory, devices: Sequence[str], config: ParallelConfig) -> "ParallelGroup":
        """Spawn the ranks and wait until every one has built its pipeline (``ParallelRankError`` if one fails)."""
        devices = list(devices)
        if len(devices) != config.gpus:
            raise ValueError(f"--gpus {config.gpus} needs {config.gpus} devices, got {devices}")
        gpus = [d for d in devices if d.startswith("cuda")]
        if len(set(gpus)) != len(gpus):
            raise ValueError(f"GPU devices must be distinct, got {devices}")
        if not config.enabled:
            raise ValueError("ParallelGroup needs --parallel cfg, ulysses or cfg+ulysses")
        context = mp.get_context("spawn")
        commands = [context.Queue() for _ in devices]
        results = context.Queue()
        cancel = context.Event()
        workdir = tempfile.mkdtemp(prefix="o2a-parallel-")
        processes = spawn_ranks(_serve, (factory, config, commands, results, cancel), devices, config.timeout_s, workdir)
        group = cls(processes, commands, results, cancel, workdir, config, devices)
        ready: dict[int, str] = {}
        try:
            while len(ready) < len(devices):
                message = group._next()
                if message[0] == "ready":
                    ready[message[1]] = message[2]
                else:
                    group._unexpected(message)
        except BaseException:
            group.close()
            raise
        group.model_size = ready[0]
        logger.info("parallel group ready", extra={"mode": config.mode, "devices": devices})
        return group

    # -- the pipeline API ------------------------------------------------------------------------------------------

    def prepare(self, shot: Any) -> RemoteShot:
        from ..pipeline.types import shot_plan, validate_shot

        self._check_open()
        validate_shot(shot)  # the field-naming ValueError before anything is sent
        shot_id = next(self._shot_ids)
        # The pose frames go through shared memory: one copy for all ranks instead of one pickle per rank.
        frames = np.ascontiguousarray(shot.pose_frames)
        shm = shared_memory.SharedMemory(create=True, size=max(1, frames.nbytes))
        np.ndarray(frames.shape, frames.dtype, buffer=shm.buf)[...] = frames
        previous, self._shm = self._shm, shm
        try:
            self._broadcast(("prepare", shot_id, dataclasses.replace(shot, pose_frames=None), (shm.name, frames.shape)))
            message = self._next()
        finally:
            # Every rank has attached the new block once rank 0 answers (prepare exchanges data with all).
            _release(previous)
        if message[0] == "invalid":
            raise ValueError(message[1])
        if message[0] != "prepared" or message[1] != shot_id:
            self._unexpected(message)
        return RemoteShot(shot_id, shot, shot_plan(shot))

    def generate_chunk(
        self,
        prepared: RemoteShot,
        chunk: Any,
        chunk_index: int | None = None,
        previous_frames: np.ndarray | None = None,
        *,
        on_step: Callable[[Any], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """One chunk on all ranks -> its delivered uint8 frames (as ``OneToAllPipeline.generate_chunk``)."""
        from ..pipeline.types import Cancelled

        self._check_open()
        index = chunk if isinstance(chunk, int) else chunk.index
        if chunk_index is not None and chunk_index != index:
            raise ValueError(f"chunk_index {chunk_index} does not match chunk {index}")
        self._cancel.clear()
        self._broadcast(("chunk", prepared.shot_id, index, previous_frames))
        while True:
            if should_cancel is not None and should_cancel():
                self._cancel.set()
            message = self._next(poll=should_cancel is not None)
            if message is None:
                continue
            if message[0] == "step":
                if on_step is not None:
                    on_step(message[1])
            elif message[0] == "frames":
                return message[1]
            elif message[0] == "cancelled":
                raise Cancelled(message[1], message[2])
            elif message[0] == "invalid":
                raise ValueError(message[1])
            elif message[0] == "failed":
                self._raise_failed(message[1])
            else:
                self._unexpected(message)

    def generate(self, shot: Any, *, on_step=None, should_cancel=None) -> np.ndarray:
        return generate_shot(self, shot, on_step=on_step, should_cancel=should_cancel)

    @property
    def closed(self) -> bool:
        """True once the group was closed, by the owner or by itself after a rank died or hung."""
        return self._closed

    def close(self) -> None:
        """Stop the ranks (gracefully, then by force after ``STOP_GRACE_S``) and remove the rendezvous folder."""
        if self._closed:
            return
        self._closed = True
        _release(self._shm)
        self._shm = None
        for commands in self._commands:
            try:
                commands.put(("stop",))
            except (OSError, ValueError):
                pass
        # One grace period for the whole group (a rank stuck in a collective never reads "stop").
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self._processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(STOP_GRACE_S)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "ParallelGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ParallelRankError("this parallel group is closed (a rank failed or close() was called); start a new one")

    def _broadcast(self, command: tuple) -> None:
        for commands in self._commands:
            commands.put(command)

    def _next(self, poll: bool = False) -> tuple | None:
        """The next message from the ranks; raises ``ParallelRankError`` when a rank dies. With ``poll``,
        returns None after ``POLL_S`` so the caller can look at its cancel flag."""
        while True:
            try:
                return self._results.get(timeout=POLL_S)
            except queue.Empty:
                pass
            dead = [(r, p.exitcode) for r, p in enumerate(self._processes) if p.exitcode is not None]
            if dead:
                # A fatal report may still be in flight: prefer it over the bare exit code.
                try:
                    message = self._results.get(timeout=1.0)
                except queue.Empty:
                    message = None
                if message is not None and message[0] == "fatal":
                    self._unexpected(message)
                self.close()
                detail = "; ".join(f"rank {r} ({self.devices[r]}) died with exit code {code}" for r, code in dead)
                raise ParallelRankError(detail)
            if poll:
                return None

    def _raise_failed(self, failures: Sequence[tuple[int, str, str]]) -> None:
        """A failure every rank voted on: the group stays open (e.g. the next, smaller shot runs)."""
        detail = "; ".join(f"rank {r} ({self.devices[r]}): {kind}: {text}" for r, kind, text in failures)
        if any(kind == "OutOfMemoryError" for _, kind, _ in failures):
            import torch

            raise torch.OutOfMemoryError(detail)
        raise ParallelRankError(detail)

    def _unexpected(self, message: tuple) -> None:
        """Close the group and raise for a fatal report (or a message that breaks the protocol)."""
        if message[0] != "fatal":
            self.close()
            raise ParallelRankError(f"parallel group: unexpected message {message[0]!r}")
        _, rank, kind, text, trace = message
        logger.error("parallel rank failed", extra={"rank": rank, "error": kind, "traceback": trace})
        # A rank that died makes its peers fail in the collective ("connection reset"): name the dead one first.
        time.sleep(DEATH_SETTLE_S)
        dead = [f"rank {r} ({self.devices[r]}) died with exit code {p.exitcode}"
                for r, p in enumerate(self._processes) if p.exitcode not in (None, 0)]
        self.close()
        if kind == "OutOfMemoryError" and not dead:
            import torch

            raise torch.OutOfMemoryError(f"rank {rank} ({self.devices[rank]}): {text}")
        raise ParallelRankError("; ".join(dead + [f"rank {rank} ({self.devices[rank]}) failed: {kind}: {text}"]))


# ------------------------------------------------------------------------------------------------------
# Picklable pipeline factories
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TinyPipelineFactory:
    """The tiny random-weight pipeline (tests, CPU demo); the same weights on every rank (from ``seed``)."""

    seed: int = 0
    text_cache_dir: str | None = None
    threads: int | None = 1  # CPU ranks share the cores: one thread each unless told otherwise

    def __call__(self, device: str) -> Any:
        import torch

        from ..models.tiny import TINY_TEXT_MAX_LENGTH, build_tiny_text_encoder, build_tiny_transformer, build_tiny_vae
        from ..pipeline.pipeline import OneToAllPipeline
        from ..pipeline.text import T5PromptEncoder, TextEmbeddingCache

        if self.threads is not None and not str(device).startswith("cuda"):
            torch.set_num_threads(self.threads)
        text = None
        if self.text_cache_dir is not None:
            bundle = build_tiny_text_encoder(seed=self.seed)
            encoder = T5PromptEncoder.from_modules(bundle.tokenizer, bundle.text_encoder, max_length=TINY_TEXT_MAX_LENGTH)
            text = TextEmbeddingCache(self.text_cache_dir, encoder).get
        return OneToAllPipeline(
            build_tiny_transformer(seed=self.seed).to(device), build_tiny_vae(seed=self.seed).to(device), text,
            model_size="1.3b",
        )


@dataclass(frozen=True)
class CheckpointPipelineFactory:
    """``load_pipeline(checkpoint, wan, device=...)`` on each rank (bfloat16 on CUDA, float32 on CPU)."""

    checkpoint: str
    wan: str
    text_cache_dir: str | None = None
    vae_decode_bf16: bool = True

    def __call__(self, device: str) -> Any:
        import torch

        from ..pipeline.loading import load_pipeline

        cuda = str(device).startswith("cuda")
        return load_pipeline(
            self.checkpoint, self.wan, device=device, dtype=torch.bfloat16 if cuda else torch.float32,
            text_cache_dir=self.text_cache_dir, vae_decode_dtype=torch.bfloat16 if (cuda and self.vae_decode_bf16) else None,
        )


def pipeline_factory(
    model: str,
    *,
    checkpoint: str | Path | None = None,
    wan: str | Path | None = None,
    text_cache_dir: str | Path | None = None,
    tiny_seed: int = 0,
) -> PipelineFactory:
    """The factory for the server's ``--model tiny`` or ``--checkpoint DIR --wan DIR``."""
    cache = str(text_cache_dir) if text_cache_dir is not None else None
    if model == "tiny":
        return TinyPipelineFactory(seed=tiny_seed, text_cache_dir=cache, threads=None)
    if model == "one-to-all":
        if checkpoint is None or wan is None:
            raise ValueError("the One-to-All model needs --checkpoint DIR and --wan DIR")
        return CheckpointPipelineFactory(str(checkpoint), str(wan), cache)
    raise ValueError(f"model must be 'tiny' or 'one-to-all', got {model!r}")


def start_group(factory: PipelineFactory, devices: Sequence[str], config: ParallelConfig) -> ParallelGroup:
    """What the server calls for ``--parallel MODE --gpus N``: ``devices`` = the N devices of one gang."""
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a hung NCCL collective aborts after the timeout
    return ParallelGroup.start(factory, devices, config)
