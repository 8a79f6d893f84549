"""The 8-bit TransNetV2 graph's concatenations: their inputs quantized like their output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from infra.media.transnet import share_concat_quantization


def _qdq_graph(path: Path, *, conv_inputs: bool) -> None:
    """x -> two 1x1 convolutions (or two Identity nodes) -> Q/DQ each, with scales 0.01 and 0.04
    -> Concat -> Q/DQ with scale 0.05: the shape of a TransNetV2 layer's four dilations."""

    def const(name: str, value: float | int, dtype: type) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(value, dtype=dtype), name)

    nodes, inits = [], []
    parts = []
    for i, (scale, weight) in enumerate(((0.01, 0.5), (0.04, 2.0))):
        inits += [
            const(f"s{i}", scale, np.float32),
            const(f"z{i}", 0, np.uint8),
            numpy_helper.from_array(np.full((1, 1, 1, 1), weight, np.float32), f"w{i}"),
        ]
        if conv_inputs:
            nodes.append(helper.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], name=f"conv{i}"))
        else:
            nodes.append(helper.make_node("Mul", ["x", f"w{i}"], [f"c{i}"], name=f"mul{i}"))
        nodes.append(helper.make_node("QuantizeLinear", [f"c{i}", f"s{i}", f"z{i}"], [f"q{i}"], name=f"q{i}"))
        nodes.append(
            helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", f"z{i}"], [f"d{i}"], name=f"dq{i}")
        )
        parts.append(f"d{i}")
    inits += [const("so", 0.05, np.float32), const("zo", 0, np.uint8)]
    nodes += [
        helper.make_node("Concat", parts, ["cat"], axis=1, name="concat"),
        helper.make_node("QuantizeLinear", ["cat", "so", "zo"], ["qo"], name="qo"),
        helper.make_node("DequantizeLinear", ["qo", "so", "zo"], ["y"], name="dqo"),
    ]
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _quantization(path: Path) -> dict[str, tuple[str, str]]:
    return {n.name: (n.input[1], n.input[2]) for n in onnx.load(str(path)).graph.node if len(n.input) == 3}


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out: np.ndarray = session.run(None, {"x": x})[0]
    return out


def test_concatenated_convolutions_take_the_concatenations_quantization(tmp_path: Path) -> None:
    path = tmp_path / "layer.onnx"
    _qdq_graph(path, conv_inputs=True)
    x = np.array([[[[0.1, 0.2], [0.3, 0.4]]]], np.float32)
    before = _run(path, x)

    assert share_concat_quantization(path) == 2
    quantization = _quantization(path)
    for name in ("q0", "dq0", "q1", "dq1"):
        assert quantization[name] == ("so", "zo")
    # the convolutions' own scales are gone from the file
    assert {i.name for i in onnx.load(str(path)).graph.initializer} == {"so", "zo", "w0", "w1"}
    # rounded to the output's steps (0.05) at once: the same numbers within one step
    after = _run(path, x)
    assert np.abs(after - before).max() <= 0.05 + 1e-6
    assert np.allclose(after / 0.05, np.round(after / 0.05))


def test_concatenations_of_anything_but_convolutions_stay_as_quantized(tmp_path: Path) -> None:
    path = tmp_path / "other.onnx"
    _qdq_graph(path, conv_inputs=False)
    before = _quantization(path)

    assert share_concat_quantization(path) == 0
    assert _quantization(path) == before
