"""A body over ``http_max_body_bytes`` gets a readable 413 from every kind of client (real uvicorn, real model).

Python's urllib and requests send the whole body before they read the answer: the server answers at once, then
reads the rest of the refused body and throws it away (bounded) before it closes, where closing with the body
unread gave them a connection reset. A client that asks ``Expect: 100-continue`` (curl) is answered and the
connection closed at once (it sends nothing); a body beyond the bound is cut off there, with flat memory.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import requests

from tests.integration.serve.helpers import ServerThread, predict, serve_settings
from worker.serve import routes

pytestmark = pytest.mark.integration

MB = 1_000_000
SECRET = "body-limit-key-Xy72-not-real"


def _urllib_post(port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _push(
    port: int, head: bytes, total: int, *, chunked: bool = False, step: int = 1 << 20, wait_s: float = 15.0
) -> tuple[int, bytes]:
    """Send ``head`` then up to ``total`` body bytes (in chunked framing if ``chunked``); the body bytes the
    server let in, and what it answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    answer = bytearray()
    reader = threading.Thread(target=_read_all, args=(sock, answer), daemon=True)
    sent = 0
    try:
        sock.sendall(head)
        reader.start()
        block = b"a" * step
        if chunked:
            block = b"%x\r\n%s\r\n" % (step, block)
        while sent < total:
            try:
                sock.sendall(block)
            except OSError:  # reset or closed by the server: cut off
                break
            sent += step
        reader.join(wait_s)
    finally:
        sock.close()
    return sent, bytes(answer)


def _read_all(sock: socket.socket, into: bytearray) -> None:
    try:
        while chunk := sock.recv(65536):
            into.extend(chunk)
    except OSError:
        pass


def test_whole_body_clients_read_the_413_and_the_server_goes_on(tiny_onnx_dir: Path) -> None:
    settings = serve_settings(tiny_onnx_dir, http_api_key=SECRET)  # http_max_body_bytes: the default, 1 MiB
    assert settings.http_max_body_bytes == 1_048_576
    auth = {"Authorization": f"Bearer {SECRET}"}
    big = json.dumps({"inputs": "x" * (5 * MB)}).encode()
    with ServerThread(settings, tiny_onnx_dir) as server:
        port = server.port
        status, answer = _urllib_post(port, big, auth)  # urllib: Content-Length, the whole body, then the answer
        assert status == 413, answer
        assert answer["error_type"] == "validation" and "http_max_body_bytes" in answer["error"]

        # requests, on a session that goes on after it (the refused connection is closed, a new one opened)
        with requests.Session() as session:
            url = f"http://127.0.0.1:{port}/predict"
            refused = session.post(url, data=big, headers={**auth, "Content-Type": "application/json"}, timeout=30)
            assert refused.status_code == 413 and refused.json()["error_type"] == "validation"
            assert refused.headers["connection"] == "close"
            ok = session.post(url, json={"inputs": "fine again"}, headers=auth, timeout=30)
            assert ok.status_code == 200 and len(ok.json()) == 2

        # refused before the body is looked at (wrong key): readable too
        status, answer = _urllib_post(port, big, {"Authorization": "Bearer wrong"})
        assert status == 401 and answer["error_type"] == "unauthorized"

        # a chunked body (no Content-Length) over the limit: the rest is read, then the 413
        def chunks():
            for _ in range(5):
                yield b"x" * MB

        chunked = requests.post(f"http://127.0.0.1:{port}/predict", data=chunks(), headers=auth, timeout=30)
        assert chunked.status_code == 413 and "more than" in chunked.json()["error"]

        assert predict(port, {"inputs": "still fine"}, headers=auth).status == 200


def test_expect_100_continue_gets_the_413_before_sending_anything(tiny_onnx_dir: Path) -> None:
    with ServerThread(serve_settings(tiny_onnx_dir), tiny_onnx_dir) as server:
        head = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        )
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(head)  # and nothing more, as curl does until it hears 100 or a final answer
            answer = bytearray()
            _read_all(sock, answer)  # the server answers and closes
        assert time.monotonic() - started < 3  # answered and closed at once
        assert answer.startswith(b"HTTP/1.1 413"), bytes(answer[:200])
        assert b"100 Continue" not in answer and b'"error_type":"validation"' in answer
        assert b"connection: close" in answer.lower()


def test_a_body_beyond_the_bound_is_cut_off_with_flat_memory(
    tiny_onnx_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = serve_settings(tiny_onnx_dir, http_max_body_bytes=4096)
    bound = routes.drain_bound(settings.http_max_body_bytes)
    assert bound == routes.DRAIN_MIN_BYTES == 16 * 1024 * 1024
    slack = 24 * 1024 * 1024  # socket buffers on both sides of a loopback connection, and one step
    with ServerThread(settings, tiny_onnx_dir) as server:
        port = server.port
        # declared far beyond the bound: answered at once, nothing read
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        sent, answer = _push(port, head % (500 * MB), 500 * MB)
        assert sent < bound + slack, sent
        assert not answer or answer.startswith(b"HTTP/1.1 413")

        # chunked, endless: read and thrown away up to the bound, then cut off; memory stays flat
        rss_before = _rss_bytes()
        chunked = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        step = 1 << 20
        started = time.monotonic()
        sent, answer = _push(port, chunked, 500 * MB, chunked=True, step=step)
        print(f"\nendless chunked body: {sent / MB:.0f} MB let in (bound {bound / MB:.1f} MB) in "
              f"{time.monotonic() - started:.2f} s, RSS {(_rss_bytes() - rss_before) / MB:+.1f} MB")  # fmt: skip
        assert bound - step <= sent < bound + slack, sent  # read up to the bound, not further
        assert _rss_bytes() - rss_before < 64 * MB

        # a client that stops sending: it has the answer at once, the connection closes after DRAIN_MAX_S
        monkeypatch.setattr(routes, "DRAIN_MAX_S", 1.0)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head % (2 * MB) + b"a" * 10_000)  # 2 MB declared (under the bound), 10 kB sent
            started = time.monotonic()
            first = sock.recv(65536)
            answered = time.monotonic() - started
            rest = bytearray(first)
            _read_all(sock, rest)
            closed = time.monotonic() - started
        assert first.startswith(b"HTTP/1.1 413") and b"connection: close" in first.lower(), first
        assert answered < 0.8 < closed < 5, (answered, closed)

        assert predict(port, {"inputs": "still fine"}).status == 200
