"""Logs, metrics and the shutdown bound: how the worker reports and how long it may take to stop."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from worker.settings.base import Section


class Observability(Section):
    """Log format and level, summary interval, the metrics/health port, the shutdown drain bound."""

    title = "Observability and shutdown"

    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="'auto': pretty on a TTY, JSON otherwise."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    log_interval_s: float = Field(default=10.0, gt=0, description="Seconds between summary log lines.")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz (unset = off)."
    )
    shutdown_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Max seconds to drain in-flight work on stop or revoke (a stop then takes at most ~14 s more "
        "to commit, leave the group and close).",
    )
