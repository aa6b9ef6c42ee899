"""kill -9 of the server process in the middle of a job, restart on the same data folder: the job resumes from its
last finished segment and ends with exactly the frames of an uninterrupted run (same seed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.storage.images import decode_png

from service_helpers import CHUNK_FRAMES, download_frames, submit_request, watch_all

REPO_ROOT = Path(__file__).resolve().parents[2]
FRAMES = 21  # 4 segments of the tiny chunk plan


class ServerProcess:
    """`python -m render_server.main` in a subprocess, logging to a file."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.port_file = data_dir.parent / "port"
        self.port_file.unlink(missing_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "render_server.main", "--model", "tiny", "--device", "cpu",
             "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--port-file", str(self.port_file),
             "--chunk-frames", str(CHUNK_FRAMES), "--heartbeat-s", "0.5"],
            cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while not self.port_file.exists():
            assert self.proc.poll() is None, f"server exited early, see {log_path}"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        self.address = f"127.0.0.1:{self.port_file.read_text()}"
        self.channel = grpc.insecure_channel(self.address)
        health = health_pb2_grpc.HealthStub(self.channel)
        while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "server never became SERVING"
            time.sleep(0.1)
        self.stub = pb_grpc.RenderServiceStub(self.channel)

    def kill9(self) -> None:
        self.channel.close()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def test_kill9_mid_job_then_restart_finishes_with_identical_frames(tmp_path):
    data = tmp_path / "data"
    log = tmp_path / "server.log"
    request = submit_request(frames=FRAMES, steps=3, seed=11)

    first = ServerProcess(data, log)
    try:
        job_id = first.stub.SubmitJob(request, timeout=30).job.job_id
        seen: list[pb.JobEvent] = []
        for event in first.stub.WatchJob(pb.WatchJobRequest(job_id=job_id), timeout=120):
            if event.WhichOneof("kind") == "heartbeat":
                continue
            seen.append(event)
            # Kill once segment 0 is recorded and segment 1 is being denoised.
            if event.WhichOneof("kind") == "step_progress" and event.step_progress.segment_index >= 1:
                break
        first.kill9()
    except BaseException:
        first.stop()
        raise
    assert any(e.WhichOneof("kind") == "frame_ready" for e in seen)

    second = ServerProcess(data, log)
    try:
        stub = second.stub
        rest = watch_all(stub, job_id, after=seen[-1].sequence)
        events = seen + rest
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
        assert job.state == pb.JOB_STATE_SUCCEEDED and job.resume_count == 1 and job.frames_done == FRAMES
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))
        restarts = [e for e in rest if e.WhichOneof("kind") == "state_changed" and "restarted" in e.state_changed.message]
        assert len(restarts) == 1
        resumed_at = int(restarts[0].state_changed.message.split("segment ")[1].split()[0])
        assert resumed_at >= 1, "segment 0 was finished before the kill"
        # No finished segment was rendered again: segments before the resume point have no steps after it.
        after_restart = [e.step_progress.segment_index for e in rest if e.WhichOneof("kind") == "step_progress"]
        assert after_restart and min(after_restart) == resumed_at
        finished_twice = [e.frame_ready.segment_index for e in events if e.WhichOneof("kind") == "frame_ready"]
        assert sorted(finished_twice) == sorted(set(finished_twice)) == list(range(4))

        resumed_frames = download_frames(stub, job_id)
        # The same request, uninterrupted, on the restarted server.
        reference_id = stub.SubmitJob(request, timeout=30).job.job_id
        assert watch_all(stub, reference_id)[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
        reference_frames = download_frames(stub, reference_id)
        assert sorted(resumed_frames) == sorted(reference_frames) == list(range(FRAMES))
        for i in range(FRAMES):
            assert np.array_equal(decode_png(resumed_frames[i]), decode_png(reference_frames[i])), f"frame {i}"
    finally:
        second.stop()
    assert second.proc.returncode == 0, "graceful SIGTERM shutdown"
