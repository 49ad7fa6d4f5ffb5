"""A hand-built exported dir whose "model" reports the shape it was fed: logits[:, 0] = the row's real length
(sum of its attention mask), logits[:, 1] = the padded width. Lets unit tests see bucketing without torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worker.model.manifest import MANIFEST_FORMAT_VERSION, ONNX_NAME, sha256_file, write_manifest

WORDS = ["[PAD]", "[UNK]", "a", "b", "c", "d", "e", "f", "g", "h"]


def build_shape_model(directory: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    directory.mkdir(parents=True, exist_ok=True)
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["mask_f", "axes"], ["length"], keepdims=1),
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["width_i"], axis=0),
        helper.make_node("Cast", ["width_i"], ["width_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["length", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "width_f"], ["width"]),
        helper.make_node("Concat", ["length", "width"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "shape_model",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
            helper.make_tensor("one", TensorProto.INT64, [], [1]),
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(directory / ONNX_NAME))

    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {"id2label": {"0": "length", "1": "width"}, "pad_token_id": 0, "max_position_embeddings": 512}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    write_manifest(
        directory,
        {
            "format_version": MANIFEST_FORMAT_VERSION,
            "onnx_file": ONNX_NAME,
            "onnx_sha256": sha256_file(directory / ONNX_NAME),
            "precision": "fp32",
            "labels": ["length", "width"],
            "source": "shape-model",
        },
    )
    return directory


def texts_of_lengths(lengths: list[int]) -> list[str]:
    return [" ".join(["a"] * n) for n in lengths]


def as_ints(logits: np.ndarray) -> list[tuple[int, int]]:
    return [(round(a), round(b)) for a, b in np.asarray(logits).tolist()]
