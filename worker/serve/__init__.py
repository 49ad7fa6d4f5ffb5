"""The HTTP inference API (TEI-compatible ``POST /predict``), sharing the model and the inference stage with the stream.

- :mod:`worker.serve.lane`: requests → items with a reply, into the stream's inference queue (bounded admission);
- :mod:`worker.serve.api`: request validation, scores, TEI's error shape (no web framework);
- :mod:`worker.serve.routes`: the FastAPI app (needs the ``[http]`` extra);
- :mod:`worker.serve.front`: the uvicorn server on its thread, ``/metrics`` ``/healthz`` ``/readyz`` folded in,
  the metrics-port fallback without the extra, and the graceful stop of ``run --http-port``.

``sentiment-worker serve`` (HTTP only, no Kafka) is assembled with the stream worker, in ``worker/app.py``.
"""
