"""Prometheus text scraped from a live /metrics endpoint, and the samples in it."""

from __future__ import annotations

import re
from collections.abc import Iterator

from tests.support.http import get

Labels = tuple[tuple[str, str], ...]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int, timeout: float = 5.0) -> str:
    """The text of ``GET /metrics`` (fails unless it answers 200)."""
    status, text = get(port, "/metrics", timeout=timeout)
    assert status == 200, f"/metrics on port {port} answered {status}"
    return text


def _parsed(text: str) -> Iterator[tuple[str, Labels, float]]:
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        yield name, tuple(sorted(_LABEL.findall(labels or ""))), float(value)


def samples(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of the exposition: {(series name, sorted label pairs): value}."""
    return {(name, labels): value for name, labels, value in _parsed(text)}


def values(text: str, name: str, **labels: str) -> list[float]:
    """The values of series ``name`` whose labels include ``labels``, one per sample line."""
    wanted = set(labels.items())
    return [value for n, got, value in _parsed(text) if n == name and wanted <= set(got)]


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of series ``name``'s samples whose labels include ``labels`` (0 when there are none)."""
    return sum(values(text, name, **labels))
