"""Job events -> a small progress snapshot that UIs (the CLI bar, the add-on panel) display.

Pure: `JobProgress.apply(event)` returns a new snapshot; nothing here talks to the network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ._generated import render_service_pb2 as pb

TERMINAL_STATES = frozenset({pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED})


def state_name(state: int) -> str:
    """pb.JOB_STATE_RUNNING -> 'RUNNING'."""
    return pb.JobState.Name(state).removeprefix("JOB_STATE_")


def is_terminal_event(event: pb.JobEvent) -> bool:
    return event.HasField("state_changed") and event.state_changed.state in TERMINAL_STATES


@dataclass(frozen=True)
class JobProgress:
    job_id: str = ""
    state: str = "UNSPECIFIED"
    queue_position: int = 0
    progress: float = 0.0
    eta_s: float = -1.0
    segment_index: int = 0
    segment_count: int = 0
    step: int = 0
    step_count: int = 0
    frames_done: int = 0
    frames_total: int = 0
    last_sequence: int = 0
    message: str = ""
    error: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in ("SUCCEEDED", "FAILED", "CANCELLED")

    @classmethod
    def from_job(cls, job: pb.Job) -> "JobProgress":
        error = ""
        if job.HasField("error") and job.error.code_name:
            error = f"{job.error.code_name}: {job.error.message}" + (f" ({job.error.hint})" if job.error.hint else "")
        return cls(job_id=job.job_id, state=state_name(job.state), queue_position=job.queue_position,
                   progress=job.progress, eta_s=job.eta_s, segment_count=job.settings.segment_count,
                   frames_done=job.frames_done, frames_total=job.settings.frame_count,
                   last_sequence=job.last_event_sequence, error=error)

    def apply(self, event: pb.JobEvent) -> "JobProgress":
        change: dict = {"job_id": event.job_id or self.job_id,
                        "last_sequence": max(self.last_sequence, event.sequence)}
        kind = event.WhichOneof("kind")
        if kind == "state_changed":
            sc = event.state_changed
            change.update(state=state_name(sc.state), queue_position=sc.queue_position, message=sc.message)
            if sc.HasField("error") and sc.error.code_name:
                change["error"] = f"{sc.error.code_name}: {sc.error.message}" + (
                    f" ({sc.error.hint})" if sc.error.hint else "")
            if sc.state == pb.JOB_STATE_SUCCEEDED:
                change.update(progress=1.0, eta_s=0.0)
        elif kind == "step_progress":
            sp = event.step_progress
            change.update(state="RUNNING", progress=sp.progress, eta_s=sp.eta_s, segment_index=sp.segment_index,
                          segment_count=sp.segment_count, step=sp.step, step_count=sp.step_count, queue_position=0)
        elif kind == "frame_ready":
            fr = event.frame_ready
            change.update(frames_done=fr.frames_done, frames_total=fr.frames_total)
        elif kind == "heartbeat":
            change.update(state=state_name(event.heartbeat.state), queue_position=event.heartbeat.queue_position)
        return dataclasses.replace(self, **change)

    def describe(self) -> str:
        """One line for logs and farm output, e.g. 'RUNNING 42% segment 2/3 step 5/8 frames 81/97 eta 12s'."""
        parts = [self.state]
        if self.state == "QUEUED" and self.queue_position:
            parts.append(f"position {self.queue_position}")
        parts.append(f"{self.progress * 100:.0f}%")
        if self.segment_count:
            parts.append(f"segment {self.segment_index + 1}/{self.segment_count}")
        if self.step_count:
            parts.append(f"step {self.step}/{self.step_count}")
        if self.frames_total:
            parts.append(f"frames {self.frames_done}/{self.frames_total}")
        if self.eta_s >= 0 and not self.terminal:
            parts.append(f"eta {self.eta_s:.0f}s")
        if self.error:
            parts.append(self.error)
        return " ".join(parts)
