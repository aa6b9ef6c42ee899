"""Submit -> watch -> frames against a real server (loopback, tiny model): multi-chunk shot, single image,
re-attach after a dropped stream, downloads, idempotent submit, list/get, health and reflection."""

from __future__ import annotations

import hashlib
import io

import av
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from render_server._generated import render_service_pb2 as pb
from render_server.storage.images import decode_png, encode_png

from service_helpers import SIZE, download_frames, submit_request, wait_state, watch_all


def _check_event_stream(events: list[pb.JobEvent], frames: int) -> None:
    assert [e.sequence for e in events] == list(range(1, len(events) + 1)), "gap or duplicate in sequences"
    states = [e.state_changed.state for e in events if e.WhichOneof("kind") == "state_changed"]
    assert states[0] == pb.JOB_STATE_QUEUED and states[-1] == pb.JOB_STATE_SUCCEEDED
    assert pb.JOB_STATE_RUNNING in states
    ready = [e.frame_ready for e in events if e.WhichOneof("kind") == "frame_ready"]
    covered = sorted(f for r in ready for f in range(r.first_frame, r.first_frame + r.frame_count))
    assert covered == list(range(frames)), "every frame announced exactly once"
    assert ready[-1].frames_done == ready[-1].frames_total == frames


def test_multi_chunk_shot_end_to_end(stub):
    response = stub.SubmitJob(submit_request(frames=13, guidance_mode=pb.GUIDANCE_MODE_STANDARD), timeout=30)
    assert response.created and response.job.settings.segment_count == 2
    job_id = response.job.job_id
    events = watch_all(stub, job_id)
    _check_event_stream(events, 13)
    steps = [e.step_progress for e in events if e.WhichOneof("kind") == "step_progress"]
    assert {s.segment_index for s in steps} == {0, 1}
    # Official default scales (2.5, 1.5) with STANDARD guidance: three passes per step.
    assert all(s.step_count == 2 and s.segment_count == 2 and s.pass_index == s.pass_count == 3 for s in steps)
    assert steps[-1].progress == pytest.approx(1.0)
    previews = [e.preview for e in events if e.WhichOneof("kind") == "preview"]
    assert len(previews) == 2 and all(p.jpeg[:3] == b"\xff\xd8\xff" for p in previews)

    job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10).job
    assert job.state == pb.JOB_STATE_SUCCEEDED and job.frames_done == 13 and job.segments_done == 2
    assert job.last_event_sequence == events[-1].sequence

    frames = download_frames(stub, job_id, chunk=4096)  # small chunks: frames arrive in several pieces
    assert sorted(frames) == list(range(13))
    images = [decode_png(frames[i]) for i in range(13)]
    assert all(img.shape == (SIZE, SIZE, 3) for img in images)
    assert np.std(np.stack(images)) > 1.0  # real renders, not blank frames
    poses = download_frames(stub, job_id, kind=pb.FRAME_KIND_POSE)
    assert sorted(poses) == list(range(13)) and decode_png(poses[0]).max() > 0  # pose drawings visible

    names = {f.name: f for f in job.output_files}
    assert {"video.mp4", "pose.mp4", "reference.png", "reference_pose.png"} <= set(names)
    data = b"".join(p.data for p in stub.DownloadFile(
        pb.DownloadFileRequest(job_id=job_id, name="video.mp4", max_chunk_bytes=4096), timeout=30))
    assert hashlib.sha256(data).hexdigest() == names["video.mp4"].sha256
    with av.open(io.BytesIO(data)) as container:
        decoded = [f for f in container.decode(video=0)]
    assert len(decoded) == 13 and (decoded[0].width, decoded[0].height) == (SIZE, SIZE)
    # Resumable download: the tail from an offset.
    tail = b"".join(p.data for p in stub.DownloadFile(
        pb.DownloadFileRequest(job_id=job_id, name="video.mp4", offset=100, limit=50), timeout=30))
    assert tail == data[100:150]


def test_single_image_pose_transfer(stub):
    job_id = stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id
    events = watch_all(stub, job_id)
    _check_event_stream(events, 1)
    frames = download_frames(stub, job_id)
    assert list(frames) == [0] and decode_png(frames[0]).shape == (SIZE, SIZE, 3)


def test_per_frame_transfer_renders_each_frame_independently(stub):
    request = submit_request(frames=3, image_pose_transfer=pb.IMAGE_POSE_TRANSFER_MODE_PER_FRAME)
    job = stub.SubmitJob(request, timeout=30).job
    assert job.settings.segment_count == 3
    _check_event_stream(watch_all(stub, job.job_id), 3)


def test_reattach_after_dropped_stream_resumes_without_loss(stub):
    job_id = stub.SubmitJob(submit_request(frames=13), timeout=30).job.job_id
    seen: list[pb.JobEvent] = []
    # Drop the stream three times after a couple of events, each time resuming after the last sequence seen.
    for _ in range(3):
        call = stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=seen[-1].sequence if seen else 0))
        for event in call:
            if event.WhichOneof("kind") == "heartbeat":
                continue
            seen.append(event)
            if len(seen) % 2 == 0:
                call.cancel()
                break
    seen.extend(watch_all(stub, job_id, after=seen[-1].sequence))
    _check_event_stream(seen, 13)
    # A finished job replays its whole history, and resuming after the last event ends at once.
    assert [e.sequence for e in watch_all(stub, job_id)] == [e.sequence for e in seen]
    assert watch_all(stub, job_id, after=seen[-1].sequence) == []
    with pytest.raises(grpc.RpcError) as err:
        list(stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_sequence=seen[-1].sequence + 5)))
    assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_idempotent_submit_and_conflicting_reuse(stub):
    request = submit_request(frames=1, client_request_id="shot-010-take-3")
    first = stub.SubmitJob(request, timeout=30)
    again = stub.SubmitJob(request, timeout=30)
    assert first.created and not again.created and again.job.job_id == first.job.job_id
    changed = submit_request(frames=1, client_request_id="shot-010-take-3", steps=3)
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(changed, timeout=30)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and first.job.job_id in err.value.details()
    wait_state(stub, first.job.job_id, {pb.JOB_STATE_SUCCEEDED})
    listed = stub.ListJobs(pb.ListJobsRequest(), timeout=10).jobs
    assert [j.job_id for j in listed].count(first.job.job_id) == 1


def test_list_jobs_pages_and_filters(stub):
    ids = [stub.SubmitJob(submit_request(frames=1), timeout=30).job.job_id for _ in range(3)]
    for job_id in ids:
        wait_state(stub, job_id, {pb.JOB_STATE_SUCCEEDED})
    page = stub.ListJobs(pb.ListJobsRequest(page_size=2), timeout=10)
    assert [j.job_id for j in page.jobs] == ids[::-1][:2] and page.next_page_token
    rest = stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=page.next_page_token), timeout=10)
    assert rest.jobs[0].job_id == ids[0]
    done = stub.ListJobs(pb.ListJobsRequest(states=[pb.JOB_STATE_SUCCEEDED]), timeout=10).jobs
    assert set(ids) <= {j.job_id for j in done}
    assert not {j.job_id for j in stub.ListJobs(pb.ListJobsRequest(states=[pb.JOB_STATE_QUEUED]), timeout=10).jobs} & set(ids)


def test_upload_assets_and_submit_by_id(stub):
    rng = np.random.default_rng(123)  # bytes no other test has stored yet
    image = encode_png(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    chunks = [image[i:i + 1000] for i in range(0, len(image), 1000)]
    requests = [pb.UploadAssetRequest(info=pb.AssetInfo(kind=pb.ASSET_KIND_REFERENCE_IMAGE, size_bytes=len(image),
                                                        sha256=hashlib.sha256(image).hexdigest()),
                                      data=chunks[0])]
    requests += [pb.UploadAssetRequest(data=c) for c in chunks[1:]]
    uploaded = stub.UploadAsset(iter(requests), timeout=30)
    assert uploaded.asset_id == "sha256:" + hashlib.sha256(image).hexdigest() and not uploaded.already_stored
    assert stub.UploadAsset(iter(requests), timeout=30).already_stored
    assert stub.GetAsset(pb.GetAssetRequest(asset_id=uploaded.asset_id), timeout=10).info.size_bytes == len(image)

    poses = submit_request(frames=5).driving_poses.SerializeToString()
    pose_asset = stub.UploadAsset(iter([pb.UploadAssetRequest(
        info=pb.AssetInfo(kind=pb.ASSET_KIND_POSE_SEQUENCE, size_bytes=len(poses)), data=poses)]), timeout=30)
    request = submit_request(reference_image_asset_id=uploaded.asset_id, driving_poses_asset_id=pose_asset.asset_id)
    assert request.WhichOneof("reference") == "reference_image_asset_id"
    assert request.WhichOneof("driving") == "driving_poses_asset_id"
    job_id = stub.SubmitJob(request, timeout=30).job.job_id
    assert len(download_frames(stub, wait_state(stub, job_id, {pb.JOB_STATE_SUCCEEDED}).job_id)) == 5


def test_health_serving_and_reflection(app):
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "one_to_all.v1.RenderService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                      timeout=10))
        names = {s.name for s in answer.list_services_response.service}
        assert {"one_to_all.v1.RenderService", "grpc.health.v1.Health"} <= names


def test_delete_finished_job_frees_disk_and_request_id(app, stub):
    request = submit_request(frames=1, client_request_id="delete-me")
    job_id = stub.SubmitJob(request, timeout=30).job.job_id
    wait_state(stub, job_id, {pb.JOB_STATE_SUCCEEDED})
    assert (app.jobs_dir / job_id).exists()
    freed = stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id), timeout=10).freed_bytes
    assert freed > 0 and not (app.jobs_dir / job_id).exists()
    for call in (lambda: stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=10),
                 lambda: stub.DeleteJob(pb.DeleteJobRequest(job_id=job_id), timeout=10)):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # The idempotency key is free again: the same request makes a new job.
    again = stub.SubmitJob(request, timeout=30)
    assert again.created and again.job.job_id != job_id
    wait_state(stub, again.job.job_id, {pb.JOB_STATE_SUCCEEDED})
    # An unfinished job cannot be deleted.
    running = stub.SubmitJob(submit_request(frames=21, steps=60), timeout=30).job.job_id
    wait_state(stub, running, {pb.JOB_STATE_RUNNING})
    with pytest.raises(grpc.RpcError) as err:
        stub.DeleteJob(pb.DeleteJobRequest(job_id=running), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stub.CancelJob(pb.CancelJobRequest(job_id=running), timeout=10)
    wait_state(stub, running, {pb.JOB_STATE_CANCELLED})
    stub.DeleteJob(pb.DeleteJobRequest(job_id=running), timeout=10)
