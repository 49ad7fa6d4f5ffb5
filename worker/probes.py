"""The probe servers: GET /metrics, /healthz and /readyz.

One handler (:func:`probe_handler`) for the worker's server (:class:`MetricsServer`, on ``metrics_port`` when the
HTTP API isn't there to serve them: ``http.server``, no dependency) and the supervisor's
(``worker/supervisor/observe.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from worker.observability import get_logger

if TYPE_CHECKING:
    from worker.health import HealthState
    from worker.metrics import WorkerMetrics

log = get_logger(__name__)


def probe_handler(
    render: Callable[[], bytes], verdict: Callable[[str], tuple[bool, dict[str, Any]]]
) -> type[BaseHTTPRequestHandler]:
    """GET /metrics (``render()``), /healthz and /readyz (``verdict(path)``: ok, details) and a JSON 404 else; the
    worker's server and the supervisor's (``worker/supervisor/observe.py``) both use it."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "sentiment-worker"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/metrics":
                self._send(HTTPStatus.OK, render(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, details = verdict(path)
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._send(status, json.dumps(details).encode(), "application/json")
            else:
                body = json.dumps({"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]})
                self._send(HTTPStatus.NOT_FOUND, body.encode(), "application/json")

        def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes and scrapes every few seconds would drown the logs

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on a background daemon thread."""

    def __init__(self, port: int, metrics: WorkerMetrics, health: HealthState, host: str = "0.0.0.0") -> None:
        self._requested_port = port
        self._host = host
        self.metrics = metrics
        self.health = health
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the free port picked for 0) once started, else the requested one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    def start(self) -> None:
        if self._server is not None:
            return
        server = _Server((self._host, self._requested_port), _make_handler(self.metrics, self.health))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="metrics-server", daemon=True
        )
        self._thread.start()
        log.info("metrics_server_started", host=self._host, port=self.port)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None
        log.info("metrics_server_stopped")

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _make_handler(metrics: WorkerMetrics, health: HealthState) -> type[BaseHTTPRequestHandler]:
    def render() -> bytes:
        metrics.set_health(health)
        return metrics.render()

    return probe_handler(render, lambda path: health.liveness() if path == "/healthz" else health.readiness())
