"""Optional reference-pose detector: DWPose ONNX models run with onnxruntime.

DWPose = a YOLOX person detector (``yolox_l.onnx``, 640x640 letterbox input, raw YOLOX head output) and an RTMPose
whole-body model with SimCC heads (``dw-ll_ucoco_384.onnx``, 288x384 input, outputs ``simcc_x``/``simcc_y``,
split ratio 2). The paths are given by the user (server flags); nothing is downloaded. The person detector is
optional: without it the whole image is the person box. Of several persons, the largest box is used.

Output: one ``PoseFrame`` of COCO-WholeBody-133 keypoints in image pixels, confidences clipped to [0, 1].
onnxruntime is imported only when a detector is built (``pip install .[detect]``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from .keypoints import NUM_KEYPOINTS, PoseFrame

_DET_SIZE = (640, 640)
_YOLOX_STRIDES = (8, 16, 32)
_POSE_MEAN = np.array([123.675, 116.28, 103.53])
_POSE_STD = np.array([58.395, 57.12, 57.375])
_SIMCC_SPLIT = 2.0
_BOX_PADDING = 1.25


class DetectorError(RuntimeError):
    """The detector models could not be loaded or gave unusable output."""


def _session(path: str | os.PathLike[str], providers: Sequence[str] | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise DetectorError("the pose detector needs onnxruntime: pip install 'one-to-all-render[detect]'") from exc
    if not os.path.isfile(path):
        raise DetectorError(f"detector model file not found: {os.fspath(path)}")
    available = ort.get_available_providers()
    chosen = [p for p in (providers or ["CUDAExecutionProvider", "CPUExecutionProvider"]) if p in available]
    try:
        return ort.InferenceSession(os.fspath(path), providers=chosen or available)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise DetectorError(f"cannot load ONNX model {os.fspath(path)}: {exc}") from exc


def letterbox(image: np.ndarray, size: tuple[int, int] = _DET_SIZE) -> tuple[np.ndarray, float]:
    """YOLOX input: image resized into ``size`` (h, w) keeping its aspect, top-left aligned, padded with 114."""
    ratio = min(size[0] / image.shape[0], size[1] / image.shape[1])
    new_w, new_h = int(image.shape[1] * ratio), int(image.shape[0] * ratio)
    padded = np.full((size[0], size[1], 3), 114, dtype=np.uint8)
    padded[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32), ratio


def decode_yolox(raw: np.ndarray, size: tuple[int, int] = _DET_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Raw YOLOX head output (A, 5 + classes) -> person boxes xyxy (A, 4) in input pixels and scores (A,)."""
    grids, strides = [], []
    for stride in _YOLOX_STRIDES:
        xv, yv = np.meshgrid(np.arange(size[1] // stride), np.arange(size[0] // stride))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((grids[-1].shape[0], 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    if raw.shape[0] != grid.shape[0]:
        raise DetectorError(f"detector output has {raw.shape[0]} anchors, expected {grid.shape[0]} (YOLOX 640)")
    centers = (raw[:, :2] + grid) * stride
    sizes = np.exp(raw[:, 2:4]) * stride
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    return boxes, raw[:, 4] * raw[:, 5]  # objectness x "person" class score


def _nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> list[int]:
    """Greedy non-maximum suppression; returns kept indices, best first."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        lo = np.maximum(boxes[i, :2], boxes[rest, :2])
        hi = np.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        order = rest[inter / (areas[i] + areas[rest] - inter + 1e-9) <= iou_thr]
    return keep


def box_to_center_scale(box: np.ndarray, aspect: float, padding: float = _BOX_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Top-down crop of a box: centre and (w, h) scale, padded and widened/heightened to the model aspect w/h."""
    center = (box[2:] + box[:2]) * 0.5
    w, h = (box[2:] - box[:2]) * padding
    scale = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return center, scale


def crop_matrix(center: np.ndarray, scale: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Affine map of the crop (center, scale) onto an out_w x out_h model input (no rotation)."""
    sx, sy = out_w / scale[0], out_h / scale[1]
    return np.array([[sx, 0, out_w / 2 - center[0] * sx], [0, sy, out_h / 2 - center[1] * sy]], dtype=np.float64)


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SimCC maxima: locations (K, 2) in model-input pixels (split ratio 2) and scores (K,) = min of both peaks."""
    locs = np.stack([simcc_x.argmax(axis=-1), simcc_y.argmax(axis=-1)], axis=-1).astype(np.float64) / _SIMCC_SPLIT
    scores = np.minimum(simcc_x.max(axis=-1), simcc_y.max(axis=-1))
    locs[scores <= 0] = -1
    return locs, scores


@dataclass
class DWPoseDetector:
    """Callable ``detector(image_rgb_uint8) -> PoseFrame`` backed by DWPose ONNX models.

    pose_model: RTMPose whole-body SimCC model (133 keypoints). det_model: optional YOLOX person detector.
    bgr: feed the models BGR images, as DWPose does (it reads images with OpenCV).
    """

    pose_model: str
    det_model: str | None = None
    providers: Sequence[str] | None = None
    bgr: bool = True
    score_thr: float = 0.3
    nms_thr: float = 0.45

    def __post_init__(self) -> None:
        self._pose = _session(self.pose_model, self.providers)
        self._det = _session(self.det_model, self.providers) if self.det_model else None
        shape = self._pose.get_inputs()[0].shape
        h, w = shape[2], shape[3]
        self._input_wh = (w, h) if isinstance(w, int) and isinstance(h, int) else (288, 384)

    def person_box(self, image: np.ndarray) -> np.ndarray:
        """The largest detected person box (xyxy image pixels); the whole image without detector or detection."""
        height, width = image.shape[:2]
        whole = np.array([0.0, 0.0, width, height])
        if self._det is None:
            return whole
        blob, ratio = letterbox(image)
        raw = self._det.run(None, {self._det.get_inputs()[0].name: blob[None]})[0][0]
        boxes, scores = decode_yolox(np.asarray(raw, dtype=np.float64))
        confident = scores > self.score_thr  # before NMS: thousands of empty anchors otherwise
        boxes, scores = boxes[confident], scores[confident]
        if not len(scores):
            return whole
        boxes = boxes[_nms(boxes, scores, self.nms_thr)] / ratio
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[int(np.argmax(areas))]

    def __call__(self, image: np.ndarray) -> PoseFrame:
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"reference_image: expected uint8 (H, W, 3) RGB, got {arr.dtype} {arr.shape}")
        model_in = np.ascontiguousarray(arr[..., ::-1]) if self.bgr else arr
        box = self.person_box(model_in)
        in_w, in_h = self._input_wh
        center, scale = box_to_center_scale(box, in_w / in_h)
        crop = cv2.warpAffine(model_in, crop_matrix(center, scale, in_w, in_h), (in_w, in_h), flags=cv2.INTER_LINEAR)
        blob = ((crop - _POSE_MEAN) / _POSE_STD).transpose(2, 0, 1)[None].astype(np.float32)
        simcc_x, simcc_y = self._pose.run(None, {self._pose.get_inputs()[0].name: blob})[:2]
        locs, scores = decode_simcc(np.asarray(simcc_x)[0], np.asarray(simcc_y)[0])
        if locs.shape[0] != NUM_KEYPOINTS:
            raise DetectorError(f"pose model gave {locs.shape[0]} keypoints, expected {NUM_KEYPOINTS}")
        pixels = locs / np.array([in_w, in_h]) * scale + center - scale / 2
        conf = np.clip(scores, 0.0, 1.0)
        conf[locs[:, 0] < 0] = 0.0
        return PoseFrame(np.concatenate([pixels, conf[:, None]], axis=1))
