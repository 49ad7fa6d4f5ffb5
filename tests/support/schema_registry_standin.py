"""The stand-in schema registry for tests (it lives in devtools/, where the benchmarks reach it too): a small
in-memory HTTP server with the Confluent Schema Registry REST subset clients use. Not Confluent's server."""

from devtools.schema_registry_standin import CONTENT_TYPE, SchemaRegistryStandIn

__all__ = ["CONTENT_TYPE", "SchemaRegistryStandIn"]
