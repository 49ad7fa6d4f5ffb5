"""``python -m tests.integration.reliability.slow_load_worker run``: the real CLI, with slow model loads (tests only).

Every model load after the first (a hot-swap candidate) first sleeps ``RELIABILITY_LOAD_DELAY_S`` seconds, like a
large model's, so a test can check the stream keeps flowing while a candidate loads. Each delayed load logs
``test_load_delayed``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from worker.model.runtime import SentimentModel
from worker.observability import get_logger

DELAY_S = float(os.environ.get("RELIABILITY_LOAD_DELAY_S", "0"))
_real_load = SentimentModel.load.__func__  # type: ignore[attr-defined]
_loads = 0
log = get_logger("tests.slow_load_worker")


def _slow_load(cls: type[SentimentModel], *args: Any, **kwargs: Any) -> SentimentModel:
    global _loads
    _loads += 1
    if _loads > 1:
        log.info("test_load_delayed", delay_s=DELAY_S)
        time.sleep(DELAY_S)
    return _real_load(cls, *args, **kwargs)  # type: ignore[no-any-return]


if __name__ == "__main__":
    SentimentModel.load = classmethod(_slow_load)  # type: ignore[method-assign,assignment]
    from worker.cli import main

    sys.exit(main())
