"""Helpers for the service tests: a real in-process server on 127.0.0.1:0 with the tiny model, synthetic
but plausible COCO-WholeBody keypoints, and request builders (raw generated stubs, no client library)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import grpc
import numpy as np

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.app import AppConfig, RenderApp
from render_server.engine import EngineConfig
from render_server.service.server import ServerConfig
from render_server.storage.images import encode_png

SIZE = 32  # output frames are SIZE x SIZE
CANVAS = 64  # keypoint canvas
CHUNK_FRAMES = 9  # tiny chunks so a 13-frame shot has 2 segments and a 21-frame shot 4

# COCO-17 body joints of a standing figure on a unit canvas (x, y).
_BODY = np.array([
    (0.50, 0.18), (0.53, 0.16), (0.47, 0.16), (0.56, 0.18), (0.44, 0.18),  # nose, eyes, ears
    (0.62, 0.30), (0.38, 0.30), (0.68, 0.45), (0.32, 0.45), (0.70, 0.58), (0.30, 0.58),  # shoulders, elbows, wrists
    (0.58, 0.58), (0.42, 0.58), (0.59, 0.75), (0.41, 0.75), (0.60, 0.92), (0.40, 0.92),  # hips, knees, ankles
])


def make_pose(t: float = 0.0, canvas: int = CANVAS) -> np.ndarray:
    """(133, 3) pixel keypoints of a figure swinging its arms with phase t; face and hands filled in."""
    kp = np.zeros((133, 3), np.float32)
    body = _BODY.copy()
    swing = 0.06 * math.sin(t)
    body[[7, 9], 1] -= swing
    body[[8, 10], 1] += swing
    kp[:17, :2] = body * canvas
    kp[:17, 2] = 1.0
    kp[17:23, :2] = np.repeat(body[[15, 16]], 3, axis=0) * canvas + np.array([0, 2])
    kp[17:23, 2] = 0.9
    angles = np.linspace(0, 2 * math.pi, 68, endpoint=False)
    kp[23:91, 0] = (0.5 + 0.04 * np.cos(angles)) * canvas
    kp[23:91, 1] = (0.19 + 0.05 * np.sin(angles)) * canvas
    kp[23:91, 2] = 0.9
    for start, wrist in ((91, body[9]), (112, body[10])):
        offsets = np.linspace(0, 0.05, 21)
        kp[start:start + 21, 0] = (wrist[0] + offsets * 0.3) * canvas
        kp[start:start + 21, 1] = (wrist[1] + offsets) * canvas
        kp[start:start + 21, 2] = 0.8
    return kp


def pose_msg(kp: np.ndarray) -> pb.Pose:
    return pb.Pose(keypoints=kp.reshape(-1).tolist())


def pose_sequence(frames: int, fps: float = 24.0) -> pb.PoseSequence:
    return pb.PoseSequence(canvas_width_px=CANVAS, canvas_height_px=CANVAS, fps=fps,
                           frames=[pose_msg(make_pose(0.5 * i)) for i in range(frames)])


def reference_png(size: int = SIZE) -> bytes:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    img[:, : size // 2] //= 2
    return encode_png(img)


def submit_request(frames: int = 5, **overrides) -> pb.SubmitJobRequest:
    fields = dict(
        reference_image=reference_png(),
        reference_pose=pb.ReferencePose(keypoints=pose_msg(make_pose(0.0, SIZE))),
        driving_poses=pose_sequence(frames),
        width_px=SIZE, height_px=SIZE, seed=7, steps=2,
        alignment_mode=pb.ALIGNMENT_MODE_REFERENCE,
        # One transformer pass per step keeps the suite fast; tests of guidance ask for STANDARD explicitly.
        guidance_mode=pb.GUIDANCE_MODE_NONE,
    )
    fields.update(overrides)
    return pb.SubmitJobRequest(**fields)


def make_app(data_dir: Path, **overrides) -> RenderApp:
    fields = dict(
        data_dir=data_dir,
        server=ServerConfig(listen="127.0.0.1:0"),
        engine=EngineConfig(model="tiny", chunk_frames=CHUNK_FRAMES),
        heartbeat_interval_s=0.5,
        lease_check_interval_s=0.2,
    )
    fields.update(overrides)
    return RenderApp(AppConfig(**fields))


def watch_all(stub, job_id: str, after: int = 0, timeout_s: float = 120) -> list[pb.JobEvent]:
    """Events of a job until its terminal state event (heartbeats dropped)."""
    events = [e for e in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=after), timeout=timeout_s)]
    return [e for e in events if e.WhichOneof("kind") != "heartbeat"]


def wait_state(stub, job_id: str, states, timeout_s: float = 120) -> pb.Job:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
        if job.state in states:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {states}; last state {job.state}")


def download_frames(stub, job_id: str, kind=pb.FRAME_KIND_OUTPUT, chunk: int = 0) -> dict[int, bytes]:
    frames: dict[int, bytearray] = {}
    for part in stub.DownloadFrames(pb.DownloadFramesRequest(job_id=job_id, kind=kind, max_chunk_bytes=chunk),
                                    timeout=60):
        buf = frames.setdefault(part.frame_index, bytearray())
        assert part.offset == len(buf)
        buf.extend(part.data)
    return {k: bytes(v) for k, v in frames.items()}
