#!/usr/bin/env python3
"""Build the Blender extension zip of ``blender_addon/`` with bundled grpcio/protobuf wheels.

    python scripts/build_extension.py                      # Linux/Windows/macOS x CPython 3.11/3.13
    python scripts/build_extension.py --current-platform   # only this machine's platform (tests)
    python scripts/build_extension.py --split-platforms    # one zip per platform (smaller downloads)

Steps: copy the package into ``build/extension/o2a_render`` (no caches), ``pip download
--only-binary=:all:`` the wheels for every platform x Python version into a wheel cache (the
versions default to the ones installed here, so the generated ``_pb2`` code matches its runtime),
write their paths into the staged ``blender_manifest.toml``, then run Blender's own extension
builder (``bl_pkg/cli/blender_ext.py build``, found in the ``bpy`` wheel or given with
``--blender-ext``) so the zip is validated exactly as Blender validates it. Wheels are never
committed. Exit code 0 on success; errors name the failing step.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = REPO_ROOT / "blender_addon"
EXTENSION_ID = "o2a_render"

# Blender platform name -> pip --platform tags (the wheels Blender accepts for that platform).
PLATFORM_TAGS = {
    "linux-x64": ("manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "linux-arm64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_11_0_universal2", "macosx_10_9_universal2"),
    "macos-x64": ("macosx_10_9_x86_64", "macosx_11_0_universal2", "macosx_10_9_universal2"),
}
DEFAULT_PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64", "macos-x64")
DEFAULT_PYTHONS = ("3.11", "3.13")  # Blender 4.2-5.0 and 5.1+
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "build", "dist", "*.whl")


class BuildError(RuntimeError):
    pass


def current_platform() -> str:
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform)
    if system is None:
        raise BuildError(f"unsupported build platform {sys.platform!r}")
    return f"{system}-{arch}"


def find_blender_ext() -> Path | None:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        hits = sorted(Path(root).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    return None


def requirements(args: argparse.Namespace) -> list[str]:
    def pinned(dist: str, override: str | None) -> str:
        if override:
            return f"{dist}=={override}"
        try:
            return f"{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            return dist
    return [pinned("grpcio", args.grpcio_version), pinned("protobuf", args.protobuf_version), "typing-extensions>=4.12"]


def download_wheels(reqs: list[str], platforms: list[str], pythons: list[str], cache: Path) -> list[Path]:
    """pip download every requirement for every (platform, python); returns the wheel files used."""
    cache.mkdir(parents=True, exist_ok=True)
    used: set[Path] = set()
    for plat in platforms:
        if plat not in PLATFORM_TAGS:
            raise BuildError(f"--platforms: unknown platform {plat!r} (known: {', '.join(PLATFORM_TAGS)})")
        for py in pythons:
            before = set(cache.glob("*.whl"))
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--no-deps",
                   "--implementation", "cp", "--python-version", py, "--dest", str(cache)]
            for tag in PLATFORM_TAGS[plat]:
                cmd += ["--platform", tag]
            cmd += reqs
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise BuildError(f"pip download for {plat} / CPython {py} failed:\n{proc.stderr.strip()[-2000:]}")
            used |= _matching(cache, reqs, plat, py) | (set(cache.glob("*.whl")) - before)
    return sorted(used)


def _matching(cache: Path, reqs: list[str], plat: str, py: str) -> set[Path]:
    """Wheels in the cache that fit (platform, python), so a warm cache needs no new downloads."""
    tags = PLATFORM_TAGS[plat]
    pyver = "cp" + py.replace(".", "")
    out = set()
    for req in reqs:
        name = re.split(r"[=<>]", req)[0].replace("-", "_")
        version = req.split("==")[1] if "==" in req else None
        for whl in cache.glob(f"{name}-*.whl"):
            parts = whl.stem.split("-")
            if version and parts[1] != version:
                continue
            py_tag, abi_tag, plat_tag = parts[-3], parts[-2], parts[-1]
            py_ok = py_tag == "py3" or py_tag == pyver or (abi_tag == "abi3" and py_tag <= pyver)
            plat_ok = plat_tag == "any" or any(t in plat_tag.split(".") for t in tags)
            if py_ok and plat_ok:
                out.add(whl)
    return out


def stage_source(stage: Path, wheels: list[Path], platforms: list[str]) -> None:
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(SOURCE, stage, ignore=IGNORE)
    wheel_dir = stage / "wheels"
    wheel_dir.mkdir()
    for whl in wheels:
        shutil.copy2(whl, wheel_dir / whl.name)
    manifest = stage / "blender_manifest.toml"
    text = manifest.read_text()
    listed = ",\n".join(f'  "./wheels/{w.name}"' for w in wheels)
    text, n = re.subn(r"^wheels = \[\]$", f"wheels = [\n{listed},\n]" if wheels else "wheels = []", text, flags=re.M)
    if n != 1:
        raise BuildError("blender_manifest.toml: expected one 'wheels = []' line to fill in")
    plat_list = ", ".join(f'"{p}"' for p in platforms)
    text = text.replace("\nlicense =", f"\nplatforms = [{plat_list}]\n\nlicense =", 1)
    manifest.write_text(text)


def build_zip(stage: Path, out_dir: Path, split: bool, blender_ext: Path | None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.zip"))
    if blender_ext is None:
        raise BuildError("Blender's extension builder was not found: install the bpy wheel or pass --blender-ext")
    cmd = [sys.executable, str(blender_ext), "build", "--source-dir", str(stage), "--output-dir", str(out_dir)]
    if split:
        cmd.append("--split-platforms")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"blender_ext build failed:\n{(proc.stdout + proc.stderr).strip()[-3000:]}")
    made = sorted(set(out_dir.glob("*.zip")) - before) or sorted(out_dir.glob(f"{EXTENSION_ID}-*.zip"))
    if not made:
        raise BuildError(f"blender_ext build produced no zip:\n{proc.stdout[-2000:]}")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "dist", help="output folder for the zip(s)")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build" / "extension")
    parser.add_argument("--wheel-cache", type=Path, default=REPO_ROOT / "build" / "wheel-cache")
    parser.add_argument("--platforms", nargs="+", default=list(DEFAULT_PLATFORMS))
    parser.add_argument("--python-versions", nargs="+", default=list(DEFAULT_PYTHONS))
    parser.add_argument("--current-platform", action="store_true",
                        help="only this machine's platform and Python version (fast; for tests)")
    parser.add_argument("--split-platforms", action="store_true", help="one zip per platform")
    parser.add_argument("--no-wheels", action="store_true", help="skip wheels (for a machine that has grpc)")
    parser.add_argument("--grpcio-version")
    parser.add_argument("--protobuf-version")
    parser.add_argument("--blender-ext", type=Path, help="path of Blender's bl_pkg/cli/blender_ext.py")
    args = parser.parse_args(argv)
    try:
        platforms, pythons = args.platforms, args.python_versions
        if args.current_platform:
            platforms, pythons = [current_platform()], [f"{sys.version_info.major}.{sys.version_info.minor}"]
        wheels = [] if args.no_wheels else download_wheels(requirements(args), platforms, pythons, args.wheel_cache)
        stage = args.build_dir / EXTENSION_ID
        stage_source(stage, wheels, platforms)
        zips = build_zip(stage, args.out, args.split_platforms, args.blender_ext or find_blender_ext())
    except BuildError as exc:
        print(f"build_extension: error: {exc}", file=sys.stderr)
        return 1
    for z in zips:
        print(z)
    return 0


if __name__ == "__main__":
    sys.exit(main())
