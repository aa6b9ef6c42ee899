"""Runs `o2a-server` as a child process (demo, client tests, transfer benchmark) and stops it again.

The server writes its bound port to a file (`--port-file`), so it can listen on port 0 the first time and be
restarted on the same port with the same data folder (how the tests simulate a server crash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from blender_addon.client.api import RenderClient
from blender_addon.client.errors import ServerUnavailable


class ServerStartError(RuntimeError):
    """The server process exited or did not become ready; the message includes the end of its log."""


def server_command() -> list[str]:
    """`o2a-server` next to this interpreter when installed, else `python -m render_server.main`.

    O2A_SERVER_PYTHON picks another interpreter for the server, e.g. to test a client on Python 3.13 (grpcio,
    protobuf and numpy only) against a server in the 3.11 venv.
    """
    other = os.environ.get("O2A_SERVER_PYTHON")
    if other:
        return [other, "-m", "render_server.main"]
    script = Path(sys.executable).with_name("o2a-server")
    return [str(script)] if script.exists() else [sys.executable, "-m", "render_server.main"]


class ServerProcess:
    def __init__(self, data_dir: str | Path, *, model_args: Sequence[str] = ("--model", "tiny"),
                 extra_args: Sequence[str] = (), port: int = 0, log_path: str | Path | None = None,
                 env: dict[str, str] | None = None, probe_options: dict | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self._model_args = list(model_args)
        self._extra_args = list(extra_args)
        self.log_path = Path(log_path) if log_path else self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._env = env
        self._probe_options = dict(probe_options or {})  # RenderClient options for the readiness probe (TLS)
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, ready_timeout_s: float = 180.0) -> "ServerProcess":
        """Starts the server (on `self.port`, or a free port the first time) and waits for health SERVING."""
        port_file = self.data_dir.parent / f"{self.data_dir.name}.port"
        port_file.unlink(missing_ok=True)
        cmd = server_command() + [*self._model_args, "--listen", f"127.0.0.1:{self.port}",
                                  "--data-dir", str(self.data_dir), "--port-file", str(port_file),
                                  "--log-level", "WARNING", *self._extra_args]
        self._log = open(self.log_path, "ab")
        env = {**os.environ, **(self._env or {})}
        # The server may run from a source checkout that is not installed: make the repo importable.
        repo = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = repo + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
        deadline = time.monotonic() + ready_timeout_s
        while not port_file.exists():
            self._check_alive("before listening")
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    f"o2a-server did not start listening in {ready_timeout_s:.0f}s\n{self.log_tail()}")
            time.sleep(0.1)
        self.port = int(port_file.read_text())
        with RenderClient(self.address, **self._probe_options) as client:
            while True:
                self._check_alive("while loading the model")
                try:
                    client.wait_ready(timeout_s=min(2.0, max(0.1, deadline - time.monotonic())))
                    return self
                except ServerUnavailable:
                    if time.monotonic() > deadline:
                        self.kill()
                        raise ServerStartError(f"o2a-server not SERVING after {ready_timeout_s:.0f}s\n"
                                               f"{self.log_tail()}") from None

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM (graceful: running jobs resume on the next start), then SIGKILL after `grace_s`."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._closed()

    def kill(self) -> None:
        """SIGKILL, like a crash or an out-of-memory kill."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._closed()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return "server log (last lines):\n" + "\n".join(text[-lines:])

    def _check_alive(self, when: str) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self._closed()
            raise ServerStartError(f"o2a-server exited with code {code} {when}\n{self.log_tail()}")

    def _closed(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "ServerProcess":
        return self.start() if self._proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
