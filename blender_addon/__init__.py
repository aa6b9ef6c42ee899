"""One-to-All render: Blender add-on (rig -> whole-body keypoints -> render server -> VSE strip).

This package must import without ``bpy``: the client CLI imports ``blender_addon.client`` from plain
Python. Everything that needs Blender is imported inside ``register()``/``unregister()``. Only
relative imports are used, so the same code works as ``blender_addon`` (repo root on ``sys.path``)
and as the installed extension ``bl_ext.<repo>.o2a_render``.
"""

from __future__ import annotations

import importlib

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
