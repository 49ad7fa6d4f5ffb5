"""threads = 0: one ONNX Runtime intra-op thread for a small model, all cores for a real one."""

from __future__ import annotations

import pytest

from worker.model.threads import SMALL_MODEL_FLOPS_PER_TOKEN, flops_per_token, intra_op_threads

pytestmark = pytest.mark.unit

NEAR_FREE = {"dim": 32, "n_layers": 1, "hidden_dim": 64}  # the benchmark's near-free DistilBERT
STARTER = {"dim": 384, "n_layers": 6, "hidden_dim": 1536}  # the offline starter model's shape
BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072}


def test_flops_per_token_from_distilbert_and_bert_configs() -> None:
    assert flops_per_token(NEAR_FREE) == 2 * 1 * (4 * 32 * 32 + 2 * 32 * 64)
    assert flops_per_token(STARTER) == 2 * 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert flops_per_token(BERT_BASE) == 2 * 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert flops_per_token({"dim": 32}) is None, "not enough to tell"


def test_automatic_threads_are_one_for_a_small_model_and_all_cores_otherwise() -> None:
    assert flops_per_token(NEAR_FREE) < SMALL_MODEL_FLOPS_PER_TOKEN < flops_per_token(STARTER)  # type: ignore[operator]
    assert intra_op_threads(0, NEAR_FREE) == 1
    assert intra_op_threads(0, STARTER) == 0 and intra_op_threads(0, BERT_BASE) == 0
    assert intra_op_threads(0, {}) == 0, "size unknown: ONNX Runtime's default (all cores)"
    assert intra_op_threads(3, NEAR_FREE) == 3 and intra_op_threads(2, STARTER) == 2, "a set value is kept"
