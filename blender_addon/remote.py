"""Adapter between the add-on's job runner and the client library (``blender_addon.client``; no bpy).

The client does the protocol work (deadlines, retries, re-opening dropped watch streams, chunked and
verified transfers); this module maps the add-on's snapshot/options onto it, turns events into the
runner's progress callbacks, handles cancel/detach, and turns ``ClientError`` into ``JobFailed``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from .client.api import ClientConfig, RenderClient
from .client.cancel import CancelToken
from .client.convert import RenderOptions as ClientOptions
from .client.errors import Cancelled, ClientError, ServerUnavailable
from .client.events import JobProgress, state_name
from .jobs import JobFailed, RenderOptions, ShotSnapshot
from .settings import ServerSettings


@dataclass(frozen=True)
class Final:
    state: str
    message: str = ""
    settings: dict = field(default_factory=dict)


def _failed(exc: ClientError, address: str) -> JobFailed:
    unreachable = isinstance(exc, ServerUnavailable)
    text = f"render server {address} is unreachable: {exc}" if unreachable else str(exc)
    err = JobFailed(text)
    err.unreachable = unreachable
    return err


def client_config(settings: ServerSettings, *, timeout_s: float | None = None) -> ClientConfig:
    ca = None
    if settings.use_tls and settings.ca_file:
        try:
            ca = Path(settings.ca_file).read_bytes()
        except OSError as exc:
            raise JobFailed(f"CA certificate {settings.ca_file!r}: {exc.strerror or exc}") from exc
    try:
        return ClientConfig(address=settings.address, token=settings.token, tls=settings.use_tls, ca_cert=ca,
                            timeout_s=timeout_s or settings.rpc_timeout_s)
    except ClientError as exc:
        raise JobFailed(str(exc)) from exc


def client_options(o: RenderOptions) -> ClientOptions:
    def enum(value: str) -> str:
        return "" if value in ("", "UNSPECIFIED") else value

    return ClientOptions(
        width_px=o.width, height_px=o.height, seed=o.seed, steps=o.steps,
        image_guidance_scale=o.image_guidance, pose_guidance_scale=o.pose_guidance,
        guidance_mode=enum(o.guidance_mode), face_lightening=enum(o.face_lightening),
        alignment_mode=enum(o.alignment_mode), chunk_plan=enum(o.chunk_plan),
        image_pose_transfer=enum(o.image_pose_transfer), prompt=o.prompt, display_name=o.display_name[:200],
        head_lightening=o.head_lightening, same_skeleton=o.same_skeleton,
    )


class RemoteClient:
    """What ``jobs.run_job`` needs: submit, follow (progress/cancel/detach), download, close."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        self._client = RenderClient(client_config(settings))

    def close(self) -> None:
        self._client.close()

    def submit(self, snap: ShotSnapshot) -> str:
        try:
            response = self._client.submit_shot(snap.poses, snap.reference_image, snap.reference_pose,
                                                client_options(snap.options), client_request_id=snap.request_id())
        except ClientError as exc:
            raise _failed(exc, self.settings.address) from exc
        return response.job.job_id

    def follow(self, job_id: str, on_progress: Callable[[str, float, float, str], None],
               should_cancel: Callable[[], bool], should_detach: Callable[[], bool]) -> Final:
        """Follow the job to its end; cancel it on the server or stop watching (detach) on request."""
        detach = CancelToken()
        done = threading.Event()

        def poll():
            cancel_sent = False
            while not done.wait(0.1):
                if should_detach():
                    detach.cancel("detached")
                    return
                if should_cancel() and not cancel_sent:
                    try:
                        self._client.cancel_job(job_id)
                        cancel_sent = True
                        on_progress("RUNNING", -1.0, -1.0, "cancelling...")
                    except ClientError:
                        pass  # retried on the next poll

        def reconnect(attempt: int, delay: float, error: ClientError) -> None:
            on_progress("RUNNING", -1.0, -1.0, f"connection lost, reconnecting in {delay:.0f}s ({error.message})")

        poller = threading.Thread(target=poll, name=f"o2a-poll-{job_id}", daemon=True)
        poller.start()
        progress = JobProgress(job_id=job_id)
        try:
            for event in self._client.watch(job_id, heartbeats=True, cancel=detach, on_reconnect=reconnect):
                progress = progress.apply(event)
                if progress.terminal:
                    break
                has_fraction = event.HasField("step_progress")
                on_progress(progress.state, progress.progress if has_fraction else -1.0,
                            progress.eta_s if has_fraction else -1.0, progress.describe())
            job = self._client.get_job(job_id)
        except Cancelled:
            return Final("DETACHED", "stopped watching; the job keeps running on the server")
        except ClientError as exc:
            raise _failed(exc, self.settings.address) from exc
        finally:
            done.set()
            poller.join(1.0)
        return self._final(job)

    @staticmethod
    def _final(job) -> Final:
        s = job.settings
        settings = {"seed": s.seed, "steps": s.steps, "width": s.width_px, "height": s.height_px, "fps": s.fps,
                    "frame_count": s.frame_count, "model_id": s.model_id,
                    "image_guidance": round(s.image_guidance_scale, 4), "pose_guidance": round(s.pose_guidance_scale, 4)}
        state = state_name(job.state)
        message = JobProgress.from_job(job).error or (f"{s.frame_count} frames" if state == "SUCCEEDED" else "")
        return Final(state, message or state.lower(), settings)

    def download(self, job_id: str, out_dir: Path, frame_path: Callable[[Path, int], Path]) -> list[Path]:
        template = frame_path(Path("."), 0).name.replace("00000", "{index:05d}")
        try:
            return self._client.download_frames(job_id, out_dir, name=template)
        except ClientError as exc:
            raise _failed(exc, self.settings.address) from exc
        except OSError as exc:
            raise JobFailed(f"writing frames to {out_dir}: {exc.strerror or exc}") from exc


def capabilities_text(settings: ServerSettings) -> str:
    """Multi-line summary of the server's capabilities (for the preferences and the farm log)."""
    client = RenderClient(client_config(settings, timeout_s=settings.connect_timeout_s))
    try:
        caps = client.capabilities()
    except ClientError as exc:
        raise _failed(exc, settings.address) from exc
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
