"""Checks the server's real-model path on a CUDA machine with its default speed settings.

`--checkpoint DIR --wan DIR` on CUDA turns on the fast exact path by default (attention `auto`, compiled blocks,
bf16 VAE decode). This runs the same two-chunk job through a real loopback server twice, once with those defaults
and once with every speed option off, and reports that both succeed and how far their frames differ.

    python bench/gpu_real_path_check.py --checkpoint DIR [--device cuda:0]

DIR is any One-to-All checkpoint folder (e.g. the official-parity fixture's `checkpoint/`); the Wan folder is
built from the tiny VAE and UMT5 (`render_server.models.tiny`). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.app import AppConfig, RenderApp
from render_server.engine import EngineConfig
from render_server.service.server import ServerConfig

from bench_queue_overhead import _request  # noqa: E402  (bench/ is sys.path[0] when run as a script)

TERMINAL = (pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED)


def _build_wan_folder(root: Path) -> Path:
    from render_server.models.tiny import build_tiny_text_encoder, build_tiny_vae

    text = build_tiny_text_encoder(seed=0)
    build_tiny_vae(seed=0).save_pretrained(root / "vae")
    text.text_encoder.save_pretrained(root / "text_encoder")
    text.tokenizer.save_pretrained(root / "tokenizer")
    return root


def _render(engine: EngineConfig, device: str, data_dir: Path, request: pb.SubmitJobRequest) -> dict:
    from PIL import Image

    app = RenderApp(AppConfig(data_dir=data_dir, server=ServerConfig(listen="127.0.0.1:0"), engine=engine,
                              devices=(device,))).start()
    try:
        if not app.wait_ready(600):
            return {"state": "NOT_READY", "error": str(app.load_error)}
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            start = time.perf_counter()
            job_id = stub.SubmitJob(request, timeout=60).job.job_id
            deadline = time.monotonic() + 600
            job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30).job
            while job.state not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.2)
                job = stub.GetJob(pb.GetJobRequest(job_id=job_id), timeout=30).job
            seconds = time.perf_counter() - start
            parts: dict[int, bytearray] = {}
            if job.state == pb.JOB_STATE_SUCCEEDED:
                for chunk in stub.DownloadFrames(pb.DownloadFramesRequest(job_id=job_id), timeout=120):
                    parts.setdefault(chunk.frame_index, bytearray()).extend(chunk.data)
            frames = [np.asarray(Image.open(io.BytesIO(bytes(parts[i])))) for i in sorted(parts)]
            return {"state": pb.JobState.Name(job.state), "error": job.error.message[:300],
                    "seconds": round(seconds, 2), "frames": np.stack(frames) if frames else None}
    finally:
        app.stop(grace_s=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--frames", type=int, default=13, help="driving frames (more than one 9-frame chunk)")
    args = p.parse_args(argv)
    import torch

    request = _request(args.frames, 1)
    request.width_px, request.height_px, request.steps = 64, 96, 3
    request.guidance_mode = pb.GUIDANCE_MODE_STANDARD
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    result: dict = {"check": "gpu_real_path", "device": name,
                    "torch": torch.__version__, "shape": f"{args.frames}f 64x96, 3 steps, 3-pass guidance, chunks of 9"}
    with tempfile.TemporaryDirectory() as tmp:
        wan = _build_wan_folder(Path(tmp) / "wan")
        runs = {
            "default": EngineConfig(model="one-to-all", checkpoint=args.checkpoint, wan=wan, chunk_frames=9),
            "plain": EngineConfig(model="one-to-all", checkpoint=args.checkpoint, wan=wan, chunk_frames=9,
                                  attention_backend="native", compile_blocks=False, vae_decode_bf16=False),
        }
        out = {name: _render(cfg, args.device, Path(tmp) / name, request) for name, cfg in runs.items()}
    for name, run in out.items():
        result[name] = {k: v for k, v in run.items() if k != "frames"}
    a, b = out["default"].get("frames"), out["plain"].get("frames")
    if a is not None and b is not None and a.shape == b.shape:
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        result["default_vs_plain"] = {"frames": int(a.shape[0]), "max_grey": int(diff.max()),
                                      "mean_grey": round(float(diff.mean()), 3)}
    result["ok"] = all(run["state"] == "JOB_STATE_SUCCEEDED" for run in out.values())
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
