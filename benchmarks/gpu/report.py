"""``report.md`` of the GPU check, rendered from its ``results.json`` content (no figure is typed in by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADINGS = (
    "Machine",
    "Sections",
    "Models",
    "Model only",
    "TF32",
    "GPU switches",
    "fp16 vs fp32",
    "End to end",
    "Latency at half load",
    "Targets",
)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join("" if row.get(c) is None else str(row.get(c)) for c in columns) + " |")
    return lines


def _status(results: dict[str, Any], name: str) -> str:
    info = results.get("sections", {}).get(name)
    if info is None:
        return "not run"
    return info["status"] + (f" — {info.get('error', '')}" if info["status"] == "error" else "")


def render(results: dict[str, Any]) -> str:
    env = results.get("environment") or {}
    lines = [f"# GPU check ({results.get('mode', '?')})", ""]
    lines += ["## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()] or ["(environment not recorded)"]
    lines += ["", "## Sections", ""]
    lines += _table(
        [
            {"section": n, **{k: v for k, v in i.items() if k in ("status", "seconds", "error")}}
            for n, i in results.get("sections", {}).items()
        ],
        ["section", "status", "seconds", "error"],
    )
    built = results.get("models") or {}
    lines += ["", "## Models", "", f"Status: {_status(results, 'models')}", ""]
    if built:
        lines += [
            f"- shape: {built.get('shape')}: {built.get('export')}",
            f"- base fp32: {built.get('base-fp32')}; base fp16: {built.get('base-fp16')}",
            f"- starter (fp16 validation): {built.get('starter')}",
        ]
    lines += ["", "## Model only", "", f"Status: {_status(results, 'model_only')}", ""]
    lines += [
        "seq/s per call of `batch` pre-tokenised texts through the worker's runtime (defaults for the device: on "
        "CUDA shape buckets + IO binding); GPU utilisation = nvidia-smi samples during the cell.",
        "",
    ]
    lines += _table(
        results.get("model_only") or [],
        ["precision", "dataset", "batch", "seq_per_s", "ms_per_call", "padding_share", "gpu_util_mean", "skipped",
         "error"],
    )  # fmt: skip
    lines += ["", "## TF32", "", f"Status: {_status(results, 'tf32')}", ""]
    tf = results.get("tf32") or {}
    if tf.get("rows"):
        lines += [
            f"fp32 ran as TF32 in the worker's sessions: **{'yes' if tf.get('fp32_ran_as_tf32') else 'no'}** "
            f"(their `use_tf32` = {tf.get('worker_session_use_tf32')}, compute capability "
            f"{tf.get('compute_capability')}). The same batch of {tf.get('batch')} with `use_tf32` 1 and 0:",
            "",
            *_table([{"setting": k, **v} for k, v in tf["rows"].items()],
                    ["setting", "use_tf32", "seq_per_s", "max_abs_dlogit_vs_cpu_fp32", "gpu_util_mean", "error"]),
        ]  # fmt: skip
    elif tf:
        lines.append(str(tf.get("why", tf)))
    lines += ["", "## GPU switches", "", f"Status: {_status(results, 'variants')}", ""]
    lines += _table(
        results.get("variants") or [],
        ["variant", "batch", "seq_per_s", "ms_per_call", "cuda_graph_active", "gpu_util_mean", "error"],
    )
    lines += ["", "## fp16 vs fp32", "", f"Status: {_status(results, 'fp16_validation')}", ""]
    validation = results.get("fp16_validation") or {}
    lines += _table(
        [{"model": k, **v} for k, v in validation.items()],
        [
            "model",
            "n",
            "label_agreement",
            "disagreements",
            "max_abs_dprob",
            "mean_abs_dprob",
            "mean_abs_dprob_bound",
            "passed",
            "reference",
            "candidate",
            "texts",
            "skipped",
        ],
    )
    lines += ["", "## End to end", "", f"Status: {_status(results, 'end_to_end')}", ""]
    e2e = results.get("end_to_end") or []
    lines += _table(
        e2e,
        [
            "processes",
            "launch",
            "msg_per_s",
            "producers_msg_per_s",
            "committed",
            "records",
            "seconds_to_ready",
            "gpu_util_mean",
            "exit_codes",
            "skipped",
            "error",
        ],
    )
    lines += ["", "## Latency at half load", "", f"Status: {_status(results, 'latency')}", ""]
    lat = results.get("latency") or {}
    lines += [
        "Records offered at half the best end-to-end rate with its process count; latency = the output's timestamp "
        "(the worker's producer) − the input's `sent_at`; `worker_*`: the worker's own `sentiment_meta.latency_ms`.",
        "",
        *_table([lat] if lat else [], ["processes", "offered_msg_per_s", "records", "received", "p50_ms", "p99_ms",
                                       "max_ms", "worker_p50_ms", "worker_p99_ms", "exit_codes"]),
    ]  # fmt: skip
    lines += ["", "## Targets", "", f"Status: {_status(results, 'targets')}", ""]
    lines += _table(
        [{"name": k, **v} for k, v in (results.get("targets") or {}).items()], ["name", "target", "value", "met"]
    )
    lines += ["", f"Whole run: {results.get('seconds')} s.", ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], path: Path) -> None:
    path.write_text(render(results), encoding="utf-8")
