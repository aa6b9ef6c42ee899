"""Hypothesis fuzzing of malformed requests against a real in-process server.

Every example is a valid request with one field broken in a way the protocol forbids (or a malformed call of
another RPC). Each must be answered with the right status (INVALID_ARGUMENT naming the field, or NOT_FOUND /
FAILED_PRECONDITION / OUT_OF_RANGE where that is the meaning), none may create a job, and afterwards the server
still renders a valid job.
"""

from __future__ import annotations

import math
import re
import struct
import zlib

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render_server._generated import render_service_pb2 as pb

from service_helpers import pose_msg, make_pose, reference_png, submit_request, wait_state

INVALID = grpc.StatusCode.INVALID_ARGUMENT
_BASE = submit_request(frames=3)
_SETTINGS = settings(max_examples=1100, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# -- building blocks ---------------------------------------------------------------------------------------------

bad_float = st.one_of(st.just(math.nan), st.just(math.inf), st.just(-math.inf))
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)


def _png_header(width: int, height: int) -> bytes:
    """A syntactically valid PNG whose header claims width x height (a decompression bomb's first bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@st.composite
def bad_keypoints(draw) -> list[float]:
    """399 values with one broken, or a wrong count."""
    values = make_pose(0.0).reshape(-1).tolist()
    kind = draw(st.sampled_from(["count", "nonfinite", "confidence", "far"]))
    if kind == "count":
        n = draw(st.integers(0, 800).filter(lambda n: n != 399))
        return (values * 3)[:n]
    i = draw(st.integers(0, 132))
    if kind == "nonfinite":
        values[i * 3 + draw(st.integers(0, 2))] = draw(bad_float)
    elif kind == "confidence":
        values[i * 3 + 2] = draw(st.one_of(st.floats(1.0001, 1e30), st.floats(-1e30, -1e-6)))
    else:
        values[i * 3 + draw(st.integers(0, 1))] = draw(st.sampled_from([1, -1])) * draw(st.floats(1.1e6, 1e30))
    return values


# Each case: (mutation applied to a copy of the base request, the field the error must name, allowed codes).
def _case(field: str, apply, codes=(INVALID,)):
    return field, apply, codes


def _set(name):
    return lambda value: (lambda r: setattr(r, name, value))


@st.composite
def malformed_submit(draw):
    choice = draw(st.sampled_from([
        "request_id", "image_garbage", "image_bomb", "image_too_big", "image_truncated", "no_reference",
        "asset_id_bad", "asset_id_unknown", "no_pose", "detect_false", "detect_true", "ref_keypoints",
        "no_driving", "canvas", "driving_fps", "no_frames", "frame_keypoints", "size_multiple", "size_half",
        "size_huge", "fps", "seed", "steps", "guidance", "enum", "priority", "lease", "prompt", "official_short",
        "pose_asset_unknown",
    ]))
    r = pb.SubmitJobRequest()
    r.CopyFrom(_BASE)
    field, codes = choice, (INVALID,)
    if choice == "request_id":
        bad = draw(st.one_of(st.text(min_size=1, max_size=40).filter(lambda s: any(not (c.isascii() and (c.isalnum() or c in "._:-")) for c in s)),
                             st.text(alphabet="abc", min_size=129, max_size=300), st.just("take-3\n")))
        r.client_request_id, field = bad, "client_request_id"
    elif choice == "image_garbage":
        r.reference_image, field = draw(st.binary(max_size=300)), "reference_image"
    elif choice == "image_bomb":
        side = draw(st.integers(5000, 2**31 - 1))
        r.reference_image, field = _png_header(side, draw(st.integers(4000, 2**31 - 1))), "reference_image"
    elif choice == "image_too_big":
        r.reference_image, field = b"\x89PNG\r\n\x1a\n" + b"\x00" * (3 * 2**20 + 1), "reference_image"
    elif choice == "image_truncated":
        png = reference_png()
        r.reference_image, field = png[: draw(st.integers(0, len(png) - 40))], "reference_image"  # into IDAT
    elif choice == "no_reference":
        r.ClearField("reference_image")
        field = "reference_image"
    elif choice == "asset_id_bad":
        r.reference_image_asset_id = draw(st.text(max_size=80).filter(lambda s: not s.startswith("sha256:")))
        field = "reference_image_asset_id"
    elif choice == "asset_id_unknown":
        r.reference_image_asset_id = "sha256:" + draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
        field, codes = "reference_image_asset_id", (grpc.StatusCode.NOT_FOUND,)
    elif choice == "pose_asset_unknown":
        r.driving_poses_asset_id = "sha256:" + "ab" * 32
        field, codes = "driving_poses_asset_id", (grpc.StatusCode.NOT_FOUND,)
    elif choice == "no_pose":
        r.ClearField("reference_pose")
        field = "reference_pose"
    elif choice == "detect_false":
        r.reference_pose.detect = False
        field = "reference_pose"
    elif choice == "detect_true":
        r.reference_pose.detect = True
        field, codes = "reference_pose.detect", (grpc.StatusCode.FAILED_PRECONDITION,)
    elif choice == "ref_keypoints":
        del r.reference_pose.keypoints.keypoints[:]
        r.reference_pose.keypoints.keypoints.extend(draw(bad_keypoints()))
        field = "reference_pose.keypoints"
    elif choice == "no_driving":
        r.ClearField("driving_poses")
        field = "driving_poses"
    elif choice == "canvas":
        name = draw(st.sampled_from(["canvas_width_px", "canvas_height_px"]))
        setattr(r.driving_poses, name, draw(st.one_of(st.just(0), st.integers(16385, 2**32 - 1))))
        field = f"driving_poses.{name}"
    elif choice == "driving_fps":
        r.driving_poses.fps = draw(st.one_of(bad_float, st.floats(-1e9, 0), st.floats(240.001, 1e12)))
        field = "driving_poses.fps"
    elif choice == "no_frames":
        del r.driving_poses.frames[:]
        field = "driving_poses.frames"
    elif choice == "frame_keypoints":
        i = draw(st.integers(0, 2))
        del r.driving_poses.frames[i].keypoints[:]
        r.driving_poses.frames[i].keypoints.extend(draw(bad_keypoints()))
        field = f"driving_poses.frames[{i}].keypoints"
    elif choice == "size_multiple":
        r.width_px = draw(st.integers(1, 5000).filter(lambda v: v % 16))
        field = "width_px"
    elif choice == "size_half":
        r.height_px, field = 0, "height_px"
    elif choice == "size_huge":
        r.width_px = r.height_px = draw(st.integers(1281 // 16 + 1, 16384 // 16)) * 16
        field = "width_px"
    elif choice == "fps":
        r.fps = draw(st.one_of(bad_float, st.floats(-1e9, -1e-9), st.floats(240.001, 1e12)))
        field = "fps"
    elif choice == "seed":
        r.seed, field = draw(st.integers(2**63, 2**64 - 1)), "seed"
    elif choice == "steps":
        r.steps, field = draw(st.integers(101, 2**32 - 1)), "steps"
    elif choice == "guidance":
        name = draw(st.sampled_from(["image_guidance_scale", "pose_guidance_scale"]))
        setattr(r, name, draw(st.one_of(bad_float, st.floats(-1e30, -1e-3), st.floats(20.01, 1e30))))
        field = name
    elif choice == "enum":
        name, top = draw(st.sampled_from([("guidance_mode", 3), ("face_lightening", 3), ("alignment_mode", 4),
                                          ("chunk_plan", 2), ("image_pose_transfer", 2)]))
        setattr(r, name, draw(st.one_of(st.integers(top + 1, 2**31 - 1), st.integers(-(2**31), -1))))
        field = name
    elif choice == "priority":
        r.priority = draw(st.one_of(st.integers(101, 2**31 - 1), st.integers(-(2**31), -101)))
        field = "priority"
    elif choice == "lease":
        r.lease_s, field = draw(st.one_of(st.just(0), st.integers(86401, 2**32 - 1))), "lease_s"
    elif choice == "prompt":
        name = draw(st.sampled_from(["prompt", "negative_prompt", "display_name"]))
        setattr(r, name, draw(st.one_of(st.text(min_size=2001, max_size=2100), st.just("a\x00b"))))
        field = name
    elif choice == "official_short":
        r.chunk_plan, field = pb.CHUNK_PLAN_OFFICIAL, "chunk_plan"
    return r, field, codes


@pytest.fixture
def counted(stub):
    before = len(stub.ListJobs(pb.ListJobsRequest(page_size=1000), timeout=10).jobs)
    yield
    after = stub.ListJobs(pb.ListJobsRequest(page_size=1000), timeout=10).jobs
    assert len(after) == before, "a malformed request created a job"


@_SETTINGS
@given(case=malformed_submit())
def test_malformed_submit_requests_are_refused_with_the_field_named(stub, counted, case):
    request, field, codes = case
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitJob(request, timeout=30)
    assert err.value.code() in codes, (err.value.code(), err.value.details())
    assert err.value.details().startswith(field.split("[")[0].split(".")[0]), (field, err.value.details())


@st.composite
def malformed_other_call(draw):
    rpc = draw(st.sampled_from(["GetJob", "CancelJob", "WatchJob", "DeleteJob", "ListJobs", "DownloadFrames",
                                "DownloadFile", "GetAsset", "UploadAsset"]))
    bad_id = draw(st.one_of(st.text(max_size=60), st.just("job-" + "z" * 32), st.just("job-" + "0" * 32 + "\n")))
    if rpc in ("GetJob", "CancelJob", "WatchJob", "DeleteJob"):
        request = {"GetJob": pb.GetJobRequest, "CancelJob": pb.CancelJobRequest, "WatchJob": pb.WatchJobRequest,
                   "DeleteJob": pb.DeleteJobRequest}[rpc]
        return rpc, request(job_id=bad_id), (INVALID,)
    if rpc == "ListJobs":
        which = draw(st.sampled_from(["size", "token", "state"]))
        if which == "size":
            return rpc, pb.ListJobsRequest(page_size=draw(st.integers(1001, 2**32 - 1))), (INVALID,)
        if which == "token":
            token = draw(st.one_of(st.text(min_size=1, max_size=40).filter(lambda s: not re.fullmatch(r"[0-9]{1,18}", s)),
                                   st.sampled_from(["12\n", "\u00b2", "\u0663", "1" * 19])))
            return rpc, pb.ListJobsRequest(page_token=token), (INVALID,)
        state = draw(st.one_of(st.just(0), st.integers(6, 2**31 - 1), st.integers(-(2**31), -1)))
        return rpc, pb.ListJobsRequest(states=[state]), (INVALID,)
    if rpc == "DownloadFrames":
        return rpc, pb.DownloadFramesRequest(job_id=bad_id), (INVALID,)
    if rpc == "DownloadFile":
        return rpc, pb.DownloadFileRequest(job_id=bad_id, name=draw(st.text(max_size=20))), (INVALID,)
    if rpc == "GetAsset":
        return rpc, pb.GetAssetRequest(asset_id=draw(st.text(max_size=80))), (INVALID,)
    # UploadAsset: a broken stream.
    which = draw(st.sampled_from(["no_info", "kind", "size", "sha", "short", "long", "info_twice", "content", "empty"]))
    data = draw(st.binary(min_size=1, max_size=200))
    info = pb.AssetInfo(kind=pb.ASSET_KIND_REFERENCE_IMAGE, size_bytes=len(data))
    if which == "no_info":
        messages = [pb.UploadAssetRequest(data=data)]
    elif which == "kind":
        info.kind = draw(st.one_of(st.just(0), st.integers(3, 2**31 - 1)))
        messages = [pb.UploadAssetRequest(info=info, data=data)]
    elif which == "size":
        info.size_bytes = draw(st.one_of(st.just(0), st.integers(64 * 2**20 + 1, 2**64 - 1)))
        messages = [pb.UploadAssetRequest(info=info, data=data)]
    elif which == "sha":
        info.sha256 = draw(st.text(min_size=1, max_size=70).filter(lambda s: len(s) != 64))
        messages = [pb.UploadAssetRequest(info=info, data=data)]
    elif which == "short":
        info.size_bytes = len(data) + draw(st.integers(1, 1000))
        messages = [pb.UploadAssetRequest(info=info, data=data)]
    elif which == "long":
        info.size_bytes = len(data)
        messages = [pb.UploadAssetRequest(info=info, data=data), pb.UploadAssetRequest(data=b"x")]
    elif which == "info_twice":
        messages = [pb.UploadAssetRequest(info=info), pb.UploadAssetRequest(info=info, data=data)]
    elif which == "content":  # random bytes announced as an image or a pose sequence
        info.kind = draw(st.sampled_from([pb.ASSET_KIND_REFERENCE_IMAGE, pb.ASSET_KIND_POSE_SEQUENCE]))
        data = b"\xff" + data  # never a valid PoseSequence (field number 31 wire type 7) nor PNG/JPEG magic
        info.size_bytes = len(data)
        messages = [pb.UploadAssetRequest(info=info, data=data)]
    else:
        messages = []
    return rpc, messages, (INVALID,)


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=malformed_other_call())
def test_malformed_calls_of_other_rpcs_are_refused(stub, case):
    rpc, request, codes = case
    with pytest.raises(grpc.RpcError) as err:
        if rpc == "UploadAsset":
            stub.UploadAsset(iter(request), timeout=30)
        else:
            result = getattr(stub, rpc)(request, timeout=30)
            if rpc in ("WatchJob", "DownloadFrames", "DownloadFile"):
                list(result)
    assert err.value.code() in codes, (rpc, err.value.code(), err.value.details())


def test_server_still_serves_a_valid_job_after_fuzzing(app, stub):
    job_id = stub.SubmitJob(submit_request(frames=3), timeout=30).job.job_id
    assert wait_state(stub, job_id, {pb.JOB_STATE_SUCCEEDED}).frames_done == 3
    assert all(worker.is_alive() for worker in app.workers)
