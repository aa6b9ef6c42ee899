"""Chunk plans for long shots (pure Python, no torch).

A shot of N pose frames is generated as a sequence of chunks of at most 81 frames. Every chunk after the
first starts on 5 frames that an earlier chunk already produced: those frames are re-encoded by the VAE to
2 clean latent frames that stay pinned during sampling ("token replace"), which chains the chunks.

Two plans:

* ``"official"``: ``build_split_plan`` of the official ``inference_1.3b.py`` / ``inference_14b.py``,
  verbatim, with its overwrite stitching (a later chunk overwrites every frame it shares with an earlier one).
  The official function always emits at least two chunks, the first of 81 frames, and its plans are unusable
  below 81 frames (negative starts, slices shorter than the chunk), so ``plan_chunks(n, "official")``
  refuses ``n < 81``; ``official_split_plan`` returns the raw ranges for any ``n`` for comparison.
* ``"default"``: the fewest chunks that cover the shot, balanced lengths of the form 4k+1 (the Wan VAE's
  causal frame grouping), consecutive chunks overlapping by exactly the 5 token-replace frames, any length
  from 1 frame up. A length that is not 4k+1 is padded by at most 3 frames at the very end (the last pose
  frame held); those frames are generated and dropped. Stitching is keep-earlier: every frame is delivered
  by the first chunk that generates it, so a delivered frame never changes afterwards (see docs/pipeline.md).

An explicit plan (a sequence of ``(start, end)`` ranges) is also accepted, with overwrite stitching like the
official driver applies to whatever plan it gets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

MAIN_CHUNK = 81
OVERLAP_FRAMES = 5
FINAL_CHUNK_CANDIDATES = (65, 69, 73, 77, 81)
VAE_TEMPORAL_FACTOR = 4

PlanName = Literal["default", "official"]
Stitching = Literal["overwrite", "keep_earlier"]


@dataclass(frozen=True)
class Chunk:
    """One generation call of a shot.

    ``start``/``end`` are global frame indices (end exclusive) of the pose frames the chunk generates; ``end``
    may exceed the shot length for the default plan's padded tail (pose frame ``num_frames - 1`` is repeated
    there). ``write_start``/``write_end`` are the global indices this chunk delivers into the final video
    (always within the shot). ``prev_frame_indices`` are the already delivered frames that are re-encoded and
    pinned (token replace); empty for a chunk that starts from noise only.
    """

    index: int
    start: int
    end: int
    write_start: int
    write_end: int
    prev_frame_indices: tuple[int, ...] = ()

    @property
    def num_frames(self) -> int:
        return self.end - self.start

    @property
    def latent_frames(self) -> int:
        return (self.num_frames - 1) // VAE_TEMPORAL_FACTOR + 1

    @property
    def token_replace(self) -> bool:
        return bool(self.prev_frame_indices)

    @property
    def pinned_latent_frames(self) -> int:
        """Latent frames the re-encoded previous frames occupy (5 frames -> 2 latent frames)."""
        if not self.prev_frame_indices:
            return 0
        return (len(self.prev_frame_indices) - 1) // VAE_TEMPORAL_FACTOR + 1

    def pose_frame_indices(self, shot_frames: int) -> list[int]:
        """Indices into the shot's pose frames for every frame of this chunk (tail padding repeats the last)."""
        return [min(i, shot_frames - 1) for i in range(self.start, self.end)]


def official_split_plan(total_len: int) -> list[tuple[int, int]]:
    """``build_split_plan(total_len)`` of the official inference scripts, verbatim (quirks included).

    The official code initialises the final start to -1 and treats -1 as "no candidate found", so a total of
    64 (whose first candidate gives -1) falls back to ``start + 76``; other totals below 65 give negative
    starts. Below 81 frames every plan is unusable by the official driver.
    """
    if isinstance(total_len, bool) or not isinstance(total_len, int):
        raise TypeError(f"total_len must be an int, got {type(total_len).__name__}")
    plan: list[tuple[int, int]] = []
    start = 0
    while True:
        end = start + MAIN_CHUNK
        next_start = start + MAIN_CHUNK - OVERLAP_FRAMES
        if next_start + MAIN_CHUNK >= total_len:
            plan.append((start, end))
            final_start = -1
            for length in FINAL_CHUNK_CANDIDATES:
                if total_len - length < end - OVERLAP_FRAMES:
                    final_start = total_len - length
                    break
            if final_start == -1:  # official sentinel: a genuine -1 also counts as "not found"
                final_start = next_start
            plan.append((final_start, total_len))
            return plan
        plan.append((start, end))
        start = next_start


def plan_chunks(
    num_frames: int,
    plan: PlanName | Sequence[Sequence[int]] = "default",
    *,
    stitching: Stitching | None = None,
    max_chunk_frames: int = MAIN_CHUNK,
    overlap_frames: int = OVERLAP_FRAMES,
) -> list[Chunk]:
    """Split a shot of ``num_frames`` frames into chunks.

    ``plan`` is ``"default"``, ``"official"`` or explicit ``(start, end)`` ranges. ``stitching`` defaults to
    keep-earlier for the default plan and overwrite otherwise. ``max_chunk_frames`` / ``overlap_frames`` only
    apply to the default plan (the official plan has its constants built in). Raises ``ValueError`` naming the
    offending argument.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise ValueError(f"num_frames must be an int, got {num_frames!r}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if stitching is not None and stitching not in ("overwrite", "keep_earlier"):
        raise ValueError(f"stitching must be 'overwrite' or 'keep_earlier', got {stitching!r}")

    if isinstance(plan, str):
        if plan == "official":
            if num_frames < MAIN_CHUNK:
                raise ValueError(
                    f"num_frames: the official split plan needs at least {MAIN_CHUNK} frames (for {num_frames} "
                    f"it returns {official_split_plan(num_frames)}, which the official driver cannot run); "
                    "use plan='default'"
                )
            ranges = official_split_plan(num_frames)
            return _assemble(num_frames, ranges, stitching or "overwrite", OVERLAP_FRAMES)
        if plan == "default":
            ranges = _default_ranges(num_frames, max_chunk_frames, overlap_frames)
            return _assemble(num_frames, ranges, stitching or "keep_earlier", overlap_frames)
        raise ValueError(f"plan must be 'default', 'official' or a list of (start, end) ranges, got {plan!r}")

    ranges = _validate_explicit(num_frames, plan)
    return _assemble(num_frames, ranges, stitching or "overwrite", OVERLAP_FRAMES)


def plan_cost(chunks: Sequence[Chunk], num_frames: int) -> float:
    """Frames generated / frames delivered (1.0 = no frame generated twice or thrown away)."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return sum(chunk.num_frames for chunk in chunks) / num_frames


def _is_4k1(length: int) -> bool:
    if isinstance(length, bool) or not isinstance(length, int):
        return False
    return length >= 1 and (length - 1) % VAE_TEMPORAL_FACTOR == 0


def _default_ranges(num_frames: int, max_chunk_frames: int, overlap_frames: int) -> list[tuple[int, int]]:
    if not _is_4k1(max_chunk_frames):
        raise ValueError(f"max_chunk_frames must be of the form 4k+1, got {max_chunk_frames}")
    if not _is_4k1(overlap_frames) or overlap_frames < 1:
        raise ValueError(f"overlap_frames must be of the form 4k+1, got {overlap_frames}")
    max_latent = (max_chunk_frames - 1) // VAE_TEMPORAL_FACTOR + 1
    pinned = (overlap_frames - 1) // VAE_TEMPORAL_FACTOR + 1
    if max_latent <= pinned:
        raise ValueError(
            f"max_chunk_frames ({max_chunk_frames}) must be longer than overlap_frames ({overlap_frames})"
        )
    # Pad to the next 4k+1 length: the VAE groups frames as 1 + 4k.
    total_latent = (num_frames - 1 + VAE_TEMPORAL_FACTOR - 1) // VAE_TEMPORAL_FACTOR + 1
    if total_latent <= max_latent:
        counts = [total_latent]
    else:
        n = 1 + math.ceil((total_latent - max_latent) / (max_latent - pinned))
        # Sum of per-chunk latent frames; chunks share `pinned` latent frames with their predecessor.
        slots = total_latent + pinned * (n - 1)
        base, extra = divmod(slots, n)
        counts = [base + 1 if i < extra else base for i in range(n)]
    ranges: list[tuple[int, int]] = []
    start = 0
    for count in counts:
        length = (count - 1) * VAE_TEMPORAL_FACTOR + 1
        ranges.append((start, start + length))
        start = start + length - overlap_frames
    return ranges


def _validate_explicit(num_frames: int, plan: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    try:
        ranges = [(int(r[0]), int(r[1])) for r in plan]
        if any(len(r) != 2 for r in plan):
            raise TypeError
    except (TypeError, ValueError, IndexError):
        raise ValueError(f"plan must be a list of (start, end) pairs, got {plan!r}") from None
    if not ranges:
        raise ValueError("plan must contain at least one (start, end) range")
    covered = [False] * num_frames
    for i, (start, end) in enumerate(ranges):
        if start < 0 or end > num_frames or end <= start:
            raise ValueError(f"plan[{i}] = {(start, end)} must satisfy 0 <= start < end <= num_frames={num_frames}")
        if not _is_4k1(end - start):
            raise ValueError(f"plan[{i}] = {(start, end)} has {end - start} frames; chunk lengths must be 4k+1")
        for j in range(start, end):
            covered[j] = True
    if not all(covered):
        raise ValueError(f"plan does not cover frame {covered.index(False)} of {num_frames}")
    return ranges


def _assemble(
    num_frames: int, ranges: Sequence[tuple[int, int]], stitching: Stitching, overlap_frames: int
) -> list[Chunk]:
    chunks: list[Chunk] = []
    written: set[int] = set()
    delivered_end = 0
    for index, (start, end) in enumerate(ranges):
        # Token replace when the first `overlap_frames` frames already exist (the official driver's rule).
        prev = tuple(range(start, start + overlap_frames))
        use_prev = start > 0 and end - start > overlap_frames and all(i in written for i in prev)
        if stitching == "overwrite":
            write_start = start
        else:
            write_start = max(start, delivered_end)
        write_end = min(end, num_frames)
        chunks.append(
            Chunk(
                index=index,
                start=start,
                end=end,
                write_start=write_start,
                write_end=max(write_start, write_end),
                prev_frame_indices=prev if use_prev else (),
            )
        )
        written.update(range(start, write_end))
        delivered_end = max(delivered_end, write_end)
    return chunks


class ChunkRunner(Protocol):
    """What ``generate_shot`` drives: ``OneToAllPipeline`` and ``render_server.parallel.ParallelGroup``."""

    def prepare(self, shot: Any) -> Any: ...

    def generate_chunk(self, prepared: Any, chunk: Chunk, *, previous_frames: np.ndarray | None,
                       on_step: Callable[..., Any] | None, should_cancel: Callable[[], bool] | None) -> np.ndarray: ...


def generate_shot(
    runner: ChunkRunner,
    shot: Any,
    *,
    on_step: Callable[..., Any] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> np.ndarray:
    """The whole shot -> uint8 (N, H, W, 3): each chunk in plan order, fed the frames it re-encodes and pins."""
    prepared = runner.prepare(shot)
    video = np.zeros((shot.num_frames, shot.height, shot.width, 3), np.uint8)
    for chunk in prepared.chunks:
        previous = video[list(chunk.prev_frame_indices)] if chunk.token_replace else None
        video[chunk.write_start : chunk.write_end] = runner.generate_chunk(
            prepared, chunk, previous_frames=previous, on_step=on_step, should_cancel=should_cancel
        )
    return video
