"""DWPose ONNX detector plumbing, with tiny ONNX models generated here (constant heads, real onnxruntime)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from render_server.pose.detect import DetectorError, DWPoseDetector, crop_matrix, decode_simcc
from render_server.pose.keypoints import PoseFrame, PoseSequence
from render_server.pose.prepare import PrepareOptions, prepare_shot

IMG = 320  # square test image; the YOLOX letterbox scales it by 2


def _constant_model(path, input_name: str, input_shape: list[int], outputs: dict[str, np.ndarray]) -> str:
    """ONNX model whose outputs are constants plus 0 x mean(input) (so the input is really consumed)."""
    nodes = [helper.make_node("ReduceMean", [input_name], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]  # fmt: skip
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outs = []
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}_const"))
        nodes.append(helper.make_node("Add", [f"{name}_const", "nothing"], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    inputs = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)]
    graph = helper.make_graph(nodes, "tiny", inputs, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def det_model(tmp_path) -> str:
    raw = np.zeros((1, 8400, 6))
    big = 6400 + 1600 + 10 * 20 + 10  # stride-32 cell (10, 10): centre (320, 320) in the 640 input
    raw[0, big] = (0, 0, np.log(256 / 32), np.log(384 / 32), 0.9, 0.95)
    small = 6400 + 5 * 40 + 5  # stride-16 cell (5, 5): a smaller, more confident person
    raw[0, small] = (0, 0, np.log(2), np.log(2), 0.99, 0.99)
    return _constant_model(tmp_path / "det.onnx", "images", [1, 3, 640, 640], {"output": raw})


def _simcc(keypoints: int = 133) -> tuple[np.ndarray, np.ndarray]:
    sx, sy = np.zeros((1, keypoints, 576)), np.zeros((1, keypoints, 768))
    for k in range(min(keypoints, 120)):  # points 120.. have no peak: missing
        sx[0, k, (k * 4) % 576] = 0.8
        sy[0, k, (k * 5) % 768] = 0.7
    return sx, sy


@pytest.fixture
def pose_model(tmp_path) -> str:
    sx, sy = _simcc()
    return _constant_model(tmp_path / "pose.onnx", "input", [1, 3, 384, 288], {"simcc_x": sx, "simcc_y": sy})


def _expected(center: tuple[float, float], scale: tuple[float, float]) -> np.ndarray:
    k = np.arange(133)
    x = ((k * 4) % 576) / 2 / 288 * scale[0] + center[0] - scale[0] / 2
    y = ((k * 5) % 768) / 2 / 384 * scale[1] + center[1] - scale[1] / 2
    return np.stack([x, y], axis=1)


def test_detector_maps_simcc_back_to_image_pixels(det_model, pose_model) -> None:
    detector = DWPoseDetector(pose_model=pose_model, det_model=det_model, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).integers(0, 255, (IMG, IMG, 3), dtype=np.uint8)
    np.testing.assert_allclose(detector.person_box(image), [96, 64, 224, 256])  # the largest box, image pixels
    frame = detector(image)
    assert isinstance(frame, PoseFrame)
    # box 128x192 padded x1.25 = 160x240, widened to the 288:384 model aspect = 180x240 around (160, 160)
    expected = _expected((160, 160), (180, 240))
    np.testing.assert_allclose(frame.keypoints[:120, :2], expected[:120], atol=1e-6)
    np.testing.assert_allclose(frame.keypoints[:120, 2], 0.7, rtol=1e-6)  # min of the two peaks
    assert (frame.keypoints[120:, 2] == 0).all()


def test_detector_without_person_model_uses_whole_image(pose_model) -> None:
    detector = DWPoseDetector(pose_model=pose_model, providers=["CPUExecutionProvider"])
    frame = detector(np.zeros((IMG, IMG, 3), np.uint8))
    np.testing.assert_allclose(frame.keypoints[:120, :2], _expected((160, 160), (400, 400 / 0.75))[:120], atol=1e-6)


def test_detector_feeds_prepare_shot(pose_model, person) -> None:
    detector = DWPoseDetector(pose_model=pose_model, providers=["CPUExecutionProvider"])
    driving = PoseSequence.from_array(person(IMG, IMG, conf=0.95)[None], IMG, IMG, 24.0)
    out = prepare_shot(np.zeros((IMG, IMG, 3), np.uint8), None, driving, PrepareOptions(64, 64, mode="ref"),
                       detector=detector)  # fmt: skip
    assert out.reference_pose.shape == (64, 64, 3) and out.pose_frames.shape == (1, 64, 64, 3)


def test_detector_errors(tmp_path, pose_model) -> None:
    with pytest.raises(DetectorError, match="not found"):
        DWPoseDetector(pose_model=str(tmp_path / "missing.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot load"):
        DWPoseDetector(pose_model=str(broken))
    sx, sy = _simcc(17)
    body_only = _constant_model(tmp_path / "body.onnx", "input", [1, 3, 384, 288], {"simcc_x": sx, "simcc_y": sy})
    with pytest.raises(DetectorError, match="17 keypoints"):
        DWPoseDetector(pose_model=body_only, providers=["CPUExecutionProvider"])(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="reference_image"):
        DWPoseDetector(pose_model=pose_model, providers=["CPUExecutionProvider"])(np.zeros((8, 8), np.uint8))


def test_crop_and_simcc_helpers() -> None:
    m = crop_matrix(np.array([100.0, 50.0]), np.array([180.0, 240.0]), 288, 384)
    np.testing.assert_allclose(m @ [100, 50, 1], [144, 192])  # box centre -> input centre
    np.testing.assert_allclose(m @ [10, -70, 1], [0, 0])  # box corner -> input corner
    locs, scores = decode_simcc(np.array([[0.0, 0.2, 0.9], [0, 0, 0]]), np.array([[0.5, 0.1, 0.0], [0, 0, 0]]))
    np.testing.assert_allclose(locs, [[1.0, 0.0], [-1, -1]])
    np.testing.assert_allclose(scores, [0.5, 0.0])
