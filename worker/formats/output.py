"""Where the result goes in the output record: ``output_field`` and ``output_mode`` (copy or slim).

- ``copy`` (default): the input's payload (JSON object, CloudEvent data, registry record) with the result at
  ``output_field`` and its meta beside it, named ``<last part of output_field>_meta`` (default: ``sentiment`` and
  ``sentiment_meta`` at the top level). Objects on the way are made when missing; the input's are never changed.
- ``slim``: a new object holding ``key`` (the Kafka key as UTF-8 text, undecodable bytes escaped as ``\\xNN``; null
  for none), each of ``output_id_fields`` found in the input at the same place (a missing one is left out), and the
  result and its meta placed as in copy mode. For high-volume topics whose consumers want the result only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from worker.formats.fields import FieldError, FieldPath


class OutputShape:
    """``place(payload, key, sentiment, meta)`` → the output object. ``name`` is set for the fast case: copy mode with
    a top-level ``output_field`` (the encoder then adds two keys to a copy of the payload itself)."""

    __slots__ = ("id_fields", "meta_name", "name", "path", "slim")

    def __init__(self, field: str = "sentiment", mode: str = "copy", id_fields: Sequence[str] = ()) -> None:
        if mode not in ("copy", "slim"):
            raise ValueError(f"output_mode {mode!r}: copy or slim")
        self.path = FieldPath(field)
        self.slim = mode == "slim"
        self.name = self.path.name if not self.slim else None
        self.meta_name = self.path.parts[-1] + "_meta"
        self.id_fields = [FieldPath(spec) for spec in id_fields]

    def place(self, payload: dict[str, Any], key: bytes | None, sentiment: Any, meta: Any) -> dict[str, Any]:
        if self.slim:
            out: dict[str, Any] = {"key": None if key is None else key.decode("utf-8", "backslashreplace")}
            for path in self.id_fields:
                try:
                    value = path.get(payload)
                except FieldError:
                    continue
                path.put(out, value)
        else:
            out = dict(payload)
        parent = self.path.put(out, sentiment)
        parent[self.meta_name] = meta
        return out
