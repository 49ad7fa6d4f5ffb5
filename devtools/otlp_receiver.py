"""A stand-in OpenTelemetry collector: OTLP/HTTP (``POST /v1/traces``, protobuf) on a local port.

It counts each export request (``requests``, ``bytes``) and, unless made with ``decode=False``, decodes it with
opentelemetry-proto (installed with the ``[otel]`` extra) and keeps the spans, so a test can run the worker with the
real OTLP exporter (``OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint``) and check what it sent. The benchmarks use it
with ``decode=False`` (``benchmarks/ceiling_tracing.py``): counted only, so its CPU stays small. Only the subset the
exporter uses: no gzip (the exporter's default is none), always 200 on ``/v1/traces``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class ReceivedSpan:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    links: list[tuple[str, str, str, dict[str, Any]]]  # trace id, span id, tracestate, attributes
    status_code: int
    resource: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


class OtlpReceiver:
    """``with OtlpReceiver() as receiver:`` — ``receiver.endpoint`` for OTEL_EXPORTER_OTLP_ENDPOINT, ``spans()``;
    ``requests`` and ``bytes`` count what came (``decode=False``: counted only, no spans kept)."""

    def __init__(self, *, decode: bool = True) -> None:
        self._spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        self._decode = decode
        self.requests = 0
        self.bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status = 200 if self.path == "/v1/traces" else 404
                if status == 200:
                    receiver._take(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _take(self, body: bytes) -> None:
        if not self._decode:
            with self._lock:
                self.requests += 1
                self.bytes += len(body)
            return
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found: list[ReceivedSpan] = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found.append(
                        ReceivedSpan(
                            name=span.name,
                            kind=span.kind,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            attributes=_attributes(span.attributes),
                            links=[
                                (
                                    link.trace_id.hex(),
                                    link.span_id.hex(),
                                    link.trace_state,
                                    _attributes(link.attributes),
                                )
                                for link in span.links
                            ],
                            status_code=span.status.code,
                            resource=resource,
                        )
                    )
        with self._lock:
            self.requests += 1
            self.bytes += len(body)
            self._spans.extend(found)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def __enter__(self) -> OtlpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
