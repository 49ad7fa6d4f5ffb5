"""The headline numbers of a run: ratios per model (ours/naive, ours/model-only, INT8/fp32, …) and the issue's
targets (goals, reported with the measured value, never asserted). Everything is computed from ``results``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.config import BenchConfig


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 2)


def _grid_cell(results: dict[str, Any], model: str, precision: str, dataset: str, b: int, padding: str) -> dict | None:
    for cell in (results.get("model_only") or {}).get(model, {}).get("cells", []):
        if (cell["precision"], cell["dataset"], cell["batch_size"], cell["padding"]) == (
            precision,
            dataset,
            b,
            padding,
        ):
            return cell
    return None


def summarize(results: dict[str, Any], config: BenchConfig) -> dict[str, Any]:
    """The headline ratios and the issue's targets (goals, reported, never asserted)."""
    summary: dict[str, Any] = {"per_model": {}}
    e2e = results.get("end_to_end") or {}
    grid = results.get("model_only") or {}
    model_keys = list(dict.fromkeys([*grid.keys(), *(e2e.get("model_only") or {}).keys()]))
    # the ceiling: the better of the two sgemm medians (before/after the grid); noise only lowers it
    medians = [(results.get(k) or {}).get("gflops_median") for k in ("sgemm_before", "sgemm_after")]
    ceiling = max((m for m in medians if m), default=None)
    summary["sgemm_ceiling_gflops"] = ceiling
    for key in model_keys:
        entry: dict[str, Any] = {"label": (results.get("models") or {}).get(key, {}).get("label", key)}
        if e2e:
            entry.update(_e2e_entry(e2e, key, config))
        if key in grid:
            entry.update(_grid_entry(results, key, config, ceiling))
        summary["per_model"][key] = entry
    summary["targets"] = _targets(summary["per_model"], config)
    return summary


def _e2e_entry(e2e: dict[str, Any], key: str, config: BenchConfig) -> dict[str, Any]:
    """One model's end-to-end rates and ratios, the p99 budget at 50% load, the what-if run."""
    runs = e2e.get("runs") or {}
    ours = runs.get(f"ours-{key}-fp32", {}).get("phases", {}).get("saturation", {})
    ours_rate = ours.get("msgs_per_s")
    ours_int8 = runs.get(f"ours-{key}-int8", {}).get("phases", {}).get("saturation", {})
    naive = runs.get(f"naive-{key}", {}).get("phases", {}).get("saturation", {})
    ceilings = (e2e.get("model_only") or {}).get(key, {})
    eager = (e2e.get("torch_eager") or {}).get(key, {})
    entry: dict[str, Any] = {}
    entry["e2e_msgs_per_s"] = ours_rate
    entry["e2e_int8_msgs_per_s"] = ours_int8.get("msgs_per_s")
    entry["naive_msgs_per_s"] = naive.get("msgs_per_s")
    entry["model_only_msgs_per_s"] = (ceilings.get("fp32") or {}).get("msgs_per_s")
    entry["torch_eager_msgs_per_s"] = eager.get("msgs_per_s")
    entry["ours_over_naive"] = _ratio(ours_rate, naive.get("msgs_per_s"))
    entry["ours_int8_over_naive"] = _ratio(ours_int8.get("msgs_per_s"), naive.get("msgs_per_s"))
    entry["ours_over_model_only"] = _ratio(ours_rate, entry["model_only_msgs_per_s"])
    entry["ours_over_torch_eager"] = _ratio(ours_rate, eager.get("msgs_per_s"))
    entry["int8_over_fp32_e2e"] = _ratio(ours_int8.get("msgs_per_s"), ours_rate)
    entry["int8_over_fp32_model_only_pipeline"] = _ratio(
        (ceilings.get("int8") or {}).get("msgs_per_s"), entry["model_only_msgs_per_s"]
    )
    load50 = runs.get(f"ours-{key}-fp32", {}).get("phases", {}).get("load-50")
    if load50:
        batch_ms = (load50.get("worker") or {}).get("ms_per_batch_mean")
        full_ms = (ceilings.get("fp32") or {}).get("ms_per_full_batch_p50")
        p99 = (load50.get("latency") or {}).get("p99_ms")
        entry["p99_at_50pct_ms"] = p99
        entry["p99_budget_ms"] = round(config.max_wait_ms + 2 * batch_ms, 1) if batch_ms else None
        entry["p99_budget_full_batch_ms"] = round(config.max_wait_ms + 2 * full_ms, 1) if full_ms else None
    for name, run in runs.items():
        if name.startswith(f"ours-{key}-fp32-fetchwait") and run.get("phases", {}).get("load-50"):
            what_if = run["phases"]["load-50"]
            entry["what_if"] = {
                "worker_settings": run.get("worker_settings"),
                "p99_at_50pct_ms": (what_if.get("latency") or {}).get("p99_ms"),
                "p50_at_50pct_ms": (what_if.get("latency") or {}).get("p50_ms"),
                "ms_per_batch_mean": (what_if.get("worker") or {}).get("ms_per_batch_mean"),
            }
    entry["e2e_padding_waste"] = (ours.get("worker") or {}).get("padding_waste")
    return entry


def _grid_entry(results: dict[str, Any], key: str, config: BenchConfig, ceiling: float | None) -> dict[str, Any]:
    """One model's grid ratios: INT8/fp32 per batch size, bucketing waste, best cell against the sgemm ceiling."""
    dataset = config.e2e_length if config.e2e_length in config.lengths else config.lengths[0]
    int8_ratios = {}
    bucket_waste = {}
    best_executed = None
    for b in config.batch_sizes:
        padding = "none" if b == 1 else "bucket"
        fp32 = _grid_cell(results, key, "fp32", dataset, b, padding)
        int8 = _grid_cell(results, key, "int8", dataset, b, padding)
        if fp32 and int8:
            int8_ratios[str(b)] = _ratio(int8["seq_per_s"], fp32["seq_per_s"])
        if fp32 and b > 1:
            bucket_waste[str(b)] = fp32["padding_waste"]
    for cell in results["model_only"][key].get("cells", []):
        if cell["precision"] == "fp32" and (best_executed is None or cell["gflops_executed"] > best_executed):
            best_executed = cell["gflops_executed"]
    return {
        "grid_dataset": dataset,
        "int8_over_fp32_grid": int8_ratios,
        "bucket_padding_waste": bucket_waste,
        "best_fp32_gflops": best_executed,
        "best_fp32_share_of_sgemm": _ratio(best_executed, ceiling),
        "sgemm_ceiling_gflops": ceiling,
    }


def _targets(per_model: dict[str, Any], config: BenchConfig) -> list[dict[str, Any]]:
    """The issue's goals for the DistilBERT-base shape (``base``), with the measured value and met/not met."""
    rows: list[dict[str, Any]] = []
    for key, entry in per_model.items():

        def add(goal: str, value: Any, met: bool | None, key: str = key) -> None:
            rows.append({"model": key, "goal": goal, "measured": value, "met": None if met is None else bool(met)})

        if entry.get("ours_over_model_only") is not None:
            v = entry["ours_over_model_only"]
            add("end-to-end ≥ 0.9 × model-only", v, v >= 0.9)
        if entry.get("ours_over_naive") is not None:
            v = entry["ours_over_naive"]
            add("end-to-end ≥ 10 × naive consumer", v, v >= 10)
        waste = entry.get("bucket_padding_waste") or {}
        ref_b = str(config.inference_batch_size) if str(config.inference_batch_size) in waste else None
        if waste:
            b = ref_b or max(waste, key=int)
            add(
                f"bucketing padding waste ≤ 10% ({entry.get('grid_dataset')}, batch {b})",
                waste[b],
                waste[b] is not None and waste[b] <= 0.10,
            )
        if entry.get("e2e_padding_waste") is not None:
            v = entry["e2e_padding_waste"]
            add("worker padding waste ≤ 10% (saturation)", v, v <= 0.10)
        int8 = entry.get("int8_over_fp32_grid") or {}
        if int8:
            b = str(config.inference_batch_size) if str(config.inference_batch_size) in int8 else max(int8, key=int)
            if int8[b] is not None:
                add(f"INT8 ≥ 1.3 × fp32 (model-only, batch {b})", int8[b], int8[b] >= 1.3)
        if entry.get("int8_over_fp32_e2e") is not None:
            v = entry["int8_over_fp32_e2e"]
            add("INT8 ≥ 1.3 × fp32 (end-to-end)", v, v >= 1.3)
        if entry.get("p99_at_50pct_ms") is not None and entry.get("p99_budget_ms") is not None:
            v, budget = entry["p99_at_50pct_ms"], entry["p99_budget_ms"]
            add(f"p99 at 50% load ≤ max_wait + 2 × batch time ({budget} ms)", v, v <= budget)
            what_if = entry.get("what_if") or {}
            if what_if.get("p99_at_50pct_ms") is not None:
                w_batch = what_if.get("ms_per_batch_mean")
                w_budget = round(config.max_wait_ms + 2 * w_batch, 1) if w_batch else budget
                add(
                    f"same, what-if worker settings {what_if.get('worker_settings')} ({w_budget} ms)",
                    what_if["p99_at_50pct_ms"],
                    what_if["p99_at_50pct_ms"] <= w_budget,
                )
    return rows
