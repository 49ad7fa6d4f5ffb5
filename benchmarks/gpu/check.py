"""The GPU check: fill in the carried models, measure, write ``report.md`` and ``results.json``.

    python -m benchmarks.gpu.check --out DIR --materials DIR [--budget-s 240]   # on the device (run.sh calls it)
    python -m benchmarks.gpu.check --smoke --out DIR --materials DIR              # here: tiny shape, CPU

Sections (each timed; a failing section is recorded with its error and the run goes on; inside a section each
measured cell is guarded, so one failing cell costs one row; no section starts once ``--budget-s`` is spent):
environment, models, model_only, tf32, variants, fp16_validation, end_to_end, latency, targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
TARGETS = {"e2e_msg_per_s": 30_000.0, "gpu_busy_pct": 50.0}
# fp16 against fp32 on the starter's held-out sentences: labels agree on >= 99.5% (worker.model.precision_check) and
# the class probabilities move by at most this much on average (a broken conversion moves them by ~0.1 or more;
# the conversion on the CPU moved them by at most 0.0018 on any sentence: docs/model.md)
FP16_MEAN_DPROB_BOUND = 0.005
SECTIONS = (
    "environment",
    "models",
    "model_only",
    "tf32",
    "variants",
    "fp16_validation",
    "end_to_end",
    "latency",
    "targets",
)


@dataclass(frozen=True)
class Plan:
    device: str
    batches: tuple[int, ...]
    fp32_batches: tuple[int, ...]
    variant_batch: int
    cell_seconds: float
    e2e_records: int
    e2e_partitions: int
    e2e_processes: tuple[int, ...]
    e2e_producers: int
    e2e_timeout_s: float
    latency_seconds: float
    latency_load: float  # share of the best end-to-end rate offered in the latency run


# On an H100/H200 within --budget-s 240 (call 3's 10 minutes hold it with room): fill ~15 s, model-only 16 cells of
# ~1.3 s, TF32 and variants ~15 s, fp16 validation ~10 s, three end-to-end runs of ~30 s, latency ~30 s.
GPU_PLAN = Plan("cuda", (8, 64, 256, 1024), (64, 256), 256, 1.0, 150_000, 16, (1, 4, 8), 4, 60.0, 8.0, 0.5)
SMOKE_PLAN = Plan("cpu", (1, 8), (8,), 8, 0.2, 3000, 4, (1, 2), 1, 90.0, 3.0, 0.5)


class Run:
    """Results, per-section timings and errors, and the time budget."""

    def __init__(self, budget_s: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + budget_s
        self.results: dict[str, Any] = {"sections": {}}

    def section(self, name: str, fn: Callable[[], Any], *, min_left_s: float = 0.0) -> Any:
        info: dict[str, Any] = {"status": "ok"}
        self.results["sections"][name] = info
        if time.monotonic() + min_left_s > self.deadline:
            info["status"] = "skipped: time budget spent"
            return None
        started = time.monotonic()
        try:
            value = fn()
            self.results[name] = value
            return value
        except Exception as exc:
            info["status"] = "error"
            info["error"] = f"{type(exc).__name__}: {exc}"[:2000]
            info["traceback"] = traceback.format_exc()[-4000:]
            return None
        finally:
            info["seconds"] = round(time.monotonic() - started, 2)
            print(f"[gpu-check] {name}: {info['status']} ({info['seconds']} s)", file=sys.stderr, flush=True)


def environment(device: str, device_name: str) -> dict[str, Any]:
    import onnxruntime as ort

    env: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "device_kind": device_name,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "device": device,
    }
    for name in ("torch", "tokenizers", "kafka", "pydantic", "onnx", "numpy"):
        try:
            module = __import__(name)
            env[name] = getattr(module, "__version__", "?")
        except Exception as exc:
            env[name] = f"missing ({type(exc).__name__})"
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,memory.total,driver_version,compute_cap"
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True)
        env["gpus"] = out.stdout.strip().splitlines()
    if device == "cuda":
        from worker.model.gpu import preload_cuda_libraries

        preload_cuda_libraries()  # the CUDA / cuDNN libraries of the nvidia-* packages torch brought
    return env


def models(work: Path, materials: Path) -> dict[str, Any]:
    """The production export's graphs with their weights drawn here (``benchmarks.gpu.materials``)."""
    from benchmarks.gpu.materials import fill_weights

    out: dict[str, Any] = {}
    for name in ("base-fp32", "base-fp16"):
        started = time.perf_counter()
        out[name] = {**fill_weights(materials / name, work / name), "seconds": round(time.perf_counter() - started, 2)}
    reference = json.loads((materials / "reference.json").read_text(encoding="utf-8"))
    out["shape"] = reference.get("shape")
    out["export"] = "the worker's Optimum export (worker.model.export.export_model), graph carried, weights drawn"
    out["starter"] = reference.get("starter")
    return out


def fp16_validation(work: Path, plan: Plan, materials: Path) -> dict[str, Any]:
    from benchmarks.gpu.measure import load_texts, validate_fp16

    texts = [json.loads(line)["text"] for line in (materials / "heldout.jsonl").read_text().splitlines()]
    reference = np.load(materials / "reference-fp32-logits.npy")
    starter = validate_fp16(None, materials / "starter-fp16", texts, device=plan.device, reference_logits=reference)
    starter["mean_abs_dprob_bound"] = FP16_MEAN_DPROB_BOUND
    starter["passed"] = bool(starter["passed"] and starter["mean_abs_dprob"] <= FP16_MEAN_DPROB_BOUND)
    samples = load_texts(SAMPLES / "tweets-200.jsonl") + load_texts(SAMPLES / "reviews-100.jsonl")
    base = validate_fp16(work / "base-fp32", work / "base-fp16", samples, device=plan.device)
    base["texts"] = "benchmarks/samples tweets + reviews (random weights: labels meaningless, Δprob is not)"
    return {"starter": starter, "base": base}


def targets(results: dict[str, Any]) -> dict[str, Any]:
    e2e = [r for r in results.get("end_to_end") or [] if r.get("msg_per_s")]
    best = max(e2e, key=lambda r: r["msg_per_s"], default=None)
    busy = best.get("gpu_util_mean") if best else None
    starter = (results.get("fp16_validation") or {}).get("starter") or {}
    rows: dict[str, dict[str, Any]] = {
        "e2e_msg_per_s": {"target": TARGETS["e2e_msg_per_s"], "value": best["msg_per_s"] if best else None},
        "gpu_busy_pct": {"target": TARGETS["gpu_busy_pct"], "value": busy},
    }
    for row in rows.values():
        row["met"] = None if row["value"] is None else bool(row["value"] >= row["target"])
    rows["fp16_mean_abs_dprob"] = {
        "target": f"<= {FP16_MEAN_DPROB_BOUND}, labels >= 99.5%",
        "value": starter.get("mean_abs_dprob"),
        "met": starter.get("passed"),
    }
    lat = results.get("latency") or {}
    rows["p99_ms_at_half_load"] = {"target": "reported", "value": lat.get("p99_ms"), "met": None}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Folder for report.md, results.json, logs/.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder for models (default OUT/../work).")
    parser.add_argument("--materials", type=Path, required=True, help="The carried materials (prepare's).")
    parser.add_argument("--device-name", default="nvidia-h100-x1", help="The device kind, recorded in the report.")
    parser.add_argument("--smoke", action="store_true", help="CPU, short runs (the rehearsal here and CI).")
    parser.add_argument("--budget-s", type=float, default=240.0, help="Stop starting sections after this long.")
    parser.add_argument("--launch", choices=("auto", "supervisor", "separate"), default="auto")
    args = parser.parse_args(argv)

    from benchmarks.gpu.measure import GpuSampler, load_texts, model_only, tf32, variants
    from benchmarks.gpu.report import write_report

    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or out.parent / f"{out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    run = Run(args.budget_s)
    run.results["mode"] = "smoke (CPU, tiny shape)" if args.smoke else "gpu"
    run.results["plan"] = plan.__dict__
    sampler = GpuSampler().start()
    tweets, reviews = load_texts(SAMPLES / "tweets-200.jsonl"), load_texts(SAMPLES / "reviews-100.jsonl")
    # the runtime runs fp16 on CUDA only: on the CPU (smoke) fp32 stands in for it, and fp16 is validated raw
    serving = "base-fp16" if plan.device == "cuda" else "base-fp32"
    try:
        run.section("environment", lambda: environment(plan.device, args.device_name))
        run.section("models", lambda: models(work, args.materials))
        exports = {"fp16": work / "base-fp16", "fp32": work / "base-fp32"} if plan.device == "cuda" else {}
        exports = exports or {"fp32": work / "base-fp32"}
        run.section(
            "model_only",
            lambda: model_only(exports, {"tweets": tweets, "reviews": reviews}, plan.batches, device=plan.device,
                               seconds=plan.cell_seconds, sampler=sampler, deadline=run.deadline - 150),
        )  # fmt: skip
        if plan.device == "cuda":
            run.section(
                "tf32",
                lambda: tf32(work / "base-fp32", tweets, batch=plan.fp32_batches[-1], seconds=plan.cell_seconds,
                             sampler=sampler),
            )  # fmt: skip
        else:
            run.section("tf32", lambda: {"applies": False, "why": "TF32 is a CUDA matmul mode; this run is on the CPU"})
        run.section(
            "variants",
            lambda: variants(work / serving, tweets, (plan.variant_batch,), device=plan.device,
                             seconds=plan.cell_seconds, sampler=sampler),
        )  # fmt: skip
        run.section("fp16_validation", lambda: fp16_validation(work, plan, args.materials))
        run.section("end_to_end", lambda: _e2e(plan, work / serving, tweets, sampler, out, args.launch, run.deadline))
        run.section("latency", lambda: _latency(plan, work / serving, tweets, out, args.launch, run), min_left_s=20)
        run.section("targets", lambda: targets(run.results))
    finally:
        sampler.stop()
        run.results["gpu_sampler"] = {"available": sampler.available, "samples": len(sampler.samples)}
        run.results["seconds"] = round(time.monotonic() - run.started, 1)
        (out / "results.json").write_text(json.dumps(run.results, indent=2, default=str) + "\n", encoding="utf-8")
        write_report(run.results, out / "report.md")
    return 0


def _worker_env(model_dir: Path) -> dict[str, str]:
    return {"SENTIMENT_PRECISION": "fp16"} if model_dir.name.endswith("fp16") else {}


def _e2e(
    plan: Plan, model_dir: Path, tweets: list[str], sampler: Any, out: Path, launch: str, deadline: float
) -> list[dict[str, Any]]:
    from benchmarks.gpu.measure import guarded
    from benchmarks.gpu.stream import end_to_end
    from devtools.broker import EmbeddedBroker

    rows: list[dict[str, Any]] = []
    with EmbeddedBroker(log_dir=out / "logs") as broker:
        for processes in plan.e2e_processes:
            left = deadline - time.monotonic() - 40  # the latency run's share
            if left < 25:
                rows.append({"processes": processes, "skipped": "time budget"})
                continue

            def measure(processes: int = processes, timeout_s: float = min(plan.e2e_timeout_s, left)) -> Any:
                return end_to_end(broker.bootstrap, tweets, plan.e2e_records, model_dir, processes, device=plan.device,
                                  partitions=plan.e2e_partitions, producers=plan.e2e_producers, timeout_s=timeout_s,
                                  sampler=sampler, log_dir=out / "logs", launch=launch,
                                  extra_env=_worker_env(model_dir))  # fmt: skip

            rows.append(guarded(measure, row={"processes": processes}))
    return rows


def _latency(plan: Plan, model_dir: Path, tweets: list[str], out: Path, launch: str, run: Run) -> dict[str, Any]:
    """p50/p99 with the best end-to-end process count, offered ``latency_load`` of its rate."""
    from benchmarks.gpu.stream import latency
    from devtools.broker import EmbeddedBroker

    measured = [r for r in run.results.get("end_to_end") or [] if r.get("msg_per_s")]
    if not measured:
        raise RuntimeError("no end-to-end rate to take half of")
    best = max(measured, key=lambda r: r["msg_per_s"])
    rate = plan.latency_load * best["msg_per_s"]
    with EmbeddedBroker(log_dir=out / "logs") as broker:
        result = latency(broker.bootstrap, tweets, model_dir, best["processes"], rate, seconds=plan.latency_seconds,
                         device=plan.device, partitions=plan.e2e_partitions,
                         timeout_s=max(20.0, run.deadline - time.monotonic()), log_dir=out / "logs", launch=launch,
                         extra_env=_worker_env(model_dir))  # fmt: skip
    return {**result, "load": plan.latency_load, "of_msg_per_s": best["msg_per_s"]}


if __name__ == "__main__":
    sys.exit(main())
