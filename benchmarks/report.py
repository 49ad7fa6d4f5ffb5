"""The report: ``results.json`` (everything), ``report.md`` (tables, ratios first) and PNG plots.

Plots need matplotlib (the ``dev`` extra); without it the report says so and skips them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)

SECTIONS = (
    "## Summary",
    "## Targets",
    "## Machine",
    "## Matrix-multiply ceiling",
    "## Model-only grid",
    "## End-to-end",
    "## Baselines",
    "## GPU",
    "## Method and noise",
    "## Plots",
)
QUICK_NOTE = " (quick smoke run: tiny sizes, the numbers mean nothing)"
PLOTS = ("throughput_vs_batch.png", "latency_cdf.png", "lag_over_time.png", "padding_waste.png")


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
def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        return text + suffix
    return f"{value}{suffix}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _x(value: Any) -> str:
    return "—" if value is None else f"{value:.2f}×"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _label(results: dict[str, Any], key: str) -> str:
    return (results.get("models") or {}).get(key, {}).get("label", key)


def markdown(results: dict[str, Any]) -> str:
    config = results.get("config", {})
    summary = results.get("summary", {})
    per_model = summary.get("per_model", {})
    lines: list[str] = [f"# sentiment-stream benchmark — {results.get('machine', {}).get('date', '')}", ""]
    lines.append(
        f"Mode `{config.get('mode')}`{QUICK_NOTE if config.get('quick') else ''}; "
        f"total {_fmt(results.get('timings_s', {}).get('total'))} s. Models:"
    )
    for key, info in (results.get("models") or {}).items():
        lines.append(f"- **{key}**: {info['label']} — {info.get('note', '')}")
    lines.append("")

    # ---- summary (ratios first) ----
    lines.append("## Summary")
    lines.append("")
    lines.append("Ratios first (same run, same machine, same messages); absolute rates after.")
    lines.append("")
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
                f"({_fmt(e.get('sgemm_ceiling_gflops'))} GFLOP/s, the better median of before/after), "
                f"{_pct(e.get('best_fp32_share_of_fma_peak'))} of the 196 GFLOP/s FMA peak (FINDINGS)."
            )
    lines.append("")

    # ---- targets ----
    lines.append("## Targets")
    lines.append("")
    lines.append(
        "Goals from issue 6, stated for the DistilBERT-base shape (`base`); shown for every model, reported, "
        "never asserted."
    )
    lines.append("")
    target_rows = [
        [t["model"], t["goal"], _fmt(t["measured"]), {True: "met", False: "**not met**"}.get(t["met"], "—")]
        for t in summary.get("targets", [])
    ]
    lines += _table(["model", "goal", "measured", ""], target_rows) if target_rows else ["(no data)"]
    lines.append("")

    # ---- machine ----
    m = results.get("machine", {})
    lines.append("## Machine")
    lines.append("")
    lines.append(
        f"- CPU: {m.get('cpu_model')} ({m.get('cpu_family_model')}), {m.get('logical_cpus')} logical CPUs "
        f"({m.get('usable_cpus')} usable){', virtual machine' if m.get('hypervisor') else ''}"
    )
    lines.append(f"- ISA: {', '.join(m.get('isa_flags', []))}; absent: {', '.join(m.get('missing_isa_flags', []))}")
    lines.append(
        f"- Memory {m.get('memory_gib')} GiB; {m.get('os')}; Python {m.get('python')}; numpy BLAS {m.get('numpy_blas')}"
    )
    lines.append(
        f"- GPUs: {', '.join(m.get('gpus') or []) or 'none'}; ORT providers listed: "
        f"{', '.join(m.get('ort_available_providers', []))} (the list is not GPU detection)"
    )
    versions = m.get("versions", {})
    lines.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lb, la = results.get("load_before", {}), results.get("load_after", {})
    lines.append(
        f"- Load before: load1 {lb.get('load1')}, other processes {_pct(lb.get('others_cpu_share'))} of the CPUs; "
        f"after: load1 {la.get('load1')}, {_pct(la.get('others_cpu_share'))}"
    )
    lines.append("")

    # ---- sgemm ----
    lines.append("## Matrix-multiply ceiling")
    lines.append("")
    for name in ("sgemm_before", "sgemm_after"):
        s = results.get(name)
        if s:
            lines.append(
                f"- {name.replace('_', ' ')} the grid: numpy float32 {s['n']}×{s['n']} matmul, {s['threads']} threads, "
                f"median {s['gflops_median']} GFLOP/s, best {s['gflops_best']} (of {s['repeats']}: {s['gflops_all']})"
            )
    lines.append(
        f"- FMA peak measured earlier on this machine class (FINDINGS §3): {m.get('findings_fma_peak_gflops')} GFLOP/s"
    )
    lines.append("")

    # ---- grid ----
    lines.append("## Model-only grid")
    lines.append("")
    grid = results.get("model_only") or {}
    if not grid:
        lines.append("(not run in this mode)")
    if grid:
        lines.append(
            "ONNX Runtime alone on pre-tokenised inputs. `pad`: consecutive messages padded to the batch's longest; "
            "`bucket`: windows of min(4×batch, N) messages sorted by length, then batched; `none`: batch 1. "
            "seq/s = median of repeats; ms/batch p50/p99 over all batches of all repeats; "
            "padding waste = padded/real − 1; GFLOP/s executed counts padding (what the CPU did), "
            "useful counts real tokens only (INT8: fp32-equivalent FLOPs)."
        )
    lines.append("")
    for key, g in grid.items():
        lines.append(f"### {_label(results, key)}")
        lines.append("")
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
            for c in sorted(
                g.get("cells", []), key=lambda c: (c["dataset"], c["precision"], c["batch_size"], c["padding"])
            )
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

    # ---- end to end ----
    e2e = results.get("end_to_end") or {}
    lines.append("## End-to-end")
    lines.append("")
    if not e2e:
        lines.append("(not run in this mode)")
    else:
        st = e2e.get("settings", {})
        lines.append(
            f"Broker: {e2e.get('broker')}. Worker settings: max_batch_size {st.get('max_batch_size')}, max_wait_ms "
            f"{st.get('max_wait_ms')}, inference_batch_size {st.get('inference_batch_size')}, max_length "
            f"{st.get('max_length')}, threads {st.get('threads')}, {st.get('partitions')} partitions, session timeout "
            f"{st.get('session_timeout_ms')} ms. Messages: {e2e.get('texts_source')}. The worker runs in its own "
            "process; the load generator, output consumer and lag sampler run in the benchmark process on the same "
            "cores. Saturation = a burst drained by the worker, throughput = outputs after the first arriving group ÷ "
            "time from the first to the last output; "
            "latency = output arrival − `sent_at`."
        )
        lines.append("")
        rows = []
        for name, run in (e2e.get("runs") or {}).items():
            for phase_name, p in run.get("phases", {}).items():
                lat = p.get("latency") or {}
                w = p.get("worker") or {}
                rows.append(
                    [
                        name,
                        phase_name,
                        _fmt(p.get("offered_msgs_per_s")),
                        _fmt(p.get("msgs_per_s") or p.get("achieved_msgs_per_s")),
                        f"{p.get('received')}/{p.get('sent')}",
                        _fmt(lat.get("p50_ms")),
                        _fmt(lat.get("p95_ms")),
                        _fmt(lat.get("p99_ms")),
                        _fmt(w.get("avg_batch_size")),
                        _fmt(w.get("ms_per_batch_mean")),
                        _pct(w.get("padding_waste")),
                        "/".join(_fmt(c.get(k)) for k in ("sut", "harness", "broker"))
                        if (c := p.get("cpu_cores"))
                        else "—",
                    ]
                )
        lines += _table(
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
            rows,
        )
        lines.append("")
        lines.append(
            "CPU cores = CPU seconds ÷ wall seconds of the phase: the system under test (our worker or the "
            "naive consumer), the harness (load generator, output consumer, lag sampler: this process) and the broker."
        )
        lines.append("")
        for name, run in (e2e.get("runs") or {}).items():
            lags = [s["lag"] for s in run.get("lag_timeline", []) if s["lag"] >= 0]
            lines.append(
                f"- {name}: ready after {_fmt(run.get('startup_s'))} s (process start, model load, group join); "
                f"max committed lag {max(lags) if lags else '—'}; duplicates seen {run.get('duplicates')}; "
                f"exit {run.get('final', {}).get('rc', run.get('final', {}).get('exitcode'))}"
            )
        lines.append("")

    # ---- baselines ----
    lines.append("## Baselines")
    lines.append("")
    if e2e:
        lines.append(
            '(a) naive consumer: kafka-python consumer, `transformers.pipeline("text-classification")` on the '
            "same model's PyTorch weights, one message per call, result produced (run through Kafka like ours); "
            "(b) PyTorch eager batched like the worker (micro-batches sorted by length, chunks padded to their "
            "longest), no Kafka; (c) model-only ONNX: our runtime, tokenise + infer in the worker's batching, no Kafka."
        )
        lines.append("")
        rows = []
        for key, ceilings in (e2e.get("model_only") or {}).items():
            for precision, c in ceilings.items():
                rows.append(
                    [
                        key,
                        f"(c) model-only ONNX {precision}",
                        _fmt(c["msgs_per_s"]),
                        c["messages"],
                        f"{c['msgs_per_s_all']}",
                        f"full batch p50 {_fmt(c['ms_per_full_batch_p50'])} ms",
                    ]
                )
        for key, t in (e2e.get("torch_eager") or {}).items():
            rows.append(
                [
                    key,
                    "(b) PyTorch eager batched",
                    _fmt(t["msgs_per_s"]),
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
                        _fmt(p.get("msgs_per_s")),
                        p.get("sent"),
                        "—",
                        f"{p.get('received')}/{p.get('sent')} received",
                    ]
                )
        lines += _table(["model", "baseline", "msg/s", "messages", "repeats", "note"], rows)
    else:
        lines.append("(not run in this mode)")
    lines.append("")

    # ---- GPU ----
    lines.append("## GPU")
    lines.append("")
    if m.get("gpus"):
        lines.append(f"GPU present: {', '.join(m['gpus'])}; see the provider columns above.")
    else:
        lines.append(
            "No GPU was available to this run: the CUDA rows (fp32 and fp16, model-only and end-to-end) are empty. "
            "No GPU number is estimated or copied from elsewhere."
        )
        lines += [
            "",
            *_table(
                ["device", "precision", "model-only seq/s", "end-to-end msg/s"],
                [["CUDA", "fp32", "—", "—"], ["CUDA", "fp16", "—", "—"]],
            ),
        ]
    lines.append("")

    # ---- method / noise ----
    lines.append("## Method and noise")
    lines.append("")
    lines.append(
        "Everything in this report was measured in this one run, side by side: grid cells interleave (every repeat "
        "runs every cell once, in a shuffled order), ratios compare numbers taken minutes apart on the same machine. "
        "On a shared 2-core machine other jobs change absolute numbers a lot (FINDINGS §3: a 45 ms call took 428 ms "
        "under load); compare ratios, and re-run when the load lines above show other processes using the CPUs."
    )
    for note in results.get("notes", []):
        lines.append(f"- {note}")
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

    # ---- plots ----
    lines.append("## Plots")
    lines.append("")
    plots = results.get("plots") or []
    if plots:
        for name in plots:
            lines.append(f"![{name}]({name})")
    else:
        lines.append("(no plots: matplotlib is not installed — `pip install -e .[dev]`)")
    lines.append("")
    return "\n".join(line for line in lines if line is not None)


# ---- plots ----------------------------------------------------------------------------------------------------
def make_plots(results: dict[str, Any], output: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        results.setdefault("notes", []).append("matplotlib is not installed: no PNG plots (pip install -e .[dev]).")
        return []
    written: list[str] = []
    for name, fn in (
        ("throughput_vs_batch.png", _plot_throughput),
        ("latency_cdf.png", _plot_latency),
        ("lag_over_time.png", _plot_lag),
        ("padding_waste.png", _plot_padding),
    ):
        try:
            fig = fn(results, plt)
        except Exception as exc:  # a plot must never lose the report
            log.warning("bench.plot_failed", plot=name, error=repr(exc))
            continue
        if fig is None:
            continue
        fig.savefig(output / name, dpi=90, bbox_inches="tight")
        plt.close(fig)
        written.append(name)
    return written


def _plot_throughput(results: dict[str, Any], plt: Any) -> Any:
    grid = results.get("model_only") or {}
    if not grid:
        return None
    models = list(grid)
    dataset_names = list(dict.fromkeys(c["dataset"] for g in grid.values() for c in g.get("cells", [])))
    fig, axes = plt.subplots(
        len(models), len(dataset_names), figsize=(4.2 * len(dataset_names), 3.4 * len(models)), squeeze=False
    )
    for r, key in enumerate(models):
        cells = grid[key].get("cells", [])
        for c, dataset in enumerate(dataset_names):
            ax = axes[r][c]
            series: dict[tuple[str, str], list[tuple[int, float]]] = {}
            for cell in cells:
                if cell["dataset"] != dataset:
                    continue
                paddings = ("pad", "bucket") if cell["padding"] == "none" else (cell["padding"],)
                for padding in paddings:
                    series.setdefault((cell["precision"], padding), []).append((cell["batch_size"], cell["seq_per_s"]))
            for (precision, padding), points in sorted(series.items()):
                points.sort()
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    linestyle="-" if padding == "bucket" else "--",
                    label=f"{precision} {padding}",
                )
            ax.set_xscale("log", base=2)
            ax.set_title(f"{key} — {dataset}", fontsize=9)
            ax.set_xlabel("batch size")
            ax.set_ylabel("sequences/s")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Model-only throughput vs batch size (ONNX Runtime, CPU)")
    fig.tight_layout()
    return fig


def _plot_latency(results: dict[str, Any], plt: Any) -> Any:
    runs = [
        r
        for r in ((results.get("end_to_end") or {}).get("runs") or {}).values()
        if any(k.startswith("load-") for k in r.get("phases", {}))
    ]
    if not runs:
        return None
    models = list(dict.fromkeys(r["model"] for r in runs))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for run in (r for r in runs if r["model"] == model):
            what_if = bool(run.get("worker_settings"))
            for phase, p in run["phases"].items():
                cdf = p.get("latency_cdf") or []
                if not cdf:
                    continue
                label = f"{run.get('precision')} {phase} ({p.get('offered_msgs_per_s')} msg/s)"
                if what_if:
                    label += f", fetch wait {run['worker_settings'].get('fetch_max_wait_ms')} ms"
                ax.plot([x for x, _ in cdf], [y for _, y in cdf], linestyle=":" if what_if else "-", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("end-to-end latency (ms)")
        ax.set_ylabel("fraction of messages")
        ax.set_title(f"ours — {model}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("End-to-end latency CDF at fixed offered loads")
    fig.tight_layout()
    return fig


def _plot_lag(results: dict[str, Any], plt: Any) -> Any:
    runs = (results.get("end_to_end") or {}).get("runs") or {}
    if not runs:
        return None
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.3 * len(runs)), squeeze=False)
    for ax, (name, run) in zip(axes[:, 0], runs.items(), strict=True):
        samples = run.get("lag_timeline", [])
        ax.plot([s["t"] for s in samples], [max(0, s["lag"]) for s in samples], label="committed lag")
        ax.plot([s["t"] for s in samples], [s["backlog"] for s in samples], linestyle=":", label="produced − received")
        last = None
        for s in samples:
            if s["phase"] != last:
                ax.axvline(s["t"], color="grey", alpha=0.3)
                ax.text(s["t"], ax.get_ylim()[1] * 0.9 if ax.get_ylim()[1] else 1, s["phase"], fontsize=6)
                last = s["phase"]
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("messages")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1][0].set_xlabel("seconds since the run started")
    fig.suptitle("Consumer lag over time")
    fig.tight_layout()
    return fig


def _plot_padding(results: dict[str, Any], plt: Any) -> Any:
    grid = results.get("model_only") or {}
    if not grid:
        return None
    key = next(iter(grid))
    cells = [c for c in grid[key].get("cells", []) if c["precision"] == "fp32" and c["padding"] != "none"]
    if not cells:
        return None
    labels = sorted({(c["dataset"], c["batch_size"]) for c in cells})
    waste = {(c["dataset"], c["batch_size"], c["padding"]): c["padding_waste"] or 0 for c in cells}
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels)), 3.4))
    xs = range(len(labels))
    ax.bar(
        [x - 0.2 for x in xs], [waste.get((d, b, "pad"), 0) * 100 for d, b in labels], width=0.4, label="pad to longest"
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [waste.get((d, b, "bucket"), 0) * 100 for d, b in labels],
        width=0.4,
        label="length-bucketed",
    )
    ax.axhline(10, color="red", linestyle=":", label="10% goal")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{d}\nbatch {b}" for d, b in labels], fontsize=8)
    ax.set_ylabel("padding waste (%)")
    ax.set_title(f"Padding waste (padded/real − 1), tokenizer of {key}", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
