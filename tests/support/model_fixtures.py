"""Model fixtures (a pytest plugin, loaded from tests/conftest.py).

- ``tiny_model_dir``: the tiny DistilBERT HF dir (tests/support/tiny_model.py). Building it trains for a
  few seconds, so it is kept in pytest's cache dir (``.pytest_cache``), keyed by the content of
  tiny_model.py and the torch/transformers/tokenizers versions; without the cache provider it is built
  into a session tmp dir. **Read-only**: copy it before changing anything.
- ``model_export_cache``: a ``cache_dir`` for ``export_model``, new for each run and shared by its xdist workers
  (tests/support/sharing.py): the exports below are made once per run, under a lock.
- ``tiny_onnx_dir`` / ``tiny_int8_dir``: fp32 / INT8 exports through the real ``export_model`` path.
- ``tiny_sentiment_model``: ``SentimentModel`` loaded from ``tiny_onnx_dir`` on CPU.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.sharing import locked, run_dir

if TYPE_CHECKING:
    from worker.model.runtime import SentimentModel

_TINY_SOURCE = Path(__file__).with_name("tiny_model.py")
_COMPLETE = ".tiny-model-complete"


def _tiny_key() -> str:
    digest = hashlib.sha256(_TINY_SOURCE.read_bytes())
    for package in ("torch", "transformers", "tokenizers"):
        digest.update(f"{package}={metadata.version(package)}".encode())
    return digest.hexdigest()[:16]


def _build_cached(base: Path) -> Path:
    final = base / f"tiny-distilbert-{_tiny_key()}"
    if (final / _COMPLETE).is_file():
        return final
    with locked(base / ".build.lock"):  # xdist workers: one builds, the others wait and reuse it
        return _build(base, final)


def _build(base: Path, final: Path) -> Path:
    from tests.support.tiny_model import build_tiny_model

    if (final / _COMPLETE).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = base / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    try:
        build_tiny_model(tmp)
        (tmp / _COMPLETE).write_text("ok\n")
        try:
            tmp.rename(final)
        except OSError:
            if not (final / _COMPLETE).is_file():  # not a concurrent build that won the race
                shutil.rmtree(final, ignore_errors=True)
                tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@pytest.fixture(scope="session")
def tiny_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    base = Path(cache.mkdir("sentiment-tiny-model")) if cache is not None else tmp_path_factory.mktemp("tiny")
    return _build_cached(base)


@pytest.fixture(scope="session")
def model_export_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_dir(tmp_path_factory, "model-cache")


def _export(tiny_model_dir: Path, cache_dir: Path, precision: str) -> Path:
    from worker.model.export import export_model

    with locked(cache_dir / f".{precision}.lock"):  # one export per run; the cache hands the others the same dir
        return export_model(tiny_model_dir, precision=precision, cache_dir=cache_dir)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_onnx_dir(tiny_model_dir: Path, model_export_cache: Path) -> Path:
    return _export(tiny_model_dir, model_export_cache, "fp32")


@pytest.fixture(scope="session")
def tiny_int8_dir(tiny_model_dir: Path, model_export_cache: Path, tiny_onnx_dir: Path) -> Path:
    return _export(tiny_model_dir, model_export_cache, "int8")


@pytest.fixture(scope="session")
def tiny_sentiment_model(tiny_onnx_dir: Path) -> SentimentModel:
    from worker.model.runtime import SentimentModel

    return SentimentModel.load(tiny_onnx_dir, device="cpu")


@pytest.fixture(scope="session")
def starter_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared tiny DistilBERT with a zeroed classifier: it predicts NEGATIVE for everything
    (accuracy 0.5 on a balanced set) until fine-tuned."""
    import torch
    from transformers import AutoModelForSequenceClassification

    target = tmp_path_factory.mktemp("starter-tiny") / "model"
    shutil.copytree(tiny_model_dir, target)
    model = AutoModelForSequenceClassification.from_pretrained(target)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    model.save_pretrained(target, safe_serialization=True)
    return target
