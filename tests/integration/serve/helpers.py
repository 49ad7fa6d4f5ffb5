"""Real HTTP against the real server (uvicorn) for the /predict tests: a tiny client and an in-process server."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

from worker.settings import Settings, load_settings


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:300]!r})"


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    timeout: float = 30.0,
    conn: http.client.HTTPConnection | None = None,
) -> Answer:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        if own:
            conn.close()


def predict(port: int, body: Any, **kwargs: Any) -> Answer:
    return request(port, "POST", "/predict", body, **kwargs)


def serve_settings(model_dir: Path, **overrides: Any) -> Settings:
    return load_settings(**{"model": str(model_dir), "device": "cpu", "http_port": 0, "http_host": "127.0.0.1",
                            **overrides})  # fmt: skip


class ServerThread:
    """``sentiment-worker serve`` in this process (a thread; no signal handling: :meth:`stop` stops it)."""

    def __init__(self, settings: Settings, model_dir: Path) -> None:
        from worker.app import HttpOnly

        self.server = HttpOnly(settings, model_dir=model_dir)
        self.rc: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.rc = self.server.run()

    def __enter__(self) -> ServerThread:
        self.thread.start()
        assert self.server.started.wait(60), "the server did not start"
        assert self.server.servers is not None and self.server.servers.port
        return self

    @property
    def port(self) -> int:
        assert self.server.servers is not None and self.server.servers.port is not None
        return self.server.servers.port

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"
