"""Streaming pipeline stages: source → decode → batcher → infer → encode → sink → offsets/commit; runner wires them."""
