"""The benchmark report's "End-to-end" and "Baselines" sections (markdown lines from ``results.end_to_end``)."""

from __future__ import annotations

from typing import Any

from benchmarks.report_cells import fmt, pct, table


def end_to_end(results: dict[str, Any]) -> list[str]:
    e2e = results.get("end_to_end") or {}
    if not e2e:
        return ["(not run in this mode)"]
    st = e2e.get("settings", {})
    lines = [
        f"Broker: {e2e.get('broker')}. Worker settings: max_batch_size {st.get('max_batch_size')}, max_wait_ms "
        f"{st.get('max_wait_ms')}, inference_batch_size {st.get('inference_batch_size')}, max_length "
        f"{st.get('max_length')}, threads {st.get('threads')}, {st.get('partitions')} partitions, session timeout "
        f"{st.get('session_timeout_ms')} ms. Messages: {e2e.get('texts_source')}. The worker runs in its own "
        "process; the load generator, output consumer and lag sampler run in the benchmark process on the same "
        "cores. Saturation = a burst drained by the worker, throughput = outputs after the first arriving group ÷ "
        "time from the first to the last output; "
        "latency = output arrival − `sent_at`.",
        "",
    ]
    runs = e2e.get("runs") or {}
    lines += table(
        [
            "run",
            "phase",
            "offered msg/s",
            "msg/s",
            "received/sent",
            "latency p50 ms",
            "p95",
            "p99",
            "avg batch",
            "ms/batch",
            "padding waste",
            "CPU cores: worker/harness/broker",
        ],
        [
            _phase_row(name, phase_name, p)
            for name, run in runs.items()
            for phase_name, p in run.get("phases", {}).items()
        ],
    )
    lines += [
        "",
        "CPU cores = CPU seconds ÷ wall seconds of the phase: the system under test (our worker or the "
        "naive consumer), the harness (load generator, output consumer, lag sampler: this process) and the broker.",
        "",
    ]
    for name, run in runs.items():
        lags = [s["lag"] for s in run.get("lag_timeline", []) if s["lag"] >= 0]
        lines.append(
            f"- {name}: ready after {fmt(run.get('startup_s'))} s (process start, model load, group join); "
            f"max committed lag {max(lags) if lags else '—'}; duplicates seen {run.get('duplicates')}; "
            f"exit {run.get('final', {}).get('rc', run.get('final', {}).get('exitcode'))}"
        )
    lines.append("")
    return lines


def _phase_row(name: str, phase_name: str, p: dict[str, Any]) -> list[Any]:
    lat = p.get("latency") or {}
    w = p.get("worker") or {}
    return [
        name,
        phase_name,
        fmt(p.get("offered_msgs_per_s")),
        fmt(p.get("msgs_per_s") or p.get("achieved_msgs_per_s")),
        f"{p.get('received')}/{p.get('sent')}",
        fmt(lat.get("p50_ms")),
        fmt(lat.get("p95_ms")),
        fmt(lat.get("p99_ms")),
        fmt(w.get("avg_batch_size")),
        fmt(w.get("ms_per_batch_mean")),
        pct(w.get("padding_waste")),
        "/".join(fmt(c.get(k)) for k in ("sut", "harness", "broker")) if (c := p.get("cpu_cores")) else "—",
    ]


def baselines(results: dict[str, Any]) -> list[str]:
    e2e = results.get("end_to_end") or {}
    if not e2e:
        return ["(not run in this mode)", ""]
    rows = []
    for key, ceilings in (e2e.get("model_only") or {}).items():
        for precision, c in ceilings.items():
            rows.append(
                [
                    key,
                    f"(c) model-only ONNX {precision}",
                    fmt(c["msgs_per_s"]),
                    c["messages"],
                    f"{c['msgs_per_s_all']}",
                    f"full batch p50 {fmt(c['ms_per_full_batch_p50'])} ms",
                ]
            )
    for key, t in (e2e.get("torch_eager") or {}).items():
        rows.append(
            [
                key,
                "(b) PyTorch eager batched",
                fmt(t["msgs_per_s"]),
                t["messages"],
                f"{t['msgs_per_s_all']}",
                f"{t['threads']} threads",
            ]
        )
    for run in (e2e.get("runs") or {}).values():
        if run.get("kind") == "naive":
            p = run.get("phases", {}).get("saturation", {})
            rows.append(
                [
                    run["model"],
                    "(a) naive consumer through Kafka",
                    fmt(p.get("msgs_per_s")),
                    p.get("sent"),
                    "—",
                    f"{p.get('received')}/{p.get('sent')} received",
                ]
            )
    return [
        '(a) naive consumer: kafka-python consumer, `transformers.pipeline("text-classification")` on the '
        "same model's PyTorch weights, one message per call, result produced (run through Kafka like ours); "
        "(b) PyTorch eager batched like the worker (micro-batches sorted by length, chunks padded to their "
        "longest), no Kafka; (c) model-only ONNX: our runtime, tokenise + infer in the worker's batching, no Kafka.",
        "",
        *table(["model", "baseline", "msg/s", "messages", "repeats", "note"], rows),
        "",
    ]
