"""``input_format=schema-registry``: records in the Confluent wire format; ``output_format=schema-registry``: Avro out.

The wire format (Confluent Schema Registry serializers): byte 0 is the magic byte ``0``, bytes 1-4 the schema id
(big-endian), then the serialized record: Avro binary, JSON text (JSON Schema) or, for Protobuf, the message
indexes (zig-zag varints) and the message. The schema comes from the registry by id (``registry_client.py``),
once per id; a reader is built per schema and kept:

- **Avro**: fastavro's ``schemaless_reader`` with the writer's schema, parsed once (the library confluent-kafka's
  ``AvroDeserializer`` runs underneath; that deserializer re-checks its caches and rules per record: 3.5x the CPU
  of the read alone in benchmarks/results/2026-12-06-cpu-2core-formats). Named references are resolved.
- **JSON Schema**: confluent-kafka's ``JSONDeserializer`` (parses and validates against the schema).
- **Protobuf**: confluent-kafka's ``ProtobufDeserializer`` with a message class built from the registered
  descriptor (fetched ``format=serialized``), then ``MessageToDict`` (proto field names).

Bad bytes (no magic byte, short, not decodable with the writer's schema, bytes left over): ``undecodable``; an id
the registry doesn't know: ``unknown_schema``. The registry unreachable: ``Unavailable`` (not the record's fault).

Output: with ``output_format=schema-registry`` and an Avro input, the output schema is the input's plus a field
(``output_field``, a top-level name) of record type ``sentiment_worker.Sentiment`` (label, score, scores, model),
registered once per input schema under ``<output topic>-value`` for every output topic the record may go to (a
``{label}`` template: one per label), before the record is accepted, so the sink never waits for the registry.
Other inputs (JSON Schema, Protobuf) and ``output_format=json`` give JSON (bytes as base64, decimals as strings).
"""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from worker.formats.base import Decoded, Headers, RecordError
from worker.formats.fields import TextFields
from worker.formats.plain import find_text
from worker.formats.registry_client import RegistryClient, UnknownSchema
from worker.records import SENTIMENT_AVRO, ErrorType

MAGIC_BYTE = 0
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _undecodable(message: str) -> RecordError:
    return RecordError(ErrorType.UNDECODABLE, message)


def wire_schema_id(value: bytes) -> int:
    """The schema id of a Confluent wire-format value; raises :class:`RecordError` (undecodable)."""
    if len(value) < 5:
        raise _undecodable(f"value of {len(value)} bytes is shorter than the Confluent wire format's 5-byte header")
    if value[0] != MAGIC_BYTE:
        raise _undecodable(f"not the Confluent wire format: magic byte {value[0]:#04x}, expected 0x00")
    return int.from_bytes(value[1:5], "big")


class AvroReader:
    kind = "AVRO"

    def __init__(self, schema: dict[str, Any] | str, named: dict[str, Any]) -> None:
        from fastavro import parse_schema, schemaless_reader

        self._reader = schemaless_reader
        self.schema = schema  # the writer's schema as JSON (the output schema is built from it)
        self.named = named  # named types of its references (fastavro's named_schemas)
        self.parsed = parse_schema(schema, named_schemas=dict(named))

    def read(self, value: bytes) -> Any:
        buf = io.BytesIO(value)
        buf.seek(5)
        record = self._reader(buf, self.parsed, None)
        left = len(value) - buf.tell()
        if left:
            raise ValueError(f"{left} bytes left after the record (written with another schema?)")
        return record


class JsonSchemaReader:
    kind = "JSON"

    def __init__(self, client: Any) -> None:
        from confluent_kafka.schema_registry.json_schema import JSONDeserializer

        # no subject: the writer's schema (by id) validates; no look-up of associations or latest versions per record
        conf = {"subject.name.strategy": _no_subject}
        self._deserialize = JSONDeserializer(None, schema_registry_client=client, conf=conf)

    def read(self, value: bytes) -> Any:
        return self._deserialize(value, None)


def _no_subject(ctx: Any, record_name: Any) -> None:
    return None


class ProtobufReader:
    kind = "PROTOBUF"

    def __init__(self, registry: RegistryClient, schema_id: int) -> None:
        from google.protobuf import descriptor_pool

        self.pool = descriptor_pool.DescriptorPool()
        self.file = self._add(registry, registry.serialized_schema(schema_id), f"schema-{schema_id}.proto", set())
        self._deserializers: dict[tuple[int, ...], Any] = {}

    def _add(self, registry: RegistryClient, schema: Any, name: str, seen: set[str]) -> Any:
        from google.protobuf import descriptor_pb2

        proto = descriptor_pb2.FileDescriptorProto.FromString(base64.standard_b64decode(schema.schema_str))
        proto.name = name
        references = {ref.name: ref for ref in schema.references or ()}
        for dependency in proto.dependency:
            if dependency in seen:
                continue
            seen.add(dependency)
            if dependency in references:
                ref = references[dependency]
                found = registry.version(ref.subject, ref.version, fmt="serialized")
                self._add(registry, found.schema, dependency, seen)
            else:
                self._add_builtin(dependency)
        self.pool.Add(proto)
        return proto

    def _add_builtin(self, dependency: str) -> None:
        import importlib

        from google.protobuf import descriptor_pb2

        module = "google.protobuf." + dependency.rsplit("/", 1)[-1].removesuffix(".proto") + "_pb2"
        if not dependency.startswith("google/protobuf/"):
            raise UnknownSchema(f"import {dependency!r} is neither a reference nor a well-known type")
        serialized = importlib.import_module(module).DESCRIPTOR.serialized_pb
        self.pool.Add(descriptor_pb2.FileDescriptorProto.FromString(serialized))

    def read(self, value: bytes) -> Any:
        from confluent_kafka.schema_registry.common.serde import SchemaId
        from google.protobuf.json_format import MessageToDict

        schema_id = SchemaId("PROTOBUF")
        schema_id.from_bytes(io.BytesIO(value))
        indexes = tuple(schema_id.message_indexes or (0,))
        deserialize = self._deserializers.get(indexes) or self._deserializer(indexes)
        return MessageToDict(deserialize(value, None), preserving_proto_field_name=True)

    def _deserializer(self, indexes: tuple[int, ...]) -> Any:
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf.message_factory import GetMessageClass

        message = self.file.message_type[indexes[0]]
        names = [message.name]
        for index in indexes[1:]:
            message = message.nested_type[index]
            names.append(message.name)
        full = ".".join([self.file.package, *names] if self.file.package else names)
        cls = GetMessageClass(self.pool.FindMessageTypeByName(full))
        deserializer = self._deserializers[indexes] = ProtobufDeserializer(cls, {"use.deprecated.format": False})
        return deserializer


@dataclass(slots=True)
class AvroTarget:
    """Where an Avro output goes: the output schema (parsed) and its id under each label's output topic."""

    parsed: Any
    ids: dict[str, int]


class SchemaRegistryInput:
    """Reads the wire format (see the module's doc); with ``avro_output``, prepares the Avro output per schema."""

    def __init__(
        self,
        fields: TextFields,
        registry: RegistryClient,
        *,
        avro_output: AvroOutput | None = None,
        output_topic: str = "{topic}.sentiment",
        labels: tuple[str, ...] = (),
    ) -> None:
        self.fields = fields
        self.registry = registry
        self.avro_output = avro_output
        self.json_output = JsonAnyOutput()
        self.output_topic = output_topic
        self.labels = labels or ("",)
        self._readers: dict[int, Any] = {}
        self._targets: dict[tuple[int, str], AvroTarget] = {}
        self._json_reader: JsonSchemaReader | None = None

    def read(self, record: Any) -> Decoded:
        value = record.value or b""
        schema_id = wire_schema_id(value)
        reader = self._readers.get(schema_id) or self._reader(schema_id)
        try:
            payload = reader.read(value)
        except Exception as exc:
            raise _undecodable(f"{reader.kind} schema id {schema_id}: {type(exc).__name__}: {exc}"[:500]) from None
        if not isinstance(payload, dict):
            raise RecordError(ErrorType.NOT_AN_OBJECT, f"the record is a {type(payload).__name__}, not an object")
        text = find_text(self.fields, payload)
        if self.avro_output is not None and isinstance(reader, AvroReader):
            target = self._targets.get((schema_id, record.topic)) or self._target(schema_id, reader, record.topic)
            return Decoded(payload, text, self.avro_output, target)
        return Decoded(payload, text, self.json_output, None)

    def _reader(self, schema_id: int) -> Any:
        try:
            schema = self.registry.schema(schema_id)
        except UnknownSchema as exc:
            raise RecordError(ErrorType.UNKNOWN_SCHEMA, str(exc)) from None
        kind = (schema.schema_type or "AVRO").upper()
        try:
            reader: Any
            if kind == "AVRO":
                reader = AvroReader(json.loads(schema.schema_str), self._avro_named(schema))
            elif kind == "JSON":
                if self._json_reader is None:
                    self._json_reader = JsonSchemaReader(self.registry.client)
                reader = self._json_reader
            elif kind == "PROTOBUF":
                reader = ProtobufReader(self.registry, schema_id)
            else:
                raise ValueError(f"schema type {kind} is not read (AVRO, JSON, PROTOBUF)")
        except UnknownSchema as exc:
            raise RecordError(ErrorType.UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}") from None
        except (RecordError, ValueError, TypeError, KeyError) as exc:  # a schema the reader can't use
            raise _undecodable(f"{kind} schema id {schema_id} can't be read: {exc}"[:500]) from None
        self._readers[schema_id] = reader
        return reader

    def _avro_named(self, schema: Any, named: dict[str, Any] | None = None) -> dict[str, Any]:
        """fastavro named schemas of ``schema``'s references (recursively)."""
        from fastavro import parse_schema

        named = {} if named is None else named
        for ref in schema.references or ():
            found = self.registry.version(ref.subject, ref.version)
            self._avro_named(found.schema, named)
            parse_schema(json.loads(found.schema.schema_str), named_schemas=named)
        return named

    def _target(self, schema_id: int, reader: AvroReader, topic: str) -> AvroTarget:
        from confluent_kafka.schema_registry import Schema
        from fastavro import parse_schema

        assert self.avro_output is not None
        output = self.avro_output.output_schema(reader.schema)
        schema = Schema(json.dumps(output), "AVRO", list(self.registry.schema(schema_id).references or ()))
        ids: dict[str, int] = {}
        for label in self.labels:
            subject = self.output_topic.format(topic=topic, label=label.lower()) + "-value"
            ids[label] = self.registry.register(subject, schema)
        target = AvroTarget(parse_schema(output, named_schemas=dict(reader.named)), ids)
        self._targets[(schema_id, topic)] = target
        return target


class AvroOutput:
    """Writes the input's Avro record plus the sentiment field, framed with the output schema's id."""

    def __init__(self, field: str = "sentiment") -> None:
        if not _AVRO_NAME.fullmatch(field):
            raise ValueError(f"output_field {field!r}: an Avro output needs a top-level name ([A-Za-z_][A-Za-z0-9_]*)")
        from fastavro import schemaless_writer

        self._writer = schemaless_writer
        self.field = field
        self.meta = field + "_meta"

    def output_schema(self, schema: Any) -> dict[str, Any]:
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ValueError("an Avro output needs a record schema")
        fields = [f for f in schema.get("fields", []) if f.get("name") != self.field]
        return {**schema, "fields": [*fields, {"name": self.field, "type": SENTIMENT_AVRO}]}

    def write(self, payload: dict[str, Any], context: AvroTarget, headers: Headers) -> tuple[bytes, Headers]:
        record = dict(payload)
        meta = record.pop(self.meta, None) or {}
        sentiment = record[self.field]
        record[self.field] = {**sentiment, "model": str((meta.get("model") or {}).get("id", ""))}
        label = sentiment["label"]
        schema_id = context.ids.get(label, context.ids.get(""))
        if schema_id is None:
            raise ValueError(f"no output schema registered for label {label!r} (the model's labels changed?)")
        buf = io.BytesIO()
        buf.write(bytes((MAGIC_BYTE,)) + schema_id.to_bytes(4, "big"))
        self._writer(buf, context.parsed, record)
        return buf.getvalue(), headers


class JsonAnyOutput:
    """JSON of a decoded registry record: bytes as base64, decimals as strings (orjson does dates, UUIDs)."""

    def write(self, payload: dict[str, Any], context: Any, headers: Headers) -> tuple[bytes, Headers]:
        return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS), headers


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
