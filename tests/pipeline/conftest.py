"""Shared helpers for the pipeline tests: where the official-parity fixture folder is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def parity_dir() -> Path:
    """``O2A_PARITY_DIR`` (relative paths are taken from the repo root), default ../shared/fixtures/official_parity."""
    raw = os.environ.get("O2A_PARITY_DIR", "../shared/fixtures/official_parity")
    path = Path(raw)
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


@pytest.fixture
def official_parity_dir() -> Path:
    path = parity_dir()
    if not path.is_dir():
        pytest.skip(f"official parity fixtures not found at {path} (set O2A_PARITY_DIR)")
    return path
