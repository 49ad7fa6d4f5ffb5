"""Plain HTTP GETs against a local server (the worker's probes, the supervisor's, the HTTP API): real sockets."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support.waits import wait_for


def url(port: int, path: str = "/") -> str:
    return f"http://127.0.0.1:{port}{path}"


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int | None, str]:
    """(status, body) of ``GET http://127.0.0.1:port/path``; an error status with its body; (None, "") when
    nothing answers (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(url(port, path), timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError:
        return None, ""


def post(
    port: int, path: str, body: Any, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, str]:
    """(status, body) of ``POST path`` with ``body`` as JSON; an error status with its body."""
    request = urllib.request.Request(
        url(port, path),
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")


def http_status(address: str, timeout: float = 2.0) -> int | None:
    """The status of ``GET address`` (a whole URL), None when nothing answers."""
    try:
        with urllib.request.urlopen(address, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def wait_status(port: int, path: str, status: int = 200, timeout: float = 60, what: str | None = None) -> str:
    """Wait until ``GET path`` answers ``status``; returns the body."""

    def answered() -> tuple[int | None, str] | None:
        got = get(port, path, timeout=2.0)
        return got if got[0] == status else None

    return wait_for(answered, timeout, 0.1, what or f"{path} on port {port} to answer {status}")[1]
