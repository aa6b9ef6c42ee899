"""Atomic file writes: write a temporary file next to the target, fsync it, then rename over the target.

A reader (or a server restarted after kill -9) therefore sees either the old file or the complete new one, never a
torn write. Temporary names carry the pid and thread id so concurrent writers never share one.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_atomic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Renames a finished temporary file (written and fsynced by the caller) onto `dst`."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
