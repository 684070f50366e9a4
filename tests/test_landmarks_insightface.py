"""The insightface landmark source feeds the model what insightface's own ``Landmark`` feeds it.

A tiny ONNX model, built here, stands in for ``1k3d68.onnx``: its 3309 outputs end with the mean of
each channel over 8 x 8 blocks of its input, so the decoded landmarks encode the input's channel
order, scaling, crop and placement; insightface's own ``Landmark.get`` on the same face is the oracle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("cv2")

from faceocc.render.insightface_landmarks import InsightFaceLandmarks, input_normalization  # noqa: E402

BLOCK = 24             # 192 / 24 = 8 x 8 blocks per channel: 192 statistics


def stats_model(path: Path, normalize_inside: bool) -> Path:
    """[N, 3, 192, 192] -> [N, 3309]: zeros, then per-channel 8 x 8 block means (channel-major).

    With ``normalize_inside`` its first nodes are named Sub and Mul (as in a model converted from
    MXNet that normalizes itself), which makes insightface feed it raw pixels."""
    from onnx import TensorProto, helper

    nodes, inits = [], []
    x = "input"
    if normalize_inside:
        inits += [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                  helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])]
        nodes += [helper.make_node("Sub", ["input", "zero"], ["x0"], name="Sub_0"),
                  helper.make_node("Mul", ["x0", "one"], ["x1"], name="Mul_1")]
        x = "x1"
    inits.append(helper.make_tensor("pads", TensorProto.INT64, [4], [0, 3309 - 3 * 64, 0, 0]))
    nodes += [helper.make_node("AveragePool", [x], ["pooled"], name="pool", kernel_shape=[BLOCK, BLOCK],
                               strides=[BLOCK, BLOCK]),
              helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten", axis=1),
              helper.make_node("Pad", ["flat", "pads"], ["out"], name="pad")]
    graph = helper.make_graph(nodes, "stats", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             ["N", 3, 192, 192])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3309])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def faces(n: int = 3, size: int = 112) -> np.ndarray:
    """Faces whose channels differ everywhere (R bright, B dark) with structure left to right."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (n, size, size, 3)).astype(np.float32)
    img[..., 0] = 0.5 * img[..., 0] + 120
    img[..., 2] *= 0.3
    img[:, :, : size // 3] *= 0.5
    return img.astype(np.uint8)


def insightface_get(model: Path, face: np.ndarray) -> np.ndarray:
    """insightface's own path: a BGR image (as cv2 reads it) and a face box of the whole crop."""
    from insightface.app.common import Face
    from insightface.model_zoo.landmark import Landmark

    lm = Landmark(str(model))
    h, w = face.shape[:2]
    found = Face(bbox=np.array([0, 0, w, h], np.float64))      # float64: the same crop scale as ours
    return np.asarray(lm.get(face[..., ::-1].copy(), found), np.float64)


@pytest.mark.parametrize("normalize_inside", [False, True])
def test_landmarks_match_insightface_own_landmark_code(tmp_path, normalize_inside):
    model = stats_model(tmp_path / "stats.onnx", normalize_inside)
    src = InsightFaceLandmarks(model)
    batch = faces()
    ours = src(batch)
    assert ours.shape == (3, 68, 3)
    for i in range(len(batch)):
        theirs = insightface_get(model, batch[i])
        np.testing.assert_allclose(ours[i], theirs, rtol=1e-4, atol=1e-3)


def test_model_sees_rgb_scaled_as_insightface_scales_it(tmp_path):
    model = stats_model(tmp_path / "stats.onnx", normalize_inside=False)
    assert input_normalization(model) == (127.5, 128.0)
    assert input_normalization(stats_model(tmp_path / "raw.onnx", normalize_inside=True)) == (0.0, 1.0)
    src = InsightFaceLandmarks(model)
    batch = faces(1)
    blob, _ = src.blob(batch)
    # the centre block of the input lies inside the face: its channel means are the face's R, G, B
    means = blob[0, :, 96 - 12:96 + 12, 96 - 12:96 + 12].mean((1, 2)) * 128 + 127.5
    centre = batch[0, 56 - 9:56 + 9, 56 - 9:56 + 9].reshape(-1, 3).mean(0)
    np.testing.assert_allclose(means, centre, atol=4)
    assert means[0] > means[1] > means[2]              # R first, not BGR
    # the face (1.5 x margin) fills 192 / 1.5 = 128 px; the border is black: (0 - 127.5) / 128
    assert np.allclose(blob[0, :, :20, :20], -127.5 / 128)
