"""A simulated device: the model's forward pass replaced by a wait, to measure how well the host feeds an accelerator.

With ``simulate_device_rate`` = R (env ``SENTIMENT_SIMULATE_DEVICE_RATE``, flag ``--simulate-device-rate``) the
worker loads its model as usual (tokenizer, labels, manifest checks, ONNX Runtime session for the warm-up) and
:func:`simulate_device` wraps it: every model call then waits ``rows / R`` seconds instead of running the network, as
a device that scores R rows per second would. Everything else stays real: tokenizing, length sorting and padding,
the softmax, encoding and producing. The wait is ``time.sleep`` (it holds no GIL and burns no CPU), one call at a time
per process (a lock, like one device's queue): the poll, decode, encode and producer threads keep running meanwhile,
exactly as they would beside a GPU's ``session.run``.

It reports the provider ``SimulatedDevice``, an accelerator's: ``"auto"`` batch sizes are the GPU's (1024 records,
calls of 256), as a real device would get. The logits are a cheap deterministic function of the token ids (different
texts get different labels), not a prediction: every output says so (``sentiment_meta.model.simulated: true`` and
``provider: SimulatedDevice``, from :meth:`model_meta`). Off unless set.
A rollout's quality gate (canary accuracy) refuses a simulated candidate: a simulated run is for measuring, not for
serving.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from worker.model.buckets import SIMULATED_DEVICE_PROVIDER
from worker.model.runtime import SentimentModel
from worker.observability import get_logger

log = get_logger(__name__)

# One device per process: calls of every simulated model in the process (a swapped-in one, the shadow) queue on it.
_DEVICE = threading.Lock()


def device_wait(rows: int, rate: float) -> float:
    """Hold the simulated device for ``rows / rate`` seconds (sleeping: no GIL held, no CPU burnt); the seconds
    waited, queueing for the device included."""
    started = time.perf_counter()
    with _DEVICE:
        end = time.perf_counter() + rows / rate
        while (left := end - time.perf_counter()) > 0:  # sleep() may wake early on a signal
            time.sleep(left)
    return time.perf_counter() - started


def fake_logits(input_ids: np.ndarray, attention_mask: np.ndarray, num_labels: int) -> np.ndarray:
    """float32 ``[rows, num_labels]`` logits that depend on the ids (cheap: two numpy reductions per call)."""
    total = (input_ids * attention_mask).sum(axis=1) % 997
    centred = (total.astype(np.float32) / 498.5) - 1.0  # in [-1, 1)
    slope = np.arange(num_labels, dtype=np.float32) - (num_labels - 1) / 2.0
    return np.ascontiguousarray(centred[:, None] * slope[None, :] * 4.0, dtype=np.float32)


class SimulatedDeviceModel(SentimentModel):
    """A loaded :class:`SentimentModel` whose forward pass is a wait of ``rows / rate`` seconds.

    Built by :func:`simulate_device` from a loaded model (it shares its tokenizer, labels, manifest and session);
    ``rate`` is in rows (records) per second. The rows of a call are the rows it feeds the device, filler rows of a
    batch bucket included (on CPU no bucket pads: the rows are the records)."""

    rate: float

    def batch_logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        device_wait(int(input_ids.shape[0]), self.rate)
        return fake_logits(input_ids, attention_mask, len(self.labels))

    def model_meta(self) -> dict[str, Any]:
        """The wrapped model's keys, provider ``SimulatedDevice`` and ``simulated: True``."""
        return {**self._meta, "simulated": True}

    def reload(self) -> None:
        """A new session for the wrapped model (its warm-up runs on the simulated device); still simulated."""
        self.provider = self._meta["provider"] = self._session.get_providers()[0]  # what the session compares
        try:
            super().reload()
        finally:
            self.provider = self._meta["provider"] = SIMULATED_DEVICE_PROVIDER

    def __repr__(self) -> str:
        return f"SimulatedDeviceModel(rate={self.rate:g} rows/s, model={super().__repr__()})"


def simulate_device(model: SentimentModel, rate: float) -> SimulatedDeviceModel:
    """``model`` with its forward pass replaced by a wait of rows / ``rate`` seconds (a new object; ``model`` is not
    changed)."""
    if not rate > 0:
        raise ValueError(f"the simulated device's rate must be > 0 rows per second, got {rate!r}")
    simulated = SimulatedDeviceModel.__new__(SimulatedDeviceModel)
    simulated.__dict__.update(vars(model))
    simulated.rate = float(rate)
    # an accelerator's provider: "auto" batch sizes resolve to the accelerator's (worker.model.buckets)
    simulated.provider = SIMULATED_DEVICE_PROVIDER
    simulated._meta = {**model._meta, "provider": SIMULATED_DEVICE_PROVIDER}
    log.warning(
        "simulated_device",
        rate=simulated.rate,
        model=model.model_id,
        note="the model's forward pass is replaced by a wait of rows/rate seconds: predictions are not real",
    )
    return simulated
