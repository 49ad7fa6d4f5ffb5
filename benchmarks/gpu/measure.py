"""Model-only measurements of the GPU check: seq/s by batch size, whether fp32 runs as TF32, the runtime's GPU
switches side by side, the fp16 validation, and GPU utilisation sampled with ``nvidia-smi`` while each runs. Every
cell is guarded: one that fails is a row with its error, the others still run."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.model.precision_check import compare_precisions


class GpuSampler:
    """``nvidia-smi --query-gpu=utilization.gpu,memory.used -lms N`` in the background, samples time-stamped."""

    def __init__(self, interval_ms: int = 100) -> None:
        self.interval_ms = interval_ms
        self.samples: list[tuple[float, float, float]] = []  # (monotonic, util %, memory MiB)
        self.available = shutil.which("nvidia-smi") is not None
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> GpuSampler:
        if not self.available:
            return self
        query = ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
        self._proc = subprocess.Popen(
            [*query, f"--loop-ms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread = threading.Thread(target=self._read, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            parts = [p.strip() for p in line.split(",")]
            try:
                self.samples.append((time.monotonic(), float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue

    def window(self, start: float, end: float) -> dict[str, Any]:
        """Mean and max GPU utilisation (and max memory) over the samples taken in [start, end]."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_mem_max_mib": None, "samples": 0}
        util = [s[1] for s in inside]
        return {
            "gpu_util_mean": round(sum(util) / len(util), 1),
            "gpu_util_max": max(util),
            "gpu_mem_max_mib": max(s[2] for s in inside),
            "samples": len(inside),
        }

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()


def load_texts(path: Path, limit: int | None = None) -> list[str]:
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit] if limit else texts


def cycle(texts: Sequence[str], count: int) -> list[str]:
    return [texts[i % len(texts)] for i in range(count)]


def time_calls(model: Any, ids: list[list[int]], batch: int, seconds: float) -> dict[str, Any]:
    """Run ``infer_ids`` on consecutive slices of ``batch`` sequences for ``seconds``; seq/s and padding."""
    n = len(ids)
    chunks = [ids[i : i + batch] for i in range(0, n - batch + 1, batch)] or [ids[:batch]]
    for chunk in chunks[:2]:  # warm-up: first calls of a shape pick kernels / grow the arena
        model.infer_ids(chunk, chunk_size=batch)
    done = real = padded = calls = 0
    started = time.perf_counter()
    while True:
        result = model.infer_ids(chunks[calls % len(chunks)], chunk_size=batch)
        calls += 1
        done += len(result.probs)
        real += result.real_tokens
        padded += result.padded_tokens
        if time.perf_counter() - started >= seconds:
            break
    elapsed = time.perf_counter() - started
    return {
        "batch": batch,
        "seq_per_s": round(done / elapsed, 1),
        "calls": calls,
        "ms_per_call": round(1000 * elapsed / calls, 3),
        "padding_share": round(1 - real / padded, 3) if padded else 0.0,
    }


def model_only(
    exports: dict[str, Path],
    datasets: dict[str, list[str]],
    batches: Sequence[int],
    *,
    device: str,
    seconds: float,
    sampler: GpuSampler,
    deadline: float,
) -> list[dict[str, Any]]:
    """seq/s per (precision, dataset, batch) with the runtime's defaults for ``device``."""
    from worker.model.runtime import SentimentModel

    rows: list[dict[str, Any]] = []
    for precision, directory in exports.items():
        try:
            model = SentimentModel.load(directory, device=device)  # type: ignore[arg-type]
        except Exception as exc:
            rows.append({"precision": precision, "error": f"load: {type(exc).__name__}: {exc}"[:300]})
            continue
        for name, texts in datasets.items():
            ids, _ = model.tokenize(cycle(texts, max(4 * max(batches), 256)))
            for batch in batches:
                if time.monotonic() > deadline:
                    rows.append({"precision": precision, "dataset": name, "batch": batch, "skipped": "time budget"})
                    continue
                start = time.monotonic()
                cell = guarded(time_calls, model, ids, batch, seconds, row={"batch": batch})
                rows.append(
                    {"precision": precision, "dataset": name, **cell, **sampler.window(start, time.monotonic())}
                )
    return rows


def guarded(measure: Any, *args: Any, row: dict[str, Any] | None = None) -> dict[str, Any]:
    """``measure(*args)``'s row, or ``row`` with the error: one failing cell costs one row."""
    try:
        return dict(measure(*args))
    except Exception as exc:
        return {**(row or {}), "error": f"{type(exc).__name__}: {exc}"[:300]}


VARIANTS: dict[str, dict[str, Any]] = {
    "plain (session.run, no buckets)": {"shape_buckets": False, "io_binding": False},
    "buckets + io binding (default on CUDA)": {"shape_buckets": True, "io_binding": True},
    "buckets + io binding + cuda graph": {"shape_buckets": True, "io_binding": True, "cuda_graph": True},
}


def variants(
    directory: Path, texts: list[str], batches: Sequence[int], *, device: str, seconds: float, sampler: GpuSampler
) -> list[dict[str, Any]]:
    """The runtime's GPU switches side by side on one export and data set."""
    from worker.model.runtime import SentimentModel

    rows: list[dict[str, Any]] = []
    for name, options in VARIANTS.items():
        try:
            model = SentimentModel.load(directory, device=device, **options)  # type: ignore[arg-type]
        except Exception as exc:  # e.g. cuda graph on a model with CPU nodes: reported, not fatal
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        runner = model._runner
        active = {"cuda_graph_active": bool(runner is not None and runner.static), "provider": model.provider}
        ids, _ = model.tokenize(cycle(texts, max(4 * max(batches), 256)))
        for batch in batches:
            start = time.monotonic()
            cell = guarded(time_calls, model, ids, batch, seconds, row={"batch": batch})
            rows.append({"variant": name, **active, **cell, **sampler.window(start, time.monotonic())})
    return rows


def compute_capability() -> float | None:
    """The GPU's compute capability (``nvidia-smi``), e.g. 9.0; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                         text=True)  # fmt: skip
    try:
        return float(out.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def tf32(fp32_dir: Path, texts: list[str], *, batch: int, seconds: float, sampler: GpuSampler) -> dict[str, Any]:
    """Whether fp32 runs as TF32 on CUDA: the ``use_tf32`` option of the worker's own session (ONNX Runtime's
    default, which the runtime leaves alone), and the same padded batch with ``use_tf32`` 1 and 0: seq/s and max
    |Δlogit| against fp32 on the CPU (TF32 rounds matmul inputs to 10 mantissa bits: ~1e-3 rather than ~1e-6)."""
    import onnxruntime as ort

    from worker.model.buckets import pad_batch
    from worker.model.gpu import CPU, CUDA, cuda_provider_options, session_options
    from worker.model.runtime import SentimentModel

    model = SentimentModel.load(fp32_dir, device="cuda")
    option = model._session.get_provider_options().get(CUDA, {}).get("use_tf32")
    capability = compute_capability()
    ids, _ = model.tokenize(cycle(texts, batch))
    lengths = np.array([len(x) for x in ids])
    input_ids, mask = pad_batch(ids, lengths, np.arange(len(ids)), pad_id=model._pad_id, width=int(lengths.max()))
    feeds = {"input_ids": input_ids, "attention_mask": mask}
    onnx = str(fp32_dir / "model.onnx")
    (cpu,) = ort.InferenceSession(onnx, session_options(0), providers=[CPU]).run(["logits"], feeds)
    rows: dict[str, Any] = {}
    for flag in ("1", "0"):

        def run(flag: str = flag) -> dict[str, Any]:
            provider = (CUDA, {**cuda_provider_options(0), "use_tf32": flag})
            session = ort.InferenceSession(onnx, session_options(0), providers=[provider, CPU])
            for _ in range(3):
                session.run(["logits"], feeds)
            started, calls = time.perf_counter(), 0
            while time.perf_counter() - started < seconds:
                (got,) = session.run(["logits"], feeds)
                calls += 1
            elapsed = time.perf_counter() - started
            return {
                "use_tf32": session.get_provider_options().get(CUDA, {}).get("use_tf32"),
                "seq_per_s": round(calls * batch / elapsed, 1),
                "max_abs_dlogit_vs_cpu_fp32": float(np.abs(np.asarray(got) - cpu).max()),
                **sampler.window(started, time.perf_counter()),
            }

        rows[f"use_tf32={flag}"] = guarded(run, flag)
    return {
        "worker_session_use_tf32": option,
        "compute_capability": capability,
        "fp32_ran_as_tf32": bool(option == "1" and capability is not None and capability >= 8.0),
        "batch": batch,
        "rows": rows,
    }


def raw_logits(onnx_path: Path, ids: list[list[int]], *, provider: str, pad_id: int = 0) -> np.ndarray:
    """Logits straight from an ONNX Runtime session (no worker runtime), in chunks of 64, rows in input order."""
    import onnxruntime as ort

    from worker.model.buckets import pad_batch

    session = ort.InferenceSession(str(onnx_path), providers=[provider])
    lengths = np.array([len(s) for s in ids])
    out = []
    for start in range(0, len(ids), 64):
        idx = np.arange(start, min(start + 64, len(ids)))
        input_ids, mask = pad_batch(ids, lengths, idx, pad_id=pad_id, width=int(lengths[idx].max()))
        out.append(session.run(["logits"], {"input_ids": input_ids, "attention_mask": mask})[0])
    return np.concatenate(out).astype(np.float32)


def fp16_logits(directory: Path, ids: list[list[int]], *, device: str) -> np.ndarray:
    """fp16 logits through the worker's runtime on CUDA; on a CPU (smoke) straight from ONNX Runtime, since the
    runtime refuses fp16 there."""
    if device == "cuda":
        from worker.model.runtime import SentimentModel

        model = SentimentModel.load(directory, device="cuda")
        result = model.infer_ids(ids, chunk_size=256)
        assert result.logits is not None
        return result.logits
    return raw_logits(directory / "model.onnx", ids, provider="CPUExecutionProvider")


def validate_fp16(
    fp32_dir: Path | None,
    fp16_dir: Path,
    texts: list[str],
    *,
    device: str,
    reference_logits: np.ndarray | None = None,
) -> dict[str, Any]:
    """fp16 vs fp32 on ``texts``: reference logits given (computed elsewhere in fp32), or fp32 run here."""
    from worker.model.runtime import SentimentModel

    tokenizer_model = SentimentModel.load(fp32_dir or fp16_dir, device="cpu") if fp32_dir else None
    if tokenizer_model is None:  # only the fp16 export at hand: tokenise with its tokenizer, without a session
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(fp16_dir / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=128)
        ids = [enc.ids for enc in tokenizer.encode_batch(texts)]
    else:
        ids, _ = tokenizer_model.tokenize(texts)
    started = time.perf_counter()
    if reference_logits is None:
        assert fp32_dir is not None
        reference = SentimentModel.load(fp32_dir, device=device).infer_ids(ids, chunk_size=256).logits  # type: ignore[arg-type]
        reference_source = f"fp32 on {device}"
    else:
        reference, reference_source = reference_logits, "fp32 on the CPU (computed by prepare)"
    candidate = fp16_logits(fp16_dir, ids, device=device)
    check = compare_precisions(np.asarray(reference), candidate)
    return {
        **check.to_dict(),
        "reference": reference_source,
        "candidate": f"fp16 on {device}",
        "seconds": round(time.perf_counter() - started, 2),
    }
