"""Per-format cost run: the ceiling's ``worker`` variants on JSON, CloudEvents and Avro, in rounds, side by side.

``python -m benchmarks.ceiling_formats_run --output DIR [--records N] [--rounds R]`` writes ``DIR/results.json``
and ``DIR/report.md``. Each round preloads the same records in the three formats (``benchmarks.ceiling``,
``benchmarks.ceiling_formats``) and runs ``worker``, ``worker_cloudevents`` and ``worker_avro`` one after the other,
the order rotated from round to round (a busy machine then weighs on each format alike); the report gives each
round's ratios to JSON and their median, and the decode stage's cost per record and format.
"""

from __future__ import annotations

import argparse
import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

VARIANTS = ("worker", "worker_cloudevents", "worker_avro")


def run(records: int, rounds: int, partitions: int = 4) -> dict[str, Any]:
    from benchmarks import datasets as ds
    from benchmarks.ceiling import pipeline_ceiling
    from benchmarks.machine import describe, load_snapshot
    from benchmarks.models import prepare_model
    from devtools.broker import EmbeddedBroker
    from worker.settings import default_cache_dir

    model = prepare_model("free", ["fp32"], default_cache_dir())
    texts = ds.generated("tweet", 4_096, seed=7).texts
    found: list[dict[str, Any]] = []
    load_before = load_snapshot()
    with EmbeddedBroker() as broker:
        for r in range(rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            found.append(
                pipeline_ceiling(
                    [broker.bootstrap],
                    model.exports["fp32"],
                    texts,
                    total=records,
                    partitions=partitions,
                    variants=order,
                )
            )
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "records": records,
        "rounds": found,
        "model": model.describe(),
        "machine": describe(),
        "loadavg_before": load_before,
        "loadavg_after": load_snapshot(),
        "summary": summary(found),
    }


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the rounds of each variant's figures, of the ratios to JSON and of the decode costs."""
    out: dict[str, Any] = {"variants": {}, "ratios": {}, "decode_us_per_record": {}}
    for name in VARIANTS:
        for key in ("msgs_per_s", "cpu_us_per_msg", "cores"):
            values = [r["variants"][name][key] for r in rounds if key in r["variants"].get(name, {})]
            if values:
                out["variants"].setdefault(name, {})[key] = round(statistics.median(values), 1)
    for key in {k for r in rounds for k in r.get("ratios", {}) if k.startswith("worker_") and "_over_worker" in k}:
        out["ratios"][key] = round(statistics.median(r["ratios"][key] for r in rounds if key in r["ratios"]), 2)
    for key in {k for r in rounds for k in r.get("decode_us_per_record", {})}:
        values = [r["decode_us_per_record"][key] for r in rounds if key in r.get("decode_us_per_record", {})]
        out["decode_us_per_record"][key] = round(statistics.median(values), 2)
    return out


def report(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"# Per-format cost — {result['started']}",
        "",
        f"`python -m benchmarks.ceiling_formats_run --records {result['records']} --rounds {len(result['rounds'])}`: "
        "`sentiment-worker run` (one process, its defaults) with the near-free model on the same records as JSON, as "
        "CloudEvents (binary mode) and as Avro (Confluent wire format through the stand-in registry, Avro out), one "
        "after the other, the order rotated each round. Steady window from 20% of the records; CPU is the worker "
        "process's own. Model: " + str((result.get("model") or {}).get("label", "near-free")) + ".",
        "",
        "| variant | msg/s (median) | CPU µs/msg (median) | cores |",
        "|---|---|---|---|",
    ]
    for name, v in s["variants"].items():
        lines.append(
            f"| {name} | {v.get('msgs_per_s', 0):,.1f} | {v.get('cpu_us_per_msg', 0):,.1f} | {v.get('cores')} |"
        )
    lines += ["", "Ratios to JSON, per round (msg/s; CPU per message):", ""]
    for i, r in enumerate(result["rounds"], 1):
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.get("ratios", {}).items()) if "_over_worker" in k)
        lines.append(f"- round {i}: {parts}")
    lines += ["", "Medians: " + ", ".join(f"{k} **{v:.2f}×**" for k, v in sorted(s["ratios"].items())) + "."]
    decode = s["decode_us_per_record"]
    lines += [
        "",
        "Decode stage alone (no Kafka, no model; best of 5 over 4,096 records, median of the rounds), CPU µs per "
        "record: " + ", ".join(f"{k} {v:.2f}" for k, v in decode.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.records, args.rounds)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (args.output / "report.md").write_text(report(result))
    print(report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
