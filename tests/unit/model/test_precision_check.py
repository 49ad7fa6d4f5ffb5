"""fp16 vs fp32: the validation arithmetic, and the conversion's choices on a hand-built graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from worker.model.precision_check import FP16_MIN_AGREEMENT, compare_precisions, probabilities

pytestmark = pytest.mark.unit


def test_agreement_and_prob_deltas() -> None:
    ref = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    cand = np.array([[2.0, 0.0], [0.0, 1.0], [0.0, 3.0], [0.0, 1.0]])  # the last row flips
    check = compare_precisions(ref, cand)
    assert check.n == 4 and check.disagreements == 1
    assert check.label_agreement == pytest.approx(0.75)
    flipped = abs(probabilities(np.array([[1.0, 0.0]]))[0, 0] - probabilities(np.array([[0.0, 1.0]]))[0, 0])
    assert check.max_abs_dprob == pytest.approx(flipped)  # e/(1+e) - 1/(1+e) = 0.462
    assert check.mean_abs_dprob == pytest.approx(flipped / 4)
    assert check.max_abs_dlogit == pytest.approx(1.0)
    assert check.passed is False and check.threshold == FP16_MIN_AGREEMENT
    assert check.to_dict()["disagreements"] == 1


def test_threshold_is_inclusive_at_99_5_percent() -> None:
    ref = np.tile([[1.0, 0.0]], (1000, 1))
    cand = ref.copy()
    cand[:5] = [[0.0, 1.0]]  # 995 of 1000 agree: exactly the bar
    assert compare_precisions(ref, cand).passed is True
    cand[5] = [0.0, 1.0]  # 994: below
    assert compare_precisions(ref, cand).passed is False
    same = compare_precisions(ref, ref + 1e-3)  # a shift of every logit moves no probability
    assert same.label_agreement == 1.0 and same.max_abs_dprob < 1e-12


def test_refuses_mismatched_or_broken_input() -> None:
    with pytest.raises(ValueError, match="same"):
        compare_precisions(np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        compare_precisions(np.zeros((1, 2)), np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="no rows"):
        compare_precisions(np.zeros((0, 2)), np.zeros((0, 2)))


def test_fp16_conversion_keeps_io_types_and_softmax_in_fp32(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime.transformers.float16")
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from worker.model.precisions import FP16_OPTIONS, convert_fp16_file, fp16_op_block_list

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 4)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["input_ids"], ["x"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["x", "w"], ["h"]),
            helper.make_node("Softmax", ["h"], ["p"], axis=-1),
            helper.make_node("MatMul", ["p", "w"], ["logits"]),
        ],
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "fp32.onnx"))
    convert_fp16_file(tmp_path / "fp32.onnx", tmp_path / "fp16.onnx")
    converted = onnx.load(str(tmp_path / "fp16.onnx"))

    assert converted.graph.input[0].type.tensor_type.elem_type == TensorProto.INT64
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert any(init.data_type == TensorProto.FLOAT16 for init in converted.graph.initializer)
    assert "Softmax" in fp16_op_block_list() and "Softmax" in FP16_OPTIONS["op_block_list"]
    # the Softmax reads a float32 value: a Cast to FLOAT feeds it
    softmax = next(node for node in converted.graph.node if node.op_type == "Softmax")
    producer = next(node for node in converted.graph.node if softmax.input[0] in node.output)
    assert producer.op_type == "Cast" and helper.get_attribute_value(producer.attribute[0]) == TensorProto.FLOAT

    feeds = {"input_ids": rng.integers(0, 3, size=(8, 4)).astype(np.int64)}
    (ref,) = ort.InferenceSession(str(tmp_path / "fp32.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    (half,) = ort.InferenceSession(str(tmp_path / "fp16.onnx"), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert half.dtype == np.float32
    assert compare_precisions(ref, half).max_abs_dlogit < 0.05
