"""Fixtures for add-on tests: real Blender through the ``bpy`` wheel, rigs built procedurally.

One ``bpy`` per process: it is imported once here; every test starts from an empty home file
(``read_homefile(use_empty=True)`` keeps registered add-ons, unlike factory settings).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

bpy = pytest.importorskip("bpy")

import addon_utils  # noqa: E402  (only exists once bpy is imported)


@pytest.fixture(scope="session")
def addon_enabled():
    """The add-on enabled the way Blender enables it (preferences entry included)."""
    mod = addon_utils.enable("blender_addon", default_set=True)
    assert mod is not None, "blender_addon failed to enable"
    yield mod
    addon_utils.disable("blender_addon", default_set=True)


@pytest.fixture
def addon(addon_enabled):
    """The add-on's preferences, looked up fresh (a re-registration invalidates old pointers)."""
    return bpy.context.preferences.addons["blender_addon"].preferences


@pytest.fixture(scope="session")
def o2a_server(tmp_path_factory):
    """A real render server (tiny model, CPU) in a child process on a free loopback port."""
    import subprocess
    import time

    pytest.importorskip("render_server.main", reason="render server not present")
    root = tmp_path_factory.mktemp("server")
    port_file = root / "port"
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "render_server.main", "--model", "tiny", "--listen", "127.0.0.1:0",
         "--data-dir", str(root / "data"), "--port-file", str(port_file), "--chunk-frames", "9", "--heartbeat-s", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
    )
    deadline = time.monotonic() + 120
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"render server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.2)
    yield f"127.0.0.1:{port_file.read_text().strip()}"
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def rigify_enabled():
    addon_utils.enable("rigify", default_set=True)
    return True


@pytest.fixture(scope="session")
def metarig_table(rigify_enabled):
    """(name, head, tail, roll, parent) of every bone of Blender's human metarig (rest pose)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.object.armature_human_metarig_add()
    ob = bpy.context.object
    bpy.ops.object.mode_set(mode="EDIT")
    table = [
        (b.name, tuple(b.head), tuple(b.tail), b.roll, b.parent.name if b.parent else None)
        for b in ob.data.edit_bones
    ]
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.ops.wm.read_homefile(use_empty=True)
    return table


@pytest.fixture(autouse=True)
def empty_scene(metarig_table):  # metarig_table first: it resets the file once per session
    bpy.ops.wm.read_homefile(use_empty=True)
    yield bpy.context.scene


# --- naming conventions used to build test rigs from the metarig geometry -----------------------

_BODY = ("spine", "spine.001", "spine.002", "spine.003", "spine.004", "spine.005", "spine.006")
_FINGER_PARTS = ("thumb", "f_index", "f_middle", "f_ring", "f_pinky")
_FACE_KEEP = ("face", "nose", "lid", "brow.T", "lip", "jaw", "chin", "ear.", "eye.")


def _is_finger(name: str) -> bool:
    return name.startswith(_FINGER_PARTS) or name.startswith("palm")


def _is_face(name: str) -> bool:
    return name.startswith(_FACE_KEEP) and not name.startswith(("spine",))


_MIXAMO_BODY = {
    "spine": "Hips", "spine.001": "Spine", "spine.002": "Spine1", "spine.003": "Spine2",
    "spine.004": "Neck", "spine.005": "Neck1", "spine.006": "Head",
}
_MIXAMO_LIMBS = {
    "shoulder": "Shoulder", "upper_arm": "Arm", "forearm": "ForeArm", "hand": "Hand",
    "thigh": "UpLeg", "shin": "Leg", "foot": "Foot", "toe": "ToeBase", "eye": "Eye",
}
_MIXAMO_FINGERS = {"thumb": "Thumb", "f_index": "Index", "f_middle": "Middle", "f_ring": "Ring", "f_pinky": "Pinky"}


def mixamo_name(name: str) -> str | None:
    if name in _MIXAMO_BODY:
        return _MIXAMO_BODY[name]
    base, _, side = name.rpartition(".")
    if side not in ("L", "R"):
        return None
    side_word = "Left" if side == "L" else "Right"
    if base in _MIXAMO_LIMBS:
        return side_word + _MIXAMO_LIMBS[base]
    finger, _, num = base.rpartition(".")
    if finger in _MIXAMO_FINGERS and num in ("01", "02", "03"):
        return f"{side_word}Hand{_MIXAMO_FINGERS[finger]}{int(num)}"
    return None


def build_rig(
    table,
    naming: str = "metarig",
    *,
    fingers: bool = True,
    face: bool = True,
    name: str = "Rig",
    prefix: str = "",
):
    """An armature with the metarig's geometry under one naming convention.

    naming: "metarig" (Blender human metarig names), "rigify" (generated-rig style: ORG- bones carry
    the skeleton, DEF- copies and control bones with metarig names lie elsewhere to catch a mapper
    that reads the wrong set), "mixamo" (``prefix`` e.g. "mixamorig:"; Mixamo has Index4-style leaf
    bones and eye bones only).
    """
    arm = bpy.data.armatures.new(name)
    ob = bpy.data.objects.new(name, arm)
    bpy.context.scene.collection.objects.link(ob)
    bpy.context.view_layer.objects.active = ob
    ob.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    made = {}
    rows = []
    for bname, head, tail, roll, parent in table:
        if not fingers and _is_finger(bname):
            continue
        if bname.startswith(("breast", "pelvis", "heel", "palm", "forehead", "temple", "cheek", "teeth", "tongue", "brow.B")):
            continue
        if _is_face(bname) and not (bname == "face" or face or bname.startswith("eye.") and naming == "mixamo"):
            continue
        if naming == "mixamo":
            new = mixamo_name(bname)
            if new is None:
                continue
            new = prefix + new
        elif naming == "rigify":
            new = "ORG-" + bname
        else:
            new = bname
        rows.append((bname, new, head, tail, roll, parent))
    for bname, new, head, tail, roll, _parent in rows:
        eb = arm.edit_bones.new(new)
        eb.head, eb.tail, eb.roll = head, tail, roll
        made[bname] = eb
    for bname, _new, _h, _t, _r, parent in rows:
        while parent is not None and parent not in made:
            parent = next(p for n, _h2, _t2, _r2, p in table if n == parent)
        if parent is not None:
            made[bname].parent = made[parent]
            made[bname].use_connect = False
    if naming == "mixamo":
        for bname, new, head, tail, _roll, _parent in rows:
            if fingers and bname.endswith((".03.L", ".03.R")) and _is_finger(bname):
                tip = arm.edit_bones.new(new[:-1] + "4")
                tip.head = tail
                tip.tail = tuple(t + (t - h) * 0.5 for t, h in zip(tail, head))
                tip.parent = made[bname]
            if bname.startswith("toe."):
                end = arm.edit_bones.new(new.replace("ToeBase", "Toe_End"))
                end.head = tail
                end.tail = (tail[0], tail[1] - 0.05, tail[2])
                end.parent = made[bname]
    if naming == "rigify":
        # Decoys: DEF- and control bones with metarig names at wrong places (a mapper reading
        # them instead of ORG- would fail the projection tests).
        for bname, _new, head, tail, _roll, _parent in rows:
            for decoy in ("DEF-" + bname, bname):
                eb = arm.edit_bones.new(decoy)
                eb.head = (head[0], head[1] + 0.3, head[2] + 0.05)
                eb.tail = (tail[0], tail[1] + 0.3, tail[2] + 0.05)
    bpy.ops.object.mode_set(mode="OBJECT")
    return ob


def add_camera(name="Cam", location=(0.0, -6.0, 1.0), rotation=(math.pi / 2, 0.0, 0.0), lens=35.0, make_active=True):
    cam_data = bpy.data.cameras.new(name)
    cam_data.lens = lens
    cam = bpy.data.objects.new(name, cam_data)
    cam.location = location
    cam.rotation_euler = rotation
    bpy.context.scene.collection.objects.link(cam)
    if make_active:
        bpy.context.scene.camera = cam
    return cam


def animate(ob, frames=(1, 12), prefix=""):
    """Keyframe a visible motion: arms, legs, spine and the object itself."""
    pose = ob.pose.bones
    moves = [(n, k) for n, k in (
        ("upper_arm.L", 0), ("forearm.R", 1), ("thigh.L", 2), ("spine.002", 0), ("spine.006", 2),
        ("LeftArm", 0), ("RightForeArm", 1), ("LeftUpLeg", 2), ("Spine1", 0), ("Head", 2),
    ) if prefix + n in pose or "ORG-" + n in pose]
    for i, f in enumerate(frames):
        for n, axis in moves:
            pb = pose.get(prefix + n) or pose.get("ORG-" + n)
            pb.rotation_mode = "XYZ"
            e = [0.0, 0.0, 0.0]
            e[axis] = 0.5 * i * (1 if axis != 1 else -1)
            pb.rotation_euler = e
            pb.keyframe_insert("rotation_euler", frame=f)
        ob.location = (0.3 * i, 0.0, 0.1 * i)
        ob.rotation_euler = (0.0, 0.0, 0.4 * i)
        ob.keyframe_insert("location", frame=f)
        ob.keyframe_insert("rotation_euler", frame=f)


@pytest.fixture
def rig_tools(metarig_table):
    """Helpers bundled for tests: build rigs, add cameras, animate."""

    class Tools:
        table = metarig_table

        @staticmethod
        def rig(naming="metarig", **kw):
            return build_rig(metarig_table, naming, **kw)

        camera = staticmethod(add_camera)
        animate = staticmethod(animate)

    return Tools
