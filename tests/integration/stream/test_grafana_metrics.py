"""Every metric the Grafana dashboard (deploy/grafana/sentiment-worker.json) queries is served by a real worker.

A worker on the embedded broker with ``metrics_port`` (and, with the [http] extra, ``http_port`` and an admin key):
records flow (one broken JSON, so the dead-letter series exists), an HTTP ``/predict`` and a refused
``POST /admin/model`` (a corrupt export) give the HTTP and roll-out series their first samples; then ``/metrics``
must hold a sample of every series name the dashboard's queries use.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

from devtools.ports import free_port
from tests.support.grafana import dashboard_metric_names, load_dashboard
from tests.support.http import post
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.metrics import scrape
from tests.support.worker_thread import AppThread, worker_settings

pytestmark = pytest.mark.integration

HAS_HTTP = importlib.util.find_spec("fastapi") is not None and importlib.util.find_spec("uvicorn") is not None
SECRET = "grafana-admin-key-not-real"
# Series that only get a sample through the HTTP API (the [http] extra): a request, or a refused POST /admin/model.
NEEDS_HTTP = {
    "sentiment_http_requests_total": "a request answered by the HTTP API",
    "sentiment_http_request_seconds_bucket": "a request answered by the HTTP API",
    "sentiment_model_swap_refusals_total": "a refused swap (here through POST /admin/model)",
    "sentiment_model_reload_requests_total": "a reload request (here through POST /admin/model)",
}


def _served(text: str) -> set[str]:
    """Names of the series with at least one sample (not just # HELP / # TYPE)."""
    return {m.group(0) for line in text.splitlines() if (m := re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line))}


def test_every_dashboard_metric_is_served(broker, topic_name, tiny_onnx_dir: Path, tiny_corrupt_dir: Path) -> None:
    wanted = dashboard_metric_names(load_dashboard())
    assert set(NEEDS_HTTP) <= set(wanted), "NEEDS_HTTP names a metric the dashboard does not use"
    if not HAS_HTTP:
        wanted = {n: t for n, t in wanted.items() if n not in NEEDS_HTTP}
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    port = free_port()
    http_port = free_port()
    http = {"http_port": http_port, "http_host": "127.0.0.1", "http_api_key": SECRET} if HAS_HTTP else {}
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, metrics_port=port, **http)
    with AppThread(settings, tiny_onnx_dir) as app:
        app.wait_ready(port)

        items = [(None, json.dumps({"id": i, "text": f"good thing {i}"}).encode()) for i in range(50)]
        items.append((None, b"{broken json"))
        produce_values(bootstrap, topic_name, items)
        assert len(consume_all(bootstrap, f"{topic_name}.sentiment", 50, timeout_s=60)) == 50

        if HAS_HTTP:
            auth = {"Authorization": f"Bearer {SECRET}"}
            status, body = post(http_port, "/predict", {"inputs": "a fine day"}, auth)
            assert status == 200, body
            status, body = post(http_port, "/admin/model", {"model": str(tiny_corrupt_dir)}, auth)
            assert status == 409 and json.loads(body)["reason"] == "integrity", body

        missing: set[str] = set(wanted)
        text = ""
        deadline = time.monotonic() + 20  # consumer lag is sampled periodically
        while missing and time.monotonic() < deadline:
            text = scrape(port)
            missing = set(wanted) - _served(text)
            time.sleep(0.3)
        assert not missing, {n: sorted(wanted[n]) for n in missing}
        assert re.search(r'^sentiment_model_info\{.*provider="CPUExecutionProvider"', text, re.M)
    assert app.rc == 0
