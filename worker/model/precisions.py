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
# fp16: weights and activations in half precision, except what loses too much in it. Kept in fp32 on top of
# onnxruntime's DEFAULT_OP_BLOCK_LIST (ops with no fp16 kernel): the attention Softmax, whose sum of exponentials
# over up to max_length positions is where fp16's 10-bit mantissa hurts most. keep_io_types keeps the int64 inputs
# and the float32 logits (the classifier's softmax runs in numpy on float32), so the runtime needs no special case.
FP16_KEEP_FP32_OPS: tuple[str, ...] = ("Softmax",)
FP16_OPTIONS: dict[str, Any] = {
    "method": "onnxruntime.transformers.float16.convert_float_to_float16",
    "keep_io_types": True,
    "op_block_list": "onnxruntime DEFAULT_OP_BLOCK_LIST + " + ", ".join(FP16_KEEP_FP32_OPS),
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


def fp16_op_block_list() -> list[str]:
    """The ops the fp16 conversion leaves in fp32: onnxruntime's default list plus ``FP16_KEEP_FP32_OPS``."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return [*DEFAULT_OP_BLOCK_LIST, *(op for op in FP16_KEEP_FP32_OPS if op not in DEFAULT_OP_BLOCK_LIST)]


def convert_fp16_file(src: Path, dst: Path) -> None:
    """Convert one fp32 ONNX file to fp16 (the choices: ``FP16_OPTIONS``). Runs on a CPU: no CUDA needed."""
    with extra_imports(EXPORT_EXTRA, "converting an ONNX export to fp16"):
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    model = convert_float_to_float16(model, keep_io_types=True, op_block_list=fp16_op_block_list())
    onnx.save(model, str(dst))


def convert_fp16(fp32_dir: Path, out_dir: Path) -> None:
    # Optimum's own fp16 export (optimum-cli export onnx --dtype fp16) needs a CUDA device; converting the fp32
    # export does not, so fp16 exports can be built on a CPU machine and run on a GPU one.
    with step("convert_fp16"):
        convert_fp16_file(fp32_dir / ONNX_NAME, out_dir / ONNX_NAME)
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
