"""Per-job queue overhead of the render server on loopback.

Runs a real in-process server (tiny model) and submits small jobs through raw gRPC stubs, watching each to its
end. The engine's own time (pose preparation + model calls) is measured by timing wrappers around the engine's
`prepare` and `render_chunk`; everything else on the path from `SubmitJob` to the terminal event the watcher
receives is the overhead: validation, SQLite writes, dispatch, event fan-out, PNG/mp4 writing, stream wake-ups.

Two runs: sequential jobs (latency of one job through an idle server) and a burst of concurrent jobs
(throughput: overhead per job while the queue is full). Prints one JSON line and appends a row to
docs/benchmarks.md.

    python bench/bench_queue_overhead.py [--jobs 20] [--frames 1] [--burst 16] [--no-append]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

from render_server._generated import render_service_pb2 as pb  # noqa: E402
from render_server._generated import render_service_pb2_grpc as pb_grpc  # noqa: E402
from render_server.app import AppConfig, RenderApp  # noqa: E402
from render_server.engine import EngineConfig  # noqa: E402
from render_server.service.server import ServerConfig  # noqa: E402
from render_server.storage.images import encode_png  # noqa: E402

SIZE = 32
CANVAS = 64


def _pose(t: float) -> np.ndarray:
    """A standing figure swinging its arms (simplified from tests/service/service_helpers.make_pose)."""
    body = np.array([
        (0.50, 0.18), (0.53, 0.16), (0.47, 0.16), (0.56, 0.18), (0.44, 0.18), (0.62, 0.30), (0.38, 0.30),
        (0.68, 0.45), (0.32, 0.45), (0.70, 0.58), (0.30, 0.58), (0.58, 0.58), (0.42, 0.58), (0.59, 0.75),
        (0.41, 0.75), (0.60, 0.92), (0.40, 0.92),
    ])
    body[[7, 9], 1] -= 0.06 * math.sin(t)
    kp = np.zeros((133, 3), np.float32)
    kp[:17, :2] = body * CANVAS
    kp[:17, 2] = 1.0
    return kp


def _request(frames: int, seed: int) -> pb.SubmitJobRequest:
    rng = np.random.default_rng(seed)
    return pb.SubmitJobRequest(
        reference_image=encode_png(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)),
        reference_pose=pb.ReferencePose(keypoints=pb.Pose(keypoints=(_pose(0) * SIZE / CANVAS).reshape(-1).tolist())),
        driving_poses=pb.PoseSequence(canvas_width_px=CANVAS, canvas_height_px=CANVAS, fps=24,
                                      frames=[pb.Pose(keypoints=_pose(i).reshape(-1).tolist()) for i in range(frames)]),
        width_px=SIZE, height_px=SIZE, seed=seed, steps=1, alignment_mode=pb.ALIGNMENT_MODE_REFERENCE,
        guidance_mode=pb.GUIDANCE_MODE_NONE,
    )


class EngineClock:
    """Accumulates the wall time spent inside the engine's prepare/render_chunk, per job."""

    def __init__(self, engine) -> None:
        self.lock = threading.Lock()
        self.seconds: dict[int, float] = {}
        for name in ("prepare", "render_chunk"):
            original = getattr(engine, name)
            setattr(engine, name, self._timed(original))

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.seconds[threading.get_ident()] = self.seconds.get(threading.get_ident(), 0.0) + (
                        time.perf_counter() - start)
        return wrapper

    def take(self) -> float:
        with self.lock:
            total = sum(self.seconds.values())
            self.seconds.clear()
        return total


def _run_job(stub, request) -> tuple[float, float]:
    """(SubmitJob latency, submit -> terminal event received) in seconds."""
    start = time.perf_counter()
    job_id = stub.SubmitJob(request, timeout=60).job.job_id
    submitted = time.perf_counter()
    for event in stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=600):
        if event.WhichOneof("kind") == "state_changed" and event.state_changed.state in (
                pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED):
            if event.state_changed.state != pb.JOB_STATE_SUCCEEDED:
                raise RuntimeError(f"job {job_id} ended in {event.state_changed}")
            break
    return submitted - start, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20, help="sequential jobs")
    p.add_argument("--frames", type=int, default=1, help="frames per job")
    p.add_argument("--burst", type=int, default=16, help="concurrent jobs in the throughput run")
    p.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        app = RenderApp(AppConfig(data_dir=Path(tmp), server=ServerConfig(listen="127.0.0.1:0"),
                                  engine=EngineConfig(model="tiny", chunk_frames=9))).start()
        try:
            if not app.wait_ready(300):
                raise RuntimeError(f"model did not load: {app.load_error}")
            clock = EngineClock(app.engines[0])
            with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
                stub = pb_grpc.RenderServiceStub(channel)
                _run_job(stub, _request(args.frames, 0))  # warm-up (first model call, text embedding cache)
                clock.take()
                submit_ms, overhead_ms, total_ms = [], [], []
                for i in range(args.jobs):
                    submit_s, total_s = _run_job(stub, _request(args.frames, i + 1))
                    engine_s = clock.take()
                    submit_ms.append(submit_s * 1e3)
                    total_ms.append(total_s * 1e3)
                    overhead_ms.append((total_s - engine_s) * 1e3)

                # Burst: every client submits at once; overhead per job = (wall - engine time) / jobs.
                threads = [threading.Thread(target=_run_job, args=(stub, _request(args.frames, 1000 + i)))
                           for i in range(args.burst)]
                start = time.perf_counter()
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                burst_wall = time.perf_counter() - start
                burst_engine = clock.take()
        finally:
            app.stop(grace_s=1)

    import torch

    result = {
        "bench": "queue_overhead",
        "date": dt.date.today().isoformat(),
        "device": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (tiny model on CPU)",
        "versions": {"python": platform.python_version(), "grpcio": grpc.__version__, "torch": torch.__version__},
        "shape": {"frames_per_job": args.frames, "size_px": SIZE, "steps": 1, "guidance_passes": 1,
                  "sequential_jobs": args.jobs, "burst_jobs": args.burst},
        "submit_rpc_ms_median": round(statistics.median(submit_ms), 2),
        "end_to_end_ms_median": round(statistics.median(total_ms), 2),
        "overhead_ms_median": round(statistics.median(overhead_ms), 2),
        "overhead_ms_p90": round(sorted(overhead_ms)[int(0.9 * (len(overhead_ms) - 1))], 2),
        "burst_overhead_ms_per_job": round((burst_wall - burst_engine) / args.burst * 1e3, 2),
        "burst_jobs_per_s": round(args.burst / burst_wall, 2),
    }
    print(json.dumps(result))
    if not args.no_append:
        line = (
            f"\n- gRPC queue overhead ({result['date']}, `bench/bench_queue_overhead.py`): tiny model, "
            f"{args.frames} frame(s) of {SIZE}x{SIZE}, 1 step, loopback; per job: submit RPC "
            f"**{result['submit_rpc_ms_median']} ms**, overhead outside the engine **{result['overhead_ms_median']} ms** "
            f"median ({result['overhead_ms_p90']} ms p90; validation, SQLite, dispatch, events, PNG + mp4 writing, "
            f"stream wake-ups), end to end {result['end_to_end_ms_median']} ms; burst of {args.burst}: "
            f"{result['burst_overhead_ms_per_job']} ms overhead/job, {result['burst_jobs_per_s']} jobs/s; "
            f"{result['device']}, Python {result['versions']['python']}, grpcio {result['versions']['grpcio']}, "
            f"torch {result['versions']['torch']}\n"
        )
        with open(REPO_ROOT / "docs" / "benchmarks.md", "a", encoding="utf-8") as f:
            f.write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
