"""Cells and tables of the benchmark report's markdown (``benchmarks.report`` and its sections)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return text + suffix
    return f"{value}{suffix}"


def pct(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def x(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}×"


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def label(results: dict[str, Any], key: str) -> str:
    return (results.get("models") or {}).get(key, {}).get("label", key)
