"""Prometheus metrics of model roll-outs, on the worker's registry (``WorkerMetrics.registry``).

=================================================  =========  ====================================================
name (prefix ``sentiment_``)                       type       meaning
=================================================  =========  ====================================================
model_reload_requests_total{trigger}               counter    reloads asked for: signal, watch, admin
model_swaps_total                                  counter    models swapped in
model_swap_refusals_total{reason}                  counter    candidates refused, by reason (``gate.py``)
model_reload_unchanged_total                       counter    reloads that found the serving model (same sha256)
model_candidate_canary_agreement                   gauge      the last candidate's agreement with the serving model
shadow_compared_total{result}                      counter    inputs the shadow model scored: agree / disagree
shadow_agreement_ratio                             gauge      agree / compared so far
shadow_latency_seconds                             histogram  shadow model time per call
shadow_dropped_total                               counter    sampled inputs dropped (the shadow queue was full)
shadow_failures_total                              counter    shadow model calls that raised
shadow_model_info{model_id,revision,sha256}        info       the shadow model
=================================================  =========  ====================================================

The serving model is ``sentiment_model_info`` (``worker/metrics.py``): a swap replaces its one series.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from worker.metrics import LATENCY_BUCKETS, PREFIX


class RolloutMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            f"{PREFIX}_model_reload_requests", "Model reloads asked for, by trigger.", ["trigger"], registry=r
        )
        self.swaps = Counter(f"{PREFIX}_model_swaps", "Models swapped in.", registry=r)
        self.refusals = Counter(
            f"{PREFIX}_model_swap_refusals", "Swap candidates refused, by reason.", ["reason"], registry=r
        )
        self.unchanged = Counter(
            f"{PREFIX}_model_reload_unchanged", "Reloads that found the serving model (same sha256).", registry=r
        )
        self.agreement = Gauge(
            f"{PREFIX}_model_candidate_canary_agreement",
            "Share of the canary texts the last candidate gave the serving model's label (-1: not measured).",
            registry=r,
        )
        self.agreement.set(-1)


class ShadowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.compared = Counter(
            f"{PREFIX}_shadow_compared", "Inputs the shadow model scored, by agreement.", ["result"], registry=r
        )
        self.ratio = Gauge(
            f"{PREFIX}_shadow_agreement_ratio", "Share of the compared inputs the shadow model agreed on.", registry=r
        )
        self.latency = Histogram(
            f"{PREFIX}_shadow_latency_seconds", "Shadow model time per call.", buckets=LATENCY_BUCKETS, registry=r
        )
        self.dropped = Counter(f"{PREFIX}_shadow_dropped", "Sampled inputs dropped: shadow queue full.", registry=r)
        self.failures = Counter(f"{PREFIX}_shadow_failures", "Shadow model calls that raised.", registry=r)
        self.info = Info(f"{PREFIX}_shadow_model", "The shadow model: id, revision, ONNX sha256.", registry=r)
        self._agree = self._total = 0
        self._lock = threading.Lock()

    def compared_batch(self, agree: int, total: int, seconds: float) -> None:
        self.latency.observe(max(0.0, seconds))
        self.compared.labels(result="agree").inc(agree)
        self.compared.labels(result="disagree").inc(total - agree)
        with self._lock:
            self._agree += agree
            self._total += total
            if self._total:
                self.ratio.set(self._agree / self._total)
