"""The production export's graph without its weights: carried small, filled on the device.

The production model is a DistilBERT-base (dim 768, 6 layers) exported by the worker's own path (Optimum,
``worker.model.export.export_model``; fp16 through ``worker.model.precisions``). That export is 255 MB in fp32 and
128 MB in fp16, far over what a device call carries, and Optimum cannot run there (it needs transformers < 4.58;
the device has 5.x). So ``prepare`` exports a random-weight model of that shape here, and :func:`strip_weights`
keeps its graph, its small tensors (LayerNorm, biases, shapes, ids: exactly as exported) and, for each large float
tensor, only its name, shape and type. On the device :func:`fill_weights` writes every large tensor back from a
normal(0, 0.02) draw (Hugging Face's initialisation of these layers) seeded by the tensor's name, so the fp32 and the
fp16 export get the same weights (fp16: the same draw, rounded) and a run is reproducible. Speed does not depend on
the weights' values; agreement between fp16 and fp32 is meaningful only on the starter model, carried whole.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np

STRIP_MIN_ELEMENTS = 4096  # smaller float tensors (LayerNorm, biases, the classifier's) are carried as exported
WEIGHTS_SPEC = "stripped-weights.json"
GRAPH_NAME = "model.graph.onnx"
INIT_STD = 0.02
KEEP_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def strip_weights(exported: Path, out_dir: Path, *, seed: int = 0) -> dict[str, Any]:
    """``exported`` (an exported dir) → ``out_dir`` with the graph (large float weights left empty), the spec of
    what was taken out, the tokenizer, config and manifest."""
    import onnx
    from onnx import TensorProto

    from worker.model.manifest import MANIFEST_NAME, ONNX_NAME, load_manifest_json

    out_dir.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(exported / ONNX_NAME))
    stripped: list[dict[str, Any]] = []
    for tensor in model.graph.initializer:
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        if tensor.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16) and count >= STRIP_MIN_ELEMENTS:
            if not tensor.raw_data:
                raise ValueError(f"initializer {tensor.name} keeps its values outside raw_data: can't strip it")
            stripped.append({"name": tensor.name, "dims": list(tensor.dims), "data_type": int(tensor.data_type)})
            tensor.ClearField("raw_data")
    onnx.save(model, str(out_dir / GRAPH_NAME))
    manifest = load_manifest_json(exported)
    spec = {"seed": seed, "std": INIT_STD, "tensors": stripped, "manifest": manifest}
    (out_dir / WEIGHTS_SPEC).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")
    for name in KEEP_FILES:
        if (exported / name).is_file():
            shutil.copy2(exported / name, out_dir / name)
    (out_dir / "source-manifest.json").write_text((exported / MANIFEST_NAME).read_text(encoding="utf-8"))
    return {
        "tensors_stripped": len(stripped),
        "elements_stripped": int(sum(np.prod(t["dims"]) for t in stripped)),
        "graph_kib": round((out_dir / GRAPH_NAME).stat().st_size / 1024, 1),
        "export_mib": round((exported / ONNX_NAME).stat().st_size / 2**20, 1),
        "precision": manifest.get("precision"),
    }


def draw(name: str, dims: list[int], seed: int, std: float = INIT_STD) -> np.ndarray:
    """The float32 values a stripped tensor gets: normal(0, std), seeded by ``seed`` and the tensor's name."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return (rng.standard_normal(dims, dtype=np.float32) * np.float32(std)).astype(np.float32)


def fill_weights(carried: Path, out_dir: Path) -> dict[str, Any]:
    """An exported dir in ``out_dir`` (model.onnx, manifest with its new sha256, tokenizer, config) from a
    :func:`strip_weights` folder."""
    import onnx
    from onnx import TensorProto

    from worker.model.manifest import ONNX_NAME, sha256_file, write_manifest

    spec = json.loads((carried / WEIGHTS_SPEC).read_text(encoding="utf-8"))
    model = onnx.load(str(carried / GRAPH_NAME))
    wanted = {t["name"]: t for t in spec["tensors"]}
    for tensor in model.graph.initializer:
        entry = wanted.pop(tensor.name, None)
        if entry is None:
            continue
        values = draw(tensor.name, entry["dims"], int(spec["seed"]), float(spec["std"]))
        dtype = np.float16 if entry["data_type"] == TensorProto.FLOAT16 else np.float32
        tensor.raw_data = values.astype(dtype).tobytes()
    if wanted:
        raise ValueError(f"{len(wanted)} stripped tensors are not in the graph: {sorted(wanted)[:3]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_dir / ONNX_NAME))
    for name in KEEP_FILES:
        if (carried / name).is_file():
            shutil.copy2(carried / name, out_dir / name)
    manifest = dict(spec["manifest"])
    manifest["onnx_sha256"] = sha256_file(out_dir / ONNX_NAME)
    manifest["onnx_file"] = ONNX_NAME
    manifest["weights"] = (
        f"regenerated on the device: normal(0, {spec['std']}) seeded by tensor name (seed {spec['seed']}) for "
        f"the {len(spec['tensors'])} large tensors of the production export's graph"
    )
    write_manifest(out_dir, manifest)
    return {"onnx_mib": round((out_dir / ONNX_NAME).stat().st_size / 2**20, 1), "precision": manifest.get("precision")}
