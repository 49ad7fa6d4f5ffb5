"""The converted MiniLM encoder reproduces the MiniLM hidden states (real weights from the registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

SENTENCES = [
    "I loved this movie",
    "The service was slow but the food was great",
    "Not bad at all",
    "A very, very, very slow-moving, aimless movie about a distressed, drifting young man.",
    "@united you cancelled my flight without notification? #fail",
]


def test_converted_minilm_matches_hidden_states(starter_materials: Any, tmp_path: Path) -> None:
    from training.convert import convert_minilm, encoder_max_abs_diff

    converted = convert_minilm(starter_materials.minilm_dir, tmp_path / "converted")
    assert encoder_max_abs_diff(starter_materials.minilm_dir, converted, SENTENCES) <= 1e-4


def test_converted_tokenizer_matches_minilm(starter_materials: Any, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from training.convert import convert_minilm

    converted = convert_minilm(starter_materials.minilm_dir, tmp_path / "converted")
    assert (converted / "tokenizer.json").is_file()
    ours = AutoTokenizer.from_pretrained(str(converted))
    theirs = AutoTokenizer.from_pretrained(str(starter_materials.minilm_dir))
    assert type(ours).__name__ == "DistilBertTokenizerFast"
    for text in SENTENCES:
        assert ours(text)["input_ids"] == theirs(text)["input_ids"]
