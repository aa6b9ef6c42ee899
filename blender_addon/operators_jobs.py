"""Server operators: test connection, submit, still (pose transfer), cancel, re-attach, re-generate.

Main thread: snapshot the scene, add a job record (ids and settings only, never the token), hand
the snapshot to the JobRunner thread; results come back through ``runtime``'s timer. In background
mode (farm, tests) the same worker body runs synchronously.
"""

from __future__ import annotations

import json
import threading
import uuid

import bpy
from bpy.props import BoolProperty, StringProperty

from . import runtime
from . import shot as shot_mod
from .apply import apply_message
from .extract import ExtractError
from .images import ReferencePictureError
from .jobs import JobFailed, RenderOptions, run_job
from .prefs import network_allowed, server_settings
from .settings import ServerSettings


def _start(scene, rec, settings: ServerSettings, *, snapshot=None, job_id: str = "", cancel: bool = False) -> None:
    """Run a job for ``rec``: a worker thread in the UI, synchronously in background mode."""
    if bpy.app.background:
        try:
            done = run_job(settings, rec.out_dir, apply_message, key=rec.key, snapshot=snapshot, job_id=job_id,
                           should_cancel=lambda: cancel)
        except JobFailed as exc:
            from .jobs import MsgDone

            done = MsgDone(rec.key, job_id, "FAILED", str(exc))
        apply_message(done)
        return
    runner = runtime.get_runner()
    runner.start(rec.key, settings, rec.out_dir, snapshot=snapshot, job_id=job_id)
    if cancel:
        runner.cancel(rec.key)
    runtime.ensure_timer()


def _new_record(scene, settings: ServerSettings, frame_start: int, options: RenderOptions, kind: str):
    from . import vse

    rec = scene.o2a_jobs.add()
    rec.target_scene = vse.sequencer_scene(bpy.context).name
    rec.key = uuid.uuid4().hex[:12]
    rec.server_address = settings.address
    rec.frame_start = frame_start
    rec.kind = kind
    rec.out_dir = shot_mod.output_dir(scene, f"job_{rec.key}")
    rec.settings_json = json.dumps({"options": options.to_dict()}, sort_keys=True)
    scene.o2a_active_job = len(scene.o2a_jobs) - 1
    return rec


class _ServerOperator:
    bl_options = {"REGISTER"}

    def _gate(self, context) -> bool:
        ok, why = network_allowed(context)
        if not ok:
            self.report({"ERROR"}, why)
        return ok


class _SubmitBase(_ServerOperator):
    options_json: StringProperty(default="", options={"HIDDEN"}, description="Re-generate: stored settings")

    def _submit(self, context, still: bool):
        if not self._gate(context):
            return {"CANCELLED"}
        scene = context.scene
        try:
            options = RenderOptions.from_dict(json.loads(self.options_json)) if self.options_json else None
            snapshot, frame_start = shot_mod.make_snapshot(context, scene, still=still, options=options)
            settings = server_settings(context)
        except (ExtractError, ReferencePictureError, ValueError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        rec = _new_record(scene, settings, frame_start, snapshot.options, "still" if still else "shot")
        _start(scene, rec, settings, snapshot=snapshot)
        if rec.state == "FAILED":
            self.report({"ERROR"}, rec.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"{len(snapshot.poses)} frame(s) submitted to {settings.address}")
        return {"FINISHED"}


class O2A_OT_submit_job(_SubmitBase, bpy.types.Operator):
    """Extract the shot's poses, send them with the reference picture to the render server"""

    bl_idname = "o2a.submit_job"
    bl_label = "Render on Server"

    def execute(self, context):
        return self._submit(context, still=False)


class O2A_OT_pose_transfer(_SubmitBase, bpy.types.Operator):
    """Single-image pose transfer for previs: the current frame's pose, one picture back"""

    bl_idname = "o2a.pose_transfer"
    bl_label = "Pose Transfer (Still)"

    def execute(self, context):
        return self._submit(context, still=True)


class O2A_OT_cancel_job(_ServerOperator, bpy.types.Operator):
    """Cancel the job on the server (frees the GPU)"""

    bl_idname = "o2a.cancel_job"
    bl_label = "Cancel"

    job_id: StringProperty(default="")

    def execute(self, context):
        scene = context.scene
        rec = next((r for r in scene.o2a_jobs if r.job_id == self.job_id and self.job_id), None)
        if rec is None:
            self.report({"ERROR"}, f"job_id: no job {self.job_id!r} in this scene")
            return {"CANCELLED"}
        if rec.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
            self.report({"INFO"}, f"{rec.job_id} already {rec.state.lower()}")
            return {"FINISHED"}
        if not self._gate(context):
            return {"CANCELLED"}
        if runtime.get_runner().cancel(rec.key):  # a worker watches it: it sends the cancel
            rec.message = "cancelling..."
        else:
            try:
                settings = server_settings(context, rec.server_address)
            except ValueError as exc:
                self.report({"ERROR"}, str(exc))
                return {"CANCELLED"}
            _start(scene, rec, settings, job_id=rec.job_id, cancel=True)
        return {"FINISHED"}


def reattach_all(context, scene=None) -> int:
    """Resume watching every unfinished job recorded in the file(s); returns how many."""
    count = 0
    scenes = [scene] if scene is not None else list(bpy.data.scenes)
    for sc in scenes:
        for rec in getattr(sc, "o2a_jobs", ()):
            if not rec.job_id or rec.state in ("SUCCEEDED", "FAILED", "CANCELLED"):
                continue
            if not bpy.app.background and runtime.get_runner().watching(rec.key):
                continue
            rec.message = "re-attaching..."
            _start(sc, rec, server_settings(context, rec.server_address), job_id=rec.job_id)
            count += 1
    return count


class O2A_OT_reattach_jobs(_ServerOperator, bpy.types.Operator):
    """Resume watching unfinished jobs of this file (after reopening it or a network drop)"""

    bl_idname = "o2a.reattach_jobs"
    bl_label = "Re-attach Jobs"

    def execute(self, context):
        if not self._gate(context):
            return {"CANCELLED"}
        try:
            n = reattach_all(context, context.scene)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"re-attached {n} job(s)")
        return {"FINISHED"}


class O2A_OT_regenerate(_ServerOperator, bpy.types.Operator):
    """Submit the shot again with the settings stored on a job (or the active strip)"""

    bl_idname = "o2a.regenerate"
    bl_label = "Re-generate"

    job_id: StringProperty(default="", description="Job whose settings to reuse; empty = the active strip's")
    new_seed: BoolProperty(name="New seed", default=True)

    def execute(self, context):
        from . import vse

        scene = context.scene
        settings_json = ""
        rec = next((r for r in scene.o2a_jobs if self.job_id and r.job_id == self.job_id), None)
        if rec is not None:
            settings_json = rec.settings_json
        else:
            ed = vse.sequencer_scene(context).sequence_editor
            meta = vse.strip_metadata(ed.active_strip if ed else None)
            if meta:
                settings_json = json.dumps(meta.get("settings", {}))
        if not settings_json:
            self.report({"ERROR"}, "job_id: pick a job or select a strip made by One-to-All")
            return {"CANCELLED"}
        stored = json.loads(settings_json)
        options = dict(stored.get("options", {}))
        if self.new_seed:
            options["seed"] = None
        elif options.get("seed") is None and "server_settings" in stored:
            options["seed"] = stored["server_settings"].get("seed")
        op = bpy.ops.o2a.pose_transfer if options.get("image_pose_transfer") == "PER_FRAME" else bpy.ops.o2a.submit_job
        return op(options_json=json.dumps(options))


class O2A_OT_test_connection(_ServerOperator, bpy.types.Operator):
    """Ask the server for its capabilities"""

    bl_idname = "o2a.test_connection"
    bl_label = "Test Connection"

    def execute(self, context):
        if not self._gate(context):
            return {"CANCELLED"}
        try:
            settings = server_settings(context)
        except ValueError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        runtime_props = context.window_manager.o2a_runtime
        if bpy.app.background:
            ok, text = _capabilities(settings)
            runtime_props.capabilities = text
            self.report({"INFO"} if ok else {"ERROR"}, text.splitlines()[0])
            return {"FINISHED"} if ok else {"CANCELLED"}
        runtime_props.capabilities = f"contacting {settings.address}..."
        result: dict[str, str] = {}  # filled by the worker thread, read by the main-thread timer

        def work():
            result["text"] = _capabilities(settings)[1]

        def deliver():
            if "text" not in result:
                return 0.2
            bpy.context.window_manager.o2a_runtime.capabilities = result["text"]
            for window in bpy.context.window_manager.windows:
                for area in window.screen.areas:
                    area.tag_redraw()
            return None

        threading.Thread(target=work, name="o2a-capabilities", daemon=True).start()
        bpy.app.timers.register(deliver, first_interval=0.2)  # registered here, on the main thread
        return {"FINISHED"}


def _capabilities(settings: ServerSettings) -> tuple[bool, str]:
    from . import remote

    try:
        return True, remote.capabilities_text(settings)
    except JobFailed as exc:
        return False, f"Not connected: {exc}"


classes = (O2A_OT_submit_job, O2A_OT_pose_transfer, O2A_OT_cancel_job, O2A_OT_reattach_jobs, O2A_OT_regenerate,
           O2A_OT_test_connection)
register, unregister = bpy.utils.register_classes_factory(classes)
