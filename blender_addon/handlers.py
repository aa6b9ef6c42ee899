"""File load handlers: stop watching before a file closes, re-attach unfinished jobs after it opens."""

from __future__ import annotations

import bpy
from bpy.app.handlers import persistent

from . import runtime


@persistent
def _load_pre(*_args):
    runtime.discard()


@persistent
def _load_post(*_args):
    from .operators_jobs import reattach_all
    from .prefs import network_allowed

    if bpy.app.background:
        return  # farm scripts re-attach explicitly (blender_addon.farm --job-id)
    if not any(r.job_id and r.state not in ("SUCCEEDED", "FAILED", "CANCELLED")
               for sc in bpy.data.scenes for r in getattr(sc, "o2a_jobs", ())):
        return
    ok, _why = network_allowed()
    if ok:
        reattach_all(bpy.context)


def register() -> None:
    bpy.app.handlers.load_pre.append(_load_pre)
    bpy.app.handlers.load_post.append(_load_post)


def unregister() -> None:
    for lst, fn in ((bpy.app.handlers.load_post, _load_post), (bpy.app.handlers.load_pre, _load_pre)):
        if fn in lst:
            lst.remove(fn)
    runtime.discard()
