"""Logging setup (structlog): JSON in production, pretty on a TTY; one event name per line, key=value context."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from typing import Any

import structlog

MASK = "**********"
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def redact_secrets(values: Iterable[str | None]) -> None:
    """Mask these values wherever they would appear in a log line, whoever logs them, at every level.

    Settings register their secrets here when they are loaded, so a third-party library that logs its whole
    configuration (kafka-python's admin client does at debug level, passwords included) prints the mask.
    """
    with _secrets_lock:
        _secrets.update(v for v in values if v and len(v) >= 4)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class _RedactingFormatter(structlog.stdlib.ProcessorFormatter):
    """The final rendering of every log line (ours and third-party), with registered secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Configure structlog and route stdlib logging (kafka, onnxruntime) through the same renderer.

    Logs go to stderr by default so stdout stays free for command output.
    """
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = _RedactingFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Third-party chatter stays at warning unless we debug.
    noisy_level = logging.DEBUG if level == "debug" else logging.WARNING
    for name in ("kafka", "onnxruntime", "transformers", "optimum", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(name).setLevel(noisy_level)
    if level != "debug":
        # kafka-python logs expected reconnect chatter at ERROR; keep it out of the worker's logs.
        logging.getLogger("kafka.conn").setLevel(logging.CRITICAL)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


class _QuietConnectionErrors(logging.Filter):
    """Drop kafka-python's per-attempt connection chatter (refused, reset, no node, metadata refresh failed).

    During an outage the client logs these several times a second; the runner reports the outage itself,
    once per ``log_interval_s`` (``broker_unreachable``, then ``broker_reachable`` with its duration).
    """

    MARKERS = (
        "KafkaConnectionError",
        "ECONNREFUSED",
        "Connection reset",
        "socket disconnected",
        "No node available",
        "NodeNotReadyError",
        "Metadata refresh: failed",
        "not ready; waiting",  # bootstrap attempts while the cluster is absent at start
        "Unable to bootstrap",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("kafka"):
            return True
        try:
            message = record.getMessage()
        except Exception:
            return True
        return not any(marker in message for marker in self.MARKERS)


def quiet_client_connection_errors(level: str) -> None:
    if level == "debug":
        return
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _QuietConnectionErrors) for f in handler.filters):
            handler.addFilter(_QuietConnectionErrors())
