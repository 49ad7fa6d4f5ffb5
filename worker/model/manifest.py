"""Where an exported model lives and what its manifest says: the one module that knows the layout.

An *exported dir* holds::

    model.onnx                 the graph (fp32, O3-optimised, dynamic INT8 or fp16)
    tokenizer.json, ...        fast tokenizer files (the runtime uses ``tokenizers`` directly)
    config.json                with id2label
    sentiment-manifest.json    what was exported, how, by which versions, and the onnx file's sha256

Exports are cached under ``<cache_dir>/exports/<slug>-<key>-<precision>/``. A dir counts as exported only
once its manifest is written (last), and the manifest's onnx file and ``config.json`` exist.

Standard library only: the run path, the export and training all find exported dirs through this module.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

MANIFEST_NAME = "sentiment-manifest.json"
ONNX_NAME = "model.onnx"
CONFIG_NAME = "config.json"
MANIFEST_FORMAT_VERSION = 1
REQUIRED_KEYS: tuple[str, ...] = ("format_version", "onnx_file", "onnx_sha256", "precision", "labels")


def manifest_path(exported_dir: Path | str) -> Path:
    """The manifest file of an exported dir."""
    return Path(exported_dir) / MANIFEST_NAME


def onnx_path(exported_dir: Path | str, manifest: dict[str, Any]) -> Path:
    """The ONNX file a manifest names (``model.onnx`` when it names none)."""
    return Path(exported_dir) / str(manifest.get("onnx_file", ONNX_NAME))


def exports_root(cache_dir: Path | str) -> Path:
    """The folder that holds the cached exports of ``cache_dir``."""
    return Path(cache_dir) / "exports"


def export_dir(cache_dir: Path | str, slug: str, key: str, precision: str) -> Path:
    """The cached exported dir of one model (``slug``), cache ``key`` and precision."""
    return exports_root(cache_dir) / f"{slug}-{key}-{precision}"


def sha256_file(path: Path | str, *, chunk_size: int = 4 * 1024 * 1024) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest_json(exported_dir: Path | str) -> dict[str, Any]:
    """The manifest's JSON as it is (no key checks); ``json.JSONDecodeError``/``OSError`` pass through."""
    return json.loads(manifest_path(exported_dir).read_text(encoding="utf-8"))


def read_manifest(exported_dir: Path | str) -> dict[str, Any]:
    """The manifest of an exported dir (``ValueError`` if it is not valid JSON or lacks required keys)."""
    path = manifest_path(exported_dir)
    try:
        data = load_manifest_json(exported_dir)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path} lacks {missing}")
    return data


def write_manifest(exported_dir: Path | str, manifest: dict[str, Any]) -> Path:
    """Write the manifest (the last file of an export: without it the dir never counts as exported)."""
    path = manifest_path(exported_dir)
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def is_exported_dir(path: Path | str) -> bool:
    """True for a complete exported dir: a readable manifest whose onnx file exists."""
    path = Path(path)
    if not manifest_path(path).is_file():
        return False
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError):
        return False
    return onnx_path(path, manifest).is_file() and (path / CONFIG_NAME).is_file()
