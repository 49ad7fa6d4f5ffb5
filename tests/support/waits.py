"""Outcome waits: poll until something holds, fail with what was awaited (never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_committed(
    bootstrap: str, group: str, topic: str, expected: dict[int, int], timeout: float = 30, what: str = "commit"
) -> dict[int, int]:
    """Wait until ``group`` has committed at least ``expected`` ({partition: next offset}) on ``topic``."""
    from tests.support.kafka_utils import committed_offsets

    last: dict[str, Any] = {}

    def reached() -> dict[int, int] | None:
        last["offsets"] = committed = committed_offsets(bootstrap, group, topic)
        return committed if all(committed.get(p, -1) >= o for p, o in expected.items()) else None

    try:
        return wait_for(reached, timeout, 0.1, f"{what} of {expected} on {topic}")
    except AssertionError as exc:
        raise AssertionError(f"{exc} (last seen {last.get('offsets')})") from None
