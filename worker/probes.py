"""The HTTP handler of the probe servers: GET /metrics, /healthz and /readyz.

One handler for the worker's server (``worker/metrics.py``) and the supervisor's (``worker/supervisor/observe.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST


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
