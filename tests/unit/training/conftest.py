"""Fixtures of the starter-model unit tests: a tiny DistilBERT and a separable toy sentiment set."""

from __future__ import annotations

import pytest

from tests.unit.training.toydata import toy_examples


@pytest.fixture(scope="session")
def toy_train() -> list[tuple[str, int]]:
    return toy_examples(400, seed=1)


@pytest.fixture(scope="session")
def toy_test() -> list[tuple[str, int]]:
    return toy_examples(200, seed=2)
