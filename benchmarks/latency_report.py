"""The latency section's files: ``latency.json`` (everything measured), ``latency.md`` (tables, targets met or not)
and ``latency.png`` (p50/p99 against load; matplotlib, the ``dev`` extra — without it, no plot and a note)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)

RERUN = "sentiment-worker bench --mode latency --no-progress --output benchmarks/results/$(date +%F)-cpu-2core-latency"


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}{suffix}" if abs(value) >= 10 else f"{value:.2f}{suffix}"
    return f"{value}{suffix}"


def _met(flag: bool | None) -> str:
    return "not measured" if flag is None else ("**met**" if flag else "**not met**")


def markdown(result: dict[str, Any], machine: dict[str, Any] | None = None) -> str:
    """The section as Markdown (a report of its own, or a part of the bench report)."""
    s = result.get("settings", {})
    mo = result.get("model_only", {})
    lines = ["## Latency against load", ""]
    if result.get("quick"):
        lines += ["`--quick`: a smoke run of a few seconds per load; its numbers mean nothing.", ""]
    if machine:
        lines.append(
            f"CPU: {machine.get('cpu_model')} ({machine.get('usable_cpus')} usable cores), {machine.get('date')}; "
            f"model `{result.get('model')}` on {mo.get('provider', '—')}, tweet-like records."
        )
    before, after = result.get("load_before", {}), result.get("load_after", {})
    lines += [
        f"Load average before/after: {before.get('load1')} / {after.get('load1')}; other processes' CPU share "
        f"before/after: {_fmt(before.get('others_cpu_share'))} / {_fmt(after.get('others_cpu_share'))} "
        "(0 = quiet; above ~0.1 the figures are disturbed); float32 2048² matrix multiply on 2 threads: "
        f"{_fmt(result.get('sgemm', {}).get('gflops_median'))} GFLOP/s, median of 3.",
        "",
        f"Worker settings: max_batch_size {s.get('max_batch_size')}, inference_batch_size "
        f"{s.get('inference_batch_size')}, max_wait_ms {s.get('max_wait_ms')}, fetch_max_wait_ms "
        f"{s.get('fetch_max_wait_ms')} (Tansu holds every fetch that long), {s.get('partitions')} partitions, "
        f"threads {s.get('threads')}; broker: {result.get('broker', '—')}.",
        "",
        f"Model-only (tokenise + infer, batched like the worker, no Kafka): **{_fmt(mo.get('msgs_per_s'))} msg/s**; "
        f"one 8-record batch {_fmt(mo.get('batch8_ms'))} ms, one record {_fmt(mo.get('batch1_ms'))} ms.",
        "",
    ]
    sat = result.get("saturation", {})
    lines += [
        f"Saturation (a burst of {sat.get('sent')} records, steady part of the drain): "
        f"**{_fmt(sat.get('msgs_per_s'))} msg/s = {_fmt(sat.get('over_model_only'))} × model-only** "
        f"(mean batch {_fmt(sat.get('worker', {}).get('avg_batch_size'))}).",
        "",
        "| load | offered msg/s | received | end-to-end p50 / p99 ms | in-worker p50 / p99 ms | batches | "
        "mean batch | model ms/batch | worker cores | broker cores | others' CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    others = result.get("others_cpu", {})
    for p in result.get("loads", []):
        name = f"load-{round(p['fraction'] * 100)}"
        e2e, inw, w, cores = p.get("end_to_end", {}), p.get("in_worker", {}), p.get("worker", {}), p.get("cores", {})
        lines.append(
            f"| {round(p['fraction'] * 100)}% | {_fmt(p.get('offered_msgs_per_s'))} | {p.get('received')}"
            f"/{p.get('sent')} | {_fmt(e2e.get('p50_ms'))} / {_fmt(e2e.get('p99_ms'))} | "
            f"{_fmt(inw.get('p50_ms'))} / {_fmt(inw.get('p99_ms'))} | {w.get('batches', '—')} | "
            f"{_fmt(w.get('avg_batch_size'))} | {_fmt(w.get('ms_per_batch_mean'))} | {_fmt(cores.get('worker'))} | "
            f"{_fmt(cores.get('broker'))} | {_fmt(others.get(name, {}).get('mean'))} |"
        )
    lines += ["", "Targets (issue 21; reported, never asserted):", ""]
    for t in result.get("targets", []):
        bound = t.get("bound")
        formula = f" ({t['bound_ms_formula']})" if t.get("bound_ms_formula") else ""
        lines.append(
            f"- {t['target']}: bound {_fmt(bound)}{formula}, measured {_fmt(t.get('measured'))}: {_met(t['met'])}"
        )
    lines += [
        "",
        "End-to-end latency = the output record's timestamp (set by the worker's producer when it sends it) − the "
        "input record's timestamp (set by the client when it produced it); in-worker = `sentiment_meta.latency_ms` "
        "(from the poll that returned the record to its encoding). Every record of a load counts. The client "
        "(confluent-kafka) produces at a steady rate from the benchmark's process; each load lasts "
        f"{_fmt(result.get('load_seconds'))} s; loads are fractions of the model-only rate measured in the same run.",
        "",
        f"Rerun: `{RERUN}`",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> bool:
    """p50/p99 (end to end and in-worker) against load, with the 50%-load bounds; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    loads = result.get("loads", [])
    x = [round(p["fraction"] * 100) for p in loads]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in (("end_to_end", "end to end", "-"), ("in_worker", "in worker", "--")):
        for q, marker in (("p50_ms", "o"), ("p99_ms", "s")):
            ax.plot(x, [p.get(key, {}).get(q) for p in loads], style, marker=marker, label=f"{label} {q[:3]}")
    for t in result.get("targets", [])[:2]:
        if t.get("bound"):
            ax.axhline(t["bound"], color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(t["target"].split(" ")[1] + " bound at 50%", (x[0] if x else 0, t["bound"]), fontsize=7)
    ax.set_xlabel("offered load, % of the model-only rate")
    ax.set_ylabel("latency, ms")
    ax.set_yscale("log")
    mo = result.get("model_only", {}).get("msgs_per_s")
    ax.set_title(f"{result.get('model')}: latency against load (model-only {mo} msg/s)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return True


def write(result: dict[str, Any], output: Path, machine: dict[str, Any] | None = None) -> list[str]:
    """``latency.json``, ``latency.md`` and ``latency.png`` in ``output``; the names written."""
    output.mkdir(parents=True, exist_ok=True)
    written = ["latency.json", "latency.md"]
    (output / "latency.json").write_text(json.dumps({"machine": machine, **result}, indent=2, default=str) + "\n")
    try:
        if plot(result, output / "latency.png"):
            written.append("latency.png")
        else:
            result.setdefault("notes", []).append("matplotlib is not installed: no plot (pip install -e .[dev]).")
    except Exception as exc:  # a plot must never lose the numbers
        log.warning("bench.latency_plot_failed", error=repr(exc))
    (output / "latency.md").write_text("# Latency benchmark\n\n" + markdown(result, machine))
    return written
