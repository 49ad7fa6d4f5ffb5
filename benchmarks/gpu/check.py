"""The GPU check: build the models, measure, write ``report.md`` and ``results.json``.

    python -m benchmarks.gpu.check --out DIR [--materials DIR] [--budget-s 480]   # on the GPU machine (run.sh)
    python -m benchmarks.gpu.check --smoke --out DIR                              # here: tiny sizes, CPU

Sections (each timed, each failure recorded and the run goes on, each skipped when the time budget is spent):
environment, models, model_only, variants, fp16_validation, naive, end_to_end, targets.
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
TARGETS = {"e2e_msg_per_s": 30_000.0, "vs_naive": 10.0, "gpu_busy_pct": 50.0}
SECTIONS = ("environment", "models", "model_only", "variants", "fp16_validation", "naive", "end_to_end", "targets")


@dataclass(frozen=True)
class Plan:
    device: str
    shape: str  # "base" or "tiny"
    batches: tuple[int, ...]
    variant_batches: tuple[int, ...]
    cell_seconds: float
    naive_seconds: float
    e2e_records: int
    e2e_partitions: int
    e2e_processes: tuple[int, ...]
    e2e_producers: int
    e2e_timeout_s: float


# On the H200, within --budget-s 420: model-only ~32 cells of ~1.2 s, variants ~25 s, fp16 validation and the
# naive consumer ~60 s, which leaves ~4 minutes for the three end-to-end runs (start-up ~15 s each).
GPU_PLAN = Plan(
    "cuda", "base", (1, 8, 32, 64, 128, 256, 512, 1024), (8, 256), 1.0, 15.0, 150_000, 16, (1, 4, 8), 4, 90.0
)
SMOKE_PLAN = Plan("cpu", "tiny", (1, 8), (8,), 0.2, 2.0, 3000, 4, (1, 2), 1, 90.0)


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


def environment(device: str) -> dict[str, Any]:
    import onnxruntime as ort

    env: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "device": device,
    }
    for name in ("torch", "transformers", "tokenizers", "kafka", "pydantic", "onnx"):
        try:
            module = __import__(name)
            env[name] = getattr(module, "__version__", "?")
        except Exception as exc:
            env[name] = f"missing ({type(exc).__name__})"
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,memory.total,driver_version"
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True)
        env["gpus"] = out.stdout.strip().splitlines()
    if device == "cuda":
        if hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # the CUDA / cuDNN libraries of the nvidia-* packages torch brought
        env["ld_library_path"] = os.environ.get("LD_LIBRARY_PATH", "")
    return env


def models(work: Path, plan: Plan, materials: Path | None) -> dict[str, Any]:
    from benchmarks.gpu.build import BASE_SHAPE, TINY_SHAPE, build_hf_model, convert_to_fp16, export_onnx

    tokenizer_dir = None
    if materials is not None and (materials / "starter-fp16" / "tokenizer.json").is_file():
        tokenizer_dir = materials / "starter-fp16"
    else:
        from benchmarks.models import _real_tokenizer_dir
        from worker.settings import default_cache_dir

        tokenizer_dir, _ = _real_tokenizer_dir([default_cache_dir()])
    shape = BASE_SHAPE if plan.shape == "base" else TINY_SHAPE
    started = time.perf_counter()
    hf = build_hf_model(work / "hf", shape=shape, tokenizer_dir=tokenizer_dir)
    built = round(time.perf_counter() - started, 2)
    fp32 = export_onnx(hf, work / "fp32")
    fp16 = convert_to_fp16(work / "fp32", work / "fp16")
    return {
        "shape": plan.shape,
        "config": shape or "DistilBertConfig() defaults (dim 768, 6 layers, 12 heads, FFN 3072)",
        "tokenizer": str(tokenizer_dir or "toy vocabulary"),
        "build_seconds": built,
        "fp32": fp32,
        "fp16": fp16,
        "dirs": {"hf": str(hf), "fp32": str(work / "fp32"), "fp16": str(work / "fp16")},
    }


def fp16_validation(work: Path, plan: Plan, materials: Path | None) -> dict[str, Any]:
    from benchmarks.gpu.measure import load_texts, validate_fp16

    out: dict[str, Any] = {}
    if materials is not None and (materials / "reference-fp32-logits.npy").is_file():
        texts = [json.loads(line)["text"] for line in (materials / "heldout.jsonl").read_text().splitlines()]
        reference = np.load(materials / "reference-fp32-logits.npy")
        out["starter"] = validate_fp16(
            None, materials / "starter-fp16", texts, device=plan.device, reference_logits=reference
        )
        out["starter"]["texts"] = "starter model held-out sets (imdb, yelp, amazon)"
    else:
        out["starter"] = {"skipped": "no starter materials (run prepare, carry its last part)"}
    texts = load_texts(SAMPLES / "tweets-200.jsonl") + load_texts(SAMPLES / "reviews-100.jsonl")
    if not (work / "fp16" / "model.onnx").is_file():
        out["base"] = {"skipped": "the base model was not built"}
        return out
    out["base"] = validate_fp16(work / "fp32", work / "fp16", texts, device=plan.device)
    out["base"]["texts"] = "benchmarks/samples tweets + reviews (random weights: labels meaningless, Δprob is not)"
    return out


def targets(results: dict[str, Any]) -> dict[str, Any]:
    e2e = [r for r in results.get("end_to_end") or [] if r.get("msg_per_s")]
    best = max(e2e, key=lambda r: r["msg_per_s"], default=None)
    naive = (results.get("naive") or {}).get("msg_per_s")
    busy = best.get("gpu_util_mean") if best else None
    rows = {
        "e2e_msg_per_s": {"target": TARGETS["e2e_msg_per_s"], "value": best["msg_per_s"] if best else None},
        "vs_naive": {
            "target": TARGETS["vs_naive"],
            "value": round(best["msg_per_s"] / naive, 1) if best and naive else None,
        },
        "gpu_busy_pct": {"target": TARGETS["gpu_busy_pct"], "value": busy},
    }
    for row in rows.values():
        row["met"] = None if row["value"] is None else bool(row["value"] >= row["target"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="Folder for report.md, results.json, logs/.")
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder for models (default OUT/../work).")
    parser.add_argument("--materials", type=Path, default=None, help="prepare's materials folder (starter fp16).")
    parser.add_argument("--smoke", action="store_true", help="Tiny model, CPU, short runs (tests it here).")
    parser.add_argument("--budget-s", type=float, default=480.0, help="Stop starting sections after this long.")
    parser.add_argument("--launch", choices=("auto", "supervisor", "separate"), default="auto")
    args = parser.parse_args(argv)

    from benchmarks.gpu.measure import GpuSampler, load_texts, model_only, variants
    from benchmarks.gpu.report import write_report

    plan = SMOKE_PLAN if args.smoke else GPU_PLAN
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = args.work or out.parent / f"{out.name}-work"
    work.mkdir(parents=True, exist_ok=True)
    run = Run(args.budget_s)
    run.results["mode"] = "smoke (CPU, tiny model)" if args.smoke else "gpu"
    run.results["plan"] = plan.__dict__
    sampler = GpuSampler().start()
    tweets, reviews = load_texts(SAMPLES / "tweets-200.jsonl"), load_texts(SAMPLES / "reviews-100.jsonl")
    try:
        run.section("environment", lambda: environment(plan.device))
        built = run.section("models", lambda: models(work, plan, args.materials))
        exports = {"fp32": work / "fp32", "fp16": work / "fp16"}
        if args.smoke:
            exports.pop("fp16")  # the runtime runs fp16 on CUDA only; the smoke run validates it below instead
        starter = args.materials / "starter-fp16" if args.materials else None
        if not built and not args.smoke and starter is not None and (starter / "model.onnx").is_file():
            # the base model could not be built or exported there: measure the carried starter model instead
            exports = {"fp16": starter}
            run.results["fallback"] = "base model unavailable: model-only and end-to-end use the starter fp16 export"
        if built or "fallback" in run.results:
            run.section(
                "model_only",
                lambda: model_only(
                    exports,
                    {"tweets": tweets, "reviews": reviews},
                    plan.batches,
                    device=plan.device,
                    seconds=plan.cell_seconds,
                    sampler=sampler,
                    deadline=run.deadline - 240,
                ),
            )
            best = exports.get("fp16", exports["fp32"])
            run.section(
                "variants",
                lambda: variants(
                    best, tweets, plan.variant_batches, device=plan.device, seconds=plan.cell_seconds, sampler=sampler
                ),
            )
            run.section("fp16_validation", lambda: fp16_validation(work, plan, args.materials))
            run.section("naive", lambda: _naive(plan, work, tweets, sampler, out), min_left_s=30)
            run.section(
                "end_to_end", lambda: _e2e(plan, best, tweets, sampler, out, args.launch, run.deadline), min_left_s=60
            )
        run.section("targets", lambda: targets(run.results))
    finally:
        sampler.stop()
        run.results["gpu_sampler"] = {"available": sampler.available, "samples": len(sampler.samples)}
        run.results["seconds"] = round(time.monotonic() - run.started, 1)
        (out / "results.json").write_text(json.dumps(run.results, indent=2, default=str) + "\n", encoding="utf-8")
        write_report(run.results, out / "report.md")
    return 0


def _naive(plan: Plan, work: Path, tweets: list[str], sampler: Any, out: Path) -> dict[str, Any]:
    from benchmarks.gpu.stream import naive_consumer, produce_backlog
    from devtools.broker import EmbeddedBroker

    if not (work / "hf" / "config.json").is_file():
        raise RuntimeError("the base model's PyTorch folder was not built: no naive baseline")

    with EmbeddedBroker(log_dir=out / "logs") as broker:
        backlog = 50_000 if plan.device == "cuda" else 300
        produce_backlog(broker.bootstrap, "naive-in", tweets, backlog, 1)
        result = naive_consumer(
            broker.bootstrap, "naive-in", work / "hf", device=plan.device, seconds=plan.naive_seconds, sampler=sampler
        )
        # a consumer that ran out of records idled part of the time: its rate is then a lower bound
        return {**result, "backlog": backlog, "backlog_ran_out": result["processed"] >= backlog - 1}


def _e2e(
    plan: Plan, model_dir: Path, tweets: list[str], sampler: Any, out: Path, launch: str, deadline: float
) -> list[dict[str, Any]]:
    from benchmarks.gpu.stream import end_to_end
    from devtools.broker import EmbeddedBroker

    rows: list[dict[str, Any]] = []
    extra = {"SENTIMENT_PRECISION": "fp16"} if model_dir.name == "fp16" else {}
    with EmbeddedBroker(log_dir=out / "logs") as broker:
        for processes in plan.e2e_processes:
            left = deadline - time.monotonic()
            if left < 30:
                rows.append({"processes": processes, "skipped": "time budget"})
                continue
            rows.append(
                end_to_end(
                    broker.bootstrap,
                    tweets,
                    plan.e2e_records,
                    model_dir,
                    processes,
                    device=plan.device,
                    partitions=plan.e2e_partitions,
                    producers=plan.e2e_producers,
                    timeout_s=min(plan.e2e_timeout_s, left),
                    sampler=sampler,
                    log_dir=out / "logs",
                    launch=launch,
                    extra_env=extra,
                )
            )
    return rows


if __name__ == "__main__":
    sys.exit(main())
