"""The report's PNG plots (matplotlib, the ``dev`` extra): throughput vs batch, latency CDF, lag, padding waste.

Without matplotlib :func:`make_plots` writes nothing and adds a note saying so; a plot that fails is logged and
skipped, never losing the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.observability import get_logger

log = get_logger(__name__)


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
