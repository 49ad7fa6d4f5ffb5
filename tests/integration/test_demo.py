"""`sentiment-worker demo`'s run (devtools/demo.py) on the embedded broker and the tiny exported model: the summary
keeps the start-up backlog apart from the steady state, and the worker runs with the embedded broker's fetch wait."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from devtools.broker import EMBEDDED_FETCH_WAIT_MS
from devtools.demo import DemoOptions, demo_overrides, run_demo
from worker.settings import Settings, load_settings

pytestmark = pytest.mark.integration


def test_demo_reports_steady_state_latency_with_start_up_apart(tiny_onnx_dir: Path) -> None:
    made: list[Settings] = []

    def make_settings(bootstrap: str) -> Settings:
        made.append(
            load_settings(
                **demo_overrides(bootstrap),
                model=str(tiny_onnx_dir),
                device="cpu",
                metrics_port=0,
                log_level="warning",
                max_wait_ms=10,
            )
        )
        return made[-1]

    out = io.StringIO()
    rc = run_demo(make_settings, DemoOptions(count=150, rate=50.0, show=2, timeout_s=120.0), out)
    text = out.getvalue()
    assert rc == 0, text
    assert made[0].fetch_max_wait_ms == EMBEDDED_FETCH_WAIT_MS == 10
    summary = json.loads(text[text.index("\n{", text.index("summary:")) :])
    start, steady = summary["start_up"], summary["steady"]
    assert summary["enriched"] == summary["expected"] == start["backlog_records"] + 150
    assert start["worker_ready_s"] > 0 and start["backlog_records"] > 0, "the stream flowed while the worker started"
    assert steady["records"] >= 50, summary
    assert steady["records"] + summary["catching_up_records"] + start["backlog_records"] == summary["enriched"]
    # the start-up is in the backlog's latency, not in the steady state's: a steady record at 50 msg/s waits for a
    # batch (max_wait 10 ms), the tiny model and a 10 ms fetch, far less than the worker took to start
    assert start["backlog_latency"]["p99_ms"] > 1000 * start["worker_ready_s"] * 0.5
    assert steady["latency"]["p99_ms"] < 1000 * start["worker_ready_s"], summary
    assert steady["latency"]["p50_ms"] < 500, summary
    assert "steady state:" in text and "start-up: worker ready after" in text
