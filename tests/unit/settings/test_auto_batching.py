"""``auto`` batch sizes are decided by the provider the model's session got, not by the machine: a worker that asked
for ``device auto`` (or ``cuda``) and whose session fell back to the CPU gets the CPU sizes (64 / 8)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.unit.stream.helpers import FakeModel
from worker.model import buckets
from worker.model.buckets import resolve_batching
from worker.settings import Batching, load_settings

pytestmark = pytest.mark.unit

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class FallenBack(FakeModel):
    """A model whose session asked for CUDA and got the CPU (or got CUDA: ``provider``)."""

    def __init__(self, provider: str) -> None:
        super().__init__()
        self.provider = provider


@pytest.fixture(autouse=True)
def _a_gpu_is_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(buckets, "gpu_visible", lambda: True)  # what the machine has must not decide


def test_settings_leave_auto_alone_until_the_provider_is_known() -> None:
    batching = load_settings(device="cuda").batching
    assert (batching.max_batch_size, batching.inference_batch_size) == ("auto", "auto") and not batching.resolved
    with pytest.raises(ValueError, match="resolve the Batching section"):
        _ = batching.batch_size
    with pytest.raises(ValueError, match="inference_batch_size is 'auto'"):
        _ = batching.chunk_size


@pytest.mark.parametrize(("provider", "sizes"), [(CPU, (64, 8)), (CUDA, (1024, 256))])
def test_the_runner_sizes_batches_by_its_models_provider(provider: str, sizes: tuple[int, int]) -> None:
    from worker.stream.runner import Runner

    settings = load_settings(bootstrap_servers="h:1", input_topics="in", device="auto")
    runner = Runner(settings, FallenBack(provider))  # type: ignore[arg-type]
    assert (runner.batching.batch_size, runner.batching.chunk_size) == sizes


def test_the_http_service_reports_the_sizes_of_its_models_provider() -> None:
    from worker.health import HealthState
    from worker.metrics import WorkerMetrics
    from worker.serve.service import Service

    settings = load_settings(device="cuda", max_wait_ms=5)
    service = Service(settings.http, settings.input, settings.batching, WorkerMetrics(), HealthState(), mode="serve")
    model = SimpleNamespace(
        provider=CPU, model_id="m", revision=None, precision="fp32", labels=["N", "P"], max_length=128, sha256="0"
    )
    service.attach(model, inbox=SimpleNamespace())  # type: ignore[arg-type]
    info = service.info()
    assert (info["max_batch_size"], info["inference_batch_size"], info["max_batch_requests"]) == (64, 8, 64)


def test_numbers_given_are_kept_whatever_the_provider() -> None:
    given = Batching(max_batch_size=16, inference_batch_size=4)
    assert resolve_batching(given, CUDA) == given and given.resolved
    half = resolve_batching(Batching(max_batch_size=16), CUDA)
    assert (half.max_batch_size, half.inference_batch_size) == (16, 256)
    assert resolve_batching(half, CPU) == half  # resolving twice changes nothing
