"""The stream's Kafka adapters: kafka-python behind kafka_compat, cluster bootstrap and topics, broker watch, header
mending, the output partitioner. They import the shared helpers (worker.stream.common), never a stage."""
