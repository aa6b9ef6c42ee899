"""Reading the official-parity fixture folder (layout described in its README), shared by the parity tests.

The folder comes from env ``O2A_PARITY_DIR``; by default ``../shared/fixtures/official_parity`` relative to the
repository root (not the current directory).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_dir() -> Path:
    env = os.environ.get("O2A_PARITY_DIR")
    if env:
        path = Path(env)
        return path if path.is_absolute() else (REPO_ROOT / path)
    return (REPO_ROOT / ".." / "shared" / "fixtures" / "official_parity").resolve()


def load_png(path: Path, mode: str) -> Any:
    from PIL import Image

    with Image.open(path) as img:
        return img.convert(mode)


class Decoder:
    """Decodes the JSON encoding of ``preprocess/records.json`` and ``pose/keypoints.json``."""

    def __init__(self, root: Path, shared: dict | None = None) -> None:
        self.root = root
        self.shared = shared or {}
        self._cache: dict[str, Any] = {}

    def __call__(self, obj: Any) -> Any:
        if isinstance(obj, list):
            return [self(x) for x in obj]
        if not isinstance(obj, dict):
            return obj
        if "__ndarray__" in obj:
            dtype = np.dtype(obj["dtype"])
            data = obj["__ndarray__"]
            if dtype == object:
                arr = np.empty(tuple(obj["shape"]), dtype=object)
                flat = np.array(data, dtype=object).reshape(-1) if arr.size else []
                for i, v in enumerate(flat):
                    arr.flat[i] = v
                return arr
            return np.array(data, dtype=dtype).reshape(obj["shape"])
        if "__npscalar__" in obj:
            return np.dtype(obj["dtype"]).type(obj["__npscalar__"])
        if "__tuple__" in obj:
            return tuple(self(x) for x in obj["__tuple__"])
        if "__tuplekeys__" in obj:
            return {tuple(k): self(v) for k, v in obj["__tuplekeys__"]}
        if "__ref__" in obj:
            # decode afresh every time: callers may mutate what they get
            return self(self.shared[obj["__ref__"]])
        if "__png__" in obj:
            img = load_png(self.root / obj["__png__"], obj.get("mode", "RGB"))
            return np.asarray(img).copy() if obj.get("as", "ndarray") == "ndarray" else img
        return {k: self(v) for k, v in obj.items()}


def load_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
