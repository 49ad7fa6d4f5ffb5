"""The CUDA side of the runtime: provider options, and running a session through ONNX Runtime's IO binding.

Provider options (:func:`cuda_provider_options`), each a choice for this model (a DistilBERT classifier fed
length-bucketed batches from a streaming worker):

- ``arena_extend_strategy = kSameAsRequested``: the arena grows by what a run asks for instead of doubling
  (``kNextPowerOfTwo``, the default). With shape buckets the same few sizes recur, so blocks are reused either way;
  doubling only inflates each process's footprint, and several worker processes may share one GPU.
- ``cudnn_conv_algo_search = HEURISTIC``: the default (``EXHAUSTIVE``) benchmarks every cuDNN convolution algorithm
  for each new input shape. DistilBERT has no convolution, so this changes nothing for it; for a model that has
  one it avoids a slow first batch per shape. cuDNN's heuristic is a good pick for fixed-shape inference.
- ``do_copy_in_default_stream = 1`` (ONNX Runtime's default, set explicitly): host↔device copies run on the compute
  stream, so a copy can never race the kernels that read the inputs or write the logits. A separate copy stream
  would only pay off when copies are large; ours are a few KB of token ids in and ``rows × labels`` floats out.
- ``enable_cuda_graph = 1`` only when asked for (``cuda_graph=True``): ONNX Runtime then captures the kernel
  launches of a run into a CUDA graph and replays it, which removes the per-kernel launch cost (it matters for
  small batches). It requires every node of the model on the CUDA provider (session creation fails otherwise),
  inputs and outputs bound through IO binding at fixed device addresses, and one fixed shape per graph: the runtime
  keeps one set of buffers per (rows, width) bucket and gives each its own ``gpu_graph_id`` run option (ids start
  at 1; 0 is reserved, -1 disables capture). Whether this model's graph runs wholly on CUDA is found out by the GPU
  check (benchmarks/gpu/); it is off by default.

IO binding (:class:`BoundRunner`): the token ids are copied from numpy straight to the device and the logits
(tiny) are copied back; without a CUDA graph each call binds fresh (``bind_cpu_input`` / ``bind_output``); with
one, the per-bucket buffers are filled in place (``OrtValue.update_inplace``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from worker.observability import get_logger

log = get_logger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_ORT_DEFAULT_LOG_SEVERITY = 2  # onnxruntime's own default (warning); there is no getter to save/restore
CUDA_GRAPH_FIRST_ID = 1  # gpu_graph_id 0 is reserved by ONNX Runtime, -1 disables capture for a run


def cuda_provider_options(device_id: int, *, cuda_graph: bool = False) -> dict[str, str]:
    """The CUDA execution provider's options (the module docstring says why each)."""
    options = {
        "device_id": str(device_id),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "1",
    }
    if cuda_graph:
        options["enable_cuda_graph"] = "1"
    return options


def session_options(threads: int, spinning: bool = False) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # 0 = onnxruntime's default (all physical cores)
    # Spinning intra-op threads busy-wait between ops. The worker's own threads (poll, Kafka IO, producer) then
    # preempt a spinning thread and stall the other: at 50% load on 2 cores it doubled the latency; at
    # saturation no difference was measurable; alone (no other threads) spinning is ~10% faster.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


@contextlib.contextmanager
def quiet_ort() -> Iterator[None]:
    """Silence onnxruntime's default logger (its CUDA-load errors) while probing CUDA in auto mode."""
    ort.set_default_logger_severity(4)
    try:
        yield
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_LOG_SEVERITY)


_preloaded: list[bool] = []


def preload_cuda_libraries() -> None:
    """Once per process, before the first CUDA session: ``onnxruntime.preload_dlls()`` loads the CUDA and cuDNN
    libraries of the ``nvidia-*`` pip packages (those PyTorch brings) if there are any, so the CUDA provider finds
    them without ``LD_LIBRARY_PATH``. Best effort: a failure is logged and the session is tried anyway."""
    if _preloaded:
        return
    _preloaded.append(True)
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    said = io.StringIO()  # it prints what it could not load: keep that off the worker's (JSON) stdout
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            preload()
    except Exception as exc:
        log.debug("cuda_preload_failed", error=f"{type(exc).__name__}: {exc}"[:300])
    if said.getvalue().strip():
        log.debug("cuda_preload_output", output=said.getvalue().strip()[:1000])


def cuda_session(
    onnx_path: str, options: ort.SessionOptions, device_id: int, *, cuda_graph: bool = False
) -> ort.InferenceSession:
    """A session with the CUDA provider first (CPU as ONNX Runtime's fallback). With ``cuda_graph``, a model that
    can't be captured (a node not on CUDA) gets a session without CUDA graphs and a warning, not an error."""
    preload_cuda_libraries()
    if cuda_graph:
        try:
            providers: list[Any] = [(CUDA, cuda_provider_options(device_id, cuda_graph=True)), CPU]
            return ort.InferenceSession(onnx_path, options, providers=providers)
        except Exception as exc:
            log.warning("cuda_graph_unavailable", error=f"{type(exc).__name__}: {exc}"[:500])
    return ort.InferenceSession(onnx_path, options, providers=[(CUDA, cuda_provider_options(device_id)), CPU])


def has_cuda_graph(session: ort.InferenceSession) -> bool:
    """Whether ``session`` runs CUDA with graph capture on."""
    return str(session.get_provider_options().get(CUDA, {}).get("enable_cuda_graph", "0")) == "1"


@dataclass
class _Slot:
    """The fixed buffers (and CUDA graph id) of one (rows, width) shape."""

    binding: Any
    inputs: dict[str, Any]
    output: Any
    run_options: Any


class BoundRunner:
    """Run one session's single-output model through IO binding on ``device`` (``cuda`` or ``cpu``).

    ``static=True`` keeps one set of buffers per input shape and runs each shape under its own ``gpu_graph_id``
    (what CUDA graphs need; it works without them too, e.g. on the CPU in tests).
    """

    def __init__(
        self,
        session: Any,
        *,
        output_name: str,
        num_outputs: int,
        device: str = "cuda",
        device_id: int = 0,
        static: bool = False,
    ) -> None:
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {device!r}")
        self._session = session
        self._output_name = output_name
        self._num_outputs = num_outputs
        self._device = device
        self._device_id = device_id
        self.static = static
        self._slots: dict[tuple[tuple[str, tuple[int, ...]], ...], _Slot] = {}

    @property
    def graph_ids(self) -> dict[tuple[int, ...], int]:
        """Shape of the first input → the gpu_graph_id its buffers run under (static mode)."""
        return {key[0][1]: CUDA_GRAPH_FIRST_ID + n for n, key in enumerate(self._slots)}

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The output for ``feeds`` (numpy arrays, all with the same leading row count), as a numpy array."""
        if self.static:
            return self._run_static(feeds)
        binding = self._session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        binding.bind_output(self._output_name, self._device, self._device_id)
        self._session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0])

    def _run_static(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        key = tuple(sorted((name, tuple(array.shape)) for name, array in feeds.items()))
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = self._new_slot(feeds, CUDA_GRAPH_FIRST_ID + len(self._slots))
        else:
            for name, array in feeds.items():
                slot.inputs[name].update_inplace(np.ascontiguousarray(array))
        self._session.run_with_iobinding(slot.binding, slot.run_options)
        return np.asarray(slot.binding.copy_outputs_to_cpu()[0])

    def _new_slot(self, feeds: dict[str, np.ndarray], graph_id: int) -> _Slot:
        binding = self._session.io_binding()
        inputs = {}
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), self._device, self._device_id)
            binding.bind_ortvalue_input(name, value)
            inputs[name] = value
        rows = next(iter(feeds.values())).shape[0]
        output = ort.OrtValue.ortvalue_from_shape_and_type(
            [rows, self._num_outputs], np.float32, self._device, self._device_id
        )
        binding.bind_ortvalue_output(self._output_name, output)
        run_options = ort.RunOptions()
        run_options.add_run_config_entry("gpu_graph_id", str(graph_id))
        return _Slot(binding=binding, inputs=inputs, output=output, run_options=run_options)
