"""Domain records (render_server.jobs.spec) -> protocol messages."""

from __future__ import annotations

import grpc

from .._generated import render_service_pb2 as pb
from ..jobs.spec import EventRecord, JobError, JobRecord, JobState
from .validate import ALIGNMENT, CHUNK_PLAN, FACE, GUIDANCE, TRANSFER

STATE_TO_PB = {
    JobState.QUEUED: pb.JOB_STATE_QUEUED,
    JobState.RUNNING: pb.JOB_STATE_RUNNING,
    JobState.SUCCEEDED: pb.JOB_STATE_SUCCEEDED,
    JobState.FAILED: pb.JOB_STATE_FAILED,
    JobState.CANCELLED: pb.JOB_STATE_CANCELLED,
}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}


def _inverse(table: dict[int, str]) -> dict[str, int]:
    # The first non-zero number for each name (UNSPECIFIED maps to a default name too; never send 0 back).
    out: dict[str, int] = {}
    for number, name in sorted(table.items()):
        if number != 0:
            out.setdefault(name, number)
    return out


_GUIDANCE, _FACE, _ALIGNMENT = _inverse(GUIDANCE), _inverse(FACE), _inverse(ALIGNMENT)
_PLAN, _TRANSFER = _inverse(CHUNK_PLAN), _inverse(TRANSFER)


def job_error_to_pb(error: JobError | None) -> pb.JobError | None:
    if error is None:
        return None
    code = getattr(grpc.StatusCode, error.code, grpc.StatusCode.UNKNOWN)
    return pb.JobError(code=code.value[0], code_name=code.name, message=error.message, hint=error.hint,
                       retryable=error.retryable)


def job_to_pb(record: JobRecord) -> pb.Job:
    spec = record.spec
    job = pb.Job(
        job_id=record.job_id,
        client_request_id=record.client_request_id,
        display_name=spec.display_name,
        state=STATE_TO_PB[record.state],
        queue_position=record.queue_position if record.state == JobState.QUEUED else 0,
        settings=pb.JobSettings(
            width_px=spec.width_px, height_px=spec.height_px, fps=spec.fps, seed=spec.seed, steps=spec.steps,
            image_guidance_scale=spec.image_guidance_scale, pose_guidance_scale=spec.pose_guidance_scale,
            guidance_mode=_GUIDANCE[spec.guidance_mode], face_lightening=_FACE[spec.face_lightening],
            alignment_mode=_ALIGNMENT[spec.alignment_mode], chunk_plan=_PLAN[spec.chunk_plan],
            image_pose_transfer=_TRANSFER[spec.image_pose_transfer], priority=spec.priority,
            lease_s=spec.lease_s, frame_count=spec.frame_count, segment_count=record.segments_total,
            model_id=spec.model_id, head_lightening=spec.head_lightening, same_skeleton=spec.same_skeleton,
        ),
        segments_done=record.segments_done,
        frames_done=record.frames_done,
        progress=record.progress,
        eta_s=record.eta_s,
        created_unix_ms=record.created_ms,
        started_unix_ms=record.started_ms,
        finished_unix_ms=record.finished_ms,
        cancel_requested=record.cancel_requested,
        last_event_sequence=record.last_event_sequence,
        resume_count=record.resume_count,
    )
    error = job_error_to_pb(record.error)
    if error is not None:
        job.error.CopyFrom(error)
    for f in record.output_files:
        job.output_files.add(name=f.name, size_bytes=f.size_bytes, sha256=f.sha256)
    return job


def event_to_pb(event: EventRecord) -> pb.JobEvent:
    out = pb.JobEvent(sequence=event.sequence, job_id=event.job_id, time_unix_ms=event.time_ms)
    p = event.payload
    if event.kind == "state":
        out.state_changed.state = STATE_TO_PB[JobState(p["state"])]
        out.state_changed.queue_position = p.get("queue_position", 0)
        out.state_changed.message = p.get("message", "")
        error = job_error_to_pb(JobError.from_dict(p.get("error")))
        if error is not None:
            out.state_changed.error.CopyFrom(error)
    elif event.kind == "step":
        out.step_progress.CopyFrom(pb.StepProgress(**p))
    elif event.kind == "preview":
        out.preview.CopyFrom(pb.Preview(jpeg=event.blob or b"", **p))
    elif event.kind == "frames":
        out.frame_ready.CopyFrom(pb.FrameReady(**p))
    else:
        raise ValueError(f"unknown event kind {event.kind!r}")
    return out


def is_terminal_event(event: EventRecord) -> bool:
    return event.kind == "state" and JobState(event.payload["state"]).terminal
