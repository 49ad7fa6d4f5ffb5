"""Export a DistilBERT sequence classifier to ONNX (Hugging Face Optimum), cached and atomic.

``export_model`` turns a hub id (with revision) or a local HF model dir into an *exported dir*::

    model.onnx                 the graph (fp32, O3-optimised, dynamic INT8 or fp16)
    tokenizer.json, ...        fast tokenizer files (the runtime uses ``tokenizers`` directly)
    config.json                with id2label
    sentiment-manifest.json    what was exported, how, by which versions, and the onnx file's sha256

Exports live under ``cache_dir/exports/<slug>-<key>-<precision>/``; the key hashes the model id, the
revision (or, for a local dir, the content of its config, weights and tokenizer files) and the export
options, so a cache hit returns at once and a changed local model is exported again. A directory is
built under a temporary name and renamed into place once complete, so an interrupted export never
leaves a directory that looks valid.

Only this module (and only inside its functions) imports torch / transformers / optimum; the run
path (``worker.model.runtime``) needs onnxruntime and tokenizers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from worker.observability import get_logger

log = get_logger(__name__)

Precision = Literal["fp32", "o3", "int8", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "o3", "int8", "fp16")

MANIFEST_NAME = "sentiment-manifest.json"
ONNX_NAME = "model.onnx"
MANIFEST_FORMAT_VERSION = 1
# Bump when the export recipe changes in a way that changes the produced files: old cache entries
# then no longer match and are rebuilt.
EXPORT_RECIPE_VERSION = 1

_HUB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?")

# Files of a local HF model dir that define the model; their content keys the export cache.
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
_DEFINING_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "added_tokens.json",
)
_VERSIONED_PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "tokenizers")
# onnxruntime ships as `onnxruntime-gpu` or `onnxruntime` (same import name; FINDINGS §3).
_ORT_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime")

# Options per precision that go into the manifest and the cache key.
_INT8_OPTIONS: dict[str, Any] = {
    "method": "onnxruntime.quantization.quantize_dynamic",
    "weight_type": "QInt8",
    "per_channel": True,
    "reduce_range": False,
    "exclude": "ffn.lin2 MatMul (FFN output projections stay fp32)",
}
_O3_OPTIONS: dict[str, Any] = {"method": "optimum ORTOptimizer AutoOptimizationConfig.O3", "for_gpu": False}
_FP16_OPTIONS: dict[str, Any] = {
    "method": "onnxruntime.transformers.float16.convert_float_to_float16",
    "keep_io_types": True,
}


class ModelUnavailableError(RuntimeError):
    """The model can't be obtained (hub unreachable and nothing cached, or a bad local path)."""


class ExportError(RuntimeError):
    """The export itself failed (unsupported model, optimiser/quantiser error)."""


# ---- small helpers ---------------------------------------------------------------------------------


def sha256_file(path: Path | str, *, chunk_size: int = 4 * 1024 * 1024) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def is_exported_dir(path: Path | str) -> bool:
    """True for a complete exported dir: a readable manifest whose onnx file exists."""
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        return False
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError):
        return False
    onnx_name = manifest.get("onnx_file", ONNX_NAME)
    return (path / onnx_name).is_file() and (path / "config.json").is_file()


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of an exported dir (``ValueError`` if it is not valid JSON or lacks required keys)."""
    manifest_path = Path(path) / MANIFEST_NAME
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{manifest_path} is not a JSON object")
    missing = [key for key in ("format_version", "onnx_file", "onnx_sha256", "precision", "labels") if key not in data]
    if missing:
        raise ValueError(f"{manifest_path} lacks {missing}")
    return data


def is_hf_model_dir(path: Path | str) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.json").is_file() and not (path / MANIFEST_NAME).is_file()


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def package_versions() -> dict[str, str | None]:
    """Versions of the export stack; ``onnxruntime`` is whichever distribution provides it."""
    versions = {name: _dist_version(name) for name in _VERSIONED_PACKAGES}
    for dist in _ORT_DISTRIBUTIONS:
        if (version := _dist_version(dist)) is not None:
            versions["onnxruntime"] = version
            versions["onnxruntime_distribution"] = dist
            break
    else:
        versions["onnxruntime"] = None
    return versions


def local_content_hash(model_dir: Path) -> str:
    """sha256 over the names and contents of the files that define a local HF model."""
    files: set[Path] = set()
    for pattern in _WEIGHT_PATTERNS:
        files.update(model_dir.glob(pattern))
    files.update(model_dir / name for name in _DEFINING_FILES if (model_dir / name).is_file())
    if not any(f.suffix in (".safetensors", ".bin") for f in files):
        raise ModelUnavailableError(
            f"{model_dir} has a config.json but no weights (*.safetensors or pytorch_model*.bin)"
        )
    digest = hashlib.sha256()
    for file in sorted(files):
        digest.update(file.name.encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return slug[-60:] or "model"


def _options_for(precision: str) -> dict[str, Any]:
    options: dict[str, Any] = {"task": "text-classification", "recipe_version": EXPORT_RECIPE_VERSION}
    if precision == "o3":
        options["optimization"] = _O3_OPTIONS
    elif precision == "int8":
        options["quantization"] = _INT8_OPTIONS
    elif precision == "fp16":
        options["float16"] = _FP16_OPTIONS
    return options


@contextlib.contextmanager
def _step(name: str, **fields: Any) -> Iterator[None]:
    """Log the start and the duration of a long export step."""
    log.info("export_step_started", step=name, **fields)
    started = time.perf_counter()
    yield
    log.info("export_step_done", step=name, seconds=round(time.perf_counter() - started, 2), **fields)


_HARMLESS_MESSAGES = re.compile(
    r"torch_dtype.*is deprecated|Weight deduplication check|Converting a tensor to a Python boolean"
)
# Loggers that emit the harmless messages above (a logger's filters see the records it creates).
_HARMLESS_LOGGERS = ("transformers.configuration_utils", "transformers.modeling_utils", "optimum.exporters.onnx.base")


class _DropHarmless(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _HARMLESS_MESSAGES.search(record.getMessage())


class _DropThirdPartyInfo(logging.Filter):
    """Drop INFO chatter of onnxruntime's quantiser/optimiser (they log on the root or bare loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("worker"):
            return True
        # quant_pre_process is skipped on purpose (FINDINGS §4: it needs skip_symbolic_shape and leaves
        # temp files behind on failure), so its reminder is noise.
        return record.levelno >= logging.WARNING and "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _quiet_known_warnings() -> Iterator[None]:
    """Silence the harmless messages of a torch → ONNX export (FINDINGS §3); real errors still show."""
    noise = _DropHarmless()
    loggers = [logging.getLogger(name) for name in _HARMLESS_LOGGERS]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch_dtype.*is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*Converting a tensor to a Python boolean.*")
        # Optimum 2.1 deliberately uses torch's TorchScript exporter (the one FINDINGS §3 validated).
        warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
        try:
            from torch.jit import TracerWarning

            warnings.filterwarnings("ignore", category=TracerWarning)
        except ImportError:  # pragma: no cover - torch is a dependency of the export path
            pass
        for logger in loggers:
            logger.addFilter(noise)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(noise)


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


# ---- source resolution -----------------------------------------------------------------------------


def _fetch_hub_model(model_id: str, revision: str | None) -> tuple[Path, str | None]:
    """Download (or find in the HF cache) the files needed to export; returns (dir, commit hash)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    rev_text = revision or "main"
    patterns = ["*.json", "*.txt", "*.model"]
    try:
        with _step("download", model=model_id, revision=rev_text):
            path = Path(snapshot_download(model_id, revision=revision, allow_patterns=[*patterns, "*.safetensors"]))
            if not any(path.glob("*.safetensors")):
                path = Path(
                    snapshot_download(model_id, revision=revision, allow_patterns=[*patterns, "pytorch_model*.bin"])
                )
    except HFValidationError as exc:
        raise ModelUnavailableError(
            f"model {model_id!r} is neither an existing local directory nor a valid Hugging Face hub id ({exc}). "
            "Set SENTIMENT_MODEL (or --model) to a local HF model dir, an exported ONNX dir, or a hub id."
        ) from None
    except Exception as exc:  # network errors, missing repo/revision, gated repo ...
        raise ModelUnavailableError(
            f"cannot fetch model {model_id} at revision {rev_text} from the Hugging Face hub "
            f"(the hub is unreachable or the model/revision does not exist, and it is not in the local HF cache): "
            f"{type(exc).__name__}: {str(exc)[:300]}. "
            "Set SENTIMENT_MODEL (or --model) to a local HF model directory or an exported ONNX directory, "
            "or build the offline starter model with `sentiment-worker model build-starter`."
        ) from exc
    if not (path / "config.json").is_file():
        raise ModelUnavailableError(f"hub model {model_id}@{rev_text} has no config.json")
    commit = path.name if re.fullmatch(r"[0-9a-f]{40}", path.name) else None
    return path, commit


# ---- export steps ----------------------------------------------------------------------------------


def _export_fp32(model_dir: Path, out_dir: Path) -> None:
    """Optimum's exporter (task text-classification), then the fast tokenizer files."""
    from optimum.exporters.onnx import main_export
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    if not getattr(config, "id2label", None):
        raise ExportError(f"{model_dir}/config.json has no id2label: not a sequence classifier")
    with _step("onnx_export", model=str(model_dir)), _quiet_known_warnings():
        main_export(
            str(model_dir),
            output=out_dir,
            task="text-classification",
            device="cpu",
            do_validation=True,
            local_files_only=True,
        )
    onnx_files = sorted(out_dir.glob("*.onnx"))
    if [f.name for f in onnx_files] != [ONNX_NAME]:
        raise ExportError(f"expected one {ONNX_NAME} from the exporter, got {[f.name for f in onnx_files]}")
    # The runtime reads tokenizer.json with the `tokenizers` library: make sure the fast files exist.
    if not (out_dir / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
        if not tokenizer.is_fast:
            raise ExportError(f"{model_dir} has no fast tokenizer; the runtime needs tokenizer.json")
        tokenizer.save_pretrained(out_dir)
    if not (out_dir / "config.json").is_file():
        config.save_pretrained(out_dir)


def _copy_side_files(src: Path, dst: Path) -> None:
    for name in ("config.json", *_TOKENIZER_FILES):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def _optimize_o3(fp32_dir: Path, out_dir: Path) -> None:
    from optimum.onnxruntime import AutoOptimizationConfig, ORTOptimizer

    work = out_dir / "_o3"
    with _step("optimize_o3"), _quiet_third_party_info():
        optimizer = ORTOptimizer.from_pretrained(fp32_dir, file_names=[ONNX_NAME])
        # for_gpu=False keeps the fused graph runnable on the CPU provider.
        optimizer.optimize(AutoOptimizationConfig.O3(for_gpu=False), save_dir=work, file_suffix="optimized")
    produced = work / "model_optimized.onnx"
    if not produced.is_file():
        raise ExportError(f"ORTOptimizer produced no model_optimized.onnx in {work}")
    produced.replace(out_dir / ONNX_NAME)
    shutil.rmtree(work, ignore_errors=True)
    _copy_side_files(fp32_dir, out_dir)


def _lin2_matmuls(onnx_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "MatMul" and ("ffn/lin2" in node.name or "ffn.lin2" in node.name)
    ]


def _quantize_int8(fp32_dir: Path, out_dir: Path) -> dict[str, Any]:
    # Why not `optimum-cli onnxruntime quantize` / ORTQuantizer: the CLI quantises every .onnx file in the
    # folder, and quantising an optimised graph fails with "Unable to find data type for
    # weight_name=…/MatMul_output_0". onnxruntime's quantize_dynamic on the raw fp32 export works, and lets
    # us keep the FFN output MatMuls (ffn.lin2) in fp32, which FINDINGS §4 measured at ≥ 99% label
    # agreement with fp32 (per-channel alone: 98.5%).
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    excluded = _lin2_matmuls(fp32_dir / ONNX_NAME)
    if not excluded:
        log.warning("int8_no_lin2_nodes", hint="no ffn.lin2 MatMul found; quantising every MatMul")
    with _step("quantize_int8", excluded_nodes=len(excluded)), _quiet_third_party_info():
        quantize_dynamic(
            fp32_dir / ONNX_NAME,
            out_dir / ONNX_NAME,
            per_channel=True,
            reduce_range=False,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    _copy_side_files(fp32_dir, out_dir)
    return {"excluded_nodes": excluded}


def _convert_fp16(fp32_dir: Path, out_dir: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _step("convert_fp16"):
        model = onnx.load(str(fp32_dir / ONNX_NAME))
        # keep_io_types: inputs stay int64 and logits stay float32, so the runtime needs no special case.
        model = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(model, str(out_dir / ONNX_NAME))
    _copy_side_files(fp32_dir, out_dir)


def _labels_from_config(config_path: Path) -> list[str]:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    if not id2label:
        raise ExportError(f"{config_path} has no id2label")
    return [str(id2label[key]) for key in sorted(id2label, key=int)]


def _onnx_opset(onnx_path: Path) -> int | None:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return None


# ---- the public entry point ------------------------------------------------------------------------


def export_model(
    source: str | Path,
    *,
    revision: str | None = None,
    precision: Precision = "fp32",
    cache_dir: Path,
    force: bool = False,
) -> Path:
    """Export ``source`` (hub id or local HF dir) at ``precision``; return the (cached) exported dir.

    Raises :class:`ModelUnavailableError` when a hub model can't be fetched (with what to do instead),
    :class:`ExportError` when the export fails.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cache_dir = Path(cache_dir)
    source_text = str(source)
    local = Path(source_text).expanduser()

    if local.is_dir():
        if is_exported_dir(local):
            raise ExportError(f"{local} is already an exported ONNX dir (it has {MANIFEST_NAME})")
        if not (local / "config.json").is_file():
            raise ModelUnavailableError(f"{local} is a directory but not a HF model dir (no config.json)")
        local = local.resolve()
        kind = "local"
        model_id = str(local)
        with _step("hash_local_model", path=str(local)):
            content_hash = local_content_hash(local)
        identity = {"kind": kind, "path": model_id, "content_sha256": content_hash}
        slug = _slug(local.name)
        rev_out: str | None = None
    else:
        # A hub id is "name" or "org/name"; anything path-like that is not a directory is a missing path.
        if isinstance(source, Path) or not _HUB_ID.fullmatch(source_text):
            raise ModelUnavailableError(
                f"model path {source_text} does not exist (and it is not a Hugging Face hub id like org/name)"
            )
        kind = "hub"
        model_id = source_text
        content_hash = None
        identity = {"kind": kind, "id": model_id, "revision": revision or "main"}
        slug = _slug(model_id.replace("/", "--"))
        rev_out = revision

    options = _options_for(precision)
    key = hashlib.sha256(json.dumps({**identity, "options": options}, sort_keys=True).encode()).hexdigest()[:16]
    exports = cache_dir / "exports"
    final = exports / f"{slug}-{key}-{precision}"

    if not force and is_exported_dir(final):
        log.info("export_cache_hit", model=model_id, revision=rev_out, precision=precision, path=str(final))
        return final

    exports.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = exports / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        extra: dict[str, Any] = {}
        resolved_commit: str | None = None
        if precision == "fp32":
            if kind == "local":
                model_dir = local
            else:
                model_dir, resolved_commit = _fetch_hub_model(model_id, revision)
            _export_fp32(model_dir, tmp)
        else:
            # Derived precisions start from the (cached) fp32 export of the same source.
            fp32_dir = export_model(source, revision=revision, precision="fp32", cache_dir=cache_dir, force=force)
            resolved_commit = read_manifest(fp32_dir).get("resolved_revision")
            if precision == "o3":
                _optimize_o3(fp32_dir, tmp)
            elif precision == "int8":
                extra = _quantize_int8(fp32_dir, tmp)
            else:
                _convert_fp16(fp32_dir, tmp)

        onnx_path = tmp / ONNX_NAME
        if not onnx_path.is_file():
            raise ExportError(f"export produced no {ONNX_NAME}")
        if not (tmp / "tokenizer.json").is_file():
            raise ExportError("export produced no tokenizer.json")
        with _step("sha256", file=ONNX_NAME):
            digest = sha256_file(onnx_path)
        manifest = {
            "format_version": MANIFEST_FORMAT_VERSION,
            "source": model_id,
            "source_kind": kind,
            "revision": rev_out,
            "resolved_revision": resolved_commit,
            "source_content_sha256": content_hash,
            "precision": precision,
            "onnx_file": ONNX_NAME,
            "onnx_sha256": digest,
            "onnx_bytes": onnx_path.stat().st_size,
            "opset": _onnx_opset(onnx_path),
            "labels": _labels_from_config(tmp / "config.json"),
            "versions": package_versions(),
            "options": {**options, **extra},
            "cache_key": key,
            "created_at": datetime.now(UTC).isoformat(),
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        # The manifest is written last: without it the directory never counts as an export.
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "model_exported",
        model=model_id,
        revision=rev_out,
        precision=precision,
        path=str(final),
        onnx_mb=round(manifest["onnx_bytes"] / 2**20, 2),
        seconds=manifest["export_seconds"],
    )
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the finished tmp dir to its final name; an existing (forced/stale) dir is swapped out."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        final.rename(old)
    try:
        tmp.rename(final)
    except OSError:
        if final.exists() and is_exported_dir(final):  # a concurrent export won the race: use it
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def place_export(exported_dir: Path, output: Path) -> Path:
    """Copy an exported dir to ``output`` (atomic: copy to a sibling tmp dir, then rename)."""
    output = Path(output)
    if output.exists() and any(output.iterdir()) and not is_exported_dir(output):
        raise FileExistsError(f"{output} exists and is not an exported model dir; refusing to overwrite it")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".tmp-{output.name}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(exported_dir, tmp)
    try:
        if output.exists():
            old = output.with_name(f".old-{output.name}-{uuid.uuid4().hex[:8]}")
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
