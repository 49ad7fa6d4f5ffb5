"""The GPU path's choices (worker.model.gpu) and its use in the runtime, checked on the CPU: IO binding works on the
CPU provider too, and a hand-built model that reports the shape it was fed shows the buckets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import structlog

from tests.unit.model.shape_model import as_ints, build_shape_model, texts_of_lengths
from worker.model import gpu
from worker.model.gpu import BoundRunner, cuda_provider_options, cuda_session, has_cuda_graph
from worker.model.runtime import CUDA, SentimentModel

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def shape_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_shape_model(tmp_path_factory.mktemp("shape") / "model")


def _feeds(rows: int, width: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, width + 1, size=rows)
    mask = (np.arange(width)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": rng.integers(0, 9, size=(rows, width)).astype(np.int64), "attention_mask": mask}


def test_cuda_provider_options() -> None:
    options = cuda_provider_options(3)
    assert options == {
        "device_id": "3",
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
        "do_copy_in_default_stream": "1",
    }
    assert cuda_provider_options(0, cuda_graph=True)["enable_cuda_graph"] == "1"
    assert all(isinstance(v, str) for v in cuda_provider_options(0, cuda_graph=True).values())


@pytest.mark.parametrize("static", [False, True])
def test_bound_runner_matches_session_run(shape_dir: Path, static: bool) -> None:
    session = ort.InferenceSession(str(shape_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    runner = BoundRunner(session, output_name="logits", num_outputs=2, device="cpu", static=static)
    for rows, width, seed in ((4, 16, 0), (4, 16, 1), (8, 32, 2), (4, 16, 3)):
        feeds = _feeds(rows, width, seed)
        (expected,) = session.run(["logits"], feeds)
        got = runner.run(feeds)
        assert got.dtype == np.float32 and got.shape == (rows, 2)
        np.testing.assert_array_equal(got, expected)
    if static:  # one set of buffers (and one CUDA graph id, from 1) per shape; repeated shapes reuse theirs
        assert runner.graph_ids == {(4, 16): 1, (8, 32): 2}
    else:
        assert runner.graph_ids == {}


def test_bound_runner_refuses_other_devices() -> None:
    with pytest.raises(ValueError, match="cuda or cpu"):
        BoundRunner(object(), output_name="logits", num_outputs=2, device="tpu")


def test_cuda_session_drops_cuda_graph_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, str]] = []

    def fake_session(path: str, options: Any, providers: list[Any]) -> str:
        calls.append(providers[0][1])
        if providers[0][1].get("enable_cuda_graph") == "1":
            raise RuntimeError("This session cannot use the CUDA Graph feature as requested by the user")
        return "session"

    monkeypatch.setattr(gpu.ort, "InferenceSession", fake_session)
    preloads: list[int] = []

    def failing_preload() -> None:
        preloads.append(1)
        print("Failed to load libcurand.so.10")  # onnxruntime prints this: it must not reach stdout
        raise OSError("libcudnn.so.9: cannot open shared object file")

    monkeypatch.setattr(gpu.ort, "preload_dlls", failing_preload, raising=False)
    monkeypatch.setattr(gpu, "_preloaded", [])
    with structlog.testing.capture_logs() as logs:
        assert cuda_session("m.onnx", ort.SessionOptions(), 1, cuda_graph=True) == "session"
    assert [c.get("enable_cuda_graph") for c in calls] == ["1", None]
    assert all(c["device_id"] == "1" for c in calls)
    assert any(e["event"] == "cuda_graph_unavailable" for e in logs)
    calls.clear()
    assert cuda_session("m.onnx", ort.SessionOptions(), 0) == "session"
    assert len(calls) == 1 and "enable_cuda_graph" not in calls[0]
    assert preloads == [1]  # once per process, and its failure stopped nothing
    assert capsys.readouterr().out == ""


class _FakeCudaSession:
    def __init__(self, graph: bool) -> None:
        self.graph = graph

    def get_providers(self) -> list[str]:
        return [CUDA, "CPUExecutionProvider"]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {CUDA: {"enable_cuda_graph": "1" if self.graph else "0"}}


def test_has_cuda_graph() -> None:
    assert has_cuda_graph(_FakeCudaSession(True)) is True  # type: ignore[arg-type]
    assert has_cuda_graph(_FakeCudaSession(False)) is False  # type: ignore[arg-type]


def test_runtime_defaults_on_cpu_are_plain_calls(shape_dir: Path) -> None:
    model = SentimentModel.load(shape_dir, device="cpu")
    ids, _ = model.tokenize(texts_of_lengths([3, 20, 5]))
    result = model.infer_ids(ids)
    assert as_ints(result.logits) == [(3, 20), (20, 20), (5, 20)]  # padded to the longest, 3 rows
    assert result.padded_tokens == 60 and result.real_tokens == 28


def test_runtime_pads_to_buckets_when_asked(shape_dir: Path) -> None:
    model = SentimentModel.load(shape_dir, device="cpu", shape_buckets=True, io_binding=True)
    ids, _ = model.tokenize(texts_of_lengths([3, 20, 5]))
    result = model.infer_ids(ids)
    assert as_ints(result.logits) == [(3, 32), (20, 32), (5, 32)]
    assert result.padded_tokens == 4 * 32  # 3 rows padded to the batch bucket 4
    chunked = model.infer_ids(ids, chunk_size=2)  # [3, 5] and [20]: two length buckets
    assert as_ints(chunked.logits) == [(3, 16), (20, 32), (5, 16)]
    assert chunked.padded_tokens == 2 * 16 + 1 * 32
    np.testing.assert_allclose(chunked.probs.sum(axis=1), 1.0, rtol=1e-6)
    assert model.infer_ids(ids, chunk_size=3).padded_tokens == 3 * 32  # a full chunk gets no filler rows
    assert model.infer_ids(ids, chunk_size=20).padded_tokens == 4 * 32  # rows bucketed up to the chunk size
    model.reload()  # a rebuilt session keeps the buckets and the binding
    assert as_ints(model.infer_ids(ids).logits) == [(3, 32), (20, 32), (5, 32)]
    assert model._runner is not None


def test_runtime_turns_buckets_and_binding_on_for_cuda(shape_dir: Path) -> None:
    model = SentimentModel.load(shape_dir, device="cpu")
    model._configure(_FakeCudaSession(graph=False))  # type: ignore[arg-type]
    assert model._length_buckets == (16, 32, 64, 128) and model._batch_buckets is not None
    assert model._runner is not None and not model._runner.static
    model._session_args["cuda_graph"] = True
    model._configure(_FakeCudaSession(graph=True))  # type: ignore[arg-type]
    assert model._runner is not None and model._runner.static
    model._session_args["shape_buckets"] = False  # CUDA graphs need fixed shapes: none without buckets
    model._configure(_FakeCudaSession(graph=True))  # type: ignore[arg-type]
    assert model._length_buckets is None and model._runner is not None and not model._runner.static
    model._session_args.update(io_binding=False, cuda_graph=False)
    model._configure(_FakeCudaSession(graph=False))  # type: ignore[arg-type]
    assert model._runner is None
