"""The client library of the One-to-All render service (grpcio + protobuf + numpy; no bpy, no torch).

    with RenderClient("gpu-box:50051", token=token, tls=True) as client:
        client.wait_ready(timeout_s=60)
        job = client.submit_shot(poses, reference_png, reference_pose, RenderOptions(steps=20)).job
        for event in client.watch(job.job_id):        # re-opens dropped streams, resumes after the last sequence
            ...
        client.download_frames(job.job_id, "frames/")  # chunked, size- and SHA-256-verified, atomic files

Every call has a deadline. Unary calls that are safe to repeat (all of them: SubmitJob carries an idempotency key)
are retried on UNAVAILABLE with exponential backoff; gRPC errors surface as the typed errors of `errors.py`.

Threads: one client may be shared by several threads (gRPC channels are thread-safe; the client keeps no
per-call state). Long operations take a `CancelToken`; `close()` from any thread cancels every call in flight,
so a worker thread blocked in a watch stream returns at once with `Cancelled`.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import grpc
import numpy as np

from ..pose.types import PoseSequence
from . import transfer
from ._generated import render_service_pb2 as pb
from ._generated import render_service_pb2_grpc as pb_grpc
from .cancel import CancelToken, Scope
from .convert import RenderOptions, build_submit_request
from .errors import (
    Cancelled,
    ClientError,
    InvalidRequest,
    ServerUnavailable,
    WatchGaveUp,
    from_rpc_error,
)
from .events import is_terminal_event

logger = logging.getLogger(__name__)

#: Inline reference images above this size are uploaded as assets first (the protocol allows 3 MiB inline).
INLINE_IMAGE_LIMIT = 3 * 1024 * 1024 - 64 * 1024
#: A whole SubmitJobRequest must stay under the 4 MiB message limit; driving poses above this go up as an asset.
INLINE_REQUEST_LIMIT = 3 * 1024 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024

# Stream failures worth re-opening the stream for (the server restarted, a proxy dropped the connection, ...).
_STREAM_RETRY_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
    grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.CANCELLED,
})
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_HEALTH_SERVING = 1


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the server and how patient to be. Timeouts are seconds."""

    address: str = "127.0.0.1:50051"
    token: str = ""  # bearer token; sent as `authorization: Bearer <token>`, never logged
    tls: bool = False
    ca_cert: bytes | None = None  # PEM roots for a private CA; None = system roots
    tls_server_name: str = ""  # override the name checked in the server certificate (tests, IP addresses)
    timeout_s: float = 30.0  # deadline of each unary call
    retries: int = 2  # extra attempts of a unary call after UNAVAILABLE
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 8.0
    reconnect_budget_s: float = 300.0  # how long watch() keeps re-opening a dropped stream; 0 = forever
    watch_idle_timeout_s: float = 45.0  # no event nor heartbeat for this long = dead connection, re-open
    watch_deadline_s: float = 3600.0  # deadline of one WatchJob stream (re-opened transparently when it expires)
    transfer_timeout_s: float = 900.0  # deadline of one download/upload stream (resumed when it expires)
    chunk_bytes: int = 1024 * 1024  # upload/download chunk size (<= 3 MiB)

    def __post_init__(self) -> None:
        address = self.address.strip()
        for scheme in ("grpcs://", "grpc://"):
            if address.startswith(scheme):
                object.__setattr__(self, "tls", self.tls or scheme == "grpcs://")
                address = address[len(scheme):]
        host, sep, port = address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidRequest(f"server address: expected HOST:PORT, got {self.address!r}", field="address")
        object.__setattr__(self, "address", address)
        for name in ("timeout_s", "watch_idle_timeout_s", "watch_deadline_s", "transfer_timeout_s"):
            if not getattr(self, name) > 0:
                raise InvalidRequest(f"{name}: must be positive", field=name)
        if not 4096 <= self.chunk_bytes <= 3 * 1024 * 1024:
            raise InvalidRequest("chunk_bytes: must be in [4096, 3 MiB]", field="chunk_bytes")

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    def __repr__(self) -> str:  # never print the token
        return (f"ClientConfig(address={self.address!r}, tls={self.tls}, token={'set' if self.token else 'none'}, "
                f"timeout_s={self.timeout_s})")


class RenderClient:
    """A connection to one render server. Cheap to create; close it (or use `with`) to free the channel."""

    def __init__(self, address: str | ClientConfig = "127.0.0.1:50051", **options) -> None:
        self.config = address if isinstance(address, ClientConfig) else ClientConfig(address=address, **options)
        if isinstance(address, ClientConfig) and options:
            self.config = dataclasses.replace(address, **options)
        self._closed = CancelToken()
        self._metadata: tuple[tuple[str, str], ...] = ()
        if self.config.token:
            self._metadata = (("authorization", f"Bearer {self.config.token}"),)
            if not self.config.tls and not _is_loopback(self.config.host):
                logger.warning("sending the bearer token without TLS to %s; anyone on the network can read it",
                               self.config.address)
        self._channel = _make_channel(self.config)
        self._stub = pb_grpc.RenderServiceStub(self._channel)
        self._health = self._channel.unary_unary(
            _HEALTH_CHECK, request_serializer=_health_request, response_deserializer=_health_status)

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Cancels every call in flight (from any thread) and closes the channel. Idempotent."""
        self._closed.cancel("client closed")
        self._channel.close()

    @property
    def closed(self) -> bool:
        return self._closed.cancelled

    def __enter__(self) -> "RenderClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RenderClient({self.config!r})"

    def wait_ready(self, timeout_s: float = 60.0, *, cancel: CancelToken | None = None) -> None:
        """Waits until the server's health is SERVING (weights loaded). Raises ServerUnavailable after timeout_s."""
        scope = Scope(cancel, self._closed)
        end = time.monotonic() + timeout_s
        last = "no answer"
        while True:
            scope.check("wait_ready")
            left = end - time.monotonic()
            if left <= 0:
                raise ServerUnavailable(f"server {self.config.address} not ready after {timeout_s:g}s ({last})")
            try:
                future = self._health.future(b"", timeout=min(left, 5.0), metadata=self._metadata)
                with scope.attached(future.cancel):
                    status = future.result()
                if status == _HEALTH_SERVING:
                    return
                last = "NOT_SERVING: the model is still loading"
            except grpc.RpcError as exc:
                scope.check("wait_ready")
                last = f"{exc.code().name}: {exc.details()}"
                if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise from_rpc_error(exc, "Health.Check") from None
            except grpc.FutureCancelledError:
                scope.check("wait_ready")
            if scope.sleep(min(0.25, max(0.0, end - time.monotonic()))):
                scope.check("wait_ready")

    # -- unary calls ----------------------------------------------------------------------------------------------

    def capabilities(self, *, cancel: CancelToken | None = None) -> pb.GetCapabilitiesResponse:
        return self._unary("GetCapabilities", pb.GetCapabilitiesRequest(), cancel)

    def get_job(self, job_id: str, *, cancel: CancelToken | None = None) -> pb.Job:
        return self._unary("GetJob", pb.GetJobRequest(job_id=_job_id(job_id)), cancel).job

    def cancel_job(self, job_id: str, *, cancel: CancelToken | None = None) -> pb.Job:
        """Asks the server to cancel; returns the snapshot (CANCELLED, or RUNNING with cancel_requested)."""
        return self._unary("CancelJob", pb.CancelJobRequest(job_id=_job_id(job_id)), cancel).job

    def list_jobs(self, states: Sequence[int] = (), *, page_size: int = 100, limit: int | None = None,
                  cancel: CancelToken | None = None) -> Iterator[pb.Job]:
        """Jobs newest first, following pages until `limit` jobs or the end."""
        token, count = "", 0
        while True:
            page = self._unary("ListJobs", pb.ListJobsRequest(states=list(states), page_size=page_size,
                                                              page_token=token), cancel)
            for job in page.jobs:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield job
            token = page.next_page_token
            if not token:
                return

    def submit(self, request: pb.SubmitJobRequest, *, cancel: CancelToken | None = None) -> pb.SubmitJobResponse:
        """Submits a job. Adds a client_request_id when missing (so retries never create a second job) and moves
        a large reference image or pose sequence into uploaded assets so no message exceeds 4 MiB."""
        request = _copy(request)
        if not request.client_request_id:
            request.client_request_id = f"o2a-{uuid.uuid4().hex}"
        if request.WhichOneof("reference") == "reference_image" and len(request.reference_image) > INLINE_IMAGE_LIMIT:
            asset = self.upload_asset(request.reference_image, pb.ASSET_KIND_REFERENCE_IMAGE, cancel=cancel)
            request.reference_image_asset_id = asset.asset_id  # replaces the oneof's inline bytes
        if request.ByteSize() > INLINE_REQUEST_LIMIT and request.WhichOneof("driving") == "driving_poses":
            data = request.driving_poses.SerializeToString()
            asset = self.upload_asset(data, pb.ASSET_KIND_POSE_SEQUENCE, cancel=cancel)
            request.driving_poses_asset_id = asset.asset_id
        if request.ByteSize() > MAX_MESSAGE_BYTES:
            raise InvalidRequest(f"SubmitJob: the request is {request.ByteSize()} bytes even after moving inputs "
                                 "into assets (prompt too long?)", field="prompt")
        return self._unary("SubmitJob", request, cancel)

    def submit_shot(self, poses: PoseSequence, reference_image: bytes, reference_pose: np.ndarray | None,
                    options: RenderOptions | None = None, *, client_request_id: str = "",
                    cancel: CancelToken | None = None) -> pb.SubmitJobResponse:
        """`submit` for a PoseSequence + encoded reference image; `reference_pose` None = server-side detection."""
        return self.submit(build_submit_request(poses, reference_image, reference_pose, options or RenderOptions(),
                                                client_request_id=client_request_id), cancel=cancel)

    # -- watching -------------------------------------------------------------------------------------------------

    def watch(
        self,
        job_id: str,
        after_sequence: int = 0,
        *,
        heartbeats: bool = False,
        cancel: CancelToken | None = None,
        on_reconnect: Callable[[int, float, ClientError], None] | None = None,
    ) -> Iterator[pb.JobEvent]:
        """Yields the job's events after `after_sequence` until (and including) the terminal state change.

        A dropped stream (server restart, network cut, idle connection, expired stream deadline) is re-opened with
        exponential backoff from the last sequence seen, so every stored event is yielded exactly once and in
        order. Heartbeats are yielded only with `heartbeats=True`. `on_reconnect(attempt, delay_s, error)` is
        called before each re-open. Raises WatchGaveUp after `reconnect_budget_s` without a connection, Cancelled
        when cancelled, NotFound / InvalidRequest / Unauthenticated at once.
        """
        _job_id(job_id)
        scope = Scope(cancel, self._closed)
        cfg = self.config
        last = int(after_sequence)
        failures, down_since = 0, None
        while True:
            scope.check("WatchJob")
            call = self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=last),
                                       timeout=cfg.watch_deadline_s, metadata=self._metadata)
            watchdog = _IdleWatchdog(call, cfg.watch_idle_timeout_s)
            try:
                with scope.attached(call.cancel):
                    for event in call:
                        watchdog.touch()
                        failures, down_since = 0, None
                        if event.HasField("heartbeat"):
                            if heartbeats:
                                yield event
                            continue
                        if event.sequence <= last:
                            continue  # already delivered (defensive: the server resumes strictly after `last`)
                        if event.sequence != last + 1:
                            logger.warning("job %s: events %d..%d missing from the stream", job_id, last + 1,
                                           event.sequence - 1)
                        last = event.sequence
                        yield event
                        if is_terminal_event(event):
                            return
                return  # the server ended the stream: the job was already terminal
            except grpc.RpcError as exc:
                scope.check("WatchJob")
                code = exc.code()
                if watchdog.fired:
                    error: ClientError = ServerUnavailable(
                        f"WatchJob: no event nor heartbeat for {cfg.watch_idle_timeout_s:g}s")
                elif code in _STREAM_RETRY_CODES:
                    error = from_rpc_error(exc, "WatchJob")
                else:
                    raise from_rpc_error(exc, "WatchJob") from None
            finally:
                watchdog.stop()
                call.cancel()  # no-op when finished; frees the stream when the consumer stopped iterating
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and not watchdog.fired and down_since is None:
                continue  # the long stream deadline expired on a healthy connection: re-open at once
            now = time.monotonic()
            down_since = now if down_since is None else down_since
            if cfg.reconnect_budget_s and now - down_since > cfg.reconnect_budget_s:
                raise WatchGaveUp(f"WatchJob {job_id}: no connection for {now - down_since:.0f}s "
                                  f"(last event {last}; re-attach later with after_sequence={last}): {error.message}",
                                  code=error.code)
            delay = self._backoff(failures)
            failures += 1
            logger.info("job %s: stream dropped (%s); re-opening in %.2fs after event %d", job_id, error.message,
                        delay, last)
            if on_reconnect is not None:
                on_reconnect(failures, delay, error)
            if scope.sleep(delay):
                scope.check("WatchJob")

    def wait(self, job_id: str, *, after_sequence: int = 0, on_event: Callable[[pb.JobEvent], None] | None = None,
             cancel: CancelToken | None = None) -> pb.Job:
        """Follows the job to its end (calling `on_event` for every event and heartbeat); returns the final job."""
        for event in self.watch(job_id, after_sequence, heartbeats=True, cancel=cancel):
            if on_event is not None:
                on_event(event)
        return self.get_job(job_id, cancel=cancel)

    # -- bulk data ------------------------------------------------------------------------------------------------

    def upload_asset(self, data: bytes, kind: int = pb.ASSET_KIND_REFERENCE_IMAGE, *,
                     cancel: CancelToken | None = None) -> pb.UploadAssetResponse:
        """Uploads bytes in chunks unless the server already has them (content addressed by SHA-256)."""
        return transfer.upload_asset(self, bytes(data), kind, Scope(cancel, self._closed))

    def download_frames(
        self,
        job_id: str,
        out_dir: str | Path,
        *,
        kind: int = pb.FRAME_KIND_OUTPUT,
        first_frame: int = 0,
        frame_count: int = 0,
        name: str = "frame_{index:05d}.png",
        on_frame: Callable[[int, Path], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> list[Path]:
        """Downloads frames [first_frame, first_frame + frame_count) (0 = every ready frame) as PNG files named by
        `name` in `out_dir`. Each file is checked against the announced size and SHA-256 and appears atomically.
        A dropped stream resumes at the first frame not written yet."""
        return transfer.download_frames(self, _job_id(job_id), Path(out_dir), kind=kind, first_frame=first_frame,
                                        frame_count=frame_count, name=name, on_frame=on_frame,
                                        scope=Scope(cancel, self._closed))

    def download_file(self, job_id: str, name: str, dest: str | Path, *,
                      cancel: CancelToken | None = None) -> Path:
        """Downloads one output file (e.g. 'video.mp4') to `dest`, resuming a partial `dest.part`; verified."""
        return transfer.download_file(self, _job_id(job_id), name, Path(dest), Scope(cancel, self._closed))

    # -- internals (also used by transfer.py) ---------------------------------------------------------------------

    def _unary(self, method: str, request, cancel: CancelToken | None):
        scope = Scope(cancel, self._closed)
        attempts = 1 + max(0, self.config.retries)
        for attempt in range(attempts):
            scope.check(method)
            try:
                future = getattr(self._stub, method).future(request, timeout=self.config.timeout_s,
                                                            metadata=self._metadata)
                with scope.attached(future.cancel):
                    return future.result()
            except grpc.FutureCancelledError:
                scope.check(method)
                raise Cancelled(f"{method}: cancelled") from None
            except grpc.RpcError as exc:
                scope.check(method)
                if exc.code() != grpc.StatusCode.UNAVAILABLE or attempt == attempts - 1:
                    raise from_rpc_error(exc, method) from None
                if scope.sleep(self._backoff(attempt)):
                    scope.check(method)
        raise AssertionError("unreachable")

    def _stream(self, method: str, request, timeout_s: float):
        return getattr(self._stub, method)(request, timeout=timeout_s, metadata=self._metadata)

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_initial_s * (2 ** min(attempt, 16)))
        return base * random.uniform(0.8, 1.2)  # jitter: many farm clients must not re-connect in lockstep


class _IdleWatchdog:
    """Cancels a stream when nothing (not even a heartbeat) arrived for `idle_s`: a half-open TCP connection."""

    def __init__(self, call, idle_s: float) -> None:
        self._call = call
        self._idle_s = idle_s
        self._last = time.monotonic()
        self._stop = threading.Event()
        self.fired = False
        self._thread = threading.Thread(target=self._run, name="o2a-watch-idle", daemon=True)
        self._thread.start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(min(1.0, self._idle_s / 4)):
            if time.monotonic() - self._last > self._idle_s:
                self.fired = True
                self._call.cancel()
                return


def _make_channel(config: ClientConfig) -> grpc.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # Keep long watch streams alive through NATs; the server allows pings every 20 s.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        # After a server restart, re-connect within seconds instead of gRPC's default backoff of up to 2 minutes.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 3_000),
        ("grpc.enable_retries", 0),  # retries are explicit here (only for idempotent calls)
        ("grpc.primary_user_agent", "o2a-client/1"),
    ]
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    if config.tls:
        credentials = grpc.ssl_channel_credentials(root_certificates=config.ca_cert)
        return grpc.secure_channel(config.address, credentials, options=options)
    return grpc.insecure_channel(config.address, options=options)


def _health_request(service: str | bytes) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire format (the client ships no health stubs)."""
    name = service.encode() if isinstance(service, str) else service
    return (b"\x0a" + _varint(len(name)) + name) if name else b""


def _health_status(data: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint) from wire format; 0 (UNKNOWN) when absent."""
    i = 0
    while i < len(data):
        key, i = _read_varint(data, i)
        if key == 0x08:
            value, i = _read_varint(data, i)
            return value
        if key & 7 == 0:
            _, i = _read_varint(data, i)
        elif key & 7 == 2:
            n, i = _read_varint(data, i)
            i += n
        else:
            break
    return 0


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while i < len(data):
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
    return value, i


def _copy(request: pb.SubmitJobRequest) -> pb.SubmitJobRequest:
    out = pb.SubmitJobRequest()
    out.CopyFrom(request)
    return out


def _job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not job_id.strip():
        raise InvalidRequest("job_id: required", field="job_id")
    return job_id.strip()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["CancelToken", "ClientConfig", "RenderClient"]
