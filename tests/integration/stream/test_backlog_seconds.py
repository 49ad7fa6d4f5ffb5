"""sentiment_backlog_seconds from a real worker with lag: lag ÷ the throughput it really has, then 0 once caught up.

The worker, broker and exported ONNX model are real; each model call first sleeps ``DELAY_S`` (a slow device, as in
tests/integration/reliability/slow_worker.py) so that a few thousand records take several seconds and the backlog
can be watched while it drains.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from devtools.ports import free_port
from tests.support.kafka_utils import create_topic, produce_values
from tests.support.metrics import samples as parse_samples
from tests.support.metrics import scrape
from tests.support.waits import wait_for
from tests.support.worker_thread import AppThread, worker_settings
from worker.backlog_metrics import STALLED_S
from worker.model.runtime import InferenceResult, SentimentModel

pytestmark = pytest.mark.integration

DELAY_S = 0.05
BATCH = 16  # at most BATCH / DELAY_S = 320 records/s
RECORDS = 5000


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return parse_samples(scrape(port))


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> list[float]:
    return [v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items()]


def test_backlog_seconds_follow_lag_and_throughput(
    broker, topic_name, tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = SentimentModel.infer_ids

    def slow(self: SentimentModel, ids: Sequence[Sequence[int]], **kwargs: Any) -> InferenceResult:
        time.sleep(DELAY_S)
        return real(self, ids, **kwargs)

    monkeypatch.setattr(SentimentModel, "infer_ids", slow)
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    port = free_port()
    # Small polls and queues: few records in flight between the consumer's position and the commit, so the lag
    # (high-water mark − position) is nearly all of the backlog.
    small = {"max_batch_size": BATCH, "max_poll_records": 64, "queue_max_batches": 2}
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port, **small)
    with AppThread(settings, tiny_onnx_dir) as app:
        app.wait_ready(port)
        # assigned, lag sampled: lag 0 reads 0 before anything was committed
        wait_for(lambda: _get(_scrape(port), "sentiment_backlog_seconds"), 60, 0.3, "a backlog_seconds sample")
        idle = _scrape(port)
        assert _get(idle, "sentiment_backlog_seconds", partition="all") == [0.0], idle

        items = [(None, json.dumps({"id": i, "text": f"fine thing {i}"}).encode()) for i in range(RECORDS)]
        produce_values(bootstrap, topic_name, items)
        # (time, backlog of the topic, total lag, total committed) while the worker drains
        seen: list[tuple[float, float, float, float]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            samples = _scrape(port)
            now = time.monotonic()
            lag = sum(_get(samples, "sentiment_consumer_lag", topic=topic_name))
            committed = sum(_get(samples, "sentiment_committed_offset", topic=topic_name))
            backlog = _get(samples, "sentiment_backlog_seconds", topic=topic_name, partition="all")
            if backlog:
                seen.append((now, backlog[0], lag, committed))
            if committed >= RECORDS and backlog == [0.0]:
                break
            time.sleep(0.5)
        assert seen and seen[-1][1] == 0.0 and seen[-1][3] == RECORDS, seen[-3:]
        for partition in ("0", "1"):
            assert _get(samples, "sentiment_backlog_seconds", topic=topic_name, partition=partition) == [0.0]

        busy = [s for s in seen if s[2] > 0 and s[1] > 0]
        assert len(busy) >= 4, f"too few samples with a backlog: {seen}"
        assert all(0 < s[1] < STALLED_S for s in busy), busy
        # The reported seconds agree with lag ÷ the committed rate seen from outside over the same stretch.
        first, last = busy[0], busy[-1]
        observed_rate = (last[3] - first[3]) / (last[0] - first[0])
        assert 0 < observed_rate <= BATCH / DELAY_S * 1.2, observed_rate
        for _, seconds, lag, _ in busy[len(busy) // 2 :]:
            assert 0.4 < seconds / (lag / observed_rate) < 2.5, (seconds, lag, observed_rate)
    assert app.rc == 0
