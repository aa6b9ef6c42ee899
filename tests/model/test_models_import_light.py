"""``render_server`` and ``render_server.models`` import without torch (pose and service code rely on it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_package_imports_do_not_pull_torch() -> None:
    code = (
        "import sys, render_server, render_server.models as m\n"
        "assert m.ONE_TO_ALL_14B_CONFIG['num_layers'] == 40\n"
        "heavy = sorted(name for name in ('torch', 'diffusers', 'transformers') if name in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
