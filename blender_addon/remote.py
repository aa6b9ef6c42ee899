"""Adapter between the add-on's job runner and the render service (grpc; no bpy).

Turns a ``ShotSnapshot`` into a ``SubmitJobRequest``, follows ``WatchJob`` (re-opening the stream
after drops, resuming after the last sequence seen), cancels, and downloads frames atomically.
Every failure leaves as ``JobFailed`` with a message meant for the user.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import grpc

from .client._generated import render_service_pb2 as pb
from .client._generated import render_service_pb2_grpc as pb_grpc
from .jobs import JobFailed, ShotSnapshot
from .settings import ServerSettings

INLINE_LIMIT = 3 * 1024 * 1024 - 64 * 1024  # stay under the server's 3 MiB inline reference limit
CHUNK = 1024 * 1024
RECONNECT_WINDOW_S = 120.0  # give up re-opening a dropped progress stream after this long
_RETRY_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL,
                grpc.StatusCode.UNKNOWN, grpc.StatusCode.RESOURCE_EXHAUSTED)


@dataclass(frozen=True)
class Final:
    state: str
    message: str = ""
    settings: dict = field(default_factory=dict)


def _state_name(value: int) -> str:
    return pb.JobState.Name(value).replace("JOB_STATE_", "")


def _enum(enum_type, prefix: str, name: str) -> int:
    try:
        return enum_type.Value(f"{prefix}_{name}")
    except ValueError as exc:
        raise JobFailed(f"{prefix.lower()}: unknown value {name!r}") from exc


def describe_rpc_error(exc: grpc.RpcError, address: str) -> str:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return f"render server {address} is unreachable ({details})"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"render server {address} did not answer in time (raise the timeout in the preferences)"
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return f"render server {address} refused the token ({details}); set it in the preferences or $O2A_TOKEN"
    name = code.name if code is not None else "ERROR"
    return f"{name}: {details}"


def _channel(settings: ServerSettings) -> grpc.Channel:
    options = [("grpc.max_receive_message_length", 8 * 1024 * 1024),
               ("grpc.max_send_message_length", 8 * 1024 * 1024),
               ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_permit_without_calls", 0)]
    if settings.use_tls:
        root = None
        if settings.ca_file:
            try:
                root = Path(settings.ca_file).read_bytes()
            except OSError as exc:
                raise JobFailed(f"CA certificate {settings.ca_file!r}: {exc.strerror or exc}") from exc
        return grpc.secure_channel(settings.address, grpc.ssl_channel_credentials(root), options)
    return grpc.insecure_channel(settings.address, options)


class RemoteClient:
    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._channel = _channel(settings)
        self._stub = pb_grpc.RenderServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {settings.token}"),) if settings.token else ()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout: float | None = None):
        try:
            return method(request, timeout=timeout or self.settings.rpc_timeout_s, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise JobFailed(describe_rpc_error(exc, self.settings.address)) from exc

    def _wait_ready(self) -> None:
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.settings.connect_timeout_s)
        except grpc.FutureTimeoutError as exc:
            raise JobFailed(f"render server {self.settings.address} is unreachable "
                            f"(no answer within {self.settings.connect_timeout_s:g} s)") from exc

    # -- capabilities -------------------------------------------------------------------------------

    def capabilities(self) -> pb.GetCapabilitiesResponse:
        self._wait_ready()
        return self._call(self._stub.GetCapabilities, pb.GetCapabilitiesRequest(), self.settings.connect_timeout_s)

    # -- submit ---------------------------------------------------------------------------------------

    def _upload(self, data: bytes, kind: int) -> str:
        digest = hashlib.sha256(data).hexdigest()

        def chunks():
            yield pb.UploadAssetRequest(info=pb.AssetInfo(kind=kind, size_bytes=len(data), sha256=digest),
                                        data=data[:CHUNK])
            for off in range(CHUNK, len(data), CHUNK):
                yield pb.UploadAssetRequest(data=data[off:off + CHUNK])

        return self._call(self._stub.UploadAsset, chunks()).asset_id

    def build_request(self, snap: ShotSnapshot) -> pb.SubmitJobRequest:
        o = snap.options
        poses = pb.PoseSequence(canvas_width_px=snap.poses.width, canvas_height_px=snap.poses.height,
                                fps=snap.poses.fps,
                                frames=[pb.Pose(keypoints=kp.reshape(-1).tolist()) for kp in snap.poses.keypoints])
        req = pb.SubmitJobRequest(
            client_request_id=snap.request_id(), width_px=o.width, height_px=o.height, steps=o.steps,
            guidance_mode=_enum(pb.GuidanceMode, "GUIDANCE_MODE", o.guidance_mode),
            face_lightening=_enum(pb.FaceLighteningMode, "FACE_LIGHTENING_MODE", o.face_lightening),
            alignment_mode=_enum(pb.AlignmentMode, "ALIGNMENT_MODE", o.alignment_mode),
            chunk_plan=_enum(pb.ChunkPlan, "CHUNK_PLAN", o.chunk_plan),
            image_pose_transfer=_enum(pb.ImagePoseTransferMode, "IMAGE_POSE_TRANSFER_MODE", o.image_pose_transfer),
            prompt=o.prompt, display_name=o.display_name[:200],
        )
        for name, value in (("head_lightening", o.head_lightening), ("same_skeleton", o.same_skeleton)):
            if name in pb.SubmitJobRequest.DESCRIPTOR.fields_by_name:
                setattr(req, name, value)
        if o.seed is not None:
            req.seed = int(o.seed)
        if o.image_guidance is not None:
            req.image_guidance_scale = float(o.image_guidance)
        if o.pose_guidance is not None:
            req.pose_guidance_scale = float(o.pose_guidance)
        if snap.reference_pose is None:
            req.reference_pose.detect = True
        else:
            req.reference_pose.keypoints.keypoints.extend(snap.reference_pose.reshape(-1).tolist())
        if len(snap.reference_image) > INLINE_LIMIT:
            req.reference_image_asset_id = self._upload(snap.reference_image, pb.ASSET_KIND_REFERENCE_IMAGE)
        else:
            req.reference_image = snap.reference_image
        if poses.ByteSize() + len(req.reference_image) > INLINE_LIMIT:
            req.driving_poses_asset_id = self._upload(poses.SerializeToString(), pb.ASSET_KIND_POSE_SEQUENCE)
        else:
            req.driving_poses.CopyFrom(poses)
        return req

    def submit(self, snap: ShotSnapshot) -> str:
        self._wait_ready()
        return self._call(self._stub.SubmitJob, self.build_request(snap)).job.job_id

    def cancel(self, job_id: str) -> str:
        return _state_name(self._call(self._stub.CancelJob, pb.CancelJobRequest(job_id=job_id)).job.state)

    def get_job(self, job_id: str) -> pb.Job:
        return self._call(self._stub.GetJob, pb.GetJobRequest(job_id=job_id)).job

    # -- follow -------------------------------------------------------------------------------------

    def follow(self, job_id: str, on_progress: Callable[[str, float, float, str], None],
               should_cancel: Callable[[], bool], should_detach: Callable[[], bool]) -> Final:
        """Stream events until the job ends (or the caller detaches); re-open the stream after drops."""
        last_seq, cancel_sent, failing_since = 0, False, None
        while True:
            call = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=last_seq),
                                       metadata=self._metadata)
            stop_poll = threading.Event()
            flags = {"detached": False}

            def poll():
                nonlocal cancel_sent
                while not stop_poll.wait(0.1):
                    if should_detach():
                        flags["detached"] = True
                        call.cancel()
                        return
                    if should_cancel() and not cancel_sent:
                        cancel_sent = True
                        try:
                            self.cancel(job_id)
                            on_progress("RUNNING", -1.0, -1.0, "cancelling...")
                        except JobFailed:
                            cancel_sent = False  # retried on the next poll

            poller = threading.Thread(target=poll, name=f"o2a-poll-{job_id}", daemon=True)
            poller.start()
            try:
                for event in call:
                    failing_since = None
                    last_seq = max(last_seq, event.sequence)
                    final = self._on_event(event, on_progress)
                    if final is not None:
                        return final
                # The stream ended without a terminal event (server restart): ask for the state.
                job = self.get_job(job_id)
                if _state_name(job.state) in ("SUCCEEDED", "FAILED", "CANCELLED"):
                    return self._final(job)
            except grpc.RpcError as exc:
                if flags["detached"]:
                    return Final("DETACHED", "stopped watching; the job keeps running on the server")
                code = exc.code()
                if code == grpc.StatusCode.NOT_FOUND:
                    raise JobFailed(f"job {job_id} is not known to {self.settings.address}") from exc
                if code not in _RETRY_CODES:
                    raise JobFailed(describe_rpc_error(exc, self.settings.address)) from exc
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > RECONNECT_WINDOW_S:
                    raise JobFailed(f"lost the progress stream of {job_id}: "
                                    f"{describe_rpc_error(exc, self.settings.address)}; re-attach later") from exc
                on_progress("RUNNING", -1.0, -1.0, f"reconnecting ({code.name.lower()})...")
                time.sleep(min(5.0, 0.5 + (time.monotonic() - failing_since) / 4))
            finally:
                stop_poll.set()
                poller.join(1.0)

    def _final(self, job: pb.Job) -> Final:
        s = job.settings
        settings = {"seed": s.seed, "steps": s.steps, "width": s.width_px, "height": s.height_px, "fps": s.fps,
                    "frame_count": s.frame_count, "model_id": s.model_id,
                    "image_guidance": round(s.image_guidance_scale, 4), "pose_guidance": round(s.pose_guidance_scale, 4)}
        state = _state_name(job.state)
        message = ""
        if job.HasField("error") and job.error.message:
            message = job.error.message + (f" ({job.error.hint})" if job.error.hint else "")
        elif state == "SUCCEEDED":
            message = f"{s.frame_count} frames"
        return Final(state, message or state.lower(), settings)

    def _on_event(self, event: pb.JobEvent, on_progress) -> Final | None:
        kind = event.WhichOneof("kind")
        if kind == "state_changed":
            st = _state_name(event.state_changed.state)
            if st in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return self._final(self.get_job(event.job_id))
            msg = event.state_changed.message
            if st == "QUEUED" and event.state_changed.queue_position:
                msg = msg or f"queued (position {event.state_changed.queue_position})"
            on_progress(st, -1.0, -1.0, msg)
        elif kind == "step_progress":
            sp = event.step_progress
            on_progress("RUNNING", sp.progress, sp.eta_s,
                        f"segment {sp.segment_index + 1}/{sp.segment_count}, step {sp.step}/{sp.step_count}")
        elif kind == "frame_ready":
            fr = event.frame_ready
            on_progress("RUNNING", -1.0, -1.0, f"frames {fr.frames_done}/{fr.frames_total} ready")
        elif kind == "heartbeat":
            on_progress(_state_name(event.heartbeat.state), -1.0, -1.0, "")
        return None

    # -- download -------------------------------------------------------------------------------------

    def download(self, job_id: str, out_dir: Path, frame_path: Callable[[Path, int], Path]) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[int, Path] = {}
        buf, digest = bytearray(), hashlib.sha256()
        try:
            for chunk in self._stub.DownloadFrames(pb.DownloadFramesRequest(job_id=job_id, kind=pb.FRAME_KIND_OUTPUT),
                                                   metadata=self._metadata, timeout=max(self.settings.rpc_timeout_s, 600)):
                buf += chunk.data
                digest.update(chunk.data)
                if chunk.last_chunk:
                    if chunk.sha256 and digest.hexdigest() != chunk.sha256:
                        raise JobFailed(f"frame {chunk.frame_index} of {job_id} arrived corrupted (sha256 mismatch)")
                    path = frame_path(out_dir, chunk.frame_index)
                    tmp = path.with_name(path.name + ".part")
                    tmp.write_bytes(bytes(buf))
                    tmp.replace(path)
                    written[chunk.frame_index] = path
                    buf, digest = bytearray(), hashlib.sha256()
        except grpc.RpcError as exc:
            raise JobFailed(f"downloading frames of {job_id}: {describe_rpc_error(exc, self.settings.address)}") from exc
        except OSError as exc:
            raise JobFailed(f"writing frames to {out_dir}: {exc.strerror or exc}") from exc
        return [written[i] for i in sorted(written)]


def capabilities_text(settings: ServerSettings) -> str:
    """Multi-line summary of the server's capabilities (for the preferences and the farm log)."""
    client = RemoteClient(settings)
    try:
        caps = client.capabilities()
    finally:
        client.close()
    m, lim = caps.model, caps.limits
    return "\n".join([
        f"Connected: {settings.address} ({caps.protocol_version}.{caps.protocol_minor_version}, server {caps.server_version})",
        f"Model: {m.model_id} ({'ready' if m.ready else 'loading'}) on {', '.join(m.devices) or '?'}",
        f"Defaults: {m.default_steps} steps, guidance {m.default_image_guidance_scale:g}/{m.default_pose_guidance_scale:g}, "
        f"chunk {m.chunk_frames} frames",
        f"Limits: {lim.max_frames} frames, {lim.max_output_pixels} px, {lim.max_steps} steps; "
        f"{caps.worker_count} worker(s); detection {'yes' if caps.pose_detection_available else 'no'}",
    ])
