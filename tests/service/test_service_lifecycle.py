"""Server lifecycle: NOT_SERVING while the weights load (jobs queue meanwhile), one server per data folder,
graceful stop leaves a running job to resume, JSON logs."""

from __future__ import annotations

import io
import json
import threading
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.logging_setup import JsonFormatter
from render_server.service.server import ConfigError

from service_helpers import make_app, submit_request, wait_state, watch_all

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


def test_not_serving_while_loading_then_serving_and_queued_jobs_run(tmp_path):
    app = make_app(tmp_path / "data")
    # Hold the weights back until the test has looked: the loader waits on this event.
    release = threading.Event()
    original_load = app.engines[0].load

    def gated_load() -> None:
        release.wait(60)
        original_load()

    app.engines[0].load = gated_load
    app.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.RenderServiceStub(channel)
            for service in ("", "one_to_all.v1.RenderService"):
                assert health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == NOT_SERVING
            assert not stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10).model.ready
            job = stub.SubmitJob(submit_request(frames=1), timeout=30).job  # accepted and queued meanwhile
            assert job.state == pb.JOB_STATE_QUEUED
            release.set()
            assert app.wait_ready(120)
            assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == SERVING
            assert stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10).model.ready
            assert wait_state(stub, job.job_id, {pb.JOB_STATE_SUCCEEDED}).frames_done == 1
    finally:
        release.set()
        app.stop(grace_s=0.5)


def test_one_server_per_data_folder(tmp_path):
    first = make_app(tmp_path / "data")
    try:
        with pytest.raises(ConfigError, match="in use"):
            make_app(tmp_path / "data")
    finally:
        first.start().stop(grace_s=0.1)
    make_app(tmp_path / "data").start().stop(grace_s=0.1)  # free again after a stop


def test_graceful_stop_mid_job_resumes_on_restart(tmp_path):
    data = tmp_path / "data"
    app = make_app(data).start()
    assert app.wait_ready(120)
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        job_id = stub.SubmitJob(submit_request(frames=13, steps=3), timeout=30).job.job_id
        for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=120):
            if event.WhichOneof("kind") == "frame_ready":
                break
    app.stop(grace_s=0.5)  # the worker stops after its current step; the job stays RUNNING in the store
    app = make_app(data).start()
    try:
        assert app.wait_ready(120)
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            events = watch_all(stub, job_id)
            job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
            assert job.state == pb.JOB_STATE_SUCCEEDED and job.resume_count == 1 and job.frames_done == 13
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    finally:
        app.stop(grace_s=0.5)


def test_json_log_lines_carry_extra_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("o2a-json-test")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("job failed", extra={"job_id": "job-1", "code": "INTERNAL"})
    finally:
        log.removeHandler(handler)
    record = json.loads(stream.getvalue())
    assert record["msg"] == "job failed" and record["job_id"] == "job-1" and record["level"] == "WARNING"


def test_acceleration_options_reach_the_pipeline(tmp_path, caplog):
    from render_server.engine import EngineConfig

    caplog.set_level(logging.INFO, logger="render_server.engine")
    app = make_app(tmp_path / "data", engine=EngineConfig(model="tiny", chunk_frames=9, attention_backend="native"))
    app.start()
    try:
        assert app.wait_ready(120), app.load_error
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            job_id = stub.SubmitJob(submit_request(frames=5), timeout=30).job.job_id
            assert wait_state(stub, job_id, {pb.JOB_STATE_SUCCEEDED}).frames_done == 5
    finally:
        app.stop(grace_s=0.5)
    applied = [r for r in caplog.records if r.getMessage() == "acceleration"]
    assert applied and applied[0].attention_backend == "native"
