"""The stand-in OpenTelemetry collector for tests: it lives in :mod:`devtools.otlp_receiver` (the benchmarks use it
too); re-exported here for the tests."""

from devtools.otlp_receiver import OtlpReceiver, ReceivedSpan

__all__ = ["OtlpReceiver", "ReceivedSpan"]
