"""Metrics and backend agreement."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import classification_metrics, compare_logits, with_total

pytestmark = pytest.mark.unit


def test_classification_metrics() -> None:
    m = classification_metrics([0, 0, 1, 1, 1], [0, 1, 1, 1, 0])
    assert m.accuracy == pytest.approx(0.6)
    assert m.confusion == [[1, 1], [1, 2]]
    assert m.per_class["POSITIVE"].precision == pytest.approx(2 / 3)
    assert m.per_class["POSITIVE"].recall == pytest.approx(2 / 3)
    assert m.per_class["NEGATIVE"].precision == pytest.approx(0.5)
    assert m.per_class["NEGATIVE"].support == 2


def test_compare_logits_agreement_all_pairs() -> None:
    data = {"a": [("x", 0), ("y", 1), ("z", 1)]}
    torch_logits = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]], dtype=np.float32)
    fp32 = torch_logits + 1e-6
    int8 = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]], dtype=np.float32)
    report = compare_logits(data, {"pytorch": {"a": torch_logits}, "fp32": {"a": fp32}, "int8": {"a": int8}})
    assert report.accuracy("a", "pytorch") == 1.0
    assert report.accuracy("a", "int8") == pytest.approx(2 / 3)
    fp32_vs_torch = report.find_agreement("a", "fp32", "pytorch")
    assert fp32_vs_torch is not None and fp32_vs_torch.label_agreement == 1.0
    assert fp32_vs_torch.max_abs_logit_diff == pytest.approx(1e-6, abs=1e-7)
    int8_vs_fp32 = report.find_agreement("a", "int8", "fp32")
    assert int8_vs_fp32 is not None and int8_vs_fp32.label_agreement == pytest.approx(2 / 3)
    assert "int8 vs fp32" in report.format_text()
    assert report.to_dict()["metrics"]["a"]["int8"]["confusion"] == [[1, 0], [1, 1]]


def test_with_total_adds_all() -> None:
    assert with_total({"a": [("x", 1)], "b": [("y", 0)]})["all"] == [("x", 1), ("y", 0)]
    assert "all" not in with_total({"a": [("x", 1)]})
