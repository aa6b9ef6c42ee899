"""Job control on a real server: cancel mid-step, cancel while queued, priorities, leases, detached watchers,
out-of-memory -> RESOURCE_EXHAUSTED with the server still serving, NOT_FOUND for unknown jobs."""

from __future__ import annotations

import time

import grpc
import pytest
import torch

from render_server._generated import render_service_pb2 as pb

from service_helpers import submit_request, wait_state, watch_all

LONG = dict(frames=21, steps=60)  # 4 segments x 60 steps: far longer than any test waits


def _first_step(stub, job_id: str) -> pb.JobEvent:
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=120):
        if event.WhichOneof("kind") == "step_progress":
            return event
    raise AssertionError("no step event")


def _steps_run(app) -> float:
    return app.metrics.registry.get_sample_value("o2a_step_seconds_count") or 0.0


def test_cancel_mid_step_stops_within_one_step_and_frees_the_worker(app, stub):
    job_id = stub.SubmitJob(submit_request(**LONG), timeout=30).job.job_id
    _first_step(stub, job_id)
    cancelled = stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10).job
    steps_at_cancel = _steps_run(app)  # the flag is set once CancelJob returned
    assert cancelled.cancel_requested and cancelled.state == pb.JOB_STATE_RUNNING
    final = wait_state(stub, job_id, {pb.JOB_STATE_CANCELLED}, timeout_s=60)
    assert _steps_run(app) - steps_at_cancel <= 1, "more than the step in flight ran after the cancel"
    assert final.error.code_name == "CANCELLED" and final.frames_done < 21
    assert watch_all(stub, job_id)[-1].state_changed.state == pb.JOB_STATE_CANCELLED
    # The worker is free: a new job runs to the end.
    job_id2 = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
    assert wait_state(stub, job_id2, {pb.JOB_STATE_SUCCEEDED}).frames_done == 1


def test_cancel_latency_is_one_step(app, stub):
    """Measured directly: time from CancelJob to CANCELLED is below the time of a few steps."""
    job_id = stub.SubmitJob(submit_request(**LONG), timeout=30).job.job_id
    first = _first_step(stub, job_id)
    step_s = max(first.step_progress.step_time_s, 0.05)
    start = time.monotonic()
    stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=10)
    wait_state(stub, job_id, {pb.JOB_STATE_CANCELLED}, timeout_s=60)
    assert time.monotonic() - start < 5 * step_s + 2.0


def test_cancel_queued_job_is_immediate_and_idempotent(stub):
    blocker = stub.SubmitJob(submit_request(**LONG), timeout=30).job.job_id
    _first_step(stub, blocker)
    queued = stub.SubmitJob(submit_request(frames=1), timeout=30).job
    assert queued.state == pb.JOB_STATE_QUEUED and queued.queue_position == 1
    after = stub.CancelJob(pb.CancelJobRequest(job_id=queued.job_id), timeout=10).job
    assert after.state == pb.JOB_STATE_CANCELLED
    again = stub.CancelJob(pb.CancelJobRequest(job_id=queued.job_id), timeout=10).job
    assert again.state == pb.JOB_STATE_CANCELLED and again.last_event_sequence == after.last_event_sequence
    stub.CancelJob(pb.CancelJobRequest(job_id=blocker), timeout=10)
    wait_state(stub, blocker, {pb.JOB_STATE_CANCELLED})


def test_priorities_are_honoured(stub):
    blocker = stub.SubmitJob(submit_request(**LONG), timeout=30).job.job_id
    _first_step(stub, blocker)
    order = [("low", -10), ("normal-1", 0), ("high", 50), ("normal-2", 0), ("urgent", 100)]
    ids = {}
    for name, priority in order:
        ids[name] = stub.SubmitJob(submit_request(frames=1, priority=priority, display_name=name), timeout=30).job
    positions = {name: stub.GetJob(pb.GetJobRequest(job_id=j.job_id), timeout=10).job.queue_position
                 for name, j in ids.items()}
    assert positions == {"urgent": 1, "high": 2, "normal-1": 3, "normal-2": 4, "low": 5}
    stub.CancelJob(pb.CancelJobRequest(job_id=blocker), timeout=10)
    finished = {name: wait_state(stub, j.job_id, {pb.JOB_STATE_SUCCEEDED}) for name, j in ids.items()}
    started = sorted(finished, key=lambda n: finished[n].started_unix_ms)
    assert started == ["urgent", "high", "normal-1", "normal-2", "low"]
    # The low-priority job's QUEUED events: pushed back by each job that overtook it, then counting down.
    positions_seen = [e.state_changed.queue_position for e in watch_all(stub, ids["low"].job_id)
                      if e.WhichOneof("kind") == "state_changed" and e.state_changed.state == pb.JOB_STATE_QUEUED]
    assert positions_seen == [1, 2, 3, 4, 5, 4, 3, 2, 1]


def test_lease_expires_without_watcher_but_plain_job_survives_detach(stub):
    blocker = stub.SubmitJob(submit_request(**LONG), timeout=30).job.job_id
    _first_step(stub, blocker)
    leased = stub.SubmitJob(submit_request(frames=1, lease_s=1), timeout=30).job.job_id
    plain = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
    # Watch the plain job briefly and drop the stream: it must keep its place and run later.
    call = stub.WatchJob(pb.WatchJobRequest(job_id=plain))
    next(iter(call))
    call.cancel()
    job = wait_state(stub, leased, {pb.JOB_STATE_CANCELLED}, timeout_s=30)
    assert "lease" in job.error.message
    stub.CancelJob(pb.CancelJobRequest(job_id=blocker), timeout=10)
    assert wait_state(stub, plain, {pb.JOB_STATE_SUCCEEDED}).frames_done == 1


def test_running_job_whose_lease_expires_is_cancelled_with_the_reason(stub):
    job_id = stub.SubmitJob(submit_request(lease_s=1, **LONG), timeout=30).job.job_id
    wait_state(stub, job_id, {pb.JOB_STATE_RUNNING})
    job = wait_state(stub, job_id, {pb.JOB_STATE_CANCELLED}, timeout_s=60)
    assert job.error.code_name == "CANCELLED" and "lease expired" in job.error.message and job.frames_done < 21


def test_watched_leased_job_is_not_cancelled(stub):
    job_id = stub.SubmitJob(submit_request(frames=5, steps=3, lease_s=1), timeout=30).job.job_id
    events = watch_all(stub, job_id)  # a watcher is attached the whole time
    assert events[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED


def test_out_of_memory_fails_the_job_with_resource_exhausted_and_server_keeps_serving(app, stub, monkeypatch):
    engine = app.engines[0]
    original = engine._pipeline.generate_chunk
    calls = []

    def exhausted(*args, **kwargs):
        calls.append(1)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(engine._pipeline, "generate_chunk", exhausted)
    job_id = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
    job = wait_state(stub, job_id, {pb.JOB_STATE_FAILED})
    assert calls and job.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert job.error.code_name == "RESOURCE_EXHAUSTED" and job.error.retryable and "width_px" in job.error.hint
    monkeypatch.setattr(engine._pipeline, "generate_chunk", original)
    ok = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
    assert wait_state(stub, ok, {pb.JOB_STATE_SUCCEEDED}).frames_done == 1


@pytest.mark.parametrize("call", ["GetJob", "CancelJob", "WatchJob", "DownloadFrames"])
def test_unknown_job_is_not_found(stub, call):
    job_id = "job-" + "0" * 32
    requests = {"GetJob": pb.GetJobRequest, "CancelJob": pb.CancelJobRequest, "WatchJob": pb.WatchJobRequest,
                "DownloadFrames": pb.DownloadFramesRequest}
    with pytest.raises(grpc.RpcError) as err:
        result = getattr(stub, call)(requests[call](job_id=job_id), timeout=10)
        if call in ("WatchJob", "DownloadFrames"):
            list(result)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
