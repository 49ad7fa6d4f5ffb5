"""Fixtures of the starter-model unit tests: a tiny DistilBERT and a separable toy sentiment set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.training.toydata import toy_examples


@pytest.fixture(scope="session")
def starter_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shared tiny DistilBERT with a zeroed classifier: it predicts NEGATIVE for everything
    (accuracy 0.5 on a balanced set) until fine-tuned."""
    import shutil

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


@pytest.fixture(scope="session")
def toy_train() -> list[tuple[str, int]]:
    return toy_examples(400, seed=1)


@pytest.fixture(scope="session")
def toy_test() -> list[tuple[str, int]]:
    return toy_examples(200, seed=2)
