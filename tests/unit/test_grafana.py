"""deploy/grafana/sentiment-worker.json: valid JSON, every panel queries the templated Prometheus data source, and
every metric name it uses is one the worker registers (tests/integration/stream/test_grafana_metrics.py checks
they are really served by a running worker)."""

from __future__ import annotations

import re

import pytest
from prometheus_client import CollectorRegistry

from tests.support.grafana import DASHBOARD, dashboard_metric_names, exprs, load_dashboard, metric_names, panels
from worker.metrics import WorkerMetrics
from worker.rollout.metrics import RolloutMetrics, ShadowMetrics
from worker.serve.http_metrics import HttpMetrics

pytestmark = pytest.mark.unit

DS = {"type": "prometheus", "uid": "${datasource}"}
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "info": ("_info",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def registered_series() -> set[str]:
    """Every series name the worker's registry can serve (labelled families included, before any sample)."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    RolloutMetrics(registry)
    ShadowMetrics(registry)
    HttpMetrics(registry)
    return {f.name + suffix for f in registry.collect() for suffix in SUFFIXES.get(f.type, ("",))}


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = load_dashboard()
    assert DASHBOARD.read_text().endswith("\n")
    assert dashboard["uid"] and dashboard["title"]
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query" and variables[name]["datasource"] == DS
        assert variables[name]["multi"] and variables[name]["includeAll"]
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_panel_queries_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel.get("datasource") == DS, title
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr") for t in targets), f"{title}: every target needs an expr"
        assert all(t.get("datasource", DS) == DS for t in targets), title
        refs = [t["refId"] for t in targets]
        assert len(refs) == len(set(refs)), title
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, title


def test_every_query_filters_by_job_and_instance() -> None:
    for title, expr in exprs(load_dashboard()):
        selectors = re.findall(r"\b(sentiment_\w+)\{([^}]*)\}", expr)
        assert selectors, f"{title}: {expr}"
        assert metric_names(expr) == set(re.findall(r"\bsentiment_\w+", expr)), f"{title}: the parser misses a name"
        for name, matchers in selectors:
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, f"{title}: {name}"


def test_every_metric_name_is_registered_by_the_worker() -> None:
    names = dashboard_metric_names(load_dashboard())
    unknown = {n: t for n, t in names.items() if n not in registered_series()}
    assert not unknown, f"not registered by worker/metrics.py, worker/rollout/metrics.py or http_metrics.py: {unknown}"
    for required in (
        "sentiment_messages_consumed_total",
        "sentiment_messages_produced_total",
        "sentiment_dead_letters_total",
        "sentiment_batch_size_bucket",
        "sentiment_padding_ratio",
        "sentiment_inference_seconds_bucket",
        "sentiment_end_to_end_latency_seconds_bucket",
        "sentiment_consumer_lag",
        "sentiment_backlog_seconds",
        "sentiment_paused_partitions",
        "sentiment_model_info",
        "sentiment_model_swaps_total",
        "sentiment_model_swap_refusals_total",
        "sentiment_http_requests_total",
    ):
        assert required in names, required


def test_metric_name_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{job=~"$job", a="b)"}[$__rate_interval])))'
        " / sum(rate(y_total[5m])) + on (instance) group_left (model_id) z + sum(w)"
    )
    assert metric_names(expr) == {"x_bucket", "y_total", "w"}
