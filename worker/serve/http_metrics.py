"""Prometheus metrics of the HTTP API, in the worker's registry (one ``/metrics`` for the stream and the API).

=========================================  =========  ==================================================
name (prefix ``sentiment_``)               type       meaning
=========================================  =========  ==================================================
http_requests_total{route,code}            counter    HTTP requests answered, by route and status code
http_request_seconds{route}                histogram  time from the request's arrival to its answer
http_inputs_total                          counter    texts classified for HTTP requests
http_inputs_batched_with_stream_total      counter    of those, texts inferred in a model call that also
                                                      carried Kafka records (shared batches)
http_queued_inputs                         gauge      HTTP texts admitted and not answered yet
http_in_flight_requests                    gauge      HTTP requests being handled
=========================================  =========  ==================================================

The model batches themselves (``sentiment_batch_size``, ``sentiment_inference_seconds``, ...) are counted by the
inference stage for stream records and HTTP inputs alike.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from worker.metrics import LATENCY_BUCKETS, PREFIX


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests answered, by route and status code.",
            ["route", "code"],
            registry=r,
        )
        self.seconds = Histogram(
            f"{PREFIX}_http_request_seconds",
            "Time from an HTTP request's arrival to its answer.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inputs = Counter(f"{PREFIX}_http_inputs", "Texts classified for HTTP requests.", registry=r)
        self.shared = Counter(
            f"{PREFIX}_http_inputs_batched_with_stream",
            "Texts of HTTP requests inferred in a model call that also carried Kafka records.",
            registry=r,
        )
        self.queued = Gauge(f"{PREFIX}_http_queued_inputs", "HTTP texts admitted and not answered yet.", registry=r)
        self.in_flight = Gauge(f"{PREFIX}_http_in_flight_requests", "HTTP requests being handled.", registry=r)

    def answered(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route=route, code=str(code)).inc()
        self.seconds.labels(route=route).observe(max(0.0, seconds))

    def classified(self, stream_in_batch: Sequence[int]) -> None:
        self.inputs.inc(len(stream_in_batch))
        shared = sum(1 for n in stream_in_batch if n > 0)
        if shared:
            self.shared.inc(shared)
