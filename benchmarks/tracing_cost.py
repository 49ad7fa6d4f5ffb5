"""What trace context costs the worker, measured side by side in rounds: the ceiling section's tracing variants.

``python -m benchmarks.tracing_cost --output benchmarks/results/<run>`` runs :func:`benchmarks.ceiling.pipeline_ceiling`
with the variants ``worker`` (no trace context, tracing off), ``worker_traceparent`` (the same records with a W3C
traceparent each, tracing off) and ``worker_otel`` (the same with OpenTelemetry spans exported over OTLP/HTTP to a
stand-in collector) on the near-free model, ``--rounds`` times (the order rotated each round, so a drift of the
machine's load hits every variant), and writes ``results.json`` (every round) and ``report.md`` (the medians and
the per-round ratios). The share of the CPUs other processes took is sampled throughout (a busy machine inflates
CPU per message). It is the same code ``bench --mode ceiling`` runs once among its other variants.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import machine

VARIANTS = ("worker", "worker_traceparent", "worker_otel")
PAIRS = {
    "traceparent_over_worker": ("worker_traceparent", "worker"),
    "otel_over_traceparent": ("worker_otel", "worker_traceparent"),
    "otel_over_worker": ("worker_otel", "worker"),
}


def run(cache_dir: Path, *, rounds: int, total: int, partitions: int = 4) -> dict[str, Any]:
    from benchmarks import datasets as ds
    from benchmarks.ceiling import pipeline_ceiling
    from benchmarks.models import prepare_model
    from devtools.broker import EmbeddedBroker

    model = prepare_model("free", ["fp32"], cache_dir)
    texts = ds.generated("tweet", 4_096, seed=7).texts
    monitor = machine.CpuMonitor(interval=5.0).start()
    results: dict[str, Any] = {"machine": machine.describe(), "model": model.describe(), "records": total}
    found: list[dict[str, Any]] = []
    started = time.monotonic()
    broker = EmbeddedBroker().start()
    try:
        for r in range(rounds):
            order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
            monitor.section = f"round {r + 1}"
            section = pipeline_ceiling(
                [broker.bootstrap], model.exports["fp32"], texts, total=total, partitions=partitions, variants=order
            )
            found.append({"order": list(order), **section})
    finally:
        broker.stop()
        monitor.stop()
    results["rounds"] = found
    results["seconds"] = round(time.monotonic() - started, 1)
    results["others_cpu_share"] = monitor.by_section()
    results["summary"] = summary(found)
    return results


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds: msg/s and CPU µs per message per variant, and each ratio of CPU per message."""
    out: dict[str, Any] = {"variants": {}, "cpu_ratios": {}, "rate_ratios": {}}
    for name in VARIANTS:
        cells = [r["variants"].get(name, {}) for r in rounds]
        cpu = [c["cpu_us_per_msg"] for c in cells if c.get("cpu_us_per_msg")]
        rate = [c["msgs_per_s"] for c in cells if c.get("msgs_per_s")]
        if cpu and rate:
            out["variants"][name] = {
                "cpu_us_per_msg": round(statistics.median(cpu), 1),
                "msgs_per_s": round(statistics.median(rate), 1),
                "cpu_us_per_msg_rounds": cpu,
                "msgs_per_s_rounds": rate,
            }
    for key, (a, b) in PAIRS.items():
        per_round = [
            round(r["variants"][a]["cpu_us_per_msg"] / r["variants"][b]["cpu_us_per_msg"], 3)
            for r in rounds
            if r["variants"].get(a, {}).get("cpu_us_per_msg") and r["variants"].get(b, {}).get("cpu_us_per_msg")
        ]
        rates = [
            round(r["variants"][a]["msgs_per_s"] / r["variants"][b]["msgs_per_s"], 3)
            for r in rounds
            if r["variants"].get(a, {}).get("msgs_per_s") and r["variants"].get(b, {}).get("msgs_per_s")
        ]
        if per_round:
            out["cpu_ratios"][key] = {"median": round(statistics.median(per_round), 3), "rounds": per_round}
        if rates:
            out["rate_ratios"][key] = {"median": round(statistics.median(rates), 3), "rounds": rates}
    nulls = [r["null_tracer"] for r in rounds if r.get("null_tracer")]
    if nulls:
        out["null_tracer"] = min(nulls, key=lambda n: n["ns_per_batch"])
    worker = out["variants"].get("worker")
    if worker and nulls:
        share = out["null_tracer"]["ns_per_msg"] / 1000.0 / worker["cpu_us_per_msg"]
        out["null_tracer_share_of_worker_cpu"] = float(f"{share:.2g}")
    return out


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    m = results.get("machine", {})
    lines = [
        "# Trace context: what it costs the worker",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('logical_cpus', '?')} logical CPUs. Model: "
        f"{results['model'].get('label', 'near-free model')}. {results['records']:,} tweet-like JSON records over 4 "
        f"partitions per variant, {len(results['rounds'])} rounds (order rotated each round), "
        f"{results['seconds']:.0f} s in all. Produced by `python -m benchmarks.tracing_cost` "
        "(the ceiling section's variants, `benchmarks/ceiling_tracing.py`).",
        "",
        "| variant | what | CPU µs/msg (median) | per round | msg/s (median) | per round |",
        "|---|---|---|---|---|---|",
    ]
    what = {
        "worker": "no trace context, tracing off",
        "worker_traceparent": "a `traceparent` on every record (a `tracestate` on every other), tracing off",
        "worker_otel": "the same, OpenTelemetry spans on (OTLP/HTTP to a stand-in collector)",
    }
    for name, v in s["variants"].items():
        cpu_rounds = ", ".join(f"{x:.1f}" for x in v["cpu_us_per_msg_rounds"])
        rate_rounds = ", ".join(f"{x:,.0f}" for x in v["msgs_per_s_rounds"])
        lines.append(
            f"| {name} | {what[name]} | {v['cpu_us_per_msg']:.1f} | {cpu_rounds} | {v['msgs_per_s']:,.0f} "
            f"| {rate_rounds} |"
        )
    lines += ["", "CPU per message, ratios (each round's variants side by side; median and each round):", ""]
    for key, r in s["cpu_ratios"].items():
        lines.append(
            f"- {key.replace('_', ' ')}: **{r['median']:.3f}×** ({', '.join(f'{x:.3f}' for x in r['rounds'])})"
        )
    null = s.get("null_tracer")
    if null:
        lines += [
            "",
            f"Tracing off, the inference stage's one call per model batch to the no-op tracer, alone: "
            f"{null['ns_per_batch']:.1f} ns a call, {null['ns_per_msg']:.2f} ns per message at {null['batch_size']} "
            f"a batch, {s.get('null_tracer_share_of_worker_cpu', 0):.2g} of the worker's CPU per message.",
        ]
        if "propagate_ns_per_traced_record" in null:
            lines.append(
                f"The encoder's `propagate`, alone: {null['propagate_ns_per_traced_record'] / 1000:.1f} µs per record "
                f"with a traceparent (parse, new span id, header written), {null['propagate_ns_per_plain_record']:.0f} "
                "ns per record with headers but none (the scan); a record without headers skips it."
            )
    sinks = [r.get("otlp_sink") for r in results["rounds"] if r.get("otlp_sink")]
    if sinks:
        lines.append(
            "The stand-in collector received "
            + ", ".join(f"{x['requests']} requests ({x['bytes']:,} bytes)" for x in sinks)
            + " from `worker_otel` (per round)."
        )
    noise = results.get("others_cpu_share", {})
    if noise:
        parts = ", ".join(f"{k}: mean {v['mean']:.0%}, max {v['max']:.0%}" for k, v in noise.items())
        lines += ["", f"Share of the CPUs other processes took during the run: {parts}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/sentiment-worker").expanduser())
    args = parser.parse_args(argv)
    from worker.observability import configure_logging

    configure_logging("console", "info")
    results = run(args.cache_dir, rounds=args.rounds, total=args.records)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.output / "report.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
