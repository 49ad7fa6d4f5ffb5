"""The HTTP benchmark's ratios and report section, from a results dict (no server)."""

from __future__ import annotations

import pytest

from benchmarks.http_bench import markdown, ratios

pytestmark = pytest.mark.unit


def _level(c: int, rps: float) -> dict:
    return {"concurrency": c, "requests": 10, "requests_per_s": rps, "p50_ms": 1.0, "p99_ms": 2.0, "errors": {}}


def test_ratios_and_markdown_side_by_side() -> None:
    out = {
        "precision": "fp32",
        "concurrency": [1, 16],
        "seconds_per_level": 1.0,
        "model_only": {"1": {"texts_per_s": 200.0, "ms_per_call_p50": 5.0}, "16": {"texts_per_s": 800.0}},
        "alone": {"ready_s": 1.0, "levels": {"1": _level(1, 100.0), "16": _level(16, 400.0)}},
        "with_stream": {"levels": {"1": _level(1, 50.0), "16": {**_level(16, 300.0), "errors": {"429": 2}}}},
    }
    out["ratios"] = ratios(out)
    assert out["ratios"] == {
        "1": {"http_over_model_only": 0.5, "with_stream_over_alone": 0.5},
        "16": {"http_over_model_only": 0.5, "with_stream_over_alone": 0.75},
    }
    text = "\n".join(markdown({"http": {"tiny": out}}))
    assert "| 16 | 800.0 | — | 400.0 |" in text and "0.75" in text
    assert "with_stream c=16" in text
    assert markdown({}) == ["(not run in this mode)"]
    assert "failed: boom" in "\n".join(markdown({"http": {"tiny": {"error": "boom"}}}))
