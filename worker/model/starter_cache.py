"""Where a built offline starter model is: its cached exports and HF folder (path logic only, never builds).

``training.starter`` builds the starter model into ``<cache_dir>/starter/`` and writes
``starter.json`` (the build record) last; this module reads that record. It imports no training code and
nothing heavy, so the model resolver can look for the starter model at start-up without the ``[train]``
extra.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.model.manifest import CONFIG_NAME, is_exported_dir

STARTER_RECORD = "starter.json"


def starter_root(cache_dir: Path) -> Path:
    return Path(cache_dir).expanduser() / "starter"


def read_starter_record(cache_dir: Path) -> dict[str, Any] | None:
    path = starter_root(cache_dir) / STARTER_RECORD
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def recorded_path(root: Path, value: str) -> Path:
    """A path of the build record: absolute as written, or relative to ``<cache_dir>/starter``."""
    path = Path(value)
    return path if path.is_absolute() else root / path


def cached_starter_dir(cache_dir: Path, precision: str = "fp32") -> Path | None:
    """The exported ONNX dir of the built starter model for ``precision`` (fp32/int8), or None.

    Cheap (reads one JSON file, checks the export's manifest and onnx file); never builds anything.
    """
    record = read_starter_record(cache_dir)
    if record is None:
        return None
    path = (record.get("exports") or {}).get(precision)
    if not path:
        return None
    exported = recorded_path(starter_root(cache_dir), path)
    return exported if is_exported_dir(exported) else None


def starter_model_dir(cache_dir: Path) -> Path | None:
    """The built starter model's Hugging Face folder (weights, tokenizer, card), or None; never builds anything."""
    record = read_starter_record(cache_dir)
    if not record or not record.get("model_dir"):
        return None
    path = recorded_path(starter_root(cache_dir), record["model_dir"])
    return path if (path / CONFIG_NAME).is_file() else None
