"""The Grafana dashboard (``deploy/grafana/sentiment-worker.json``): its panels and the metric names its queries use."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sentiment-worker.json"

# Grouping/matching clauses name labels, not metrics: `sum by (topic) (...)`, `on (instance)`.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
# A metric name is an identifier followed by a selector `{`, a range `[` or the `)` closing a function call.
_NAME = re.compile(r"(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=[{\[)])")


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # collapsed rows hold their panels


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every target."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel["title"], target["expr"]


def metric_names(expr: str) -> set[str]:
    """Series names used in ``expr`` (histograms as ``x_bucket``/``x_sum``/``x_count``, as they are served)."""
    bare = _STRINGS.sub('""', _LABEL_LISTS.sub(" ", expr))
    return set(_NAME.findall(bare))


def dashboard_metric_names(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """{series name: titles of the panels that use it}."""
    names: dict[str, set[str]] = {}
    for title, expr in exprs(dashboard):
        for name in metric_names(expr):
            names.setdefault(name, set()).add(title)
    return names
