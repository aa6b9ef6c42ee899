"""Storage layer of the server: job folders and frame bookkeeping for resumption, assets, guarded image decoding,
mp4 encoding, and the SQLite store's transactions."""

from __future__ import annotations

import hashlib
import struct
import zlib

import av
import numpy as np
import pytest

from render_server.jobs.spec import JobSpec, JobState
from render_server.jobs.store import JobStore, QueueFullError
from render_server.pipeline.chunking import plan_chunks
from render_server.storage.assets import AssetError, AssetStore
from render_server.storage.images import ImageError, decode_png, decode_rgb, encode_png
from render_server.storage.job_files import JobFiles, final_frames_after, latest_writer
from render_server.storage.video import encode_mp4


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("plan", ["default", "official"])
def test_every_frame_is_published_once_by_its_last_writer(plan):
    chunks = plan_chunks(300, plan)
    ranges = [(c.write_start, c.write_end) for c in chunks]
    published = [f for s in range(len(chunks)) for f in final_frames_after(s, ranges)]
    assert sorted(published) == list(range(300))
    for chunk in chunks[1:]:
        for f in chunk.prev_frame_indices:  # token-replace frames come from an earlier segment that wrote them
            s = latest_writer(f, chunk.index, ranges)
            assert s < chunk.index and ranges[s][0] <= f < ranges[s][1]


def test_publish_is_idempotent_after_segments_are_dropped(tmp_path):
    files = JobFiles(tmp_path / "job")
    frames = _frames(4)
    files.write_segment(0, 0, frames)
    files.publish(0, range(4))
    files.drop_segments()
    files.publish(0, range(4))  # a resumed job whose outputs were written before the crash
    assert all(np.array_equal(decode_png(files.frame_path(i).read_bytes()), frames[i]) for i in range(4))


def test_png_round_trip_is_exact():
    frames = _frames(3)
    for frame in frames:
        assert np.array_equal(decode_png(encode_png(frame)), frame)
        assert encode_png(frame) == encode_png(frame.copy())  # deterministic bytes


def test_reference_decoding_refuses_bombs_garbage_and_truncation():
    good = encode_png(_frames(1)[0])
    assert decode_rgb(good, max_pixels=256).shape == (16, 16, 3)
    with pytest.raises(ImageError, match="exceeds"):
        decode_rgb(good, max_pixels=255)
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ImageError, match="exceeds"):
        decode_rgb(bomb, max_pixels=4096 * 4096)
    with pytest.raises(ImageError, match="PNG or JPEG"):
        decode_rgb(b"GIF89a...", max_pixels=10**6)
    with pytest.raises(ImageError):
        decode_rgb(good[: len(good) // 2], max_pixels=10**6)


def test_asset_upload_verifies_size_and_hash(tmp_path):
    store = AssetStore(tmp_path)
    data = b"x" * 5000
    upload = store.begin_upload(kind="reference_image", size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    upload.write(data[:2000])
    upload.write(data[2000:])
    meta, already = upload.commit()
    assert meta.asset_id == "sha256:" + hashlib.sha256(data).hexdigest() and not already
    assert store.read(meta.asset_id) == data and store.put(data, "pose_sequence")[1]
    assert store.meta(meta.asset_id).kinds == ("reference_image", "pose_sequence")
    bad = store.begin_upload(kind="reference_image", size_bytes=3, sha256="0" * 64)
    bad.write(b"abc")
    with pytest.raises(AssetError, match="sha256"):
        bad.commit()
    short = store.begin_upload(kind="reference_image", size_bytes=4)
    with pytest.raises(AssetError, match="more than"):
        short.write(b"abcde")
    short.abort()
    assert not list((tmp_path / "tmp").iterdir())


def test_mp4_has_every_frame(tmp_path):
    encode_mp4(iter(_frames(7)), 24.0, tmp_path / "v.mp4")
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert len(list(container.decode(video=0))) == 7
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def _spec(priority: int = 0) -> JobSpec:
    return JobSpec(
        model_id="tiny", reference_asset_id="sha256:" + "0" * 64, detect_reference_pose=False, canvas_width_px=64,
        canvas_height_px=64, frame_count=1, width_px=32, height_px=32, fps=24.0, seed=1, steps=1,
        image_guidance_scale=2.5, pose_guidance_scale=1.5, guidance_mode="standard", face_lightening="auto",
        alignment_mode="reference", chunk_plan="default", image_pose_transfer="auto", priority=priority, lease_s=0,
        prompt="", negative_prompt=None,
    )


def test_store_survives_reopen_and_numbers_events_per_job(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite3")
    a, created = store.create_job(job_id="job-a", client_request_id="r1", request_hash="h", spec=_spec(),
                                  segments_total=1, max_queued=10)
    again, created_again = store.create_job(job_id="job-b", client_request_id="r1", request_hash="h2", spec=_spec(),
                                            segments_total=1, max_queued=10)
    assert created and not created_again and again.job_id == "job-a"
    store.append_events("job-a", [("step", {"step": 1}, None)], updates={"progress": 0.5}, finished_segment=0)
    # A transition guarded by the current state does nothing when the state differs.
    assert store.append_events("job-a", [("state", {"state": "SUCCEEDED"}, None)],
                               only_if_state=(JobState.RUNNING,)) == []
    store.close()
    reopened = JobStore(tmp_path / "jobs.sqlite3")
    record = reopened.get("job-a")
    assert record.progress == 0.5 and record.last_event_sequence == 2 and record.spec == _spec()
    assert [e.sequence for e in reopened.events_after("job-a", 0)] == [1, 2]
    assert reopened.finished_segments("job-a") == {0}
    with pytest.raises(QueueFullError):
        reopened.create_job(job_id="job-c", client_request_id="", request_hash="h", spec=_spec(), segments_total=1,
                            max_queued=1)
    reopened.close()
