#!/usr/bin/env python3
"""Benchmark: moving 81 frames at 576x1024 between client and server over loopback gRPC.

    python bench/bench_transfer.py [--repeats 3] [--chunk-kib 1024] [--no-append]
    python bench/bench_transfer.py --server 127.0.0.1:50051 --job job-...    # frames of an existing job

Without --server it starts `o2a-server --model tiny` and makes a finished 81-frame job whose stored output frames
are 576x1024 PNGs. The tiny model cannot render 576x1024 on a CPU in reasonable time (one denoising step of one
9-frame segment takes about a minute here), so the job is rendered at 32x48 and, with the server stopped, its
stored frames are replaced by 576x1024 PNGs of the painted walking figure plus mild noise (about the size of real
renders, ~1 MB); the server is restarted on the same data folder. Everything measured is the real path: the
server reads the files, chunks and hashes them, gRPC carries them, the client verifies size and SHA-256 and
writes each file atomically. Then, through the client library exactly as the add-on and the CLI use it:

* download: `download_frames` of the 81 stored frames, best and median of `--repeats` runs into fresh folders;
* upload: `upload_asset` of those 81 PNGs as 81 distinct reference images (content addressed, chunked; the server
  decodes each one to validate it), and of one fresh reference image alone.

Prints one JSON line and appends a row to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import grpc  # noqa: E402
from google.protobuf import __version__ as protobuf_version  # noqa: E402

from blender_addon.client._generated import render_service_pb2 as pb  # noqa: E402
from blender_addon.client.api import RenderClient  # noqa: E402
from blender_addon.client.convert import RenderOptions  # noqa: E402
from o2a_demo.figure import figure_pose, paint_reference, rest_pose, walking_sequence  # noqa: E402
from o2a_demo.server_process import ServerProcess  # noqa: E402
from o2a_demo.sheet import write_png  # noqa: E402

BENCHMARKS_MD = REPO_ROOT / "docs" / "benchmarks.md"
FRAMES, WIDTH, HEIGHT = 81, 576, 1024


def frame_png(phase: float, rng) -> bytes:
    """A 576x1024 PNG of the painted figure at `phase` plus mild noise (about the size of a real render)."""
    import cv2
    import numpy as np

    image = paint_reference(figure_pose(phase, WIDTH, HEIGHT), WIDTH, HEIGHT).astype(np.int16)
    image += rng.normal(0.0, 4.0, image.shape).astype(np.int16)
    ok, png = cv2.imencode(".png", np.clip(image, 0, 255).astype(np.uint8)[..., ::-1])
    assert ok
    return png.tobytes()


def make_job(server: ServerProcess, work: Path) -> tuple[str, float]:
    """A finished 81-frame job whose stored output frames are 576x1024 PNGs (see the module docstring)."""
    import numpy as np

    from render_server.storage.job_files import JobFiles

    small = (32, 48)
    pose = rest_pose(*small)
    reference = write_png(work / "small_reference.png", paint_reference(pose, *small)).read_bytes()
    options = RenderOptions(width_px=small[0], height_px=small[1], steps=1, guidance_mode="none", seed=0,
                            display_name="bench_transfer")
    with RenderClient(server.address) as client:
        job = client.submit_shot(walking_sequence(FRAMES, *small), reference, pose, options).job
        final = client.wait(job.job_id)
    if final.state != pb.JOB_STATE_SUCCEEDED:
        raise SystemExit(f"bench_transfer: the job ended {pb.JobState.Name(final.state)}: {final.error}")
    server.stop()
    files = JobFiles(server.data_dir / "jobs" / job.job_id)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for i in range(FRAMES):
        path = files.frame_path(i)
        if not path.exists():
            raise SystemExit(f"bench_transfer: expected the stored frame {path}")
        path.write_bytes(frame_png(0.4 * i, rng))
    prepare_s = time.perf_counter() - start
    server.start()
    return job.job_id, prepare_s


def measure(client: RenderClient, job_id: str, work: Path, repeats: int) -> dict:
    times, paths = [], []
    for i in range(repeats):
        out = work / f"download-{i}"
        start = time.perf_counter()
        paths = client.download_frames(job_id, out, frame_count=FRAMES)
        times.append(time.perf_counter() - start)
        if i < repeats - 1:
            shutil.rmtree(out)
    total = sum(p.stat().st_size for p in paths)
    best, median = min(times), statistics.median(times)

    payloads = [p.read_bytes() for p in paths]
    start = time.perf_counter()
    uploaded = [client.upload_asset(data, pb.ASSET_KIND_REFERENCE_IMAGE) for data in payloads]
    upload_s = time.perf_counter() - start
    fresh = sum(not u.already_stored for u in uploaded)
    # A reference the server has never seen (the job's own reference is stored already and would be skipped).
    import numpy as np

    single = frame_png(1.234, np.random.default_rng(1))
    start = time.perf_counter()
    one = client.upload_asset(single, pb.ASSET_KIND_REFERENCE_IMAGE)
    single_s = time.perf_counter() - start
    assert not one.already_stored
    mb = total / 1e6
    return {
        "download": {"bytes": total, "seconds_best": round(best, 3), "seconds_median": round(median, 3),
                     "MB_per_s": round(mb / best, 1), "MB_per_s_median": round(mb / median, 1),
                     "frames_per_s": round(FRAMES / best, 1), "repeats": repeats},
        "upload": {"bytes": total, "seconds": round(upload_s, 3), "MB_per_s": round(mb / upload_s, 1),
                   "images": len(payloads), "newly_stored": fresh},
        "upload_one_reference": {"bytes": len(single), "seconds": round(single_s, 4)},
        "mean_png_bytes": int(total / len(paths)),
    }


def environment() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "grpcio": grpc.__version__, "protobuf": protobuf_version,
            "cpu": cpu, "cpus": os.cpu_count(), "transport": "loopback TCP, plaintext"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", help="use a running server (HOST:PORT) ...")
    p.add_argument("--job", help="... and the frames of this finished job (81 frames at 576x1024)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-kib", type=int, default=1024, help="client chunk size in KiB")
    p.add_argument("--no-append", action="store_true", help="do not append to docs/benchmarks.md")
    args = p.parse_args(argv)
    if (args.server is None) != (args.job is None):
        p.error("--server and --job go together")
    work = Path(tempfile.mkdtemp(prefix="o2a-bench-transfer-"))
    server = None
    try:
        address, job_id = args.server, args.job
        if address is None:
            server = ServerProcess(work / "data", log_path=work / "server.log").start()
            job_id, _ = make_job(server, work)
            address = server.address
        with RenderClient(address, chunk_bytes=args.chunk_kib * 1024, timeout_s=60) as client:
            result = {"bench": "transfer", "frames": FRAMES, "width": WIDTH, "height": HEIGHT,
                      "chunk_bytes": args.chunk_kib * 1024,
                      "stored_frames": "substituted 576x1024 PNGs" if server else f"job {job_id}",
                      **measure(client, job_id, work, args.repeats), **environment()}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    if not args.no_append:
        d, u = result["download"], result["upload"]
        row = (f"- transfer over loopback ({result['date'][:10]}, `bench/bench_transfer.py`): {FRAMES} frames "
               f"{WIDTH}x{HEIGHT} PNG ({d['bytes'] / 1e6:.1f} MB, {result['mean_png_bytes'] / 1e6:.2f} MB/frame), "
               f"{args.chunk_kib} KiB chunks, stored frames: {result['stored_frames']}: "
               f"download **{d['MB_per_s']} MB/s** ({d['seconds_best']} s best, {d['seconds_median']} s median of "
               f"{d['repeats']}, {d['frames_per_s']} frames/s), upload as 81 reference assets "
               f"**{u['MB_per_s']} MB/s** ({u['seconds']} s, the server decodes each to validate it), one ~1 MB "
               f"reference {result['upload_one_reference']['seconds']} s; grpcio {result['grpcio']}, protobuf "
               f"{result['protobuf']}, Python {result['python']}, {result['cpu']} x{result['cpus']} (shared)")
        with BENCHMARKS_MD.open("a") as handle:
            handle.write("\n" + row + "\n")
            handle.write(f"<!-- {line} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
