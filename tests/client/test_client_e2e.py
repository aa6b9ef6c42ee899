"""The client library against a real tiny-model server on loopback: submit -> watch -> download, idempotency,
asset auto-upload, cancel (also from another thread), dropped streams, errors and deadlines."""

from __future__ import annotations

import hashlib
import threading
import time

import grpc
import numpy as np
import pytest
from client_helpers import SIZE, TcpProxy, free_port, png_size, shot

from blender_addon.client._generated import render_service_pb2 as pb
from blender_addon.client.api import RenderClient
from blender_addon.client.cancel import CancelToken
from blender_addon.client.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    ServerUnavailable,
    WatchGaveUp,
)
from blender_addon.client.events import JobProgress, is_terminal_event


def _events(client, job_id, **kw):
    return [e for e in client.watch(job_id, **kw)]


def _assert_contiguous(events, start=1):
    seqs = [e.sequence for e in events]
    assert seqs == list(range(start, start + len(seqs))), f"gaps or duplicates: {seqs}"


def test_capabilities_and_health(client):
    client.wait_ready(timeout_s=5)
    caps = client.capabilities()
    assert caps.protocol_version == "one_to_all.v1"
    assert caps.model.model_id == "tiny" and caps.model.ready
    assert caps.model.chunk_frames == 9
    assert caps.keypoint_format == "coco_wholebody_133"


def test_multi_chunk_submit_watch_download(client, tmp_path):
    poses, ref, ref_pose, options = shot(13)
    response = client.submit_shot(poses, ref, ref_pose, options, client_request_id="client-e2e-multi")
    job = response.job
    assert job.settings.segment_count == 2 and job.settings.frame_count == 13

    events = _events(client, job.job_id)
    _assert_contiguous(events)
    assert is_terminal_event(events[-1]) and events[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
    ready = [e.frame_ready for e in events if e.HasField("frame_ready")]
    assert sorted(f.segment_index for f in ready) == [0, 1]
    covered = sorted(i for f in ready for i in range(f.first_frame, f.first_frame + f.frame_count))
    assert covered == list(range(13))
    progress = JobProgress()
    for e in events:
        progress = progress.apply(e)
    assert progress.state == "SUCCEEDED" and progress.frames_done == 13 and progress.progress == 1.0

    seen = []
    paths = client.download_frames(job.job_id, tmp_path / "out", on_frame=lambda i, p: seen.append(i))
    assert [p.name for p in paths] == [f"frame_{i:05d}.png" for i in range(13)]
    assert seen == list(range(13))
    assert all(png_size(p) == SIZE for p in paths)
    assert not list((tmp_path / "out").glob("*.part"))
    # A sub-range with a small chunk size: several chunks per frame, reassembled and verified.
    client.config = client.config.__class__(**{**client.config.__dict__, "chunk_bytes": 4096})
    again = client.download_frames(job.job_id, tmp_path / "range", first_frame=11, frame_count=2)
    assert [p.read_bytes() for p in again] == [paths[11].read_bytes(), paths[12].read_bytes()]
    poses_dl = client.download_frames(job.job_id, tmp_path / "pose", kind=pb.FRAME_KIND_POSE, name="p{index}.png")
    assert len(poses_dl) == 13 and png_size(poses_dl[0]) == SIZE

    final = client.get_job(job.job_id)
    video = client.download_file(job.job_id, "video.mp4", tmp_path / "v" / "video.mp4")
    listed = {f.name: f for f in final.output_files}
    assert hashlib.sha256(video.read_bytes()).hexdigest() == listed["video.mp4"].sha256
    # Resume: a partial file is continued from its size, not restarted.
    data = video.read_bytes()
    part = tmp_path / "v2" / "video.mp4.part"
    part.parent.mkdir()
    part.write_bytes(data[: len(data) // 2])
    assert client.download_file(job.job_id, "video.mp4", tmp_path / "v2" / "video.mp4").read_bytes() == data

    # Idempotent: the same request id and content returns the same job.
    again = client.submit_shot(poses, ref, ref_pose, options, client_request_id="client-e2e-multi")
    assert not again.created and again.job.job_id == job.job_id
    # Re-watching a finished job from 0 replays the identical stored events.
    assert [e.SerializeToString() for e in _events(client, job.job_id)] == [e.SerializeToString() for e in events]
    assert _events(client, job.job_id, after_sequence=final.last_event_sequence) == []


def test_single_image(client, tmp_path):
    poses, ref, ref_pose, options = shot(1)
    job = client.submit_shot(poses, ref, ref_pose, options).job
    final = client.wait(job.job_id)
    assert final.state == pb.JOB_STATE_SUCCEEDED and final.settings.segment_count == 1
    paths = client.download_frames(job.job_id, tmp_path)
    assert len(paths) == 1 and png_size(paths[0]) == SIZE


def test_large_reference_is_uploaded_as_asset(client):
    poses, _, ref_pose, options = shot(1)
    rng = np.random.default_rng(0)
    import cv2

    noise = rng.integers(0, 256, (1100, 1100, 3), dtype=np.uint8)  # incompressible: > 3 MiB as PNG
    ok, png = cv2.imencode(".png", noise)
    big = png.tobytes()
    assert len(big) > 3 * 1024 * 1024
    scale = 1100 / 64
    response = client.submit_shot(poses, big, ref_pose * [scale, scale, 1], options)
    digest = hashlib.sha256(big).hexdigest()
    # The client uploaded the bytes once (content addressed); a second upload is skipped.
    assert client.upload_asset(big).already_stored
    assert client.upload_asset(big).asset_id == f"sha256:{digest}"
    client.cancel_job(response.job.job_id)


def test_cancel_running_job(client):
    poses, ref, ref_pose, options = shot(21, steps=100, guidance_mode="standard")  # cannot finish before cancel
    job = client.submit_shot(poses, ref, ref_pose, options).job
    for event in client.watch(job.job_id):
        if event.HasField("step_progress"):
            break
    snapshot = client.cancel_job(job.job_id)
    assert snapshot.cancel_requested or snapshot.state == pb.JOB_STATE_CANCELLED
    start = time.monotonic()
    final = client.wait(job.job_id, after_sequence=snapshot.last_event_sequence)
    assert final.state == pb.JOB_STATE_CANCELLED
    assert time.monotonic() - start < 30
    with pytest.raises((FailedPrecondition, NotFound)):
        client.download_file(job.job_id, "video.mp4", "/nonexistent/never-written.mp4")


def test_cancel_token_and_close_wake_a_blocked_watch(client, server):
    # Long enough (100 steps x 3 segments) that the watches below are still blocked when they are cancelled.
    poses, ref, ref_pose, options = shot(21, steps=100, guidance_mode="standard")
    job = client.submit_shot(poses, ref, ref_pose, options).job
    outcome = {}

    def watch(c, token):
        try:
            for _ in c.watch(job.job_id, cancel=token):
                pass
        except Cancelled as exc:
            outcome[id(token)] = exc

    token = CancelToken()
    thread = threading.Thread(target=watch, args=(client, token))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()
    start = time.monotonic()
    token.cancel("user pressed Esc")
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - start < 2
    assert "user pressed Esc" in str(outcome[id(token)])

    other = RenderClient(server.address)
    thread = threading.Thread(target=watch, args=(other, None))
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive()
    other.close()  # from another thread, as Blender does on unregister
    thread.join(5)
    assert not thread.is_alive() and id(None) in outcome
    with pytest.raises(Cancelled):
        other.get_job(job.job_id)
    client.cancel_job(job.job_id)


def test_watch_survives_dropped_connections(server, tmp_path):
    proxy = TcpProxy(server.port)
    reconnects = []
    try:
        with RenderClient(f"127.0.0.1:{proxy.port}", backoff_initial_s=0.05) as client:
            poses, ref, ref_pose, options = shot(13, steps=2)
            job = client.submit_shot(poses, ref, ref_pose, options).job
            events = []
            for event in client.watch(job.job_id, heartbeats=True,
                                      on_reconnect=lambda *a: reconnects.append(a)):
                if event.HasField("heartbeat"):
                    continue
                events.append(event)
                if len(events) in (2, 4):
                    proxy.drop()  # cut the TCP connection under the open stream
            assert len(reconnects) >= 2 and proxy.connections >= 3
            _assert_contiguous(events)
            assert events[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
            replay = [e.SerializeToString() for e in client.watch(job.job_id)]
            assert [e.SerializeToString() for e in events] == replay
    finally:
        proxy.close()


def test_heartbeats_and_progress_on_queued_watch(client):
    poses, ref, ref_pose, options = shot(5)
    job = client.submit_shot(poses, ref, ref_pose, options).job
    kinds = [e.WhichOneof("kind") for e in client.watch(job.job_id, heartbeats=True)]
    assert kinds[-1] == "state_changed" and "state_changed" in kinds


def test_errors_are_typed(client):
    with pytest.raises(NotFound):
        client.get_job("job-" + "0" * 32)
    with pytest.raises(InvalidRequest) as info:
        client.get_job("not-a-job")
    assert info.value.field == "job_id" and info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    poses, ref, ref_pose, options = shot(3)
    bad = options.__class__(**{**options.__dict__, "width_px": 33, "height_px": 48})
    with pytest.raises(InvalidRequest) as info:
        client.submit_shot(poses, ref, ref_pose, bad)
    assert info.value.field == "width_px", str(info.value)
    with pytest.raises(InvalidRequest):
        client.submit_shot(poses, b"not an image", ref_pose, options)


def test_server_down_fails_fast_with_clear_errors():
    address = f"127.0.0.1:{free_port()}"  # nothing listens here
    with RenderClient(address, timeout_s=2, retries=1, backoff_initial_s=0.05, reconnect_budget_s=1.0) as client:
        start = time.monotonic()
        with pytest.raises(ServerUnavailable) as info:
            client.get_job("job-" + "1" * 32)
        assert "GetJob" in str(info.value) and "hint" in str(info.value)
        with pytest.raises(ServerUnavailable):
            client.wait_ready(timeout_s=1)
        with pytest.raises(WatchGaveUp):
            list(client.watch("job-" + "1" * 32))
        assert time.monotonic() - start < 15
