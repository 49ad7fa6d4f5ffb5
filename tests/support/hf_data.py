"""Local Hugging Face datasets for the ``hf:`` input tests: offline, built with ``datasets`` itself (no hub)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

Row = tuple[str, int]


def go_offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """No hub calls and a private cache, also when ``datasets`` was imported earlier in the session."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    if "datasets" in sys.modules:
        import datasets

        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)


def write_jsonl(path: Path, rows: Sequence[Row], *, text_field: str = "text") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({text_field: t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


def save_to_disk(
    path: Path, rows: Sequence[Row], *, names: Sequence[str] = ("negative", "positive"), split: str | None = None
) -> Path:
    """``Dataset.from_dict(...).save_to_disk(path)`` with a ClassLabel column ``label`` (ids into ``names``; the
    rows' labels are 0 = negative, 1 = positive and are re-encoded when ``names`` orders them otherwise); with
    ``split`` a DatasetDict of that split plus an ``other`` split holding the first row."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    lowered = [name.lower() for name in names]
    index = {y: next((i for i, n in enumerate(lowered) if n.startswith(("neg", "pos")[y])), y) for y in (0, 1)}
    ids = [index[y] for _, y in rows]
    features = Features({"text": Value("string"), "label": ClassLabel(names=list(names))})
    dataset = Dataset.from_dict({"text": [t for t, _ in rows], "label": ids}, features=features)
    if split is None:
        dataset.save_to_disk(str(path))
    else:
        DatasetDict({split: dataset, "other": dataset.select([0])}).save_to_disk(str(path))
    return path
