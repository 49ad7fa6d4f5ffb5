"""A TCP proxy in front of the embedded broker that can hold back the broker's answers to one Kafka client.

The broker advertises the proxy's port (``EmbeddedBroker(advertised_port=...)``), so every client connects through
it. Each connection's first request names its client (Kafka request header: api key, api version, correlation id,
then the client id as an int16-length string); while :meth:`AckHoldProxy.hold` is on, what the broker sends to
connections of ``held_client_id`` waits in the proxy (in order) until :meth:`release`. For the worker's producer
(client id ``<client_id>-producer``) that is a broker that stops acknowledging writes while everything else (the
consumer's fetches, heartbeats and commits) carries on.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

HOST = "127.0.0.1"


class AckHoldProxy:
    def __init__(self, held_client_id: str) -> None:
        self.held_client_id = held_client_id
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._upstream_port: int | None = None
        self._open = threading.Event()
        self._open.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.clients: list[str] = []  # client id of each connection, in order
        self.held_bytes = 0  # bytes that had to wait

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, upstream_port: int) -> AckHoldProxy:
        self._upstream_port = upstream_port
        threading.Thread(target=self._accept, name="ack-proxy", daemon=True).start()
        return self

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def close(self) -> None:
        self._closed.set()
        self._open.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self._upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            connection = {"held": None}
            threading.Thread(target=self._to_broker, args=(client, upstream, connection), daemon=True).start()
            threading.Thread(target=self._to_client, args=(upstream, client, connection), daemon=True).start()

    def _to_broker(self, client: socket.socket, upstream: socket.socket, connection: dict) -> None:
        first = b""
        try:
            while True:
                data = client.recv(262_144)
                if not data:
                    break
                if connection["held"] is None:
                    first += data
                    client_id = _client_id(first)
                    if client_id is None:
                        continue  # the header is not complete yet
                    with self._lock:
                        self.clients.append(client_id)
                    connection["held"] = client_id == self.held_client_id
                    data, first = first, b""
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close_both(client, upstream)

    def _to_client(self, upstream: socket.socket, client: socket.socket, connection: dict) -> None:
        try:
            while True:
                data = upstream.recv(262_144)
                if not data:
                    break
                if connection["held"] and not self._open.is_set():
                    with self._lock:
                        self.held_bytes += len(data)
                    self._open.wait()
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close_both(client, upstream)


def _client_id(data: bytes) -> str | None:
    """The client id of the first request on a connection, once its header is complete (size, api key, version,
    correlation id, int16 length + client id)."""
    if len(data) < 14:
        return None
    (length,) = struct.unpack(">h", data[12:14])
    if length < 0:
        return ""
    if len(data) < 14 + length:
        return None
    return data[14 : 14 + length].decode("utf-8", "replace")


def _close_both(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()
