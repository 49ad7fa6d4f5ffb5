"""Hugging Face ``datasets`` as input: ``--data hf:NAME[:CONFIG][@SPLIT]`` for ``eval``, ``bench``, ``classify`` and
``produce`` (the ``[datasets]`` extra).

``NAME`` is, in this order:

- a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (it holds ``dataset_info.json`` and
  ``state.json``, or ``dataset_dict.json``): read with ``datasets.load_from_disk``;
- a local folder of data files (csv / tsv / json / jsonl / parquet; ``train.jsonl``, ``test.csv`` … name the
  splits) or one such file: read with ``datasets.load_dataset`` (offline, nothing downloaded);
- otherwise a hub id (``user/name``): ``datasets.load_dataset(NAME, CONFIG)``, which needs the hub (or the
  ``datasets`` cache, with ``HF_DATASETS_OFFLINE=1``).

``@SPLIT`` picks the split; without it the dataset must have exactly one. Texts come from the column
``--text-field`` (default ``text``), labels from ``--label-field`` (default ``label``): a ``ClassLabel`` column's
integers map to its names, and a name (or a plain string) maps to the model's label of that name (negative /
positive, neg / pos also); plain integers are label indices. Every problem (no such dataset, split, config or
column; the extra not installed) is one :class:`DatasetInputError` with a one-line message naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.model.errors import ExtraNotInstalledError, is_missing_third_party, missing_distributions

HF_PREFIX = "hf:"
DATASETS_EXTRA = "datasets"
DATASETS_PACKAGES: tuple[str, ...] = ("datasets",)
DEFAULT_LABELS: tuple[str, ...] = ("negative", "positive")
FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_WORDS = {"neg": 0, "negative": 0, "pos": 1, "positive": 1}


class DatasetInputError(ValueError):
    """An ``hf:`` input can't be read; the message names what is missing (dataset, split, config, column, extra)."""


@dataclass(frozen=True)
class HfSpec:
    name: str
    config: str | None = None
    split: str | None = None

    def __str__(self) -> str:
        config = f":{self.config}" if self.config else ""
        split = f"@{self.split}" if self.split else ""
        return f"{HF_PREFIX}{self.name}{config}{split}"


def is_hf_spec(value: object) -> bool:
    """True for ``hf:...`` (a str or a Path-like given on the command line)."""
    return str(value).startswith(HF_PREFIX) if isinstance(value, str | os.PathLike) else False


def parse_spec(spec: str | os.PathLike[str]) -> HfSpec:
    """``hf:NAME[:CONFIG][@SPLIT]`` → :class:`HfSpec`."""
    text = str(spec)
    if not text.startswith(HF_PREFIX):
        raise DatasetInputError(f"{text!r} is not a Hugging Face dataset (expected hf:NAME[:CONFIG][@SPLIT])")
    rest = text[len(HF_PREFIX) :]
    rest, at, split = rest.rpartition("@") if "@" in rest else (rest, "", "")
    name, _, config = rest.partition(":")
    if not name or (at and not split):
        raise DatasetInputError(f"{text!r}: expected hf:NAME[:CONFIG][@SPLIT]")
    return HfSpec(name, config or None, split or None)


# ---- loading ----------------------------------------------------------------------------------------------
def _datasets() -> Any:
    purpose = "--data hf:... (Hugging Face datasets as input)"
    if missing_distributions(DATASETS_PACKAGES):
        raise DatasetInputError(str(ExtraNotInstalledError(DATASETS_EXTRA, purpose, DATASETS_PACKAGES)))
    try:
        import datasets
    except ModuleNotFoundError as exc:
        if not is_missing_third_party(exc):
            raise
        missing = [str(exc.name).partition(".")[0]]
        raise DatasetInputError(str(ExtraNotInstalledError(DATASETS_EXTRA, purpose, missing))) from None
    except ImportError as exc:  # installed but broken (e.g. a dependency of the wrong version)
        raise DatasetInputError(f"{purpose}: the datasets package can't be imported: {exc}") from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _is_saved(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_split(spec: HfSpec) -> Any:
    """The ``datasets.Dataset`` of the spec's split."""
    ds = _datasets()
    path = Path(spec.name).expanduser()
    split = spec.split
    try:
        if path.is_dir() and _is_saved(path):
            if spec.config:
                raise DatasetInputError(f"{spec}: a save_to_disk folder has no configs (drop ':{spec.config}')")
            loaded = ds.load_from_disk(str(path))
        elif path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise DatasetInputError(f"{spec}: unknown data file type {path.suffix!r} ({', '.join(FILE_BUILDERS)})")
            extra = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            loaded = ds.load_dataset(builder, data_files=str(path), **extra)
        elif path.is_dir():
            loaded = ds.load_dataset(str(path), spec.config)
        else:
            loaded = ds.load_dataset(spec.name, spec.config, split=split)
    except DatasetInputError:
        raise
    except ValueError as exc:  # unknown split or config: datasets names the available ones
        raise DatasetInputError(f"{spec}: {_first_line(exc)}") from None
    except (OSError, ConnectionError) as exc:  # no such dataset: not a local path, not on (or no) hub
        where = "not a local folder or file, and" if not path.exists() else "a local path, but"
        raise DatasetInputError(f"dataset {spec.name!r} not found ({where} {_first_line(exc)})") from None
    except Exception as exc:  # the library's own errors (DatasetNotFoundError, DataFilesNotFoundError, ...)
        raise DatasetInputError(f"dataset {spec.name!r} can't be loaded: {_first_line(exc)}") from None
    if isinstance(loaded, ds.DatasetDict):
        splits = list(loaded)
        if split is None:
            if len(splits) != 1:
                raise DatasetInputError(f"{spec}: the dataset has splits {', '.join(splits)}: pick one with @SPLIT")
            split = splits[0]
        if split not in loaded:
            raise DatasetInputError(f"{spec}: no split {split!r} (splits: {', '.join(splits)})")
        return loaded[split]
    if split is not None and getattr(loaded, "split", None) not in (None, split):
        raise DatasetInputError(f"{spec}: no split {split!r} (the dataset is split {loaded.split})")
    return loaded


def _column(dataset: Any, spec: HfSpec, field: str, flag: str) -> None:
    columns = list(dataset.column_names)
    if field not in columns:
        raise DatasetInputError(f"{spec}: no column {field!r} (columns: {', '.join(columns)}); choose one with {flag}")


def _text(value: object, spec: HfSpec, field: str, row: int) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise DatasetInputError(f"{spec}: column {field!r} row {row} is {type(value).__name__}, not text")
    return value


# ---- what the commands read ---------------------------------------------------------------------------------
def load_texts(spec: str | os.PathLike[str], *, text_field: str = "text") -> list[str]:
    """The non-blank texts of column ``text_field`` (classify, bench)."""
    parsed = parse_spec(spec)
    dataset = load_split(parsed)
    _column(dataset, parsed, text_field, "--text-field")
    texts = (_text(v, parsed, text_field, i) for i, v in enumerate(dataset[text_field]))
    return [t for t in texts if t is not None]


def load_records(spec: str | os.PathLike[str], *, text_field: str = "text") -> list[dict[str, Any]]:
    """Every row as a dict of its columns (produce: one JSON object per record); the text column must exist."""
    parsed = parse_spec(spec)
    dataset = load_split(parsed)
    _column(dataset, parsed, text_field, "--text-field")
    return [dict(row) for row in dataset]


def record_lines(spec: str | os.PathLike[str], *, text_field: str = "text", fmt: str = "json") -> list[str]:
    """produce's lines: each row as one JSON object (``fmt`` json) or its text (``fmt`` text)."""
    if fmt == "text":
        return load_texts(spec, text_field=text_field)
    return [json.dumps(row, ensure_ascii=False, default=str) for row in load_records(spec, text_field=text_field)]


def load_labelled(
    spec: str | os.PathLike[str],
    *,
    text_field: str = "text",
    label_field: str = "label",
    label_names: Sequence[str] = DEFAULT_LABELS,
) -> list[tuple[str, int]]:
    """(text, label index) pairs (eval); rows without a text or a label are skipped."""
    parsed = parse_spec(spec)
    dataset = load_split(parsed)
    _column(dataset, parsed, text_field, "--text-field")
    _column(dataset, parsed, label_field, "--label-field")
    feature = dataset.features[label_field]
    class_names = list(getattr(feature, "names", None) or [])
    out = []
    for i, (raw_text, raw_label) in enumerate(zip(dataset[text_field], dataset[label_field], strict=True)):
        text = _text(raw_text, parsed, text_field, i)
        if text is None or raw_label is None or (raw_label == -1 and class_names):  # -1: ClassLabel's "no label"
            continue
        out.append((text, label_index(raw_label, label_names, class_names, f"{parsed} row {i}")))
    return out


def label_index(value: object, label_names: Sequence[str], class_names: Sequence[str] = (), where: str = "") -> int:
    """A label value as an index into ``label_names``: a ClassLabel integer via its name, a name (any case, or
    neg/pos words for two labels), a digit string or an integer index."""
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and class_names:
        if not 0 <= value < len(class_names):
            raise DatasetInputError(f"{where}: label {value} is outside the ClassLabel names {list(class_names)}")
        value = class_names[value]
    if isinstance(value, str):
        key = value.strip().lower()
        lowered = [name.lower() for name in label_names]
        if key in lowered:
            return lowered.index(key)
        if len(label_names) == 2 and key in _WORDS:
            return _WORDS[key]
        if key.isdigit():
            value = int(key)
    if isinstance(value, int) and 0 <= value < len(label_names):
        return value
    raise DatasetInputError(f"{where}: label {value!r} is none of the model's labels {list(label_names)}")
