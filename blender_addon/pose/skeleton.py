"""Bone maps: which bone point gives which COCO-WholeBody keypoint, per rig convention.

Pure python. A *role* is a keypoint name from ``types.KEYPOINT_NAMES`` (e.g. ``left_wrist``,
``right_hand_index4``, ``face_36``) or an auxiliary role used to derive points the rig does not
have as bones (``head``, ``jaw``, ``left_toe_tip``...). A *point spec* is a short string:

    "bone"            the bone's head (joint centre; the default, see research notes 3.3)
    "bone:tail"       the bone's tail
    "bone:mid"        the middle of the bone
    "a+b:tail"        the mean of several bone points (each part may carry its own ``:end``)

Presets list candidate specs per role; the first candidate whose bones all exist wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Iterable, Mapping

from .types import KEYPOINT_NAMES

ENDS = ("head", "tail", "mid")

# Auxiliary roles: bones/points used for derived keypoints, never exported themselves.
AUX_ROLES = ("head", "neck", "jaw", "left_toe_tip", "right_toe_tip", "left_foot", "right_foot")
ALL_ROLES: tuple[str, ...] = KEYPOINT_NAMES + AUX_ROLES

# Roles that must be found for a preset to count as a match at all (the body's limbs).
CORE_ROLES = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle", "head",
)

_FINGERS = ("thumb", "index", "middle", "ring", "pinky")


@dataclass(frozen=True)
class PointPart:
    bone: str
    end: str = "head"


@dataclass(frozen=True)
class PointSpec:
    """One keypoint source: the mean of one or more bone points."""

    parts: tuple[PointPart, ...]

    @classmethod
    def parse(cls, text: str) -> PointSpec:
        text = text.strip()
        if not text:
            raise ValueError("point spec: empty")
        parts = []
        for raw in text.split("+"):
            bone, sep, end = raw.strip().rpartition(":")
            if not sep or end not in ENDS:
                bone, end = raw.strip(), "head"
            if not bone:
                raise ValueError(f"point spec {text!r}: empty bone name")
            parts.append(PointPart(bone, end))
        return cls(tuple(parts))

    def __str__(self) -> str:
        return "+".join(p.bone if p.end == "head" else f"{p.bone}:{p.end}" for p in self.parts)

    @property
    def bones(self) -> tuple[str, ...]:
        return tuple(p.bone for p in self.parts)


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    roles: Mapping[str, tuple[str, ...]]  # role -> candidate specs (bone names without prefix)
    prefixes: tuple[str, ...] = ("",)     # tried in order; the one matching most bones wins


@dataclass
class Detection:
    """Result of matching a rig's bone names against a preset (or a custom map)."""

    preset: str
    prefix: str
    specs: dict[str, PointSpec] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def matched(self) -> list[str]:
        return list(self.specs)

    def has(self, role: str) -> bool:
        return role in self.specs

    def summary(self) -> str:
        body = sum(1 for r in KEYPOINT_NAMES[:17] if r in self.specs)
        hands = sum(1 for r in self.specs if "_hand_" in r)
        face = sum(1 for r in self.specs if r.startswith("face_"))
        core_missing = [r for r in CORE_ROLES if r not in self.specs]
        text = f"{self.preset}{' (' + self.prefix + ')' if self.prefix else ''}: body {body}/17 from bones, hands {hands}/42, face {face}/68 from bones"
        if core_missing:
            text += "; missing " + ", ".join(core_missing)
        return text


def _sides(table: Mapping[str, tuple[str, ...]], tokens: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[str, ...]]:
    """Expand '{S}'-style placeholders in a one-sided table into left_/right_ roles."""
    out: dict[str, tuple[str, ...]] = {}
    for role, cands in table.items():
        if "{side}" not in role:
            out[role] = cands
            continue
        for side, subst in tokens.items():
            out[role.replace("{side}", side)] = tuple(c.format(**subst) for c in cands)
    return out


def _hand_table(names: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {f"{{side}}_hand_{k}": v for k, v in names.items()}


# --- Blender human metarig / Rigify (generated rigs use the same names with ORG-/DEF-) -----------

_METARIG_FINGERS = {"thumb": "thumb"} | {f: f"f_{f}" for f in _FINGERS[1:]}
_metarig_hand: dict[str, tuple[str, ...]] = {"wrist": ("hand.{S}",)}
for _f, _b in _METARIG_FINGERS.items():
    _metarig_hand[f"{_f}1"] = (f"{_b}.01.{{S}}",)
    _metarig_hand[f"{_f}2"] = (f"{_b}.02.{{S}}",)
    _metarig_hand[f"{_f}3"] = (f"{_b}.03.{{S}}",)
    _metarig_hand[f"{_f}4"] = (f"{_b}.03.{{S}}:tail",)

# Face landmarks with a clear bone counterpart in the metarig face (iBUG-68 numbering; face_i is
# landmark i). "R" landmarks (subject's right) come first in iBUG order. The rest come from the
# template fitted to these points (see binding.py).
_METARIG_FACE = {
    # eyes: corners are the lid chains' ends; upper/lower lid points are the inner chain joints
    "face_36": ("lid.T.R",), "face_37": ("lid.T.R.001",), "face_38": ("lid.T.R.003",),
    "face_39": ("lid.B.R",), "face_40": ("lid.B.R.001",), "face_41": ("lid.B.R.003",),
    "face_42": ("lid.B.L",), "face_43": ("lid.T.L.003",), "face_44": ("lid.T.L.001",),
    "face_45": ("lid.T.L",), "face_46": ("lid.B.L.003",), "face_47": ("lid.B.L.001",),
    # brows, outer -> inner on the right, inner -> outer on the left
    "face_17": ("brow.T.R.001",), "face_19": ("brow.T.R.002",), "face_21": ("brow.T.R.003",),
    "face_22": ("brow.T.L.003",), "face_24": ("brow.T.L.002",), "face_26": ("brow.T.L.001",),
    # nose bridge top and tip, nostril wings
    "face_27": ("nose",), "face_30": ("nose.001:tail",), "face_31": ("nose.R.001",),
    "face_33": ("nose.004",), "face_35": ("nose.L.001",),
    # outer lips: corners, mid points, centres
    "face_48": ("lip.T.R.001:tail",), "face_50": ("lip.T.R.001",), "face_51": ("lip.T.L",),
    "face_52": ("lip.T.L.001",), "face_54": ("lip.T.L.001:tail",), "face_56": ("lip.B.L.001",),
    "face_57": ("lip.B.L",), "face_58": ("lip.B.R.001",),
    # jaw line: near the ears, jaw angles, chin
    "face_1": ("jaw.R",), "face_4": ("jaw.R.001",), "face_6": ("chin.R",), "face_8": ("chin",),
    "face_10": ("chin.L",), "face_12": ("jaw.L.001",), "face_15": ("jaw.L",),
}

_METARIG_BODY = {
    "nose": ("nose.001:tail",),
    "{side}_eye": ("eye.{S}",),
    "{side}_ear": ("ear.{S}",),
    "{side}_shoulder": ("upper_arm.{S}",),
    "{side}_elbow": ("forearm.{S}",),
    "{side}_wrist": ("hand.{S}",),
    "{side}_hip": ("thigh.{S}",),
    "{side}_knee": ("shin.{S}",),
    "{side}_ankle": ("foot.{S}",),
    "{side}_heel": ("heel.02.{S}:mid",),
    "{side}_toe_tip": ("toe.{S}:tail",),
    "{side}_foot": ("toe.{S}", "foot.{S}"),
    "head": ("spine.006",),
    "neck": ("spine.004",),
    "jaw": ("jaw",),
}

_RIGIFY_SIDES = {"left": {"S": "L"}, "right": {"S": "R"}}
_METARIG_ROLES = _sides(_METARIG_BODY | _hand_table(_metarig_hand), _RIGIFY_SIDES) | _METARIG_FACE

# --- Mixamo ------------------------------------------------------------------------------------

_mixamo_hand: dict[str, tuple[str, ...]] = {"wrist": ("{Side}Hand",)}
for _f in _FINGERS:
    _cap = _f.capitalize()
    for _i in (1, 2, 3):
        _mixamo_hand[f"{_f}{_i}"] = (f"{{Side}}Hand{_cap}{_i}",)
    _mixamo_hand[f"{_f}4"] = (f"{{Side}}Hand{_cap}4", f"{{Side}}Hand{_cap}3:tail")

_MIXAMO_BODY = {
    "{side}_eye": ("{Side}Eye",),
    "{side}_shoulder": ("{Side}Arm",),
    "{side}_elbow": ("{Side}ForeArm",),
    "{side}_wrist": ("{Side}Hand",),
    "{side}_hip": ("{Side}UpLeg",),
    "{side}_knee": ("{Side}Leg",),
    "{side}_ankle": ("{Side}Foot",),
    "{side}_toe_tip": ("{Side}Toe_End", "{Side}ToeBase:tail"),
    "{side}_foot": ("{Side}ToeBase", "{Side}Foot"),
    "head": ("Head",),
    "neck": ("Neck",),
}
_MIXAMO_SIDES = {"left": {"Side": "Left"}, "right": {"Side": "Right"}}
_MIXAMO_ROLES = _sides(_MIXAMO_BODY | _hand_table(_mixamo_hand), _MIXAMO_SIDES)

# --- Auto-Rig Pro (deform bones; `c_` controls where ARP has no deform counterpart) ------------

_arp_hand: dict[str, tuple[str, ...]] = {"wrist": ("hand.{s}",)}
for _f in _FINGERS:
    _arp_hand[f"{_f}1"] = (f"{_f}1.{{s}}", f"c_{_f}1.{{s}}")
    _arp_hand[f"{_f}2"] = (f"c_{_f}2.{{s}}", f"{_f}2.{{s}}")
    _arp_hand[f"{_f}3"] = (f"c_{_f}3.{{s}}", f"{_f}3.{{s}}")
    _arp_hand[f"{_f}4"] = (f"c_{_f}3.{{s}}:tail", f"{_f}3.{{s}}:tail")

_ARP_BODY = {
    "{side}_eye": ("c_eye.{s}",),
    "{side}_ear": ("c_ear_01.{s}", "ear_01.{s}"),
    "{side}_shoulder": ("arm_stretch.{s}", "c_arm_stretch.{s}"),
    "{side}_elbow": ("forearm_stretch.{s}", "c_forearm_stretch.{s}"),
    "{side}_wrist": ("hand.{s}",),
    "{side}_hip": ("thigh_stretch.{s}", "c_thigh_stretch.{s}"),
    "{side}_knee": ("leg_stretch.{s}", "c_leg_stretch.{s}"),
    "{side}_ankle": ("foot.{s}",),
    "{side}_toe_tip": ("toes_01.{s}:tail", "c_toes.{s}:tail"),
    "{side}_foot": ("toes_01.{s}", "c_toes.{s}", "foot.{s}"),
    "head": ("head.x",),
    "neck": ("neck.x",),
    "jaw": ("jawbone.x", "c_jawbone.x"),
}
_ARP_SIDES = {"left": {"s": "l"}, "right": {"s": "r"}}
_ARP_ROLES = _sides(_ARP_BODY | _hand_table(_arp_hand), _ARP_SIDES)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("RIGIFY", "Rigify (generated)", _METARIG_ROLES, ("ORG-", "DEF-")),
        Preset("METARIG", "Blender human metarig", _METARIG_ROLES, ("",)),
        Preset("MIXAMO", "Mixamo", _MIXAMO_ROLES, ("", "mixamorig:", "mixamorig_")),
        Preset("AUTO_RIG_PRO", "Auto-Rig Pro", _ARP_ROLES, ("",)),
    )
}

_NAMESPACE = re.compile(r"^(?P<ns>[A-Za-z0-9_]*:|mixamorig\d*_)")


def _candidate_prefixes(preset: Preset, bone_names: Iterable[str]) -> list[str]:
    """The preset's prefixes plus namespaces seen on the rig (``mixamorig1:``, ``Char:``...)."""
    out = list(preset.prefixes)
    if preset.name == "MIXAMO":
        seen: dict[str, int] = {}
        for name in bone_names:
            m = _NAMESPACE.match(name)
            if m:
                seen[m.group("ns")] = seen.get(m.group("ns"), 0) + 1
        out += [ns for ns, _ in sorted(seen.items(), key=lambda kv: -kv[1]) if ns not in out]
    return out


def resolve(
    roles: Mapping[str, tuple[str, ...]], bone_names: Iterable[str], prefix: str = ""
) -> tuple[dict[str, PointSpec], list[str]]:
    """Pick, per role, the first candidate spec whose bones exist (with ``prefix`` prepended)."""
    names = set(bone_names)
    specs: dict[str, PointSpec] = {}
    missing: list[str] = []
    for role, candidates in roles.items():
        for cand in candidates:
            spec = PointSpec.parse(cand)
            spec = PointSpec(tuple(PointPart(prefix + p.bone, p.end) for p in spec.parts))
            if all(b in names for b in spec.bones):
                specs[role] = spec
                break
        else:
            missing.append(role)
    return specs, missing


def match_preset(preset: Preset, bone_names: Iterable[str]) -> Detection:
    names = list(bone_names)
    best: Detection | None = None
    for prefix in _candidate_prefixes(preset, names):
        specs, missing = resolve(preset.roles, names, prefix)
        score = _score(specs)
        if best is None or score > _score(best.specs):
            best = Detection(preset.name, prefix, specs, missing)
    assert best is not None
    return best


def _score(specs: Mapping[str, PointSpec]) -> tuple[int, int]:
    return (sum(1 for r in CORE_ROLES if r in specs), len(specs))


def detect(bone_names: Iterable[str]) -> Detection:
    """Auto-detect the convention: the preset matching most core roles, then most roles.

    Returns a detection with preset ``NONE`` when no preset finds the body's core bones.
    Ties go to the earlier preset (Rigify before metarig: a generated rig also has metarig names
    on its control bones, but its ORG- bones follow the final FK/IK pose).
    """
    names = list(bone_names)
    best: Detection | None = None
    for preset in PRESETS.values():
        det = match_preset(preset, names)
        if best is None or _score(det.specs) > _score(best.specs):
            best = det
    assert best is not None
    if sum(1 for r in CORE_ROLES if r in best.specs) < len(CORE_ROLES) // 2:
        return Detection("NONE", "", {}, list(CORE_ROLES))
    return best


def apply_overrides(base: Detection, overrides: Mapping[str, str], bone_names: Iterable[str]) -> Detection:
    """Custom map on top of a detection: each override replaces (or, when empty, removes) a role.

    Raises ValueError naming the role when an override names a bone the rig does not have.
    """
    names = set(bone_names)
    specs = dict(base.specs)
    for role, text in overrides.items():
        if role not in ALL_ROLES:
            raise ValueError(f"custom map: unknown role {role!r}")
        if not text.strip():
            specs.pop(role, None)
            continue
        spec = PointSpec.parse(text)
        absent = [b for b in spec.bones if b not in names]
        if absent:
            raise ValueError(f"custom map role {role!r}: bone {absent[0]!r} not in the armature")
        specs[role] = spec
    missing = [r for r in ALL_ROLES if r not in specs and (r in CORE_ROLES or r in base.missing)]
    return Detection("CUSTOM" if overrides else base.preset, base.prefix, specs, missing)
