"""The per-format cost run (benchmarks/ceiling_formats*.py): variant settings, medians over rounds, the report."""

from __future__ import annotations

import pytest

from benchmarks import ceiling, ceiling_formats, ceiling_formats_run

pytestmark = pytest.mark.unit


def _round(json_cpu: float, ce_cpu: float, avro_cpu: float) -> dict:
    variants = {
        "worker": {"msgs_per_s": 1000.0, "cpu_us_per_msg": json_cpu, "cores": 0.4},
        "worker_cloudevents": {"msgs_per_s": 800.0, "cpu_us_per_msg": ce_cpu, "cores": 0.4},
        "worker_avro": {"msgs_per_s": 900.0, "cpu_us_per_msg": avro_cpu, "cores": 0.5},
    }
    return {"variants": variants, "ratios": ceiling.ratios(variants), "decode_us_per_record": {"json": json_cpu / 10}}


def test_format_variants_are_in_the_ceiling_and_get_their_settings() -> None:
    assert (
        set(ceiling_formats.FORMAT_VARIANTS)
        <= set(ceiling.DEFAULT_VARIANTS)
        <= set(ceiling.VARIANTS)
        | {
            "processes1",
            "processes2",
        }
    )
    assert ceiling_formats.settings_for("worker_cloudevents", None) == {"input_format": "cloudevents"}
    avro = ceiling_formats.settings_for("worker_avro", "http://127.0.0.1:1")
    assert avro["output_format"] == "schema-registry" and avro["schema_registry_url"] == "http://127.0.0.1:1"
    with pytest.raises(ValueError):
        ceiling_formats.settings_for("worker", None)


def test_ratios_to_json_are_per_round_and_summarised_by_their_median() -> None:
    rounds = [_round(100.0, 130.0, 110.0), _round(200.0, 300.0, 200.0), _round(100.0, 120.0, 100.0)]
    assert rounds[0]["ratios"]["worker_cloudevents_over_worker_cpu_per_msg"] == 1.3
    summary = ceiling_formats_run.summary(rounds)
    assert summary["ratios"]["worker_cloudevents_over_worker_cpu_per_msg"] == 1.3  # median of 1.3, 1.5, 1.2
    assert summary["ratios"]["worker_avro_over_worker_cpu_per_msg"] == 1.0  # median of 1.1, 1.0, 1.0
    assert summary["variants"]["worker"]["cpu_us_per_msg"] == 100.0
    assert summary["decode_us_per_record"] == {"json": 10.0}
    text = ceiling_formats_run.report({"started": "t", "records": 10, "rounds": rounds, "summary": summary})
    assert "worker_cloudevents_over_worker_cpu_per_msg **1.30×**" in text and "round 3:" in text
