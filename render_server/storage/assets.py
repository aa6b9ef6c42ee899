"""Content-addressed asset store: `<root>/<sha[:2]>/<sha>` plus a small JSON sidecar with size and kinds.

The asset id is "sha256:<hex>" of the bytes, so the same reference image uploaded by many jobs is stored once and
a client can ask whether an upload is needed at all. Uploads stream into a temporary file that only becomes the
asset after its size (and, when the client sent one, its SHA-256) checked out.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .atomic import replace_atomic, write_bytes_atomic

_ID_RE = re.compile(r"sha256:([0-9a-f]{64})")  # used with fullmatch


class AssetError(ValueError):
    """Bad upload or asset id; the message says what is wrong."""


@dataclass(frozen=True)
class AssetMeta:
    asset_id: str
    size_bytes: int
    kinds: tuple[str, ...]  # the kinds it was uploaded as, e.g. ("reference_image",)


def parse_asset_id(asset_id: str) -> str:
    """Returns the hex digest of a well-formed id; raises AssetError otherwise."""
    match = _ID_RE.fullmatch(asset_id)
    if match is None:
        raise AssetError(f"expected 'sha256:' followed by 64 lower-case hex digits, got {asset_id[:80]!r}")
    return match.group(1)


class AssetStore:
    def __init__(self, root: str | Path) -> None:
        self._root = Path(root)
        self._root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # serialises sidecar updates

    def _paths(self, digest: str) -> tuple[Path, Path]:
        folder = self._root / digest[:2]
        return folder / digest, folder / f"{digest}.json"

    def meta(self, asset_id: str) -> AssetMeta | None:
        digest = parse_asset_id(asset_id)
        data_path, meta_path = self._paths(digest)
        if not data_path.exists() or not meta_path.exists():
            return None
        info = json.loads(meta_path.read_text())
        return AssetMeta(asset_id, int(info["size_bytes"]), tuple(info["kinds"]))

    def path(self, asset_id: str) -> Path:
        data_path, _ = self._paths(parse_asset_id(asset_id))
        if not data_path.exists():
            raise FileNotFoundError(asset_id)
        return data_path

    def read(self, asset_id: str) -> bytes:
        return self.path(asset_id).read_bytes()

    def put(self, data: bytes, kind: str) -> tuple[AssetMeta, bool]:
        """Stores bytes (no-op when present) and records `kind`; returns (meta, already_stored)."""
        digest = hashlib.sha256(data).hexdigest()
        data_path, _ = self._paths(digest)
        already = data_path.exists()
        if not already:
            write_bytes_atomic(data_path, data)
        return self._record_kind(digest, len(data), kind), already

    def begin_upload(self, *, kind: str, size_bytes: int, sha256: str = "") -> "AssetUpload":
        return AssetUpload(self, kind=kind, size_bytes=size_bytes, sha256=sha256)

    def _record_kind(self, digest: str, size: int, kind: str) -> AssetMeta:
        _, meta_path = self._paths(digest)
        with self._lock:
            kinds: list[str] = []
            if meta_path.exists():
                kinds = json.loads(meta_path.read_text())["kinds"]
            if kind not in kinds:
                kinds.append(kind)
                write_bytes_atomic(meta_path, json.dumps({"size_bytes": size, "kinds": kinds}).encode())
        return AssetMeta(f"sha256:{digest}", size, tuple(kinds))

    def _tmp_path(self) -> Path:
        (self._root / "tmp").mkdir(exist_ok=True)
        return self._root / "tmp" / f"upload-{os.getpid()}-{threading.get_ident()}-{os.urandom(6).hex()}"


class AssetUpload:
    """One streaming upload: `write()` chunks in order, then `commit()` (or `abort()`)."""

    def __init__(self, store: AssetStore, *, kind: str, size_bytes: int, sha256: str) -> None:
        self._store = store
        self._kind = kind
        self._size = size_bytes
        self._expected_sha = sha256
        self._hash = hashlib.sha256()
        self._received = 0
        self._tmp = store._tmp_path()
        self._file = open(self._tmp, "wb")

    @property
    def received(self) -> int:
        return self._received

    @property
    def expected_size(self) -> int:
        return self._size

    def read_back(self) -> bytes:
        """The bytes received so far (for content validation before `commit`)."""
        self._file.flush()
        return self._tmp.read_bytes()

    def write(self, data: bytes) -> None:
        if self._received + len(data) > self._size:
            raise AssetError(f"more than the announced {self._size} bytes")
        self._file.write(data)
        self._hash.update(data)
        self._received += len(data)

    def commit(self) -> tuple[AssetMeta, bool]:
        if self._received != self._size:
            self.abort()
            raise AssetError(f"received {self._received} bytes, announced {self._size}")
        digest = self._hash.hexdigest()
        if self._expected_sha and self._expected_sha != digest:
            self.abort()
            raise AssetError(f"sha256 mismatch: announced {self._expected_sha}, received bytes hash to {digest}")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        data_path, _ = self._store._paths(digest)
        already = data_path.exists()
        if already:
            self._tmp.unlink(missing_ok=True)
        else:
            replace_atomic(self._tmp, data_path)
        return self._store._record_kind(digest, self._size, self._kind), already

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)
