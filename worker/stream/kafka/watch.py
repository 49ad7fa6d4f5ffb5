"""Broker outage detection and consumer lag, checked from the poll loop about once a second.

An outage (the group coordinator unknown) is reported to the health state (``/readyz``), logged when it starts
and then at most once per ``log_interval_s``, and logged with its duration when it ends. While the broker is
reachable the lag of every owned partition goes to the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from worker.observability import get_logger
from worker.stream.common.ports import HealthReporter, PipelineMetrics

log = get_logger(__name__)

CHECK_EVERY_S = 1.0


class Probe(Protocol):
    """What is checked (the source's consumer)."""

    def broker_reachable(self) -> bool: ...

    def lag(self) -> dict[tuple[str, int], int]: ...


class BrokerWatch:
    def __init__(
        self,
        health: HealthReporter,
        metrics: PipelineMetrics,
        *,
        log_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.health = health
        self.metrics = metrics
        self.log_interval_s = log_interval_s
        self._clock = clock
        self._next = 0.0
        self._unreachable_since: float | None = None
        self._last_outage_log = 0.0
        self.lags: dict[tuple[str, int], int] = {}

    @property
    def unreachable(self) -> bool:
        """The last check found the broker unreachable."""
        return self._unreachable_since is not None

    def total_lag(self) -> int | None:
        return sum(self.lags.values()) if self.lags else None

    def tick(self, probe: Probe) -> None:
        """:meth:`check` if ``CHECK_EVERY_S`` passed since the last check."""
        now = self._clock()
        if now >= self._next:
            self._next = now + CHECK_EVERY_S
            self.check(probe)

    def check(self, probe: Probe) -> None:
        reachable = probe.broker_reachable()
        self.health.set_broker_reachable(reachable)
        if not reachable:
            self._outage()
            return
        if self._unreachable_since is not None:
            log.info("broker_reachable", outage_s=round(self._clock() - self._unreachable_since, 1))
            self._unreachable_since = None
            self._last_outage_log = 0.0
        try:
            self.lags = probe.lag()
        except Exception as exc:
            log.debug("lag_unavailable", error=repr(exc))
            return
        self.metrics.set_lag(self.lags)

    def _outage(self) -> None:
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
        if now - self._last_outage_log >= self.log_interval_s:
            self._last_outage_log = now
            log.warning("broker_unreachable", seconds=round(now - self._unreachable_since, 1))
