"""The worker: one thread per device, the sole owner of its engine (and GPU). Runs jobs segment by segment.

For every segment (model call) of a job the worker:

1. skips it if the store says it finished before (a resumed job),
2. reads the token-replace frames it needs from the folders of the segments that delivered them,
3. renders it (the engine checks `should_cancel` before every denoising step),
4. writes its frames to its own folder, publishes the frames that no later segment can change, and records the
   segment as finished together with the FrameReady/Preview events in one store transaction.

A crash anywhere in that sequence leaves either an unrecorded segment (rendered again, same seed, same frames) or
a recorded one whose frames are all on disk. Only the top-level `_run` catches broadly: it turns any failure into
a FAILED job with an event and keeps the worker alive for the next job.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Protocol

from ..storage.assets import AssetStore
from ..storage.images import decode_png, decode_rgb, preview_jpeg
from ..storage.job_files import JobFiles, file_sha256, final_frames_after, latest_writer
from ..storage.video import encode_mp4
from .errors import InputError, OutOfDeviceMemory, RenderCancelled
from .queue import JobQueue
from .spec import JobError, JobRecord, JobState, OutputFileInfo

logger = logging.getLogger(__name__)

# Stored step events are rate limited (the last step of a segment is always stored): a watcher needs a
# progress bar, not thousands of rows per minute from a fast model.
_STEP_EVENT_MIN_INTERVAL_S = 0.25


class Metrics(Protocol):
    def observe_step(self, seconds: float) -> None: ...
    def observe_job(self, state: str, seconds: float) -> None: ...
    def set_device_memory(self, device: str, used_bytes: int) -> None: ...


class Worker(threading.Thread):
    """Takes jobs from the queue and renders them with `engine` (see render_server.engine.Engine)."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        engine: Any,
        assets: AssetStore,
        jobs_dir: Path,
        max_reference_pixels: int,
        metrics: Metrics | None = None,
        name: str = "worker",
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._queue = queue
        self._engine = engine
        self._assets = assets
        self._jobs_dir = Path(jobs_dir)
        self._max_reference_pixels = max_reference_pixels
        self._metrics = metrics
        self._stop_event = threading.Event()
        self.current_job: str | None = None

    def stop(self) -> None:
        """Stops after the current denoising step; the running job stays RUNNING and resumes on restart."""
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            record = self._queue.take_next(timeout_s=0.5)
            if record is None:
                continue
            self.current_job = record.job_id
            try:
                self._run(record)
            finally:
                self.current_job = None
                self._engine.release()

    # -- one job --------------------------------------------------------------------------------------------------

    def _run(self, record: JobRecord) -> None:
        job_id = record.job_id
        log = {"job_id": job_id, "worker": self.name}
        started = time.monotonic()
        try:
            logger.info("job started", extra={**log, "resume_count": record.resume_count})
            outputs = self._render(record)
        except RenderCancelled:
            if self._queue.cancel_requested(job_id):
                self._observe(JobState.CANCELLED, started)
                reason = self._queue.cancel_reason(job_id)
                self._queue.finish(job_id, JobState.CANCELLED, error=JobError("CANCELLED", reason))
                logger.info("job cancelled", extra=log)
            else:
                logger.info("job interrupted by shutdown; it resumes on restart", extra=log)
            return
        except OutOfDeviceMemory as exc:
            error = JobError(
                "RESOURCE_EXHAUSTED",
                f"out of device memory: {exc}",
                hint="lower the output size (width_px/height_px) or use a GPU with more memory; the server keeps "
                "serving other jobs",
                retryable=True,
            )
            self._fail(job_id, error, log, started)
            return
        except InputError as exc:
            self._fail(job_id, JobError("INVALID_ARGUMENT", str(exc), hint="fix the request and submit again"),
                       log, started)
            return
        except Exception as exc:  # top-level boundary: the job fails, the worker lives on
            logger.error("job failed", extra={**log, "traceback": traceback.format_exc()})
            self._fail(job_id, JobError("INTERNAL", f"{type(exc).__name__}: {exc}", retryable=True), log, started)
            return
        self._observe(JobState.SUCCEEDED, started)  # metrics first: a client seeing the end sees them too
        self._queue.finish(job_id, JobState.SUCCEEDED, output_files=outputs)
        logger.info("job succeeded", extra={**log, "seconds": round(time.monotonic() - started, 3)})

    def _fail(self, job_id: str, error: JobError, log: dict[str, Any], started: float) -> None:
        logger.warning("job failed", extra={**log, "code": error.code, "error": error.message})
        self._observe(JobState.FAILED, started)
        self._queue.finish(job_id, JobState.FAILED, error=error)

    def _observe(self, state: JobState, started: float) -> None:
        if self._metrics is not None:
            self._metrics.observe_job(state.value, time.monotonic() - started)

    def _render(self, record: JobRecord) -> list[OutputFileInfo]:
        job_id, spec = record.job_id, record.spec
        files = JobFiles(self._jobs_dir / job_id)
        reference = decode_rgb(self._assets.read(spec.reference_asset_id), max_pixels=self._max_reference_pixels)
        prepared = self._engine.prepare(
            spec, reference, files.read_reference_pose(), files.read_driving(), should_cancel=self._should_cancel(job_id)
        )
        chunks = prepared.chunks
        write_ranges = [(c.write_start, c.write_end) for c in chunks]
        if not files.pose_path(spec.frame_count - 1).exists():
            files.write_pose_frames(prepared.pose_frames)
            files.write_image("reference.png", prepared.reference_image)
            files.write_image("reference_pose.png", prepared.reference_pose)
            if prepared.mask is not None:
                files.write_image("mask.png", prepared.mask)

        done = self._queue.store.finished_segments(job_id)
        for segment in sorted(done):  # a crash may have hit between recording a segment and publishing it
            files.publish(segment, final_frames_after(segment, write_ranges))
        frames_done = sum(len(final_frames_after(s, write_ranges)) for s in done)
        progress = _Progress(len(chunks), spec.steps, len(done))

        for chunk in chunks:
            if chunk.index in done:
                continue
            previous = None
            if chunk.prev_frame_indices:
                import numpy as np  # local: the worker otherwise only passes arrays through

                previous = np.stack(
                    [files.read_segment_frame(latest_writer(f, chunk.index, write_ranges), f)
                     for f in chunk.prev_frame_indices]
                )
            frames = self._engine.render_chunk(
                prepared,
                chunk,
                previous,
                on_step=lambda info: self._on_step(job_id, info, progress),
                should_cancel=self._should_cancel(job_id),
            )
            files.write_segment(chunk.index, chunk.write_start, frames)
            final = final_frames_after(chunk.index, write_ranges)
            files.publish(chunk.index, final)
            frames_done += len(final)
            progress.segment_finished()
            events: list[tuple[str, dict[str, Any], bytes | None]] = []
            for first, count in _runs(final):
                events.append(("frames", {
                    "first_frame": first, "frame_count": count, "frames_done": frames_done,
                    "frames_total": spec.frame_count, "segment_index": chunk.index,
                }, None))
            middle = len(frames) // 2
            jpeg, w, h = preview_jpeg(frames[middle])
            events.append(("preview", {
                "width_px": w, "height_px": h, "frame_index": chunk.write_start + middle, "segment_index": chunk.index,
            }, jpeg))
            self._queue.emit(
                job_id,
                events,
                updates={"segments_done": len(done) + progress.segments_finished, "frames_done": frames_done,
                         "progress": progress.fraction, "eta_s": progress.eta_s},
                finished_segment=chunk.index,
            )
            if self._metrics is not None:
                self._metrics.set_device_memory(self._engine.device, self._engine.memory_bytes())

        return self._write_outputs(files, spec.frame_count, spec.fps)

    def _write_outputs(self, files: JobFiles, frame_count: int, fps: float) -> list[OutputFileInfo]:
        encode_mp4((decode_png(files.frame_path(i).read_bytes()) for i in range(frame_count)), fps,
                   files.root / "video.mp4")
        encode_mp4((decode_png(files.pose_path(i).read_bytes()) for i in range(frame_count)), fps,
                   files.root / "pose.mp4")
        files.drop_segments()
        outputs = []
        for name in ("video.mp4", "pose.mp4", "reference.png", "reference_pose.png", "mask.png"):
            path = files.root / name
            if path.exists():
                outputs.append(OutputFileInfo(name, path.stat().st_size, file_sha256(path)))
        return outputs

    def _should_cancel(self, job_id: str):
        return lambda: self._stop_event.is_set() or self._queue.cancel_requested(job_id)

    def _on_step(self, job_id: str, info: Any, progress: "_Progress") -> None:
        step_time = progress.step_finished()
        if self._metrics is not None:
            self._metrics.observe_step(step_time)
        last = info.step == info.step_count
        if not last and time.monotonic() - progress.last_event_time < _STEP_EVENT_MIN_INTERVAL_S:
            return
        progress.last_event_time = time.monotonic()
        payload = {
            "segment_index": info.segment_index, "segment_count": info.segment_count,
            "step": info.step, "step_count": info.step_count,
            "pass_index": info.pass_index, "pass_count": info.pass_count,
            "progress": progress.fraction, "eta_s": progress.eta_s, "step_time_s": step_time,
        }
        self._queue.emit(job_id, [("step", payload, None)], updates={"progress": progress.fraction,
                                                                     "eta_s": progress.eta_s})


class _Progress:
    """Step counting and a simple ETA (mean step time of this run times the steps left)."""

    def __init__(self, segments: int, steps: int, segments_done: int) -> None:
        self.total = max(1, segments * steps)
        self.steps = steps
        self.done = segments_done * steps
        self.segments_finished = 0
        self._segment_base = self.done
        self._run_steps = 0
        self._run_time = 0.0
        self._last = time.monotonic()
        self.last_event_time = 0.0

    def step_finished(self) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        self.done += 1
        self._run_steps += 1
        self._run_time += elapsed
        return elapsed

    def segment_finished(self) -> None:
        self.segments_finished += 1
        self._segment_base += self.steps
        self.done = self._segment_base
        self._last = time.monotonic()  # decoding and writing are not a step

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total)

    @property
    def eta_s(self) -> float:
        if self._run_steps == 0:
            return -1.0
        return (self.total - self.done) * self._run_time / self._run_steps


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted frame indices as (first, count)."""
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and runs[-1][0] + runs[-1][1] == f:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((f, 1))
    return runs
