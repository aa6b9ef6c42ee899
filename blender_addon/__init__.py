"""One-to-All render: Blender add-on (rig -> whole-body keypoints -> render server -> VSE strip).

This package must import without ``bpy``: the client CLI imports ``blender_addon.client`` from plain
Python. Everything that needs Blender is imported inside ``register()``/``unregister()``. Only
relative imports are used, so the same code works as ``blender_addon`` (repo root on ``sys.path``)
and as the installed extension ``bl_ext.<repo>.o2a_render``.
"""

from __future__ import annotations

import importlib

# Legacy add-on metadata, used when the checkout is enabled as a plain add-on (``--addons
# blender_addon``, tests). The extension build uses blender_manifest.toml instead.
bl_info = {
    "name": "One-to-All Render",
    "author": "One-to-All render developers",
    "version": (0, 1, 0),
    "blender": (4, 2, 0),
    "location": "3D View / Sequencer > Sidebar > O2A",
    "description": "Rig motion -> whole-body poses -> GPU render server -> sequencer strip",
    "category": "Animation",
}

# Registration order; unregistered in reverse (each module registers and removes its own parts).
_BPY_MODULES = ("prefs", "props", "operators", "operators_jobs", "ui", "handlers")


def _modules():
    return [importlib.import_module(f"{__package__}.{name}") for name in _BPY_MODULES]


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
