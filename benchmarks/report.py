"""The report: ``results.json`` (everything), ``report.md`` (tables, ratios first) and PNG plots.

``report.md`` is one function per section (:data:`SECTIONS`, in order), each reading only ``results``: the same
``results.json`` renders the same report. Plots (:mod:`benchmarks.plots`) need matplotlib (the ``dev`` extra);
without it the report says so and skips them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.ceiling_report import markdown as ceiling_markdown
from benchmarks.device import markdown as device_markdown
from benchmarks.http_bench import markdown as http_markdown
from benchmarks.plots import make_plots
from benchmarks.report_cells import fmt as _fmt
from benchmarks.report_cells import label as _label
from benchmarks.report_cells import pct as _pct
from benchmarks.report_cells import table as _table
from benchmarks.report_cells import x as _x
from benchmarks.report_e2e import baselines as _baselines
from benchmarks.report_e2e import end_to_end as _end_to_end
from worker.observability import get_logger

log = get_logger(__name__)

QUICK_NOTE = " (quick smoke run: tiny sizes, the numbers mean nothing)"


def write(results: dict[str, Any], output: Path) -> dict[str, Path]:
    output.mkdir(parents=True, exist_ok=True)
    plots = make_plots(results, output)
    results["plots"] = sorted(plots)
    json_path = output / "results.json"
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    md_path = output / "report.md"
    md_path.write_text(markdown(results), encoding="utf-8")
    log.info("bench.report_written", markdown=str(md_path), json=str(json_path), plots=len(plots))
    return {"markdown": md_path, "json": json_path, **{name: output / name for name in plots}}


# ---- markdown -----------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any]) -> str:
    """The whole ``report.md``: the header, then each of :data:`SECTIONS` (its heading, then its body)."""
    lines = _header(results)
    for title, body in _BODIES:
        lines += [title, "", *body(results)]
    return "\n".join(line for line in lines if line is not None)


def _header(results: dict[str, Any]) -> list[str]:
    config = results.get("config", {})
    lines = [f"# sentiment-stream benchmark — {results.get('machine', {}).get('date', '')}", ""]
    lines.append(
        f"Mode `{config.get('mode')}`{QUICK_NOTE if config.get('quick') else ''}; "
        f"total {_fmt(results.get('timings_s', {}).get('total'))} s. Models:"
    )
    for key, info in (results.get("models") or {}).items():
        lines.append(f"- **{key}**: {info['label']} — {info.get('note', '')}")
    lines.append("")
    return lines


def _summary(results: dict[str, Any]) -> list[str]:
    """Ratios first, then absolute rates; the best grid cell against the sgemm ceiling measured in the run."""
    per_model = results.get("summary", {}).get("per_model", {})
    lines = ["Ratios first (same run, same machine, same messages); absolute rates after.", ""]
    rows = []
    for key, e in per_model.items():
        int8_grid = e.get("int8_over_fp32_grid") or {}
        int8_text = ", ".join(f"b{b}: {_x(v)}" for b, v in int8_grid.items()) or "—"
        rows.append(
            [
                key,
                _x(e.get("ours_over_naive")),
                _x(e.get("ours_int8_over_naive")),
                _x(e.get("ours_over_model_only")),
                _x(e.get("ours_over_torch_eager")),
                _x(e.get("int8_over_fp32_e2e")),
                int8_text,
                _fmt(e.get("e2e_msgs_per_s")),
                _fmt(e.get("e2e_int8_msgs_per_s")),
                _fmt(e.get("model_only_msgs_per_s")),
                _fmt(e.get("torch_eager_msgs_per_s")),
                _fmt(e.get("naive_msgs_per_s")),
            ]
        )
    lines += _table(
        [
            "model",
            "ours/naive",
            "ours INT8/naive",
            "ours/model-only",
            "ours/PyTorch eager",
            "INT8/fp32 e2e",
            "INT8/fp32 model-only (grid)",
            "ours fp32 msg/s",
            "ours INT8 msg/s",
            "model-only msg/s",
            "PyTorch eager msg/s",
            "naive msg/s",
        ],
        rows,
    )
    lines.append("")
    for key, e in per_model.items():
        if e.get("best_fp32_gflops") is not None:
            lines.append(
                f"- {key}: best fp32 grid cell {_fmt(e['best_fp32_gflops'])} GFLOP/s executed = "
                f"{_pct(e.get('best_fp32_share_of_sgemm'))} of the sgemm ceiling measured in this run "
                f"({_fmt(e.get('sgemm_ceiling_gflops'))} GFLOP/s, the better median of before/after)."
            )
    lines.append("")
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    lines = [
        "Goals from issue 6, stated for the DistilBERT-base shape (`base`); shown for every model, reported, "
        "never asserted.",
        "",
    ]
    target_rows = [
        [t["model"], t["goal"], _fmt(t["measured"]), {True: "met", False: "**not met**"}.get(t["met"], "—")]
        for t in results.get("summary", {}).get("targets", [])
    ]
    lines += _table(["model", "goal", "measured", ""], target_rows) if target_rows else ["(no data)"]
    lines.append("")
    return lines


def _machine(results: dict[str, Any]) -> list[str]:
    m = results.get("machine", {})
    versions = m.get("versions", {})
    lb, la = results.get("load_before", {}), results.get("load_after", {})
    return [
        f"- CPU: {m.get('cpu_model')} ({m.get('cpu_family_model')}), {m.get('logical_cpus')} logical CPUs "
        f"({m.get('usable_cpus')} usable){', virtual machine' if m.get('hypervisor') else ''}",
        f"- ISA: {', '.join(m.get('isa_flags', []))}; absent: {', '.join(m.get('missing_isa_flags', []))}",
        f"- Memory {m.get('memory_gib')} GiB; {m.get('os')}; Python {m.get('python')}; "
        f"numpy BLAS {m.get('numpy_blas')}",
        f"- GPUs: {', '.join(m.get('gpus') or []) or 'none'}; ORT providers listed: "
        f"{', '.join(m.get('ort_available_providers', []))} (the list is not GPU detection)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- Load before: load1 {lb.get('load1')}, other processes {_pct(lb.get('others_cpu_share'))} of the CPUs; "
        f"after: load1 {la.get('load1')}, {_pct(la.get('others_cpu_share'))}",
        "",
    ]


def _ceiling(results: dict[str, Any]) -> list[str]:
    """The sgemm runs of this run (before and after the grid): the only ceiling the report compares with."""
    lines = []
    for name in ("sgemm_before", "sgemm_after"):
        s = results.get(name)
        if s:
            lines.append(
                f"- {name.replace('_', ' ')} the grid: numpy float32 {s['n']}×{s['n']} matmul, {s['threads']} threads, "
                f"median {s['gflops_median']} GFLOP/s, best {s['gflops_best']} (of {s['repeats']}: {s['gflops_all']})"
            )
    if not lines:
        lines.append("(not run in this mode)")
    lines.append("")
    return lines


def _grid(results: dict[str, Any]) -> list[str]:
    grid = results.get("model_only") or {}
    if not grid:
        return ["(not run in this mode)", ""]
    lines = [
        "ONNX Runtime alone on pre-tokenised inputs. `pad`: consecutive messages padded to the batch's longest; "
        "`bucket`: windows of min(4×batch, N) messages sorted by length, then batched; `none`: batch 1. "
        "seq/s = median of repeats; ms/batch p50/p99 over all batches of all repeats; "
        "padding waste = padded/real − 1; GFLOP/s executed counts padding (what the CPU did), "
        "useful counts real tokens only (INT8: fp32-equivalent FLOPs).",
        "",
    ]
    for key, g in grid.items():
        lines += _grid_model(_label(results, key), g)
    return lines


def _grid_model(label: str, g: dict[str, Any]) -> list[str]:
    """One model's grid: its datasets' token statistics, then one row per cell."""
    lines = [f"### {label}", ""]
    if g.get("datasets"):
        lines += _table(
            ["dataset", "sequences", "tokens mean", "p50", "p90", "max", "truncated", "tokenizer texts/s"],
            [
                [
                    n,
                    d["sequences"],
                    d["tokens_mean"],
                    d["tokens_p50"],
                    d["tokens_p90"],
                    d["tokens_max"],
                    _pct(d["truncated_share"]),
                    _fmt(d["tokenizer_texts_per_s"]),
                ]
                for n, d in g["datasets"].items()
            ],
        )
        lines.append("")
    rows = [
        [
            c["dataset"],
            c["precision"],
            c["batch_size"],
            c["padding"],
            _fmt(c["seq_per_s"]),
            _fmt(c["ms_per_batch_p50"]),
            _fmt(c["ms_per_batch_p99"]),
            _pct(c["padding_waste"]),
            _fmt(c["gflops_executed"]),
            _fmt(c["gflops_useful"]),
        ]
        for c in sorted(g.get("cells", []), key=lambda c: (c["dataset"], c["precision"], c["batch_size"], c["padding"]))
    ]
    lines += _table(
        [
            "dataset",
            "precision",
            "batch",
            "padding",
            "seq/s",
            "ms/batch p50",
            "p99",
            "padding waste",
            "GFLOP/s executed",
            "GFLOP/s useful",
        ],
        rows,
    )
    lines.append("")
    return lines


def _gpu(results: dict[str, Any]) -> list[str]:
    gpus = results.get("machine", {}).get("gpus")
    if gpus:
        return [f"GPU present: {', '.join(gpus)}; see the provider columns above.", ""]
    return [
        "No GPU was available to this run: the CUDA rows (fp32 and fp16, model-only and end-to-end) are empty. "
        "No GPU number is estimated or copied from elsewhere.",
        "",
        *_table(
            ["device", "precision", "model-only seq/s", "end-to-end msg/s"],
            [["CUDA", "fp32", "—", "—"], ["CUDA", "fp16", "—", "—"]],
        ),
        "",
    ]


def _method(results: dict[str, Any]) -> list[str]:
    """How the run was made, its notes, section times, and the CPU other processes used during each section."""
    lines = [
        "Everything in this report was measured in this one run, side by side: grid cells interleave (every repeat "
        "runs every cell once, in a shuffled order), ratios compare numbers taken minutes apart on the same machine. "
        "Other jobs on the same cores change absolute numbers; this run measured how much of the CPUs they used "
        "(the load lines under Machine, and the per-section table below). Compare ratios, and re-run when those "
        "show other processes using the CPUs."
    ]
    lines += [f"- {note}" for note in results.get("notes", [])]
    timings = results.get("timings_s", {})
    lines.append("- Section times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    by_section = (results.get("others_cpu") or {}).get("by_section") or {}
    if by_section:
        lines += [
            "",
            "CPU used by processes outside this benchmark (share of all CPUs, sampled every few seconds; "
            "0% = nobody else ran; a section above ~10% is noisy, compare its numbers with care):",
            "",
        ]
        lines += _table(
            ["section", "others mean", "others max", "samples"],
            [[name, _pct(s["mean"]), _pct(s["max"]), s["samples"]] for name, s in by_section.items()],
        )
    lines.append("")
    return lines


def _plots(results: dict[str, Any]) -> list[str]:
    plots = results.get("plots") or []
    if not plots:
        return ["(no plots: matplotlib is not installed — `pip install -e .[dev]`)", ""]
    return [*(f"![{name}]({name})" for name in plots), ""]


_BODIES: tuple[tuple[str, Callable[[dict[str, Any]], list[str]]], ...] = (
    ("## Summary", _summary),
    ("## Targets", _targets),
    ("## Machine", _machine),
    ("## Matrix-multiply ceiling", _ceiling),
    ("## Pipeline ceiling", ceiling_markdown),
    ("## Simulated device", device_markdown),
    ("## Model-only grid", _grid),
    ("## End-to-end", _end_to_end),
    ("## Baselines", _baselines),
    ("## HTTP API", lambda results: http_markdown(results.get("end_to_end") or {})),
    ("## GPU", _gpu),
    ("## Method and noise", _method),
    ("## Plots", _plots),
)
SECTIONS = tuple(title for title, _body in _BODIES)
