"""The server with `--parallel cfg --gpus 2`: one engine drives a gang of two rank processes (gloo on CPU here,
NCCL on GPUs) through the job queue, with progress, cancellation and clean shutdown (docs/parallel.md)."""

from __future__ import annotations

import grpc

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.parallel.config import parse_parallel

from service_helpers import download_frames, make_app, submit_request, wait_state, watch_all


def test_cfg_parallel_gang_renders_and_cancels(tmp_path):
    app = make_app(tmp_path / "data", devices=("cpu", "cpu"), parallel=parse_parallel("cfg", 2, timeout_s=120))
    assert len(app.engines) == 1 and app.engines[0].device == "cpu+cpu"
    app.start()
    try:
        assert app.wait_ready(300), app.load_error
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            assert list(stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10).model.devices) == ["cpu", "cpu"]
            request = submit_request(frames=13, guidance_mode=pb.GUIDANCE_MODE_STANDARD)  # 3 passes over 2 ranks
            job_id = stub.SubmitJob(request, timeout=30).job.job_id
            events = watch_all(stub, job_id)
            assert events[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
            assert {e.step_progress.segment_index for e in events if e.WhichOneof("kind") == "step_progress"} == {0, 1}
            assert sorted(download_frames(stub, job_id)) == list(range(13))
            # Cancel mid-step reaches the ranks, and the gang takes the next job.
            long_id = stub.SubmitJob(submit_request(frames=21, steps=60), timeout=30).job.job_id
            for event in stub.WatchJob(pb.WatchJobRequest(job_id=long_id), timeout=120):
                if event.WhichOneof("kind") == "step_progress":
                    break
            stub.CancelJob(pb.CancelJobRequest(job_id=long_id), timeout=10)
            assert wait_state(stub, long_id, {pb.JOB_STATE_CANCELLED}).frames_done < 21
            again = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
            assert wait_state(stub, again, {pb.JOB_STATE_SUCCEEDED}).frames_done == 1
    finally:
        app.stop(grace_s=0.5)
    group = app.engines[0]._pipeline
    assert all(not p.is_alive() for p in group._processes), "rank processes left behind"
