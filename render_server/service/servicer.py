"""The RenderService servicer: a thin adapter between the protocol and the job layer.

Each method validates (raising `RequestError`, turned into a status by `_handle`), calls the queue/store/storage,
and converts the result. Long work never happens here: SubmitJob returns at once and WatchJob only reads events.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import shutil
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Protocol

import grpc

from .._generated import render_service_pb2 as pb
from .._generated import render_service_pb2_grpc as pb_grpc
from ..jobs.queue import JobQueue
from ..jobs.spec import JobSpec, JobState
from ..jobs.store import QueueFullError
from ..storage.assets import AssetError, AssetStore
from ..storage.images import ImageError, decode_rgb
from ..storage.job_files import JobFiles
from . import validate as v
from .convert import PB_TO_STATE, event_to_pb, is_terminal_event, job_to_pb
from .limits import ModelFacts, ServerLimits

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = "one_to_all.v1"
PROTOCOL_MINOR_VERSION = 1
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RenderService"].full_name


class Planner(Protocol):
    """What the servicer needs from the engine: model facts and the segment count of a job."""

    def facts(self) -> ModelFacts: ...
    def ready(self) -> bool: ...
    def segment_count(self, frame_count: int, chunk_plan: str, image_pose_transfer: str) -> int: ...


def _handle(method: Callable) -> Callable:
    """Maps RequestError to its status and logs unexpected errors (which gRPC reports as UNKNOWN)."""

    @functools.wraps(method)
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except v.RequestError as exc:
            context.abort(exc.code, str(exc))

    @functools.wraps(method)
    def stream_wrapper(self, request, context):
        try:
            yield from method(self, request, context)
        except v.RequestError as exc:
            context.abort(exc.code, str(exc))

    return stream_wrapper if inspect.isgeneratorfunction(method) else wrapper


class RenderServicer(pb_grpc.RenderServiceServicer):
    def __init__(
        self,
        *,
        queue: JobQueue,
        assets: AssetStore,
        jobs_dir: Path,
        limits: ServerLimits,
        planner: Planner,
        heartbeat_interval_s: float = 10.0,
        server_version: str = "0.1.0",
        worker_count: int = 1,
    ) -> None:
        self._queue = queue
        self._store = queue.store
        self._assets = assets
        self._jobs_dir = Path(jobs_dir)
        self._limits = limits
        self._planner = planner
        self._heartbeat_s = heartbeat_interval_s
        self._server_version = server_version
        self._worker_count = worker_count

    # -- capabilities ---------------------------------------------------------------------------------------------

    @_handle
    def GetCapabilities(self, request, context):
        facts = self._planner.facts()
        lim = self._limits
        return pb.GetCapabilitiesResponse(
            protocol_version=PROTOCOL_VERSION,
            protocol_minor_version=PROTOCOL_MINOR_VERSION,
            server_version=self._server_version,
            model=pb.ModelInfo(
                model_id=facts.model_id, ready=self._planner.ready(), size_multiple_px=facts.size_multiple_px,
                default_max_short_side_px=facts.default_max_short_side_px, default_steps=facts.default_steps,
                default_image_guidance_scale=facts.default_image_guidance_scale,
                default_pose_guidance_scale=facts.default_pose_guidance_scale,
                chunk_frames=facts.chunk_frames, chunk_overlap_frames=facts.chunk_overlap_frames,
                devices=list(facts.devices),
            ),
            limits=pb.Limits(
                max_frames=lim.max_frames, max_output_pixels=lim.max_output_pixels,
                max_reference_pixels=lim.max_reference_pixels, max_upload_bytes=lim.max_upload_bytes,
                max_message_bytes=lim.max_message_bytes, max_queued_jobs=lim.max_queued_jobs, max_steps=lim.max_steps,
            ),
            pose_detection_available=facts.pose_detection_available,
            keypoint_format="coco_wholebody_133",
            heartbeat_interval_s=self._heartbeat_s,
            worker_count=self._worker_count,
        )

    # -- submit ---------------------------------------------------------------------------------------------------

    @_handle
    def SubmitJob(self, request, context):
        facts = self._planner.facts()
        if request.client_request_id:
            existing = self._existing(request)
            if existing is not None:
                return existing
        sub = v.validate_submit(request, limits=self._limits, model=facts, assets=self._assets)
        if sub.reference_bytes is not None:
            meta, _ = self._assets.put(sub.reference_bytes, "reference_image")
            reference_asset_id = meta.asset_id
        else:
            reference_asset_id = sub.reference_asset_id
        frame_count = int(sub.driving.shape[0])
        spec = JobSpec(
            model_id=facts.model_id, reference_asset_id=reference_asset_id, canvas_width_px=sub.canvas[0],
            canvas_height_px=sub.canvas[1], frame_count=frame_count, **sub.settings,
        )
        segments = self._planner.segment_count(frame_count, spec.chunk_plan, spec.image_pose_transfer)
        job_id = f"job-{uuid.uuid4().hex}"
        files = JobFiles(self._jobs_dir / job_id)
        files.write_inputs(sub.driving, sub.reference_pose)
        try:
            record, created = self._queue.submit(
                job_id=job_id, client_request_id=sub.client_request_id, request_hash=sub.request_hash, spec=spec,
                segments_total=segments,
            )
        except QueueFullError as exc:
            shutil.rmtree(files.root, ignore_errors=True)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"queue full: {exc}; retry later")
        if not created:  # lost a race with an identical request id
            shutil.rmtree(files.root, ignore_errors=True)
            return self._same_request_or_abort(record, sub.request_hash, context)
        logger.info("job submitted", extra={"job_id": job_id, "frames": frame_count, "segments": segments,
                                            "priority": spec.priority, "size": f"{spec.width_px}x{spec.height_px}"})
        return pb.SubmitJobResponse(job=job_to_pb(record), created=True)

    def _existing(self, request) -> pb.SubmitJobResponse | None:
        record = self._find_by_request_id(request.client_request_id)
        if record is None:
            return None
        digest = v.request_hash(request)
        if record.request_hash != digest:
            raise v.RequestError(
                "client_request_id",
                f"already used by job {record.job_id} for a different request; use a new id",
                grpc.StatusCode.ALREADY_EXISTS,
            )
        return pb.SubmitJobResponse(job=job_to_pb(record), created=False)

    def _same_request_or_abort(self, record, digest, context):
        if record.request_hash != digest:
            context.abort(grpc.StatusCode.ALREADY_EXISTS,
                          f"client_request_id: already used by job {record.job_id} for a different request")
        return pb.SubmitJobResponse(job=job_to_pb(record), created=False)

    def _find_by_request_id(self, client_request_id: str):
        return self._store.get_by_request_id(client_request_id)

    # -- jobs -----------------------------------------------------------------------------------------------------

    def _job(self, job_id: str):
        v.check_job_id(job_id)
        record = self._store.get(job_id)
        if record is None:
            raise v.RequestError("job_id", f"unknown job {job_id}", grpc.StatusCode.NOT_FOUND)
        return record

    @_handle
    def GetJob(self, request, context):
        return pb.GetJobResponse(job=job_to_pb(self._job(request.job_id)))

    @_handle
    def ListJobs(self, request, context):
        states = []
        for i, s in enumerate(request.states):
            if s not in PB_TO_STATE:
                raise v.RequestError(f"states[{i}]", f"unknown or unspecified job state {s}")
            states.append(PB_TO_STATE[s])
        page_size = request.page_size or 100
        if not 1 <= page_size <= 1000:
            raise v.RequestError("page_size", f"must be 0 (default 100) or in [1, 1000], got {request.page_size}")
        before = None
        if request.page_token:
            if not v.PAGE_TOKEN_RE.fullmatch(request.page_token):
                raise v.RequestError("page_token", "not a token returned by ListJobs")
            before = int(request.page_token)
        records, cursor = self._store.list_jobs(states, page_size, before)
        return pb.ListJobsResponse(jobs=[job_to_pb(r) for r in records],
                                   next_page_token=str(cursor) if cursor is not None else "")

    @_handle
    def CancelJob(self, request, context):
        self._job(request.job_id)
        record = self._queue.cancel(request.job_id)
        logger.info("cancel requested", extra={"job_id": request.job_id, "state": record.state.value})
        return pb.CancelJobResponse(job=job_to_pb(record))

    @_handle
    def DeleteJob(self, request, context):
        record = self._job(request.job_id)
        terminal = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
        if not self._store.delete_job(record.job_id, only_if_state=terminal):
            raise v.RequestError("job_id", f"job {record.job_id} is {record.state.value}; cancel it and wait for "
                                 "CANCELLED before deleting it", grpc.StatusCode.FAILED_PRECONDITION)
        root = self._jobs_dir / record.job_id
        freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0
        shutil.rmtree(root, ignore_errors=True)
        logger.info("job deleted", extra={"job_id": record.job_id, "freed_bytes": freed})
        return pb.DeleteJobResponse(freed_bytes=freed)

    # -- watch ----------------------------------------------------------------------------------------------------

    @_handle
    def WatchJob(self, request, context) -> Iterator[pb.JobEvent]:
        record = self._job(request.job_id)
        after = request.after_sequence
        if after > record.last_event_sequence:
            raise v.RequestError("after_sequence", f"{after} is beyond the job's last event "
                                 f"{record.last_event_sequence}", grpc.StatusCode.OUT_OF_RANGE)
        job_id = record.job_id
        # Wake the wait below as soon as the client goes away, so the stream's thread is freed at once.
        context.add_callback(self._queue.wake)
        self._queue.watcher_attached(job_id)
        try:
            if record.state.terminal and after >= record.last_event_sequence:
                return
            while context.is_active():
                events = self._queue.wait_for_events(job_id, after, self._heartbeat_s)
                if self._queue.closed and not events:
                    context.abort(grpc.StatusCode.UNAVAILABLE, "server shutting down; re-open WatchJob later")
                if not events:
                    current = self._store.get(job_id)
                    yield pb.JobEvent(
                        sequence=after, job_id=job_id, time_unix_ms=int(time.time() * 1000),
                        heartbeat=pb.Heartbeat(state=job_to_pb(current).state, queue_position=current.queue_position
                                               if current.state == JobState.QUEUED else 0),
                    )
                    continue
                for event in events:
                    yield event_to_pb(event)
                    after = event.sequence
                    if is_terminal_event(event):
                        return
        finally:
            self._queue.watcher_detached(job_id)

    # -- assets ---------------------------------------------------------------------------------------------------

    @_handle
    def UploadAsset(self, request_iterator, context):
        upload = None
        kind = None
        try:
            for i, message in enumerate(request_iterator):
                if i == 0:
                    if not message.HasField("info"):
                        raise v.RequestError("info", "required in the first message")
                    kind = v.check_asset_info(message.info, self._limits)
                    upload = self._assets.begin_upload(kind=kind, size_bytes=message.info.size_bytes,
                                                       sha256=message.info.sha256)
                elif message.HasField("info"):
                    raise v.RequestError("info", f"only allowed in the first message (message {i})")
                if len(message.data) > self._limits.max_upload_chunk_bytes:
                    raise v.RequestError("data", f"{len(message.data)} bytes in message {i}; at most "
                                         f"{self._limits.max_upload_chunk_bytes} per message")
                try:
                    upload.write(message.data)
                except AssetError as exc:
                    raise v.RequestError("data", str(exc)) from None
            if upload is None:
                raise v.RequestError("info", "the upload stream was empty")
            if upload.received != upload.expected_size:
                raise v.RequestError("data", f"received {upload.received} bytes, info.size_bytes announced "
                                     f"{upload.expected_size}")
            self._check_asset_content(kind, upload.read_back())
            try:
                meta, already = upload.commit()
            except AssetError as exc:
                raise v.RequestError("info.sha256", str(exc)) from None
            upload = None
        finally:
            if upload is not None:
                upload.abort()
        logger.info("asset stored", extra={"asset_id": meta.asset_id, "bytes": meta.size_bytes, "kind": kind})
        return pb.UploadAssetResponse(asset_id=meta.asset_id, already_stored=already, info=pb.AssetInfo(
            kind={k2: k1 for k1, k2 in v.ASSET_KINDS.items()}[kind], size_bytes=meta.size_bytes,
            sha256=meta.asset_id.split(":", 1)[1]))

    def _check_asset_content(self, kind: str, data: bytes) -> None:
        if kind == "reference_image":
            try:
                decode_rgb(data, max_pixels=self._limits.max_reference_pixels)
            except ImageError as exc:
                raise v.RequestError("data", f"not a usable reference image: {exc}") from None
        else:
            v.parse_pose_sequence_asset(data, self._limits, "data")

    @_handle
    def GetAsset(self, request, context):
        v.check_asset_id(request.asset_id, "asset_id")
        meta = self._assets.meta(request.asset_id)
        if meta is None:
            raise v.RequestError("asset_id", f"unknown asset {request.asset_id}", grpc.StatusCode.NOT_FOUND)
        names = {k2: k1 for k1, k2 in v.ASSET_KINDS.items()}
        return pb.GetAssetResponse(asset_id=meta.asset_id, info=pb.AssetInfo(
            kind=names[meta.kinds[0]], size_bytes=meta.size_bytes, sha256=meta.asset_id.split(":", 1)[1]))

    # -- downloads ------------------------------------------------------------------------------------------------

    @_handle
    def DownloadFrames(self, request, context):
        record = self._job(request.job_id)
        kind = v.check_enum(request.kind, {0: "output", pb.FRAME_KIND_OUTPUT: "output", pb.FRAME_KIND_POSE: "pose"},
                            "kind")
        chunk = v.check_chunk_bytes(request.max_chunk_bytes)
        total = record.spec.frame_count
        if request.first_frame >= total:
            raise v.RequestError("first_frame", f"{request.first_frame} is beyond the last frame {total - 1}",
                                 grpc.StatusCode.OUT_OF_RANGE)
        files = JobFiles(self._jobs_dir / record.job_id)
        path_of = files.frame_path if kind == "output" else files.pose_path
        if request.frame_count:
            if request.first_frame + request.frame_count > total:
                raise v.RequestError("frame_count", f"first_frame + frame_count exceeds the {total} frames",
                                     grpc.StatusCode.OUT_OF_RANGE)
            frames = range(request.first_frame, request.first_frame + request.frame_count)
            for f in frames:
                if not path_of(f).exists():
                    raise v.RequestError("first_frame", f"frame {f} is not ready yet (wait for FrameReady)",
                                         grpc.StatusCode.FAILED_PRECONDITION)
        else:
            end = request.first_frame
            while end < total and path_of(end).exists():
                end += 1
            if end == request.first_frame:
                raise v.RequestError("first_frame", f"frame {end} is not ready yet (wait for FrameReady)",
                                     grpc.StatusCode.FAILED_PRECONDITION)
            frames = range(request.first_frame, end)
        for f in frames:
            data = path_of(f).read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            for offset in range(0, len(data), chunk):
                piece = data[offset: offset + chunk]
                yield pb.DownloadFramesResponse(frame_index=f, offset=offset, data=piece, total_size_bytes=len(data),
                                                last_chunk=offset + len(piece) >= len(data), sha256=sha)

    @_handle
    def DownloadFile(self, request, context):
        record = self._job(request.job_id)
        chunk = v.check_chunk_bytes(request.max_chunk_bytes)
        if not request.name:
            raise v.RequestError("name", "required (one of Job.output_files[].name)")
        listed = {f.name: f for f in record.output_files}
        if request.name not in listed:
            if not record.state.terminal:
                raise v.RequestError("name", f"{request.name[:80]!r} is not available before the job finishes",
                                     grpc.StatusCode.FAILED_PRECONDITION)
            raise v.RequestError("name", f"job has no output file {request.name[:80]!r}", grpc.StatusCode.NOT_FOUND)
        info = listed[request.name]
        path = JobFiles(self._jobs_dir / record.job_id).output_path(request.name)
        if request.offset > info.size_bytes:
            raise v.RequestError("offset", f"{request.offset} is beyond the file size {info.size_bytes}",
                                 grpc.StatusCode.OUT_OF_RANGE)
        end = info.size_bytes if request.limit == 0 else min(info.size_bytes, request.offset + request.limit)
        with open(path, "rb") as f:
            f.seek(request.offset)
            offset = request.offset
            while offset < end:
                data = f.read(min(chunk, end - offset))
                if not data:
                    break
                yield pb.DownloadFileResponse(offset=offset, data=data, total_size_bytes=info.size_bytes,
                                              sha256=info.sha256)
                offset += len(data)
