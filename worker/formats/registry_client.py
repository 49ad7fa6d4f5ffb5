"""The Schema Registry client: confluent-kafka's ``SchemaRegistryClient`` (Confluent's REST API), configured from
the ``schema_registry_*`` settings, with its answers sorted into what the worker does about them.

- Found: cached (by confluent-kafka's client, and the decoders built from a schema by the formats).
- **Unknown** (HTTP 404: no schema with that id, no such subject/version): :class:`UnknownSchema`, the record's
  fault. Misses are remembered for ``MISS_TTL_S`` so a run of records with a bad id doesn't ask again each time.
- Anything else (connection refused, timeout, TLS, HTTP 5xx, 401/403, 429): :class:`~worker.formats.base.Unavailable`,
  not the record's fault: the worker pauses and asks again later. One try per call (``max.retries`` 0, a
  ``TIMEOUT_S`` timeout): the worker's own back-off does the retrying, without holding its poll loop.

Secrets (password, token) stay ``SecretStr`` until the client is built; they and the forms they travel in (the
``user:password`` pair and its base64 in the ``Authorization`` header) are registered with
``worker.observability.redact_secrets``, so no log line shows them, a library's debug output included.
"""

from __future__ import annotations

import base64
import threading
import time
from typing import Any, Protocol

from worker.formats.base import Unavailable
from worker.model.errors import extra_imports
from worker.observability import get_logger, redact_secrets

log = get_logger(__name__)

TIMEOUT_S = 5.0
MISS_TTL_S = 30.0


class UnknownSchema(LookupError):
    """The registry has no such schema (id) or subject version: the record that names it is bad."""


class RegistrySettings(Protocol):
    """The ``schema_registry_*`` settings (``worker.settings.SchemaRegistry``)."""

    schema_registry_url: str | None
    schema_registry_username: str | None
    schema_registry_password: Any
    schema_registry_token: Any
    schema_registry_ssl_cafile: Any
    schema_registry_ssl_certfile: Any
    schema_registry_ssl_keyfile: Any


def client_config(settings: RegistrySettings, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """confluent-kafka ``SchemaRegistryClient`` configuration; registers the secrets (and derived forms) for masking."""
    if not settings.schema_registry_url:
        raise ValueError("schema_registry_url is not set")
    conf: dict[str, Any] = {"url": settings.schema_registry_url, "timeout": timeout_s, "max.retries": 0}
    if settings.schema_registry_username:
        password = settings.schema_registry_password.get_secret_value() if settings.schema_registry_password else ""
        pair = f"{settings.schema_registry_username}:{password}"
        redact_secrets([password, pair, base64.b64encode(pair.encode()).decode()])
        conf["basic.auth.user.info"] = pair
    if settings.schema_registry_token:
        token = settings.schema_registry_token.get_secret_value()
        redact_secrets([token])
        # a plain bearer token (not Confluent Cloud's): the custom provider sends it; no logical cluster is named
        conf["bearer.auth.credentials.source"] = "CUSTOM"
        conf["bearer.auth.custom.provider.function"] = _bearer_fields
        conf["bearer.auth.custom.provider.config"] = {"bearer.auth.token": token, "bearer.auth.logical.cluster": ""}
    if settings.schema_registry_ssl_cafile:
        conf["ssl.ca.location"] = str(settings.schema_registry_ssl_cafile)
    if settings.schema_registry_ssl_certfile:
        conf["ssl.certificate.location"] = str(settings.schema_registry_ssl_certfile)
    if settings.schema_registry_ssl_keyfile:
        conf["ssl.key.location"] = str(settings.schema_registry_ssl_keyfile)
    return conf


def _bearer_fields(config: dict[str, Any]) -> dict[str, Any]:
    return config


class RegistryClient:
    """What the formats ask of the registry; every call raises :class:`UnknownSchema` or ``Unavailable``."""

    def __init__(self, conf: dict[str, Any], *, client: Any = None, clock: Any = time.monotonic) -> None:
        with extra_imports("schema-registry", "input_format schema-registry"):
            import fastavro  # noqa: F401  (the Avro reader and writer: fail here, at start, when it is missing)
            from confluent_kafka.schema_registry import SchemaRegistryClient

        self._conf = conf
        self.client = client or SchemaRegistryClient(conf)  # shared with confluent-kafka's deserializers
        self._serialized: Any = None  # a second client: Protobuf schemas fetched as serialized descriptors
        self._misses: dict[Any, float] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self.url = str(conf.get("url", ""))

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> RegistryClient:
        return cls(client_config(settings))

    def schema(self, schema_id: int) -> Any:
        """The ``confluent_kafka.schema_registry.Schema`` with this id (cached by the client)."""
        return self._ask(("id", schema_id), f"schema id {schema_id}", self.client.get_schema, schema_id)

    def serialized_schema(self, schema_id: int) -> Any:
        """A Protobuf schema as a serialized file descriptor (``format=serialized``), cached apart from ``schema``."""
        with self._lock:
            if self._serialized is None:
                from confluent_kafka.schema_registry import SchemaRegistryClient

                self._serialized = SchemaRegistryClient(self._conf)
        return self._ask(
            ("serialized", schema_id),
            f"schema id {schema_id}",
            self._serialized.get_schema,
            schema_id,
            fmt="serialized",
        )

    def version(self, subject: str, version: int, fmt: str | None = None) -> Any:
        """A subject's version (``RegisteredSchema``): how a schema's references are resolved."""
        what = f"subject {subject!r} version {version}"
        return self._ask(("version", subject, version, fmt), what, self.client.get_version, subject, version, fmt=fmt)

    def register(self, subject: str, schema: Any) -> int:
        """Register ``schema`` under ``subject`` (once: the client caches it); its id."""
        try:
            return int(self.client.register_schema(subject, schema))
        except Exception as exc:
            raise Unavailable(f"registering a schema under {subject!r} at {self.url}: {_describe(exc)}") from None

    def _ask(self, key: Any, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        missed = self._misses.get(key)
        if missed is not None and self._clock() - missed < MISS_TTL_S:
            raise UnknownSchema(f"{what} not found in the schema registry (remembered)")
        try:
            return call(*args, **kwargs)
        except Exception as exc:
            if getattr(exc, "http_status_code", None) == 404:
                self._misses[key] = self._clock()
                raise UnknownSchema(f"{what} not found in the schema registry: {_describe(exc)}") from None
            raise Unavailable(f"schema registry {self.url} did not answer for {what}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
