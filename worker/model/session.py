"""The ONNX Runtime session behind a model: which execution provider it gets, and the errors when it can't.

``device="cuda"`` fails fast when the session does not really get CUDA; ``device="auto"`` tries CUDA when a GPU is
visible and falls back to the CPU with a warning (the provider list alone is not GPU detection: the onnxruntime-gpu
wheel lists CUDA on machines without one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import onnxruntime as ort

from worker.model.buckets import gpu_visible
from worker.model.gpu import cuda_session
from worker.model.gpu import quiet_ort as _quiet_ort
from worker.model.gpu import session_options as _session_options
from worker.observability import get_logger

log = get_logger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
Device = Literal["auto", "cpu", "cuda"]


class ProviderUnavailableError(RuntimeError):
    """The requested execution provider (CUDA) can't be used, or the model needs one that isn't there."""


def cuda_plausible() -> bool:
    # get_available_providers() lists CUDA for the onnxruntime-gpu wheel even on GPU-less machines,
    # so it is only a necessary condition.
    return CUDA in ort.get_available_providers() and gpu_visible()


def create_session(
    onnx_path: Path, *, device: Device, device_id: int, threads: int, spinning: bool = False, cuda_graph: bool = False
) -> ort.InferenceSession:
    def on_cuda() -> ort.InferenceSession:
        return cuda_session(str(onnx_path), _session_options(threads, spinning), device_id, cuda_graph=cuda_graph)

    if device == "cuda":
        if CUDA not in ort.get_available_providers():
            raise ProviderUnavailableError(
                f"device cuda requested but this onnxruntime build has no CUDAExecutionProvider "
                f"(available: {ort.get_available_providers()}); install onnxruntime-gpu or use device cpu/auto"
            )
        session = on_cuda()
        got = session.get_providers()[0]
        if got != CUDA:
            raise ProviderUnavailableError(
                f"device cuda requested but the ONNX Runtime session got {got}: CUDA could not be initialised "
                f"(no GPU at device_id {device_id}, or CUDA 13 / cuDNN 9 libraries missing — see the onnxruntime "
                "errors above). Use device auto or cpu to run on the CPU."
            )
        return session
    if device == "auto" and cuda_plausible():
        with _quiet_ort():
            try:
                probe: ort.InferenceSession | None = on_cuda()
            except Exception as exc:  # a broken CUDA setup must not stop a CPU run in auto mode
                log.warning("cuda_probe_failed", error=f"{type(exc).__name__}: {exc}"[:500])
                probe = None
        if probe is not None and probe.get_providers()[0] == CUDA:
            return probe
        log.warning(
            "cuda_unavailable_using_cpu",
            reason="a GPU is visible but the CUDA execution provider could not be created "
            "(CUDA 13 / cuDNN 9 libraries?); running on CPUExecutionProvider",
        )
    elif device == "auto":
        log.warning(
            "cuda_unavailable_using_cpu",
            reason="no NVIDIA GPU visible (or no CUDA provider in this onnxruntime build); "
            "running on CPUExecutionProvider",
        )
    elif device != "cpu":
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return ort.InferenceSession(str(onnx_path), _session_options(threads, spinning), providers=[CPU])
