"""The demo's summary keeps start-up apart from the steady state (devtools/demo_summary.py; no broker)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from devtools.demo import EMBEDDED_FETCH_WAIT_MS, demo_overrides
from devtools.demo_summary import LivePrinter, percentiles, summary_lines

pytestmark = pytest.mark.unit


def _output(produced: float, received: float, label: str = "POSITIVE") -> SimpleNamespace:
    record = SimpleNamespace(timestamp=int(produced * 1000))
    return SimpleNamespace(item=SimpleNamespace(record=record, received=received), label=label, value=b"{}")


def test_backlog_catching_up_and_steady_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    printer = LivePrinter(show=0, expected=None, out=io.StringIO())
    clock = {"now": 0.0}
    monkeypatch.setattr("devtools.demo_summary.time.time", lambda: clock["now"])
    started, ready = 1_000.0, 1_004.0  # the worker took 4 s to start
    # 40 records produced during start-up (0.1 s apart), all out between 4.2 and 5.0 s after the start: drained
    for i in range(40):
        clock["now"] = ready + 0.2 + i * 0.02
        printer(_output(started + i * 0.1, received=ready + 0.1))
    drained = clock["now"]
    # 5 records produced after ready but before the backlog drained (catching up), then 100 steady ones at 20 ms
    for i in range(5):
        clock["now"] = drained + 0.01 * (i + 1)
        printer(_output(ready + 0.5 + i * 0.01, received=clock["now"] - 0.005))
    for i in range(100):
        produced = drained + 0.1 + i * 0.01
        clock["now"] = produced + 0.02
        printer(_output(produced, received=produced + 0.01))
    assert not printer.done.is_set(), "nothing to expect before the backlog is known"
    printer.expect(145)
    assert printer.done.is_set()
    summary = printer.summary(started=started, ready=ready, wall_s=7.0)
    start, steady = summary["start_up"], summary["steady"]
    assert start["worker_ready_s"] == 4.0 and start["backlog_records"] == 40
    assert start["backlog_drained_s_after_ready"] == pytest.approx(0.98, abs=0.01)
    assert start["backlog_latency"]["p99_ms"] > 4_000  # start-up counted there ...
    assert summary["catching_up_records"] == 5
    assert steady["records"] == 100
    assert steady["latency"] == {"p50_ms": 20.0, "p99_ms": 20.0}  # ... and not here
    assert steady["in_worker_latency"] == {"p50_ms": 10.0, "p99_ms": 10.0}
    assert steady["msgs_per_s"] == pytest.approx(100.0, rel=0.01)
    text = "\n".join(summary_lines(summary))
    assert "worker ready after 4.0 s" in text and "40 records produced meanwhile" in text
    assert "steady state: 100 records" in text and "p99 20.0 ms" in text


def test_a_worker_that_never_got_ready_has_no_steady_state() -> None:
    printer = LivePrinter(show=0, expected=3, out=io.StringIO())
    summary = printer.summary(started=0.0, ready=None, wall_s=1.0)
    assert summary["start_up"]["worker_ready_s"] is None and summary["steady"]["records"] == 0
    assert "no record was produced after the start-up backlog drained" in "\n".join(summary_lines(summary))
    assert percentiles([]) == {"p50_ms": None, "p99_ms": None}


def test_the_demo_uses_a_fetch_wait_suited_to_the_embedded_broker() -> None:
    assert demo_overrides("127.0.0.1:1")["fetch_max_wait_ms"] == EMBEDDED_FETCH_WAIT_MS == 10


def test_the_broker_commands_examples_use_that_fetch_wait() -> None:
    from devtools.commands import examples

    text = examples("127.0.0.1:9")
    assert "SENTIMENT_BOOTSTRAP_SERVERS=127.0.0.1:9 SENTIMENT_FETCH_MAX_WAIT_MS=10 " in text
    assert all(line.startswith("#") for line in text.splitlines()), "comments: a script reading stderr skips them"
