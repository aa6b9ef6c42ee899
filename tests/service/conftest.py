"""Fixtures of the service tests: a real in-process server (127.0.0.1:0, tiny model) and a raw stub.

Helpers live in `service_helpers.py`; this folder is put on sys.path so test modules can import it (pytest runs
with --import-mode=importlib, which does not do that by itself).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service_helpers import make_app  # noqa: E402

from render_server._generated import render_service_pb2_grpc as pb_grpc  # noqa: E402
from render_server.app import RenderApp  # noqa: E402


@pytest.fixture(scope="module")
def app(tmp_path_factory) -> Iterator[RenderApp]:
    """One server per test module (model loading takes seconds); tests must not assume an empty store."""
    server = make_app(tmp_path_factory.mktemp("data")).start()
    assert server.wait_ready(120), f"model did not load: {server.load_error}"
    yield server
    server.stop(grace_s=0.5)


@pytest.fixture(scope="module")
def stub(app) -> Iterator[pb_grpc.RenderServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{app.port}") as channel:
        yield pb_grpc.RenderServiceStub(channel)


