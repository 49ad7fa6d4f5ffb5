"""Derived precisions of an fp32 export: O3 graph optimisation, dynamic INT8 quantisation, fp16.

Each takes a finished fp32 exported dir and writes ``model.onnx`` plus the side files into another dir.
The option dicts go into the manifest and the export cache key. onnx and optimum (the ``[export]`` extra)
are imported inside the functions only.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from worker.model.errors import EXPORT_EXTRA, ExportError, extra_imports
from worker.model.hf_export import copy_side_files, step
from worker.model.manifest import ONNX_NAME
from worker.observability import get_logger

log = get_logger(__name__)

INT8_OPTIONS: dict[str, Any] = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": False,
    "exclude": "ffn.lin2 MatMul (FFN output projections stay fp32)",
}
O3_OPTIONS: dict[str, Any] = {"method": "optimum ORTOptimizer AutoOptimizationConfig.O3", "for_gpu": False}
FP16_OPTIONS: dict[str, Any] = {
    "method": "onnxruntime.transformers.float16.convert_float_to_float16",
    "keep_io_types": True,
}


class _DropThirdPartyInfo(logging.Filter):
    """Drop INFO chatter of onnxruntime's quantiser/optimiser (they log on the root or bare loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("worker"):
            return True
        # quant_pre_process is skipped on purpose (it needs skip_symbolic_shape and leaves temp files behind
        # on failure), so its reminder is noise.
        return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_third_party_info() -> Iterator[None]:
    """Keep onnxruntime's per-tensor INFO lines out of the log unless the log level is debug."""
    root = logging.getLogger()
    if root.getEffectiveLevel() <= logging.DEBUG and root.handlers:
        yield
        return
    chatter = _DropThirdPartyInfo()
    # Handlers see records from every logger; the root logger's own filter also covers the case of no
    # handlers at all (logging's last-resort output), for records logged on the root logger.
    targets: list[logging.Filterer] = [root, *root.handlers]
    for target in targets:
        target.addFilter(chatter)
    try:
        yield
    finally:
        for target in targets:
            target.removeFilter(chatter)


def optimize_o3(fp32_dir: Path, out_dir: Path) -> None:
    with extra_imports(EXPORT_EXTRA, "optimising an ONNX export (o3)"):
        from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    work = out_dir / "_o3"
    with step("optimize_o3"), _quiet_third_party_info():
        optimizer = ORTOptimizer.from_pretrained(fp32_dir, file_names=[ONNX_NAME])
        # for_gpu=False keeps the fused graph runnable on the CPU provider.
        optimizer.optimize(AutoOptimizationConfig.O3(for_gpu=False), save_dir=work, file_suffix="optimized")
    produced = work / "model_optimized.onnx"
    if not produced.is_file():
        raise ExportError(f"ORTOptimizer produced no model_optimized.onnx in {work}")
    produced.replace(out_dir / ONNX_NAME)
    shutil.rmtree(work, ignore_errors=True)
    copy_side_files(fp32_dir, out_dir)


def _lin2_matmuls(onnx_path: Path) -> list[str]:
    with extra_imports(EXPORT_EXTRA, "quantising an ONNX export (int8)"):
        import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and ("ffn/lin2" in node.name or "ffn.lin2" in node.name)
    ]


def quantize_int8(fp32_dir: Path, out_dir: Path) -> dict[str, Any]:
    # Why not `optimum-cli onnxruntime quantize` / ORTQuantizer: the CLI quantises every .onnx file in the
    # folder, and quantising an optimised graph fails with "Unable to find data type for
    # weight_name=…/MatMul_output_0". onnxruntime's quantize_dynamic on the raw fp32 export works, and lets
    # us keep the FFN output MatMuls (ffn.lin2) in fp32, which measured ≥ 99% label agreement with fp32 on
    # the starter model (per-channel alone: 98.5%); tests/integration/training/test_starter_accuracy.py
    # checks the ≥ 99%.
    with extra_imports(EXPORT_EXTRA, "quantising an ONNX export (int8)"):
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = _lin2_matmuls(fp32_dir / ONNX_NAME)
    if not excluded:
        log.warning("int8_no_lin2_nodes", hint="no ffn.lin2 MatMul found; quantising every MatMul")
    with step("quantize_int8", excluded_nodes=len(excluded)), _quiet_third_party_info():
        quantize_dynamic(
            fp32_dir / ONNX_NAME,
            out_dir / ONNX_NAME,
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    copy_side_files(fp32_dir, out_dir)
    return {"excluded_nodes": excluded}


def convert_fp16(fp32_dir: Path, out_dir: Path) -> None:
    with extra_imports(EXPORT_EXTRA, "converting an ONNX export to fp16"):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

    with step("convert_fp16"):
        model = onnx.load(str(fp32_dir / ONNX_NAME))
        # keep_io_types: inputs stay int64 and logits stay float32, so the runtime needs no special case.
        model = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(model, str(out_dir / ONNX_NAME))
    copy_side_files(fp32_dir, out_dir)


def onnx_opset(onnx_path: Path) -> int | None:
    """The default-domain opset of an ONNX file (for the manifest)."""
    with extra_imports(EXPORT_EXTRA, "reading an ONNX file's opset"):
        import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return None
