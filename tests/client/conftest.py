"""Fixtures of the client tests: a real `o2a-server --model tiny` child process on loopback, shared per session.

The server runs with 9-frame chunks and 1 s heartbeats, so a 13-frame shot is two chained segments and an idle
stream shows heartbeats quickly. Helpers live in `client_helpers.py` (this folder is put on sys.path because
pytest runs with --import-mode=importlib).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_helpers import SERVER_ARGS  # noqa: E402

from o2a_demo.server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("client-server")
    proc = ServerProcess(root / "data", extra_args=SERVER_ARGS, log_path=root / "server.log").start()
    yield proc
    proc.stop(grace_s=5)


@pytest.fixture()
def client(server):
    from blender_addon.client.api import RenderClient

    with RenderClient(server.address, timeout_s=20) as c:
        yield c
