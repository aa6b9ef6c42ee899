"""The server's real-model path (`--checkpoint DIR --wan DIR`, `load_pipeline`) with small real-format folders:
the official-parity fixture's transformer checkpoint and a Wan-layout folder holding the tiny VAE, UMT5 and
tokenizer. Skipped when the parity fixtures are not present (env O2A_PARITY_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from render_server._generated import render_service_pb2 as pb
from render_server._generated import render_service_pb2_grpc as pb_grpc
from render_server.engine import EngineConfig
from render_server.models.tiny import build_tiny_text_encoder, build_tiny_vae

from service_helpers import download_frames, make_app, submit_request, watch_all

REPO_ROOT = Path(__file__).resolve().parents[2]


def _parity_dir() -> Path:
    raw = Path(os.environ.get("O2A_PARITY_DIR", "../shared/fixtures/official_parity"))
    return raw if raw.is_absolute() else (REPO_ROOT / raw).resolve()


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    checkpoint = _parity_dir() / "checkpoint"
    if not checkpoint.is_dir():
        pytest.skip(f"official parity checkpoint not found at {checkpoint} (set O2A_PARITY_DIR)")
    wan = tmp_path_factory.mktemp("Wan2.1-T2V-tiny-Diffusers")
    text = build_tiny_text_encoder(seed=0)
    build_tiny_vae(seed=0).save_pretrained(wan / "vae")
    text.text_encoder.save_pretrained(wan / "text_encoder")
    text.tokenizer.save_pretrained(wan / "tokenizer")
    return checkpoint, wan


def test_server_renders_with_a_checkpoint_folder(model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    checkpoint, wan = model_dirs
    app = make_app(tmp_path / "data", engine=EngineConfig(model="one-to-all", checkpoint=checkpoint, wan=wan,
                                                           chunk_frames=9)).start()
    try:
        assert app.wait_ready(300), app.load_error
        with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            caps = stub.GetCapabilities(pb.GetCapabilitiesRequest(), timeout=10)
            assert caps.model.model_id == "one-to-all-1.3b" and caps.model.ready
            assert caps.model.default_steps == 30 and caps.model.default_image_guidance_scale == pytest.approx(2.5)
            job_id = stub.SubmitJob(submit_request(frames=5, steps=1, guidance_mode=pb.GUIDANCE_MODE_STANDARD),
                                    timeout=30).job.job_id
            assert watch_all(stub, job_id)[-1].state_changed.state == pb.JOB_STATE_SUCCEEDED
            assert sorted(download_frames(stub, job_id)) == list(range(5))
    finally:
        app.stop(grace_s=0.5)
