"""Trace context across the worker: W3C ``traceparent`` propagation (always on) and OpenTelemetry spans (opt-in).

- :mod:`worker.tracing.context`: pure functions, no dependency: parse a ``traceparent``/``tracestate``, make the
  child ``traceparent`` an output record carries (same trace id, new span id). The encoder calls
  :func:`~worker.tracing.context.propagate`.
- :mod:`worker.tracing.otel`: a span per model batch (the ``[otel]`` extra), linked to each record's context.
- :mod:`worker.tracing.setup`: :func:`~worker.tracing.setup.open_tracer`, the tracer the worker's assembly hands to
  the inference stage (which calls it once per model batch), from the ``OTEL_*`` environment.

Nothing is imported here: the encoder imports :mod:`worker.tracing.context` alone. docs/tracing.md is the user's view.
"""
