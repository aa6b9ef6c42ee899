"""Shot builders for the client tests: the demo's procedural walking figure at test sizes."""

from __future__ import annotations

import socket
import struct

import numpy as np

from blender_addon.client.convert import RenderOptions
from o2a_demo.figure import paint_reference, rest_pose, walking_sequence
from o2a_demo.sheet import write_png

SERVER_ARGS = ("--chunk-frames", "9", "--heartbeat-s", "1")
CANVAS = (64, 96)
SIZE = (32, 48)


def shot(frames: int, *, steps: int = 1, seed: int = 1, **options):
    """(PoseSequence, reference PNG bytes, reference pose, RenderOptions) of a small fast job."""
    poses = walking_sequence(frames, *CANVAS, fps=12.0)
    pose = rest_pose(*CANVAS)
    options = RenderOptions(width_px=SIZE[0], height_px=SIZE[1], steps=steps, seed=seed,
                            **{"guidance_mode": "none", **options})
    return poses, reference_png(pose), pose, options


def reference_png(pose: np.ndarray, size: tuple[int, int] = CANVAS) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(paint_reference(pose, *size)[..., ::-1]))
    assert ok
    return data.tobytes()


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG file's IHDR."""
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


__all__ = ["SERVER_ARGS", "shot", "reference_png", "png_size", "free_port", "write_png"]


class TcpProxy:
    """A loopback TCP relay in front of the server; `drop()` cuts every open connection (a network failure)."""

    def __init__(self, target_port: int) -> None:
        import threading

        self._target = target_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            with self._lock:
                self._sockets += [downstream, upstream]
                self.connections += 1
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self._listener.close()
        self.drop()
