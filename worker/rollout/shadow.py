"""Shadow mode: a candidate model also scores a sample of the inputs, off the output path.

With ``shadow_model`` set, the inference stage hands every scored call to :meth:`Shadow.offer` (its ``on_scored``
hook), which keeps a ``shadow_sample_rate`` sample of the inputs (their token ids, text and the serving model's
label) and puts it in a bounded queue without waiting: when the queue is full the sample is dropped and counted
(``sentiment_shadow_dropped_total``), so the shadow can never slow the output path by more than the sampling. The
``shadow-model`` thread scores what it takes with the shadow model (loaded on that thread at start, one intra-op
thread: at most about one core) and publishes agreement (``sentiment_shadow_compared_total{result}``,
``sentiment_shadow_agreement_ratio``) and latency (``sentiment_shadow_latency_seconds``). Outputs never see it.
"""

from __future__ import annotations

import contextlib
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.model.buckets import resolve_batching
from worker.observability import get_logger
from worker.rollout.metrics import ShadowMetrics
from worker.settings import Batching, Inference, ModelRollout
from worker.stream.common.ports import Model
from worker.stream.common.types import Item, Scorer

log = get_logger(__name__)

QUEUE_CALLS = 8  # sampled calls waiting for the shadow model; more are dropped
Sample = tuple[list[list[int]], list[str], str, list[str]]  # ids, texts, their vocab, the serving model's labels


class Shadow:
    def __init__(
        self,
        rollout: ModelRollout,
        inference: Inference,
        batching: Batching,
        registry: Any,
        *,
        load: Callable[[Path, Inference], Model],
        resolve: Callable[[Inference], Path] | None = None,
        seed: int | None = None,
    ) -> None:
        """``rollout.shadow_model`` is loaded as ``inference`` says (one intra-op thread), its model calls sized by
        ``batching`` (``"auto"``: by the provider the shadow model's session got)."""
        self.shadow_model = rollout.shadow_model
        self.inference = inference
        self.batching = batching
        self.rate = rollout.shadow_sample_rate
        self.metrics = ShadowMetrics(registry)
        self.model: Model | None = None  # once loaded
        self._load = load
        self._resolve = resolve
        self._rng = random.Random(seed)
        self._queue: queue.Queue[Sample | None] = queue.Queue(maxsize=QUEUE_CALLS)
        self._thread = threading.Thread(target=self._run, name="shadow-model", daemon=True)
        self.loaded = threading.Event()

    def start(self) -> Shadow:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self.model = None  # offer() takes nothing more
        with contextlib.suppress(queue.Full):  # full: the thread sees ``model`` gone after its next sample
            self._queue.put_nowait(None)
        self._thread.join(timeout)

    # ---- the inference stage's hook (its thread: never blocks, never raises) ---------------------------------
    def offer(self, items: Sequence[Item], probs: np.ndarray, scorer: Scorer) -> None:
        if self.model is None:
            return
        try:
            rate, rng = self.rate, self._rng
            picked = range(len(items)) if rate >= 1.0 else [i for i in range(len(items)) if rng.random() < rate]
            if not picked:
                return
            best = probs.argmax(axis=1)
            vocab = items[picked[0]].vocab
            sample: Sample = (
                [items[i].ids for i in picked],
                [items[i].text for i in picked],
                vocab if all(items[i].vocab == vocab for i in picked) else "",
                [scorer.labels[int(best[i])] for i in picked],
            )
            self._queue.put_nowait(sample)
        except queue.Full:
            self.metrics.dropped.inc(len(picked))
        except Exception as exc:
            log.warning("shadow_offer_failed", error=repr(exc))

    # ---- the shadow thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        if not self._start_model():
            return
        while (sample := self._queue.get()) is not None:
            model = self.model
            if model is None:
                return
            ids, texts, vocab, serving = sample
            try:
                started = time.perf_counter()
                if not vocab or vocab != model.vocab:
                    ids, _ = model.tokenize(texts)  # another tokenizer than the serving model's
                chunk = resolve_batching(self.batching, model.provider).chunk_size
                probs = model.infer_ids(ids, chunk_size=chunk).probs
                seconds = time.perf_counter() - started
            except Exception as exc:
                self.metrics.failures.inc()
                log.warning("shadow_inference_failed", error=repr(exc)[:300])
                continue
            labels = [model.labels[i] for i in np.asarray(probs).argmax(axis=1).tolist()]
            agree = sum(a == b for a, b in zip(labels, serving, strict=True))
            self.metrics.compared_batch(agree, len(labels), seconds)

    def _start_model(self) -> bool:
        try:
            from worker.model.resolve import resolve_model

            target = self.inference.model_copy(update={"model": self.shadow_model, "threads": 1})
            path = Path((self._resolve or resolve_model)(target)).resolve()
            model = self._load(path, target)
        except Exception as exc:
            log.error("shadow_model_unavailable", model=self.shadow_model, error=repr(exc)[:500],
                      note="shadow mode is off; the worker goes on")  # fmt: skip
            return False
        self.metrics.info.info({"model_id": model.model_id, "revision": model.revision or "", "sha256": model.sha256})
        log.info("shadow_model_ready", model=model.model_id, sha256=model.sha256, sample_rate=self.rate)
        self.model = model
        self.loaded.set()
        return True
