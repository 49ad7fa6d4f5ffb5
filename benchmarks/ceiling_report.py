"""The report's "Pipeline ceiling" section (``results["pipeline_ceiling"]``, from :mod:`benchmarks.ceiling`)."""

from __future__ import annotations

from typing import Any

WHAT = {
    "worker": "`sentiment-worker run`, one process (the worker's defaults)",
    "worker_pool": "the same with `threads` = all cores (ONNX Runtime's intra-op pool)",
    "loop": "single-threaded loop, same stack and speed-ups (poll → orjson → `encode_batch_fast` → ONNX, 1 thread → "
    "softmax → orjson → send, 256 KiB batches)",
    "loop_plain": "the same loop with stdlib `json` and 16 KiB producer batches",
    "passthrough": "kafka-python consume + produce only (256 KiB batches)",
    "passthrough_json": "… + orjson decode / encode",
    "tokenizer": "fast tokenizer alone (`encode_batch_fast`, 64 a call, one thread)",
    "processes1": "`run --processes 1` (subprocess, outputs counted outside)",
    "processes2": "`run --processes 2` (supervisor + 2 workers)",
    "worker_cloudevents": "`worker` on the same records as CloudEvents (binary mode, `ce_*` headers)",
    "worker_avro": "`worker` on the same records as Avro (Confluent wire format, stand-in registry), Avro out",
    "worker_traceparent": "`worker` on the same records with a W3C `traceparent` each, tracing off (child written)",
    "worker_otel": "… with OpenTelemetry spans on (one per model batch, a link per record, OTLP/HTTP to a stand-in)",
}


def _f(value: Any) -> str:
    return "—" if value is None else f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"


def markdown(results: dict[str, Any]) -> list[str]:
    section = results.get("pipeline_ceiling") or {}
    if not section:
        return ["(not run in this mode)"]
    variants = section.get("variants", {})
    lines = [
        f"Model: {(section.get('model') or {}).get('label', 'near-free model')}. It costs little, so this "
        f"measures the pipeline: {section.get('records'):,} tweet-like JSON records over {section.get('partitions')} "
        "partitions, preloaded once; each variant reads them all (its own group and output topic) in its own "
        "process, one after the other. Steady window: from 20% of the records to the last; CPU is the process's "
        "own (all threads), cores = CPU ÷ wall time.",
        "",
        "| variant | what | msg/s | CPU µs/msg | cores |",
        "|---|---|---|---|---|",
    ]
    for name, r in variants.items():
        if "error" in r and "msgs_per_s" not in r and "cpu_us_per_msg" not in r:
            lines.append(f"| {name} | {WHAT.get(name, '')} | failed: {str(r['error'])[:120]} | | |")
            continue
        lines.append(
            f"| {name} | {WHAT.get(name, '')} | {_f(r.get('msgs_per_s'))} | {_f(r.get('cpu_us_per_msg'))} "
            f"| {_f(r.get('cores'))} |"
        )
    ratios = section.get("ratios", {})
    lines += ["", "Ratios (same run, same records):", ""]
    for key, value in ratios.items():
        lines.append(f"- {key.replace('_', ' ')}: **{value:.2f}×**")
    decode = section.get("decode_us_per_record") or {}
    if decode:
        parts = ", ".join(f"{name.replace('_', ' ')} {us:.1f}" for name, us in decode.items())
        lines += ["", f"Decode stage alone, CPU µs per record (best of 5 over 4,096 records, no Kafka): {parts}."]
    null = section.get("null_tracer") or {}
    if null:
        sink = section.get("otlp_sink") or {}
        lines += [
            "",
            f"Tracing off: the no-op tracer's call per model batch alone, {null['ns_per_batch']:.1f} ns "
            f"({null['ns_per_msg']:.2f} ns per message at {null['batch_size']} a batch; best of 5)."
            + (f" `worker_otel` exported {sink.get('requests', 0):,} OTLP requests." if sink else ""),
        ]
    worker = variants.get("worker", {})
    by_thread = worker.get("threads_cpu_us_per_msg") or {}
    if by_thread:
        parts = ", ".join(f"{name} {us:.1f}" for name, us in by_thread.items())
        lines += [
            "",
            f"Worker CPU µs per message by thread (`native`: ONNX Runtime's and the tokenizer's pools): {parts}.",
        ]
    targets = section.get("targets", {})
    if worker.get("msgs_per_s"):
        ok_rate = worker["msgs_per_s"] >= targets.get("msgs_per_s", 0)
        ok_cpu = worker["cpu_us_per_msg"] <= targets.get("cpu_us_per_msg", float("inf"))
        loop = variants.get("loop", {}).get("msgs_per_s")
        over = float(targets.get("over_loop", 1.0))
        beats = loop is not None and worker["msgs_per_s"] >= over * loop
        hold_for = targets.get("hold_for", "the near-free model")
        lines += [
            "",
            f"Targets, one process with the worker's defaults, for {hold_for}: "
            f"≥ {targets.get('msgs_per_s'):,} msg/s: **{'met' if ok_rate else 'not met'}**; "
            f"≤ {targets.get('cpu_us_per_msg')} µs CPU per message: **{'met' if ok_cpu else 'not met'}**; "
            f"≥ {over:.1f} × the single-threaded loop with the same speed-ups: **{'met' if beats else 'not met'}**. "
            "A real model keeps ONNX Runtime's thread pool and is bound by the model: these targets don't apply "
            "to it (its target is end to end against model-only).",
        ]
        one = variants.get("worker_pool", {})
        if one.get("msgs_per_s"):
            ok1 = one["msgs_per_s"] >= targets.get("msgs_per_s", 0)
            cpu1 = one["cpu_us_per_msg"] <= targets.get("cpu_us_per_msg", float("inf"))
            lines.append(
                f"With `threads` = all cores: ≥ {targets.get('msgs_per_s'):,} msg/s **{'met' if ok1 else 'not met'}**, "
                f"≤ {targets.get('cpu_us_per_msg')} µs **{'met' if cpu1 else 'not met'}**."
            )
    if variants.get("processes2", {}).get("msgs_per_s") and (section.get("cpus") or 0) <= 2:
        lines += [
            "",
            f"On {section.get('cpus')} cores shared with the broker and the benchmark's own consumer, two processes "
            "can't double the rate: the speed-up is capped by the cores, not by the worker.",
        ]
    return lines
