"""sentiment-worker: enrich Kafka event streams with sentiment (ONNX DistilBERT on ONNX Runtime)."""

__version__ = "0.1.0"
