"""Checks the render server on a CUDA machine: jobs render on the GPU, a job too large for the GPU fails with
RESOURCE_EXHAUSTED (a real CUDA out-of-memory error, not an injected one) and the server keeps serving, with the
same frames as before the failure.

    python bench/gpu_server_check.py [--device cuda:0] [--oom-size 4096] [--oom-frames 81]

Prints one JSON line. Uses the tiny model (no weights needed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc

from bench_queue_overhead import _request  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from render_server._generated import render_service_pb2 as pb  # noqa: E402
from render_server._generated import render_service_pb2_grpc as pb_grpc  # noqa: E402
from render_server.app import AppConfig, RenderApp  # noqa: E402
from render_server.engine import EngineConfig  # noqa: E402
from render_server.service.limits import ServerLimits  # noqa: E402
from render_server.service.server import ServerConfig  # noqa: E402

TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def _wait(stub, job_id: str, timeout_s: float) -> pb.Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30).job
        if job.state in TERMINAL:
            return job
        time.sleep(0.2)
    stub.CancelJob(pb.CancelJobRequest(job_id=job_id), timeout=30)
    return stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30).job


def _frames(stub, job_id: str) -> list[bytes]:
    parts: dict[int, bytearray] = {}
    for chunk in stub.DownloadFrames(pb.DownloadFramesRequest(job_id=job_id), timeout=120):
        parts.setdefault(chunk.frame_index, bytearray()).extend(chunk.data)
    return [bytes(parts[i]) for i in sorted(parts)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--oom-size", type=int, default=4096)
    p.add_argument("--oom-frames", type=int, default=81)
    p.add_argument("--oom-timeout-s", type=float, default=240)
    args = p.parse_args(argv)
    import torch

    limits = ServerLimits(max_output_pixels=args.oom_size**2, max_frames=max(args.oom_frames, 81))
    result: dict = {"device": torch.cuda.get_device_name(args.device), "torch": torch.__version__}
    with tempfile.TemporaryDirectory() as tmp:
        app = RenderApp(AppConfig(data_dir=Path(tmp), server=ServerConfig(listen="127.0.0.1:0"),
                                  engine=EngineConfig(model="tiny", chunk_frames=81), devices=(args.device,),
                                  limits=limits)).start()
        try:
            assert app.wait_ready(300), app.load_error
            with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                stub = pb_grpc.RenderServiceStub(channel)
                normal = _request(13, 1)
                normal.width_px = normal.height_px = 64
                normal.steps = 4
                normal.guidance_mode = pb.GUIDANCE_MODE_STANDARD
                start = time.perf_counter()
                first = _wait(stub, stub.SubmitJob(normal, timeout=60).job.job_id, 300)
                result["normal_job"] = {"state": pb.JobState.Name(first.state), "seconds": round(time.perf_counter() - start, 2)}
                before = _frames(stub, first.job_id)

                huge = _request(args.oom_frames, 2)
                huge.width_px = huge.height_px = args.oom_size
                start = time.perf_counter()
                failed = _wait(stub, stub.SubmitJob(huge, timeout=60).job.job_id, args.oom_timeout_s)
                result["oversized_job"] = {
                    "size": f"{args.oom_size}x{args.oom_size}x{args.oom_frames}",
                    "state": pb.JobState.Name(failed.state), "code": failed.error.code_name,
                    "message": failed.error.message[:160], "hint": failed.error.hint,
                    "seconds": round(time.perf_counter() - start, 2),
                }
                result["memory_after_oom_bytes"] = torch.cuda.memory_allocated(args.device)

                again = _wait(stub, stub.SubmitJob(normal, timeout=60).job.job_id, 300)
                result["after_oom_job"] = {"state": pb.JobState.Name(again.state),
                                           "identical_frames": _frames(stub, again.job_id) == before}
                steps = app.metrics.registry.get_sample_value("o2a_step_seconds_sum") or 0.0
                count = app.metrics.registry.get_sample_value("o2a_step_seconds_count") or 1.0
                result["mean_step_ms"] = round(steps / count * 1e3, 2)
        finally:
            app.stop(grace_s=1)
    result["ok"] = (result["normal_job"]["state"] == "JOB_STATE_SUCCEEDED"
                    and result["oversized_job"]["code"] == "RESOURCE_EXHAUSTED"
                    and result["after_oom_job"]["state"] == "JOB_STATE_SUCCEEDED")
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
