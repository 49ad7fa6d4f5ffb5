"""What a benchmark run is asked for (:class:`BenchConfig`, ``sentiment-worker bench``'s flags) and its defaults, quick
or full; ``suite.py`` runs it, ``summary.py`` reads it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worker.settings import Settings

MODES = ("model", "e2e", "http", "ceiling", "device", "latency", "all")
FULL_GRID_SIZES = {"tweet": 64, "mixed": 64, "review": 32}  # sequences per dataset (≥ the largest batch, 32)
QUICK_GRID_SIZE = 32
DATA_GRID_SIZE = 128
QUICK_MAX_BURST = 400  # messages of the saturation burst in --quick
QUICK_MAX_EAGER = 128  # messages of the PyTorch eager baseline in --quick


def _default(name: str) -> Any:
    default = Settings.model_fields[name].default
    if default == "auto" and name in ("max_batch_size", "inference_batch_size"):
        from worker.model.buckets import batch_defaults, gpu_visible

        # the worker resolves "auto" by its session's provider; before any session, a visible GPU is the guess
        return getattr(batch_defaults("CUDAExecutionProvider" if gpu_visible() else "CPUExecutionProvider"), name)
    return default


@dataclass
class BenchConfig:
    output: Path
    cache_dir: Path
    starter_cache: Path | None = None  # where the starter build lives (default: cache_dir)
    mode: str = "all"
    quick: bool = False
    models: list[str] = field(default_factory=list)  # grid models (empty: defaults)
    e2e_models: list[str] = field(default_factory=list)  # end-to-end models (empty: defaults)
    precisions: list[str] = field(default_factory=list)
    e2e_precisions: list[str] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lengths: list[str] = field(default_factory=list)
    o3_lengths: list[str] = field(default_factory=list)  # datasets with o3 cells (empty: defaults)
    data: str | None = None
    text_field: str = "text"
    grid_size: int | None = None  # sequences per dataset (None: defaults per shape)
    repeats: int = 0
    e2e_length: str = "tweet"
    loads: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.9])
    load_seconds: float = 0.0
    saturation_seconds: float = 0.0
    naive_seconds: float = 0.0
    bootstrap_servers: list[str] | None = None
    partitions: int = 4
    baselines: bool = True
    device: str = "auto"
    threads: int = 0
    max_length: int = 128
    max_batch_size: int = field(default_factory=lambda: _default("max_batch_size"))
    max_wait_ms: int = field(default_factory=lambda: _default("max_wait_ms"))
    inference_batch_size: int = field(default_factory=lambda: _default("inference_batch_size"))
    seed: int = 0
    progress: bool = True
    what_if_fetch_wait_ms: int | None = 10  # extra 50%-load run with this worker fetch_max_wait_ms (None: skip)
    http_seconds: float = 0.0  # per HTTP concurrency level (benchmarks/http_bench.py)
    http_clients: list[int] = field(default_factory=lambda: [1, 16, 64])

    def resolve_defaults(self) -> None:
        """Fill the empty fields with the quick or the full defaults."""
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        quick = self.quick
        if not self.precisions:
            self.precisions = ["fp32", "int8"] if quick else ["fp32", "o3", "int8"]
        if not self.e2e_precisions:
            self.e2e_precisions = ["fp32"] if quick else ["fp32", "int8"]
        if not self.batch_sizes:
            self.batch_sizes = [1, 8] if quick else [1, 8, 32]
        if not self.lengths:
            self.lengths = ["tweet", "mixed"] if quick else ["tweet", "mixed", "review"]
        if not self.o3_lengths and not quick:
            # full runs time o3 on the first length set only, to keep the grid short: in the reference run
            # benchmarks/results/2026-11-24-cpu-2core it was within ±8% of fp32 on tweets, ahead only at batch 1
            self.o3_lengths = self.lengths[:1]
        if not self.repeats:
            self.repeats = 2 if quick else 3
        if not self.load_seconds:
            self.load_seconds = 3.0 if quick else 12.0
        if not self.saturation_seconds:
            self.saturation_seconds = 3.0 if quick else 10.0
        if not self.naive_seconds:
            self.naive_seconds = 3.0 if quick else 15.0
        if not self.http_seconds:
            self.http_seconds = 1.0 if quick else 6.0
        if not self.models or not self.e2e_models:
            from worker.model.starter_cache import cached_starter_dir

            have_starter = cached_starter_dir(self.starter_cache or self.cache_dir, "fp32") is not None
            default_models = (["starter"] if have_starter else ["tiny"]) if quick else ["starter", "base"]
            self.models = self.models or default_models
            self.e2e_models = self.e2e_models or list(default_models)
