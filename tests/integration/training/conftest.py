"""Fixtures of the starter-model integration tests: a separable toy sentiment set as files (the registry materials
are ``starter_materials``, tests/support/starter_fixtures.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.training.toydata import toy_examples


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from training.data import write_jsonl

    root = tmp_path_factory.mktemp("toy-data")
    train = write_jsonl(root / "train.jsonl", toy_examples(400, seed=1))
    test = root / "test.csv"
    test.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in toy_examples(200, seed=2)))
    return train, test
