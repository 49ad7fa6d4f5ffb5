"""``report.md`` of the GPU check, rendered from its ``results.json`` content (no figure is typed in by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HEADINGS = (
    "Machine",
    "Sections",
    "Models",
    "Model only",
    "GPU switches",
    "fp16 vs fp32",
    "Naive consumer",
    "End to end",
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
            f"- shape: {built.get('shape')} ({built.get('config')}), random weights",
            f"- tokenizer: {built.get('tokenizer')}",
            f"- fp32 export: {built.get('fp32')}",
            f"- fp16 conversion: {built.get('fp16')}",
        ]
    lines += ["", "## Model only", "", f"Status: {_status(results, 'model_only')}", ""]
    lines += [
        "seq/s per call of `batch` pre-tokenised texts through the worker's runtime (defaults for the device: on "
        "CUDA shape buckets + IO binding); GPU utilisation = nvidia-smi samples during the cell.",
        "",
    ]
    lines += _table(
        results.get("model_only") or [],
        ["precision", "dataset", "batch", "seq_per_s", "ms_per_call", "padding_share", "gpu_util_mean", "skipped"],
    )
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
            "passed",
            "reference",
            "candidate",
            "texts",
            "skipped",
        ],
    )
    lines += ["", "## Naive consumer", "", f"Status: {_status(results, 'naive')}", ""]
    naive = results.get("naive") or {}
    lines += [
        "transformers `pipeline()` (PyTorch fp32), one message at a time from the broker: poll → json → classify "
        "→ produce.",
        "",
        *_table([naive] if naive else [], ["msg_per_s", "processed", "backlog", "seconds", "device", "gpu_util_mean"]),
    ]
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
        ],
    )
    lines += ["", "## Targets", "", f"Status: {_status(results, 'targets')}", ""]
    lines += _table(
        [{"name": k, **v} for k, v in (results.get("targets") or {}).items()], ["name", "target", "value", "met"]
    )
    lines += ["", f"Whole run: {results.get('seconds')} s.", ""]
    return "\n".join(lines)


def write_report(results: dict[str, Any], path: Path) -> None:
    path.write_text(render(results), encoding="utf-8")
