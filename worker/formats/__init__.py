"""Record formats: where the text is, how a record is read, and how the result is written back.

- ``fields.py``: JSON Pointer / dotted paths (``text_field``, ``output_field``, ``output_id_fields``), compiled once.
- ``plain.py``: ``json`` and ``text`` input; ``cloudevents.py``: CloudEvents 1.0 (Kafka binding, both modes);
  ``schema_registry.py`` (+ ``registry_client.py``): the Confluent wire format, Avro/JSON Schema/Protobuf in, Avro out.
- ``output.py``: where the result goes (``output_field``, ``output_mode`` copy/slim).
- ``base.py``: the seams (:class:`InputFormat`, :class:`OutputFormat`) and the two ways a read fails.

:func:`build_input` and :func:`build_shape` make them from the settings (the ``Input``, ``Output`` and
``SchemaRegistry`` sections, or the flat ``Settings`` that holds them all). docs/formats.md describes each format.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.formats.base import Decoded, InputFormat, OutputFormat, RecordError, Unavailable
from worker.formats.output import OutputShape

__all__ = [
    "Decoded",
    "InputFormat",
    "OutputFormat",
    "OutputShape",
    "RecordError",
    "Unavailable",
    "build_input",
    "build_shape",
]


def build_input(
    input_settings: Any,
    *,
    output: Any = None,
    registry: Any = None,
    labels: Sequence[str] = (),
    registry_client: Any = None,
) -> InputFormat:
    """The input format of ``input_settings.input_format``. ``output``: the Output section (CloudEvents attributes,
    Avro output, output topic); ``registry``: the SchemaRegistry section; either defaults to ``input_settings``
    itself (the flat Settings holds every section). ``labels``: the model's (an Avro output schema is registered
    under every label's output topic)."""
    from worker.formats.fields import TextFields

    output = input_settings if output is None else output
    registry = input_settings if registry is None else registry
    kind = input_settings.input_format
    if kind == "text":
        from worker.formats.plain import TextInput

        return TextInput()
    fields = TextFields(input_settings.text_field, getattr(input_settings, "text_separator", " "))
    if kind == "json":
        from worker.formats.plain import JsonInput

        return JsonInput(fields)
    if kind == "cloudevents":
        from worker.formats.cloudevents import CloudEventsInput, CloudEventsOutput

        writer = CloudEventsOutput(
            getattr(output, "cloudevents_type_suffix", ".sentiment"),
            getattr(output, "cloudevents_source", "sentiment-worker"),
        )
        return CloudEventsInput(fields, writer)
    if kind == "schema-registry":
        from worker.formats.registry_client import RegistryClient
        from worker.formats.schema_registry import AvroOutput, SchemaRegistryInput

        avro = None
        if getattr(output, "output_format", "json") == "schema-registry":
            if getattr(output, "output_mode", "copy") != "copy":
                raise ValueError("output_format schema-registry writes the input's record: it needs output_mode copy")
            avro = AvroOutput(getattr(output, "output_field", "sentiment"))
        return SchemaRegistryInput(
            fields,
            registry_client or RegistryClient.from_settings(registry),
            avro_output=avro,
            output_topic=getattr(output, "output_topic", "{topic}.sentiment"),
            labels=tuple(labels),
        )
    raise ValueError(f"input_format {kind!r} is not known")


def build_shape(output: Any) -> OutputShape:
    """Where the result goes, from the Output section (``output_field``, ``output_mode``, ``output_id_fields``)."""
    return OutputShape(
        getattr(output, "output_field", "sentiment"),
        getattr(output, "output_mode", "copy"),
        getattr(output, "output_id_fields", ()),
    )
