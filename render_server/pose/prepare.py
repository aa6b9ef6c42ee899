"""Keypoints in, model conditioning images out: what the server runs before the pipeline (``prepare_shot``).

Follows the official ``load_poses_whole_video`` chain with keypoints instead of a detector on the driving video:

1. the driving keypoints are mapped onto the reference canvas with the centre-crop-resize geometry the official
   code applies to driving frames (``resizecrop`` to the reference size);
2. the reference pose comes from the client (keypoints, e.g. the rig at a chosen frame) or from a detector;
3. "pose" mode: the reference image is warped onto the driving anchor pose (zero padding + outpaint mask),
   optionally the driving limbs are rescaled toward the reference (``align_to_pose``, hands on their own arm);
   "ref" mode: the reference is used as is (empty mask), optionally the driving poses are retargeted to the
   reference skeleton (``align_to_reference``);
4. every driving pose is drawn with the official aligned drawer at the reference size, the face lightened per
   ``face_lightening``; then all images go through ``resizecrop`` to the output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np

from . import align, retarget
from .draw import PoseStyle, draw_frames, draw_pose_aligned
from .keypoints import KeypointError, PoseFrame, PoseSequence, validate_canvas
from .openpose import OpenPose, WanMeta, coco133_to_meta, meta_to_openpose

FaceLightening = Literal["auto", "on", "off"]
AlignMode = Literal["pose", "ref"]
Detector = Callable[[np.ndarray], PoseFrame]


class ReferencePoseMissing(ValueError):
    """Neither a reference pose nor a detector was given."""


@dataclass(frozen=True)
class PrepareOptions:
    """How a shot's conditioning is prepared.

    width, height: output size in pixels (the video size the model generates).
    mode: "pose" moves the reference onto the driving pose (cross-scale: half-body reference, full-body driver);
        "ref" keeps the reference framing (similar framing of reference and driver).
    align_limbs: "pose" mode: rescale driving limbs toward the reference (the official author calls it unstable);
        "ref" mode: retarget the driving poses to the reference skeleton (recommended there).
    face_lightening: "on" draws face landmarks at 35% brightness (what the model was trained with whenever the face
        geometry did not come from the target person), "off" at full brightness, "auto" lightens unless
        ``same_skeleton`` says the driving skeleton is the reference character's own.
    head_lightening: also lighten the head limbs and blacken the head joints (cartoons, animals).
    same_skeleton: the driving poses come from the reference character itself (e.g. a render of the same rig).
    anchor: driving frame used to measure the driving skeleton; None searches the most similar one.
    official_hand_pairing: reproduce the official ``align_to_pose`` bug (each hand follows the opposite arm).
    """

    width: int
    height: int
    mode: AlignMode = "pose"
    align_limbs: bool = False
    face_lightening: FaceLightening = "auto"
    head_lightening: bool = False
    same_skeleton: bool = False
    anchor: int | None = None
    align_center: bool = False
    conf_th: float = 0.9
    official_hand_pairing: bool = False
    workers: int = 0

    def __post_init__(self) -> None:
        validate_canvas(self.width, self.height)
        if self.mode not in ("pose", "ref"):
            raise ValueError(f"mode: expected 'pose' or 'ref', got {self.mode!r}")
        if self.face_lightening not in ("auto", "on", "off"):
            raise ValueError(f"face_lightening: expected 'auto', 'on' or 'off', got {self.face_lightening!r}")

    @property
    def face_change(self) -> bool:
        if self.face_lightening == "auto":
            return not self.same_skeleton
        return self.face_lightening == "on"


@dataclass
class PreparedPoses:
    """Conditioning images at the output size.

    pose_frames (N, H, W, 3) uint8 RGB; reference_image (H, W, 3) uint8; reference_pose (H, W, 3) uint8 (the
    reference's pose drawn without face); mask (H, W) uint8, 255 = area to outpaint (intermediate values at
    edges after resampling), all 0 in "ref" mode; anchor: driving frame index used; face_lightened: whether the
    faces were drawn lightened.
    """

    pose_frames: np.ndarray
    reference_image: np.ndarray
    reference_pose: np.ndarray
    mask: np.ndarray
    anchor: int
    face_lightened: bool


def map_to_canvas(keypoints: np.ndarray, src_w: int, src_h: int, dst_w: int, dst_h: int) -> np.ndarray:
    """Pixel keypoints of a src canvas -> the dst canvas through ``resizecrop`` geometry (centre crop + resize)."""
    left, top, right, bottom = align.crop_box(src_w, src_h, dst_h, dst_w)
    out = np.array(keypoints, dtype=np.float64, copy=True)
    out[..., 0] = (out[..., 0] - left) * (dst_w / (right - left))
    out[..., 1] = (out[..., 1] - top) * (dst_h / (bottom - top))
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 1:
        raise ValueError(f"reference_image: expected uint8 (H, W, 3) RGB, got {arr.dtype} {arr.shape}")
    return np.ascontiguousarray(arr)


def _has_body(pose: OpenPose) -> bool:
    return bool((np.asarray(pose.subset)[0, :18] >= 0).any())


def _pick_anchor(ref: OpenPose, poses: list[OpenPose], fixed: int | None, need_neck: bool) -> int:
    if fixed is not None:
        if not 0 <= fixed < len(poses):
            raise ValueError(f"anchor: frame index {fixed} outside 0..{len(poses) - 1}")
        if need_neck and np.asarray(poses[fixed].subset)[0, 1] < 0:
            raise ValueError(f"anchor: driving frame {fixed} has no neck (both shoulders needed) to anchor to")
        return fixed
    usable = [i for i, p in enumerate(poses) if _has_body(p) and (not need_neck or p.subset[0, 1] >= 0)]
    if not usable:
        raise KeypointError("no driving frame has visible shoulders to anchor the reference to", field="frames")
    return usable[align.find_anchor_frame(ref, [poses[i] for i in usable])]


def resolve_reference_pose(
    reference_image: np.ndarray,
    reference_pose: PoseFrame | None,
    reference_canvas: tuple[int, int] | None,
    detector: Detector | None,
) -> PoseFrame:
    """The reference pose in reference-image pixels: the client's (rescaled from its canvas) or detected."""
    height, width = reference_image.shape[:2]
    if reference_pose is None:
        if detector is None:
            raise ReferencePoseMissing(
                "reference_pose: no reference pose was given and no pose detector is configured. Send the "
                "reference keypoints (COCO-WholeBody 133 in reference-image pixels, e.g. the rig at the frame the "
                "reference shows) or start the server with a detector (DWPose ONNX models: --pose-model and "
                "optionally --det-model)."
            )
        return detector(reference_image)
    if reference_canvas is not None and tuple(reference_canvas) != (width, height):
        src_w, src_h = validate_canvas(*reference_canvas)
        mapped = map_to_canvas(reference_pose.keypoints, src_w, src_h, width, height)
        return PoseFrame(mapped, reference_pose.frame)
    return reference_pose


def prepare_shot(
    reference_image: np.ndarray,
    reference_pose: PoseFrame | None,
    driving: PoseSequence,
    options: PrepareOptions,
    *,
    reference_canvas: tuple[int, int] | None = None,
    detector: Detector | None = None,
) -> PreparedPoses:
    """Prepare a shot: reference image (uint8 RGB), its pose (or a detector), driving keypoints -> images."""
    image = _check_image(reference_image)
    if len(driving) == 0:
        raise KeypointError("the driving sequence has no frames", field="frames")
    ref_h, ref_w = image.shape[:2]
    ref_frame = resolve_reference_pose(image, reference_pose, reference_canvas, detector)
    ref_meta = coco133_to_meta(ref_frame, ref_w, ref_h)
    ref_pose = meta_to_openpose(ref_meta)
    if not _has_body(ref_pose):
        raise KeypointError("the reference pose has no visible body point", field="reference_pose")

    drv_metas: list[WanMeta] = []
    for f in driving.frames:
        mapped = map_to_canvas(f.keypoints, driving.width, driving.height, ref_w, ref_h)
        drv_metas.append(coco133_to_meta(mapped, ref_w, ref_h))
    drv_poses = [meta_to_openpose(m) for m in drv_metas]

    if options.mode == "pose":
        anchor = _pick_anchor(ref_pose, drv_poses, options.anchor, need_neck=True)
        if ref_pose.subset[0, 1] < 0:
            raise KeypointError("the reference pose needs both shoulders (the neck anchors the warp)",
                                field="reference_pose")  # fmt: skip
        ref_img, ref_pose_img, mask = align.warp_ref_to_pose(
            image, drv_poses[anchor], ref_pose, conf_th=options.conf_th, align_center=options.align_center
        )
        if options.align_limbs:
            drv_poses = align.align_to_pose(
                ref_pose, drv_poses, anchor=anchor, conf_th=options.conf_th,
                right_hand_index=1 if options.official_hand_pairing else 0,
            )  # fmt: skip
    else:
        # retargeting grows the skeleton from the neck: the anchor frame then needs one
        anchor = _pick_anchor(ref_pose, drv_poses, options.anchor, need_neck=options.align_limbs)
        ref_img = image
        ref_pose_img = draw_pose_aligned(ref_pose, ref_h, ref_w, without_face=True)
        mask = np.zeros((ref_h, ref_w), dtype=np.uint8)
        if options.align_limbs:
            if ref_pose.subset[0, 1] < 0:
                raise KeypointError("retargeting needs both shoulders in the reference pose", field="reference_pose")
            drv_poses = retarget.align_to_reference(ref_meta, drv_metas, drv_poses, anchor=anchor)

    style = PoseStyle(face_change=options.face_change, head_change=options.head_lightening)
    frames = draw_frames(drv_poses, ref_h, ref_w, style, workers=options.workers)
    th, tw = options.height, options.width
    pose_frames = np.empty((len(frames), th, tw, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):  # in place: a chunk of frames is hundreds of MB
        pose_frames[i] = align.resizecrop(frame, th, tw)
    return PreparedPoses(
        pose_frames=pose_frames,
        reference_image=align.resizecrop(ref_img, th, tw),
        reference_pose=align.resizecrop(ref_pose_img, th, tw),
        mask=align.resizecrop(mask, th, tw),
        anchor=anchor,
        face_lightened=options.face_change,
    )
