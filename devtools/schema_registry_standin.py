"""A STAND-IN for a Confluent Schema Registry, for tests and benchmarks only: the REST subset clients use, in memory.

No Schema Registry server installs from the package registries reachable here, so tests run confluent-kafka's real
serializers and the worker's real registry client against this small HTTP server. It follows the Confluent Schema
Registry REST API (v1, ``application/vnd.schemaregistry.v1+json``) for:

- ``POST /subjects/{subject}/versions``: register (the same schema text and type → the same global id),
- ``POST /subjects/{subject}``: look a schema up under a subject,
- ``GET /schemas/ids/{id}``: a schema by id (``schemaType`` left out for AVRO, as Confluent's server does),
- ``GET /subjects/{subject}/versions/latest`` and ``/versions/{n}``: a subject's version,

with Confluent's error bodies (``{"error_code": 40401|40403|..., "message": ...}``); anything else answers 404 (the
serializers then fall back, e.g. from the association look-up to the topic-name strategy). It does not check schema
compatibility, normalise schemas, or convert Protobuf schemas between text and the serialized form (it returns what
was registered). ``stop()``/``start()`` take it off the network and back on the same port (an outage);
``requests`` records every request (method, path, headers) so tests can count look-ups and check credentials.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class _Stored:
    id: int
    schema: str
    schema_type: str
    references: list[dict[str, Any]]


@dataclass
class SchemaRegistryStandIn:
    """``with SchemaRegistryStandIn() as registry: registry.url ...``; ``username``/``password`` or ``token`` make it
    demand basic or bearer auth (401 otherwise)."""

    username: str | None = None
    password: str | None = None
    token: str | None = None
    port: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _schemas: dict[int, _Stored] = field(default_factory=dict)
    _subjects: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SchemaRegistryStandIn:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                registry._handle(self, "GET")

            def do_POST(self) -> None:
                registry._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: the registry is unreachable (connection refused) until ``start()``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SchemaRegistryStandIn:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def count(self, method: str, prefix: str) -> int:
        """Requests so far with this method whose path starts with ``prefix``."""
        return sum(1 for m, path, _ in self.requests if m == method and path.startswith(prefix))

    def register(self, subject: str, schema: str, schema_type: str = "AVRO") -> int:
        """Register directly (no HTTP); the id."""
        return self._register(subject, {"schema": schema, "schemaType": schema_type})

    # ---- REST ------------------------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        self.requests.append((method, path, {k.lower(): v for k, v in handler.headers.items()}))
        if not self._authorized(handler.headers.get("Authorization")):
            self._reply(handler, 401, {"error_code": 401, "message": "Unauthorized"})
            return
        body: dict[str, Any] = {}
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            body = json.loads(handler.rfile.read(length) or b"{}")
        parts = [unquote(p) for p in path.strip("/").split("/")]
        try:
            status, answer = self._route(method, parts, body)
        except LookupError as exc:
            status, answer = 404, {"error_code": exc.args[0], "message": exc.args[1]}
        self._reply(handler, status, answer)

    def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            stored = self._schemas.get(int(parts[2]))
            if stored is None:
                raise LookupError(40403, f"Schema {parts[2]} not found")
            return 200, self._schema_body(stored)
        if len(parts) >= 2 and parts[0] == "subjects":
            subject = parts[1]
            if method == "POST" and len(parts) == 3 and parts[2] == "versions":
                return 200, {"id": self._register(subject, body)}
            if method == "POST" and len(parts) == 2:
                return 200, self._lookup(subject, body)
            if method == "GET" and len(parts) == 4 and parts[2] == "versions":
                return 200, self._version(subject, parts[3])
        raise LookupError(404, "HTTP 404 Not Found")

    def _register(self, subject: str, body: dict[str, Any]) -> int:
        schema_type = body.get("schemaType") or "AVRO"
        with self._lock:
            for stored in self._schemas.values():
                if stored.schema == body["schema"] and stored.schema_type == schema_type:
                    break
            else:
                stored = _Stored(len(self._schemas) + 1, body["schema"], schema_type, body.get("references") or [])
                self._schemas[stored.id] = stored
            versions = self._subjects.setdefault(subject, [])
            if stored.id not in versions:
                versions.append(stored.id)
            return stored.id

    def _lookup(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        versions = self._subjects.get(subject)
        if versions is None:
            raise LookupError(40401, f"Subject '{subject}' not found.")
        schema_type = body.get("schemaType") or "AVRO"
        for number, schema_id in enumerate(versions, 1):
            stored = self._schemas[schema_id]
            if stored.schema == body["schema"] and stored.schema_type == schema_type:
                return {"subject": subject, "version": number, **self._schema_body(stored), "id": stored.id}
        raise LookupError(40403, "Schema not found")

    def _version(self, subject: str, version: str) -> dict[str, Any]:
        versions = self._subjects.get(subject)
        if not versions:
            raise LookupError(40401, f"Subject '{subject}' not found.")
        if version in ("latest", "-1"):
            number = len(versions)
        elif version.isdigit() and 1 <= int(version) <= len(versions):
            number = int(version)
        else:
            raise LookupError(40402, f"Version {version} not found.")
        stored = self._schemas[versions[number - 1]]
        return {"subject": subject, "version": number, **self._schema_body(stored), "id": stored.id}

    @staticmethod
    def _schema_body(stored: _Stored) -> dict[str, Any]:
        body: dict[str, Any] = {"schema": stored.schema}
        if stored.schema_type != "AVRO":
            body["schemaType"] = stored.schema_type
        if stored.references:
            body["references"] = stored.references
        return body

    def _authorized(self, header: str | None) -> bool:
        if self.token is not None:
            return header == f"Bearer {self.token}"
        if self.username is not None:
            expected = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            return header == f"Basic {expected}"
        return True

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", CONTENT_TYPE)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
