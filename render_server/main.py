"""`o2a-server`: the One-to-All gRPC render server.

Examples::

    o2a-server --model tiny --data-dir /tmp/o2a                       # CPU demo on 127.0.0.1:50051
    o2a-server --checkpoint ckpt/1.3B --wan Wan2.1-T2V-1.3B-Diffusers \\
        --listen 0.0.0.0:50051 --token-file /etc/o2a/tokens --tls-cert cert.pem --tls-key key.pem
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .app import AppConfig, RenderApp
from .engine import EngineConfig
from .logging_setup import configure_logging
from .parallel.config import add_parallel_arguments
from .parallel.config import config_from_args as parallel_from_args
from .service.interceptors import load_tokens
from .service.limits import MIB, ServerLimits
from .service.server import ConfigError, ServerConfig, check_security

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="o2a-server", description="One-to-All Animation gRPC render server.")
    p.add_argument("--listen", default="127.0.0.1:50051", help="HOST:PORT (port 0 = any free port)")
    p.add_argument("--data-dir", type=Path, default=Path("o2a-data"), help="job store, assets and outputs")
    model = p.add_argument_group("model")
    model.add_argument("--model", choices=("tiny", "one-to-all"), default=None,
                       help="'tiny' = built-in tiny random model (CPU demo, tests); default: one-to-all when "
                            "--checkpoint is given")
    model.add_argument("--checkpoint", type=Path, help="One-to-All transformer checkpoint folder")
    model.add_argument("--wan", type=Path, help="Wan2.1-T2V Diffusers folder (VAE, UMT5 text encoder, tokenizer)")
    model.add_argument("--device", default=None,
                       help="'cpu', 'cuda' (one worker per visible GPU) or a list like 'cuda:0,cuda:1'")
    model.add_argument("--chunk-frames", type=int, default=81, help="frames per model call (4k+1; less = less memory)")
    model.add_argument("--pose-model", type=Path, help="DWPose whole-body ONNX model: enables server-side detection")
    model.add_argument("--det-model", type=Path, help="YOLOX person detector ONNX model (optional)")
    speed = p.add_argument_group("speed and memory (render_server/pipeline/acceleration.py; one-GPU engines)")
    speed.add_argument("--attention-backend", default="auto",
                       help="diffusers attention backend; auto = FlashAttention 3 on Hopper, else cuDNN SDPA on CUDA")
    speed.add_argument("--compile-blocks", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the repeated blocks (default: on for the real model on CUDA)")
    speed.add_argument("--vae-decode-bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="decode frames in bfloat16 (default: on for the real model on CUDA)")
    speed.add_argument("--warm-up-size", type=_size, default=None, metavar="WIDTHxHEIGHT",
                       help="compile the graphs of this output size at start-up (with compiled blocks)")
    speed.add_argument("--offload", choices=("none", "block", "leaf"), default="none",
                       help="group offloading of the transformer (the 14B on a 48 GB card)")
    sec = p.add_argument_group("security")
    sec.add_argument("--token-file", type=Path, help="bearer tokens, one per line (required beyond loopback)")
    sec.add_argument("--tls-cert", type=Path, help="PEM certificate chain")
    sec.add_argument("--tls-key", type=Path, help="PEM private key")
    lim = p.add_argument_group("limits")
    d = ServerLimits()
    lim.add_argument("--max-frames", type=int, default=d.max_frames)
    lim.add_argument("--max-pixels", type=int, default=d.max_output_pixels, help="max output width*height")
    lim.add_argument("--max-reference-pixels", type=int, default=d.max_reference_pixels)
    lim.add_argument("--max-upload-mib", type=int, default=d.max_upload_bytes // MIB)
    lim.add_argument("--max-queued", type=int, default=d.max_queued_jobs, help="max queued jobs")
    lim.add_argument("--max-steps", type=int, default=d.max_steps)
    ops = p.add_argument_group("operations")
    ops.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port (127.0.0.1)")
    ops.add_argument("--heartbeat-s", type=float, default=10.0, help="WatchJob heartbeat interval")
    ops.add_argument("--threads", type=int, default=128, help="max concurrent RPCs (each watcher holds one)")
    ops.add_argument("--port-file", type=Path, help="write the bound port here once listening (scripts, tests)")
    ops.add_argument("--log-level", default="INFO")
    ops.add_argument("--no-reflection", action="store_true", help="disable gRPC server reflection")
    add_parallel_arguments(p)
    return p


def _size(text: str) -> tuple[int, int]:
    """'1024x576' -> (1024, 576); argparse turns the ValueError into a usage error naming the flag."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"expected WIDTHxHEIGHT in pixels, got {text!r}")
    return int(width), int(height)


def _devices(arg: str | None) -> tuple[str, ...]:
    import torch

    if arg is None:
        arg = "cuda" if torch.cuda.is_available() else "cpu"
    if arg == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError("--device cuda: no CUDA device is visible")
        return tuple(f"cuda:{i}" for i in range(count))
    devices = tuple(d.strip() for d in arg.split(",") if d.strip())
    for device in devices:
        if device != "cpu" and not device.startswith("cuda:"):
            raise ConfigError(f"--device: expected cpu, cuda or cuda:N, got {device!r}")
    return devices


def config_from_args(args: argparse.Namespace) -> AppConfig:
    model = args.model or ("one-to-all" if args.checkpoint else None)
    if model is None:
        raise ConfigError("choose a model: --model tiny, or --checkpoint DIR --wan DIR")
    tokens = load_tokens(args.token_file) if args.token_file else ()
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    limits = ServerLimits(
        max_frames=args.max_frames, max_output_pixels=args.max_pixels, max_reference_pixels=args.max_reference_pixels,
        max_upload_bytes=args.max_upload_mib * MIB, max_queued_jobs=args.max_queued, max_steps=args.max_steps,
    )
    return AppConfig(
        data_dir=args.data_dir,
        server=ServerConfig(
            listen=args.listen, tokens=tokens,
            tls_cert=args.tls_cert.read_bytes() if args.tls_cert else None,
            tls_key=args.tls_key.read_bytes() if args.tls_key else None,
            threads=args.threads, reflection=not args.no_reflection,
        ),
        engine=EngineConfig(model=model, checkpoint=args.checkpoint, wan=args.wan, chunk_frames=args.chunk_frames,
                            pose_model=args.pose_model, det_model=args.det_model,
                            attention_backend=args.attention_backend, compile_blocks=args.compile_blocks,
                            vae_decode_bf16=args.vae_decode_bf16, offload=args.offload,
                            warm_up_size=args.warm_up_size),
        devices=_devices(args.device),
        limits=limits,
        heartbeat_interval_s=args.heartbeat_s,
        metrics_port=args.metrics_port,
        port_file=args.port_file,
        parallel=parallel_from_args(args),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        check_security(config.server)  # before anything else: refuse unsafe setups with a clear message
    except (ConfigError, ValueError, OSError) as exc:
        print(f"o2a-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    try:
        app = RenderApp(config)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"o2a-server: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        logger.info("signal received; stopping", extra={"signal": signum})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.start()
    while not stop.wait(0.5):
        if app.load_error is not None:
            app.stop()
            print(f"o2a-server: model loading failed: {app.load_error}", file=sys.stderr)
            return 1
    app.stop(grace_s=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
