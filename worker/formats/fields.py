"""Where a value is in a record: a JSON Pointer (RFC 6901) or a dotted path, compiled once.

- A **JSON Pointer** begins with ``/``: ``/data/review/body``; ``~1`` stands for ``/`` and ``~0`` for ``~`` inside a
  name (``/a~1b`` is the field ``a/b``); ``/`` alone would be the whole record and names no field.
- A **dotted path** is anything else: ``review.body``; a plain name (``text``) is a top-level field. A name holding a
  dot needs a pointer.

In both, a part that is a decimal number indexes an array when the value there is one (``/items/0/text``,
``items.0.text``); on an object it is a name like any other.

:class:`FieldPath` reads (``get``) and writes (``put``, making the objects on the way); :class:`TextFields` is the
``text_field`` setting: one or more comma-separated paths, their texts joined with a separator. Lookups raise
:class:`FieldError` with a message saying which part was missing or of which type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_MISSING = object()


class FieldError(ValueError):
    """A path could not be followed in a record. ``missing``: a part was absent (else: a value of the wrong type)."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def split_paths(spec: str) -> list[str]:
    """The comma-separated paths of a setting (``title,body``), stripped, empty ones dropped."""
    return [part.strip() for part in spec.split(",") if part.strip()]


def parse_path(path: str) -> tuple[str, ...]:
    """The parts of a JSON Pointer or a dotted path. Raises ValueError for a malformed one."""
    if not path:
        raise ValueError("an empty path names no field")
    if path.startswith("/"):
        if path == "/":
            raise ValueError("'/' names the whole record, not a field")
        parts = path[1:].split("/")
        for part in parts:
            rest = part.replace("~0", "").replace("~1", "")
            if "~" in rest:
                raise ValueError(f"JSON Pointer {path!r}: '~' must be followed by 0 or 1 (RFC 6901)")
        return tuple(part.replace("~1", "/").replace("~0", "~") for part in parts)
    parts = path.split(".")
    if any(not part for part in parts):
        raise ValueError(f"dotted path {path!r} has an empty part")
    return tuple(parts)


class FieldPath:
    """One compiled path. ``name`` is set when the path is a single top-level name (the fast case)."""

    __slots__ = ("name", "parts", "spec")

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.parts = parse_path(spec)
        self.name: str | None = self.parts[0] if len(self.parts) == 1 else None

    def __repr__(self) -> str:
        return f"FieldPath({self.spec!r})"

    def get(self, record: Any) -> Any:
        """The value at the path. Raises :class:`FieldError` (missing part, or a part that is no container)."""
        value = record
        for depth, part in enumerate(self.parts):
            if isinstance(value, dict):
                value = value.get(part, _MISSING)
                if value is _MISSING:
                    raise FieldError(f"field {self._at(depth)!r} is missing", missing=True)
            elif isinstance(value, list) and part.isdigit():
                index = int(part)
                if index >= len(value):
                    raise FieldError(f"field {self._at(depth)!r} is missing (array of {len(value)})", missing=True)
                value = value[index]
            else:
                where = "the record" if depth == 0 else repr(self._at(depth - 1))
                raise FieldError(
                    f"field {self.spec!r}: {where} is {type(value).__name__}, not an object", missing=False
                )
        return value

    def find(self, record: Any) -> Any:
        """The value at the path, or ``None`` when it isn't there."""
        try:
            return self.get(record)
        except FieldError:
            return None

    def put(self, record: dict[str, Any], value: Any) -> dict[str, Any]:
        """Set the path in ``record`` to ``value``; the objects on the way are copied (the input's nested objects are
        never changed) or made. Returns the object that holds the last part. Raises :class:`FieldError` when a part
        on the way is something other than an object."""
        parent = record
        for depth, part in enumerate(self.parts[:-1]):
            child = parent.get(part)
            if child is None:
                child = {}
            elif isinstance(child, dict):
                child = dict(child)
            else:
                raise FieldError(
                    f"output field {self.spec!r}: {self._at(depth)!r} is {type(child).__name__}, not an object",
                    missing=False,
                )
            parent[part] = child
            parent = child
        parent[self.parts[-1]] = value
        return parent

    def _at(self, depth: int) -> str:
        """The path up to part ``depth``, written as the setting was (pointer or dotted)."""
        if self.spec.startswith("/"):
            return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in self.parts[: depth + 1])
        return ".".join(self.parts[: depth + 1])


class TextFields:
    """The ``text_field`` setting compiled: where the text is, and how several fields are joined.

    ``text(record)`` returns the text or raises :class:`FieldError`: a missing field (``missing=True``) or a value
    that is not a string. Joined fields: each must be there and be a string (an empty one is joined as it is).
    """

    __slots__ = ("fast_name", "paths", "separator")

    def __init__(self, spec: str | Sequence[str], separator: str = " ") -> None:
        specs = split_paths(spec) if isinstance(spec, str) else [s.strip() for s in spec if s.strip()]
        if not specs:
            raise ValueError("text_field names no field")
        self.paths = [FieldPath(s) for s in specs]
        self.separator = separator
        # one plain top-level name: the decoder looks it up in the dict directly (today's fast path)
        self.fast_name = self.paths[0].name if len(self.paths) == 1 else None

    def text(self, record: Any) -> str:
        if len(self.paths) == 1:
            return _string(self.paths[0], self.paths[0].get(record))
        return self.separator.join(_string(path, path.get(record)) for path in self.paths)


def _string(path: FieldPath, value: Any) -> str:
    if not isinstance(value, str):
        raise FieldError(f"field {path.spec!r} is {type(value).__name__}, not a string", missing=False)
    return value
