"""``python -m tests.integration.reliability.slow_worker run``: the real CLI, with a slower model (tests only).

The worker, its signal handling, the broker and the exported ONNX model are all real; only each model call
first sleeps ``RELIABILITY_INFER_DELAY_S`` seconds, like a slow device, so a test can signal the process while a
batch is inside the model and the drain takes long enough to interrupt. Each call logs ``test_infer_started``
(with the batch size) before sleeping.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from worker.model.runtime import InferenceResult, SentimentModel
from worker.observability import get_logger

DELAY_S = float(os.environ.get("RELIABILITY_INFER_DELAY_S", "0"))
_real_infer_ids = SentimentModel.infer_ids
log = get_logger("tests.slow_worker")


def _slow_infer_ids(self: SentimentModel, ids: Sequence[Sequence[int]], **kwargs: Any) -> InferenceResult:
    log.info("test_infer_started", size=len(ids), delay_s=DELAY_S)
    time.sleep(DELAY_S)
    return _real_infer_ids(self, ids, **kwargs)


if __name__ == "__main__":
    SentimentModel.infer_ids = _slow_infer_ids  # type: ignore[method-assign]
    from worker.cli import main

    sys.exit(main())
