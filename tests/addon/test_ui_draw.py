"""UI draw code against the real RNA: every property, operator and operator argument the panels use exists.

Panels cannot be drawn without a window, so the draw functions run with a recording layout that
checks each name against Blender's RNA (the properties and operators are the real registered ones).
"""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from blender_addon import prefs, ui  # noqa: E402


class _OpProps:
    def __init__(self, idname):
        mod, name = idname.split(".")
        self._rna = getattr(getattr(bpy.ops, mod), name).get_rna_type()

    def __setattr__(self, key, value):
        if key != "_rna":
            assert key in self._rna.properties, f"operator has no property {key!r}"
        object.__setattr__(self, key, value)


class RecordingLayout:
    def __init__(self, log):
        self.log = log
        self.enabled = self.active = self.alert = True
        self.scale_y = 1.0

    def _sub(self, *a, **k):
        return RecordingLayout(self.log)

    column = row = box = split = _sub

    def prop(self, data, name, **kw):
        assert name in data.bl_rna.properties, f"{data.bl_rna.identifier} has no property {name!r}"
        self.log.append(("prop", name))

    def prop_search(self, data, name, search_data, search_name, **kw):
        assert name in data.bl_rna.properties and search_name in search_data.bl_rna.properties
        self.log.append(("prop_search", name))

    def operator(self, idname, **kw):
        mod, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, mod), name), f"no operator {idname}"
        self.log.append(("operator", idname))
        return _OpProps(idname)

    def label(self, **kw):
        self.log.append(("label", kw.get("text", "")))

    def template_list(self, listtype, list_id, data, propname, active_data, active_propname, **kw):
        assert hasattr(bpy.types, listtype), listtype
        assert propname in data.bl_rna.properties and active_propname in active_data.bl_rna.properties
        self.log.append(("list", listtype))

    def template_ID(self, data, name, **kw):
        assert name in data.bl_rna.properties
        self.log.append(("template_ID", name))

    def progress(self, **kw):
        assert 0.0 <= kw["factor"] <= 1.0
        self.log.append(("progress", kw.get("text", "")))

    def separator(self, **kw):
        pass


def test_panels_and_lists_draw(addon_enabled, empty_scene, rig_tools):
    scene = empty_scene
    ob = rig_tools.rig("metarig", fingers=False, face=False)
    rig_tools.camera()
    bpy.context.view_layer.objects.active = ob
    item = ob.o2a_rig.overrides.add()
    item.role, item.bone = "left_wrist", "hand.L"
    rec = scene.o2a_jobs.add()
    rec.job_id, rec.state, rec.progress, rec.eta_s, rec.message = "job-1", "RUNNING", 0.4, 75.0, "step 2/5"
    for source in ("FILE", "IMAGE", "RENDER"):
        scene.o2a_shot.reference_source = source
        scene.o2a_shot.use_guidance = source == "IMAGE"
        log = []
        for _key, _label, draw, _opts in ui._SECTIONS:
            draw(RecordingLayout(log), bpy.context)
        ops = {name for kind, name in log if kind == "operator"}
        assert {"o2a.submit_job", "o2a.cancel_job", "o2a.export_pose", "o2a.detect_bones"} <= ops
    log = []
    ui.O2A_UL_jobs.draw_item(None, bpy.context, RecordingLayout(log), scene, rec, 0, scene, "o2a_active_job", 0)
    assert ("progress", "40% ETA 1:15") in log
    ui.O2A_UL_bone_map.draw_item(None, bpy.context, RecordingLayout(log), ob.o2a_rig, item, 0, ob.o2a_rig,
                                 "active_override", 0)
    assert ("prop_search", "bone") in log

    class Header:
        layout = RecordingLayout(log)

    ui.draw_status_bar(Header(), bpy.context)
    assert log[-1][0] == "progress" and "O2A running 40%" in log[-1][1]
    prefs_log = []
    p = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.O2A_AddonPreferences.draw(_PrefsProxy(p, prefs_log), bpy.context)
    assert ("operator", "o2a.test_connection") in prefs_log


class _PrefsProxy:
    """The real preferences object with a recording layout (AddonPreferences.draw reads self.<prop>)."""

    def __init__(self, prefs_obj, log):
        object.__setattr__(self, "_p", prefs_obj)
        object.__setattr__(self, "layout", RecordingLayout(log))

    def __getattr__(self, name):
        return getattr(self._p, name)

    @property
    def bl_rna(self):
        return self._p.bl_rna
