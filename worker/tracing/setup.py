"""The batch tracer a worker runs with, from the standard ``OTEL_*`` environment (:func:`open_tracer`).

The no-op :class:`~worker.stream.common.ports.NullBatchTracer` unless spans were asked for
(``OTEL_TRACES_EXPORTER`` other than ``none``, or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``), the SDK is not
disabled (``OTEL_SDK_DISABLED``) and the ``[otel]`` extra is installed (else one info line says why tracing is off);
then :class:`~worker.tracing.otel.OtelBatchTracer` on an SDK ``TracerProvider`` with the exporters asked for.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.model.errors import missing_distributions
from worker.observability import get_logger
from worker.stream.common.ports import NullBatchTracer

if TYPE_CHECKING:
    from worker.tracing.otel import OtelBatchTracer

log = get_logger(__name__)

OTEL_EXTRA = "otel"
# The distributions of pyproject.toml's [otel] extra (a unit test keeps the two lists equal).
OTEL_PACKAGES: tuple[str, ...] = ("opentelemetry-api", "opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http")
SERVICE_NAME = "sentiment-worker"  # service.name unless OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES name one
EXPORTERS = ("otlp", "console", "none")
_TRUE = ("true", "1", "yes", "on")


def tracing_asked(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for spans: an exporter other than ``none``, or an OTLP endpoint."""
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if exporters:
        return any(e != "none" for e in exporters)
    return bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def open_tracer(
    *, consumer_group: str | None = None, env: Mapping[str, str] | None = None
) -> NullBatchTracer | OtelBatchTracer:
    """The batch tracer the environment asks for (see the module's doc); ``close()`` it when the worker stops."""
    env = os.environ if env is None else env
    if not tracing_asked(env):
        return NullBatchTracer()
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        log.info("tracing_off", reason="OTEL_SDK_DISABLED is set")
        return NullBatchTracer()
    missing = missing_distributions(OTEL_PACKAGES)
    if missing:
        log.info(
            "tracing_off",
            reason=f"the [{OTEL_EXTRA}] extra is not installed (missing: {', '.join(missing)})",
            hint=f"pip install 'sentiment-worker[{OTEL_EXTRA}]'",
        )
        return NullBatchTracer()
    try:
        return _otel_tracer(env, consumer_group)
    except ImportError as exc:
        log.info("tracing_off", reason=f"OpenTelemetry could not be imported: {exc}", hint=f"[{OTEL_EXTRA}] extra")
        return NullBatchTracer()


def _otel_tracer(env: Mapping[str, str], consumer_group: str | None) -> NullBatchTracer | OtelBatchTracer:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from worker import __version__
    from worker.tracing.otel import OtelBatchTracer

    exporters = [(name, exporter) for name in _exporter_names(env) if (exporter := _exporter(name, env)) is not None]
    if not exporters:
        log.info("tracing_off", reason="no usable span exporter", OTEL_TRACES_EXPORTER=env.get("OTEL_TRACES_EXPORTER"))
        return NullBatchTracer()
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    fill: dict[str, Any] = {}
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        fill["service.name"] = SERVICE_NAME
    if "service.version" not in resource.attributes:
        fill["service.version"] = __version__
    resource = resource.merge(Resource(fill))
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER / _ARG
    for _name, exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    log.info(
        "tracing_on",
        exporters=[name for name, _ in exporters],
        service=resource.attributes.get("service.name"),
        endpoint=_without_userinfo(
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        ),
    )
    return OtelBatchTracer(provider, consumer_group=consumer_group)


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if e.strip()]
    return [name for name in dict.fromkeys(names) if name != "none"]


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    """The span exporter ``name`` stands for, or None (logged) when it is unknown or not installed."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stdout)
    if name != "otlp":
        log.warning("tracing_exporter_unknown", exporter=name, known=list(EXPORTERS))
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
    protocol = protocol.strip().lower() or "http/protobuf"
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            log.warning(
                "tracing_exporter_missing",
                protocol=protocol,
                hint="pip install opentelemetry-exporter-otlp-proto-grpc, or use http/protobuf (the [otel] extra's)",
            )
            return None
        return GrpcExporter()
    if protocol != "http/protobuf":
        log.warning("tracing_protocol_unsupported", protocol=protocol, supported=["http/protobuf", "grpc"])
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / HEADERS / TIMEOUT / COMPRESSION / CERTIFICATE


def _without_userinfo(url: str | None) -> str | None:
    """``url`` as it may be logged: a ``user:password@`` part is cut (the headers are never logged)."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    host, _, path = rest.partition("/")
    return f"{scheme}{sep}{host.rpartition('@')[2]}" + (f"/{path}" if path else "")
