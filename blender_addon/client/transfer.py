"""Chunked uploads and downloads (ByteStream style): no message over 4 MiB, every file verified, resumable.

Frames arrive as chunks with their offset, the whole file's size and SHA-256; a frame is written to
`<name>.part` and renamed only after both match, so a reader never sees half a frame and a killed download
leaves no wrong file. A dropped stream is re-opened at the first frame (or byte, for files) not stored yet.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import grpc

from ._generated import render_service_pb2 as pb
from .cancel import Scope
from .errors import IntegrityError, InvalidRequest, NotFound, from_rpc_error

if TYPE_CHECKING:
    from .api import RenderClient

# A stream that fails this many times in a row without delivering anything new is given up.
_MAX_FAILURES_WITHOUT_PROGRESS = 4
_RETRY_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                          grpc.StatusCode.ABORTED, grpc.StatusCode.INTERNAL})


def upload_asset(client: "RenderClient", data: bytes, kind: int, scope: Scope) -> pb.UploadAssetResponse:
    if not data:
        raise InvalidRequest("UploadAsset: no data", field="data")
    digest = hashlib.sha256(data).hexdigest()
    asset_id = f"sha256:{digest}"
    try:
        found = client._unary("GetAsset", pb.GetAssetRequest(asset_id=asset_id), _token_of(scope))
        return pb.UploadAssetResponse(asset_id=found.asset_id, info=found.info, already_stored=True)
    except NotFound:
        pass
    chunk = client.config.chunk_bytes
    info = pb.AssetInfo(kind=kind, size_bytes=len(data), sha256=digest)

    def messages():
        view = memoryview(data)
        yield pb.UploadAssetRequest(info=info, data=bytes(view[:chunk]))
        for offset in range(chunk, len(data), chunk):
            yield pb.UploadAssetRequest(data=bytes(view[offset:offset + chunk]))

    failures = 0
    while True:
        scope.check("UploadAsset")
        future = client._stub.UploadAsset.future(messages(), timeout=client.config.transfer_timeout_s,
                                                 metadata=client._metadata)
        try:
            with scope.attached(future.cancel):
                response = future.result()
        except grpc.FutureCancelledError:
            scope.check("UploadAsset")
            raise
        except grpc.RpcError as exc:
            scope.check("UploadAsset")
            failures += 1
            if exc.code() not in _RETRY_CODES or failures >= _MAX_FAILURES_WITHOUT_PROGRESS:
                raise from_rpc_error(exc, "UploadAsset") from None
            scope.sleep(client._backoff(failures - 1))
            continue
        if response.asset_id != asset_id:
            raise IntegrityError(f"UploadAsset: server stored {response.asset_id}, expected {asset_id}")
        return response


def download_frames(
    client: "RenderClient",
    job_id: str,
    out_dir: Path,
    *,
    kind: int,
    first_frame: int,
    frame_count: int,
    name: str,
    on_frame: Callable[[int, Path], None] | None,
    scope: Scope,
) -> list[Path]:
    if first_frame < 0 or frame_count < 0:
        raise InvalidRequest("first_frame/frame_count: must be >= 0", field="first_frame")
    try:
        name.format(index=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidRequest(f"name: bad file name pattern {name!r} ({exc}); use e.g. 'frame_{{index:05d}}.png'",
                             field="name") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    next_frame, end = first_frame, (first_frame + frame_count if frame_count else None)
    failures = 0
    while end is None or next_frame < end:
        scope.check("DownloadFrames")
        request = pb.DownloadFramesRequest(job_id=job_id, kind=kind, first_frame=next_frame,
                                           frame_count=(end - next_frame) if end is not None else 0,
                                           max_chunk_bytes=client.config.chunk_bytes)
        call = client._stream("DownloadFrames", request, client.config.transfer_timeout_s)
        assembler = _FrameAssembler(out_dir, name)
        try:
            with scope.attached(call.cancel):
                for chunk in call:
                    path = assembler.add(chunk, expected_index=next_frame)
                    if path is not None:
                        written.append(path)
                        next_frame += 1
                        failures = 0
                        if on_frame is not None:
                            on_frame(chunk.frame_index, path)
            if assembler.pending:
                raise IntegrityError(f"DownloadFrames: stream ended inside frame {next_frame}")
            return written
        except grpc.RpcError as exc:
            scope.check("DownloadFrames")
            failures += 1
            if written and exc.code() == grpc.StatusCode.FAILED_PRECONDITION and end is None:
                return written  # "every ready frame": the rest is not rendered yet
            if exc.code() not in _RETRY_CODES or failures >= _MAX_FAILURES_WITHOUT_PROGRESS:
                raise from_rpc_error(exc, "DownloadFrames") from None
        finally:
            assembler.discard()
            call.cancel()
        if scope.sleep(client._backoff(failures - 1)):
            scope.check("DownloadFrames")
    return written


class _FrameAssembler:
    """Collects the chunks of one frame at a time and publishes the verified file."""

    def __init__(self, out_dir: Path, name: str) -> None:
        self._out_dir = out_dir
        self._name = name
        self._index: int | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._total = 0
        self._sha = ""
        self._file = None
        self._part: Path | None = None

    @property
    def pending(self) -> bool:
        return self._index is not None

    def add(self, chunk: pb.DownloadFramesResponse, expected_index: int) -> Path | None:
        if self._index is None:
            if chunk.frame_index != expected_index or chunk.offset != 0:
                raise IntegrityError(f"DownloadFrames: expected frame {expected_index} from offset 0, got frame "
                                     f"{chunk.frame_index} at offset {chunk.offset}")
            self._index, self._total, self._sha = chunk.frame_index, chunk.total_size_bytes, chunk.sha256
            self._part = self._out_dir / (self._name.format(index=self._index) + ".part")
            self._file = open(self._part, "wb")
        elif chunk.frame_index != self._index or chunk.offset != self._size or chunk.sha256 != self._sha:
            raise IntegrityError(f"DownloadFrames: chunk out of order in frame {self._index} (offset {chunk.offset}, "
                                 f"expected {self._size})")
        self._file.write(chunk.data)
        self._hash.update(chunk.data)
        self._size += len(chunk.data)
        if self._size > self._total:
            raise IntegrityError(f"DownloadFrames: frame {self._index} is larger than announced ({self._total} B)")
        if not chunk.last_chunk:
            return None
        return self._publish()

    def _publish(self) -> Path:
        index, part = self._index, self._part
        self._file.close()
        self._file = None
        if self._size != self._total or self._hash.hexdigest() != self._sha:
            part.unlink(missing_ok=True)
            raise IntegrityError(f"DownloadFrames: frame {index} failed verification ({self._size} of {self._total} "
                                 "bytes, or SHA-256 mismatch)")
        final = part.with_name(part.name[: -len(".part")])
        os.replace(part, final)
        self.__init__(self._out_dir, self._name)  # ready for the next frame
        return final

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._part is not None and self._index is not None:
            self._part.unlink(missing_ok=True)


def download_file(client: "RenderClient", job_id: str, name: str, dest: Path, scope: Scope) -> Path:
    job = client.get_job(job_id, cancel=_token_of(scope))
    listed = {f.name: f for f in job.output_files}
    if name not in listed:
        available = ", ".join(sorted(listed)) or "none yet"
        raise NotFound(f"DownloadFile: job {job_id} has no output file {name!r} (available: {available})")
    info = listed[name]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if offset > info.size_bytes:
        part.unlink()
        offset = 0
    failures = 0
    while offset < info.size_bytes:
        scope.check("DownloadFile")
        call = client._stream("DownloadFile", pb.DownloadFileRequest(
            job_id=job_id, name=name, offset=offset, max_chunk_bytes=client.config.chunk_bytes),
            client.config.transfer_timeout_s)
        try:
            with scope.attached(call.cancel), open(part, "ab") as f:
                for chunk in call:
                    if chunk.offset != offset or chunk.sha256 != info.sha256:
                        raise IntegrityError(f"DownloadFile: {name}: chunk at offset {chunk.offset}, expected "
                                             f"{offset} (or the file changed on the server)")
                    f.write(chunk.data)
                    offset += len(chunk.data)
                    failures = 0
            if offset < info.size_bytes:
                raise IntegrityError(f"DownloadFile: {name}: stream ended at {offset} of {info.size_bytes} bytes")
        except grpc.RpcError as exc:
            scope.check("DownloadFile")
            failures += 1
            if exc.code() not in _RETRY_CODES or failures >= _MAX_FAILURES_WITHOUT_PROGRESS:
                raise from_rpc_error(exc, "DownloadFile") from None
            if scope.sleep(client._backoff(failures - 1)):
                scope.check("DownloadFile")
        finally:
            call.cancel()
    digest = _sha256_file(part)
    if part.stat().st_size != info.size_bytes or digest != info.sha256:
        part.unlink(missing_ok=True)  # a stale partial file from another version: start over next time
        raise IntegrityError(f"DownloadFile: {name}: SHA-256 mismatch after download")
    os.replace(part, dest)
    return dest


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _token_of(scope: Scope):
    """The scope's first token, to pass the caller's cancellation on to nested unary calls."""
    return scope._tokens[0] if scope._tokens else None
