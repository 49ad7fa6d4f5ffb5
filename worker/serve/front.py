"""A worker's HTTP servers: the API (uvicorn on its own thread) and the metrics port; the graceful stop of both.

- With ``http_port`` set (``run --http-port P``, or ``serve``) the API app serves ``/predict``, ``/info``,
  ``/health`` and also ``/metrics``, ``/healthz``, ``/readyz`` (the same registry and health state as the stream);
  a different ``metrics_port`` gets the same operations routes from the same app stack.
- Without ``http_port``, ``metrics_port`` is served by :class:`worker.probes.MetricsServer` (``http.server``, no
  dependency): the core install (``pip install sentiment-worker``, and the Docker images) has no ``[http]`` extra.

The servers start before the model loads (probes answer while it loads; ``/predict`` answers 503 until
:meth:`Servers.attach`). Stop order on SIGTERM in ``run --http-port`` (:class:`StopBoth`): the API stops accepting
(new requests 503, the listening socket closes), the requests in flight are answered (the inference stage still
runs), then the stream drains as usual; after the stage ended, anything left is answered 503.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from worker.model.errors import extra_imports, require_extra
from worker.observability import get_logger
from worker.settings import Batching, Http, Input, Observability

if TYPE_CHECKING:
    from worker.health import HealthState
    from worker.metrics import WorkerMetrics
    from worker.model.runtime import SentimentModel
    from worker.serve.service import Service
    from worker.stream.batcher import InferQueue

log = get_logger(__name__)

HTTP_EXTRA = "http"
# The distributions of pyproject.toml's [http] extra (a unit test keeps the two lists equal).
HTTP_PACKAGES: tuple[str, ...] = ("fastapi", "starlette", "uvicorn")
SERVE_DEFAULT_PORT = 8080
START_TIMEOUT_S = 15.0


class HttpServer:
    """An ASGI app under uvicorn on a daemon thread (uvicorn leaves the signals alone off the main thread)."""

    def __init__(self, app: Any, host: str, port: int, *, graceful_s: float, name: str = "http-server") -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_keep_alive=5,
            timeout_graceful_shutdown=max(1, round(graceful_s)),
        )
        self.host = host
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name=name, daemon=True)

    def start(self, timeout: float = START_TIMEOUT_S) -> HttpServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.server.should_exit = True
                raise OSError(f"the HTTP server could not listen on {self.host}:{self.server.config.port}")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    def stop_accepting(self) -> None:
        """Close the listening socket; uvicorn then finishes the requests in flight and ends its thread."""
        self.server.should_exit = True

    def stop(self, timeout: float) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(2.0)


class _Stoppable(Protocol):
    def start(self) -> Any: ...

    def stop(self) -> None: ...


class Servers:
    """The API server (with the operations routes) and/or the metrics-port server of one process."""

    def __init__(
        self,
        http: Http,
        observability: Observability,
        metrics: WorkerMetrics,
        health: HealthState,
        *,
        mode: str,
        http_port: int | None,
        input: Input,
        batching: Batching,
    ) -> None:
        """``http``: the API's settings; ``observability``: metrics_port and the shutdown bound; ``input`` and
        ``batching``: what ``/predict`` applies to its texts (the text limits) and reports (``/info``)."""
        self.settings = http
        self.observability = observability
        self.input = input
        self.batching = batching
        self.metrics = metrics
        self.health = health
        self.mode = mode
        self.http_port = http_port
        self.service: Service | None = None
        self.api: HttpServer | None = None
        self.ops: HttpServer | _Stoppable | None = None

    def start(self) -> Servers:
        try:
            return self._start()
        except BaseException:
            self.stop("the server could not start")
            raise

    def _start(self) -> Servers:
        s = self.settings
        graceful = min(s.http_timeout_s, self.observability.shutdown_timeout_s) + 1.0
        if self.http_port is not None:
            purpose = "the HTTP API (http_port, `sentiment-worker serve`)"
            require_extra(HTTP_EXTRA, HTTP_PACKAGES, purpose)
            with extra_imports(HTTP_EXTRA, purpose):
                from worker.serve.routes import create_app
                from worker.serve.service import Service

                self.service = Service(s, self.input, self.batching, self.metrics, self.health, mode=self.mode)
                self.api = HttpServer(create_app(self.service), s.http_host, self.http_port, graceful_s=graceful)
            self.api.start()
            log.info("http_listening", host=s.http_host, port=self.api.port, auth=s.http_api_key is not None)
        port = self.observability.metrics_port
        if port is not None and not (self.api is not None and port == self.http_port and port != 0):
            if self.service is not None:
                from worker.serve.routes import create_app

                app = create_app(self.service, api=False)
                self.ops = HttpServer(app, "0.0.0.0", port, graceful_s=1.0, name="metrics-server").start()
            else:
                from worker.probes import MetricsServer

                self.ops = MetricsServer(port, self.metrics, self.health)
                self.ops.start()
            log.info("metrics_listening", port=self.metrics_port)
        return self

    @property
    def port(self) -> int | None:
        """The API's bound port."""
        return self.api.port if self.api is not None else None

    @property
    def metrics_port(self) -> int | None:
        if self.ops is not None:
            return int(self.ops.port)  # type: ignore[union-attr]
        return self.port if self.observability.metrics_port is not None else None

    def attach(self, model: SentimentModel, inbox: InferQueue, rollout: Any = None) -> None:
        """``/predict`` goes live; ``rollout`` (``worker/rollout/controller.py``) serves ``POST /admin/model``."""
        if self.service is not None:
            self.service.attach(model, inbox, rollout)
            log.info("http_ready", port=self.port, mode=self.mode)

    def close(self) -> None:
        """Stop accepting requests (new ones get 503 on open connections; the listening socket closes)."""
        if self.service is not None:
            self.service.close()
        if self.api is not None:
            self.api.stop_accepting()

    def wait_idle(self, timeout: float) -> bool:
        return self.service is None or self.service.wait_idle(timeout)

    def stop(self, reason: str = "the server stopped") -> None:
        """After the inference stage ended: answer what is left (503), stop the servers."""
        if self.service is not None:
            self.service.close()
            if self.service.lane is not None:
                self.service.lane.fail_all(reason)
        if self.api is not None:
            self.api.stop(timeout=2.0)
        if self.ops is not None:
            if isinstance(self.ops, HttpServer):
                self.ops.stop(timeout=2.0)
            else:
                self.ops.stop()

    def stopper(self, runner: Any) -> Any:
        """What the signal handler stops: the runner alone, or (with the API) :class:`StopBoth`."""
        return runner if self.service is None else StopBoth(self, runner)


class StopBoth:
    """SIGTERM in ``run --http-port``: the API stops accepting at once; once its requests in flight are answered
    (at most ``min(http_timeout_s, shutdown_timeout_s)``) the runner stops gracefully (the stream drains). A second
    signal (or ``force``) forces both."""

    def __init__(self, servers: Servers, runner: Any) -> None:
        self.servers = servers
        self.runner = runner
        self._stopping = False
        self._lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        return self._stopping or bool(self.runner.stopping)

    def stop(self, force: bool = False) -> None:
        with self._lock:
            again, self._stopping = self._stopping, True
        self.servers.close()
        if force or again:
            self.runner.stop(force=True)
            return
        threading.Thread(target=self._stop_runner_when_idle, name="http-drain", daemon=True).start()

    def _stop_runner_when_idle(self) -> None:
        idle = self.servers.wait_idle(
            min(self.servers.settings.http_timeout_s, self.servers.observability.shutdown_timeout_s)
        )
        log.info("http_drained", idle=idle)
        self.runner.stop()
