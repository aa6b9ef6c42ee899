"""The extension zip builds (Blender's own builder) and installs + registers in a clean user folder.

Runs the install in a child process: BLENDER_USER_RESOURCES must be set before ``import bpy``.
Builds with this platform's wheels only (the full build adds the other platforms' wheels the same way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("bpy")

REPO_ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, os, sys
    zip_path, user_dir = sys.argv[1], sys.argv[2]
    os.environ["BLENDER_USER_RESOURCES"] = user_dir
    import bpy, addon_utils
    bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
    mod_name = "bl_ext.user_default.o2a_render"
    enabled = mod_name in bpy.context.preferences.addons
    prefs = bpy.context.preferences.addons[mod_name].preferences if enabled else None
    site = os.path.join(user_dir, "extensions", ".local", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    # The client stubs must import from the installed copy (relative imports) against the *bundled*
    # grpcio/protobuf: put the extracted wheels first (this venv has its own copies further down).
    sys.path.insert(0, site)
    import importlib
    import grpc, google.protobuf
    gen = importlib.import_module(mod_name + ".client._generated.render_service_pb2_grpc")
    api = importlib.import_module(mod_name + ".client.api")
    channel = grpc.insecure_channel("127.0.0.1:9")
    channel.close()
    module_file = sys.modules[mod_name].__file__
    ops = [hasattr(bpy.ops.o2a, n) for n in ("export_pose", "submit_job", "cancel_job", "preview_poses")]
    panel = hasattr(bpy.types, "VIEW3D_PT_o2a_shot")
    prefs_address = getattr(prefs, "server_address", None)
    wheels_extracted = sorted(os.listdir(site)) if os.path.isdir(site) else []
    addon_utils.disable(mod_name, default_set=True)
    residue = [n for n in ("VIEW3D_PT_o2a_shot", "O2A_UL_jobs") if hasattr(bpy.types, n)]
    residue += [n for n in ("o2a_shot", "o2a_jobs") if hasattr(bpy.types.Scene, n)]
    print("RESULT " + json.dumps({
        "enabled": enabled,
        "prefs_address": prefs_address,
        "ops": ops,
        "panel": panel,
        "wheels_extracted": wheels_extracted,
        "module_file": module_file,
        "residue_after_disable": residue,
        "pb2": gen.__name__,
        "grpc_file": grpc.__file__,
        "protobuf_file": google.protobuf.__file__,
        "api": api.__name__,
    }))
    """
)


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_extension.py"), "--current-platform", "--out", str(out),
         "--build-dir", str(tmp_path_factory.mktemp("stage")), "--wheel-cache", str(REPO_ROOT / "build" / "wheel-cache")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    zips = sorted(out.glob("o2a_render-*.zip"))
    assert len(zips) == 1, proc.stdout
    return zips[0]


def test_zip_contents(built_zip):
    names = zipfile.ZipFile(built_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    assert "client/_generated/render_service_pb2_grpc.py" in names
    assert any(n.startswith("wheels/grpcio-") for n in names)
    assert any(n.startswith("wheels/protobuf-") for n in names)
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    manifest = zipfile.ZipFile(built_zip).read("blender_manifest.toml").decode()
    assert 'network = "' in manifest and "./wheels/grpcio-" in manifest


def test_installs_and_registers_in_clean_user_folder(built_zip, tmp_path):
    user = tmp_path / "user"
    user.mkdir()
    env = dict(os.environ)
    env.pop("BLENDER_USER_RESOURCES", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(built_zip), str(user)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["enabled"] and result["panel"] and all(result["ops"])
    assert result["prefs_address"] == "127.0.0.1:50051"
    assert str(user) in result["module_file"]
    assert any(n.startswith("grpc") for n in result["wheels_extracted"]), result["wheels_extracted"]
    assert any(n.startswith("google") for n in result["wheels_extracted"]), result["wheels_extracted"]
    assert result["residue_after_disable"] == []
    assert result["grpc_file"].startswith(str(user)) and result["protobuf_file"].startswith(str(user))
