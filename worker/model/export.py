"""Export a DistilBERT sequence classifier to ONNX (Hugging Face Optimum), cached and atomic.

``export_model`` turns a hub id (with revision) or a local HF model dir into an *exported dir* (layout
and manifest: ``worker.model.manifest``). Exports live under ``cache_dir/exports/<slug>-<key>-<precision>/``;
the key hashes the model id, the revision (or, for a local dir, the content of its config, weights and
tokenizer files) and the export options, so a cache hit returns at once and a changed local model is
exported again. A directory is built under a temporary name and renamed into place once complete, so an
interrupted export never leaves a directory that looks valid.

The steps live in ``worker.model.hf_export`` (hub download, Optimum's fp32 export) and
``worker.model.precisions`` (O3, INT8, fp16). torch / transformers / optimum / onnx (the ``[export]``
extra) are imported only inside their functions, so importing this module (the model resolver does) needs
none of them; the run path (``worker.model.runtime``) needs onnxruntime and tokenizers only.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from worker.model.errors import (
    EXPORT_EXTRA,
    EXPORT_PACKAGES,
    ExportError,
    ModelUnavailableError,
    require_extra,
)
from worker.model.hf_export import export_fp32, fetch_hub_model, step
from worker.model.manifest import (
    CONFIG_NAME,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
    ONNX_NAME,
    export_dir,
    exports_root,
    is_exported_dir,
    read_manifest,
    sha256_file,
    write_manifest,
)
from worker.model.precisions import (
    FP16_OPTIONS,
    INT8_OPTIONS,
    O3_OPTIONS,
    convert_fp16,
    onnx_opset,
    optimize_o3,
    quantize_int8,
)
from worker.observability import get_logger

log = get_logger(__name__)

__all__ = ["PRECISIONS", "ExportError", "ModelUnavailableError", "Precision", "export_model", "place_export"]

Precision = Literal["fp32", "o3", "int8", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "o3", "int8", "fp16")

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
_VERSIONED_PACKAGES = ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "tokenizers")
# onnxruntime ships as `onnxruntime-gpu` or `onnxruntime` (the same import name).
_ORT_DISTRIBUTIONS = ("onnxruntime-gpu", "onnxruntime")


# ---- small helpers ---------------------------------------------------------------------------------


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
        options["optimization"] = O3_OPTIONS
    elif precision == "int8":
        options["quantization"] = INT8_OPTIONS
    elif precision == "fp16":
        options["float16"] = FP16_OPTIONS
    return options


def _labels_from_config(config_path: Path) -> list[str]:
    config = json.loads(config_path.read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    if not id2label:
        raise ExportError(f"{config_path} has no id2label")
    return [str(id2label[key]) for key in sorted(id2label, key=int)]


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
        if not (local / CONFIG_NAME).is_file():
            raise ModelUnavailableError(f"{local} is a directory but not a HF model dir (no config.json)")
        local = local.resolve()
        kind = "local"
        model_id = str(local)
        with step("hash_local_model", path=str(local)):
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
    exports = exports_root(cache_dir)
    final = export_dir(cache_dir, slug, key, precision)

    if not force and is_exported_dir(final):
        log.info("export_cache_hit", model=model_id, revision=rev_out, precision=precision, path=str(final))
        return final

    require_extra(EXPORT_EXTRA, EXPORT_PACKAGES, "exporting a model to ONNX")
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
                model_dir, resolved_commit = fetch_hub_model(model_id, revision)
            export_fp32(model_dir, tmp)
        else:
            # Derived precisions start from the (cached) fp32 export of the same source.
            fp32_dir = export_model(source, revision=revision, precision="fp32", cache_dir=cache_dir, force=force)
            resolved_commit = read_manifest(fp32_dir).get("resolved_revision")
            if precision == "o3":
                optimize_o3(fp32_dir, tmp)
            elif precision == "int8":
                extra = quantize_int8(fp32_dir, tmp)
            else:
                convert_fp16(fp32_dir, tmp)

        onnx_path = tmp / ONNX_NAME
        if not onnx_path.is_file():
            raise ExportError(f"export produced no {ONNX_NAME}")
        if not (tmp / "tokenizer.json").is_file():
            raise ExportError("export produced no tokenizer.json")
        with step("sha256", file=ONNX_NAME):
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
            "opset": onnx_opset(onnx_path),
            "labels": _labels_from_config(tmp / CONFIG_NAME),
            "versions": package_versions(),
            "options": {**options, **extra},
            "cache_key": key,
            "created_at": datetime.now(UTC).isoformat(),
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        # The manifest is written last: without it the directory never counts as an export.
        write_manifest(tmp, manifest)
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
