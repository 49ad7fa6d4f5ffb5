"""W3C Trace Context over Kafka headers: parse a ``traceparent``, make the child one an output record carries.

A record consumed with a valid ``traceparent`` header (``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``)
is produced with a ``traceparent`` of the same trace id and flags and a new parent (span) id; its ``tracestate``
header, like every other header, is copied unchanged. Header names are matched exactly (Kafka header names are
case-sensitive; the OpenTelemetry Kafka instrumentations write ``traceparent`` in lower case).

A value that is not a valid traceparent (wrong length or case, all-zero ids, version ``ff``, not ASCII, or more
than one ``traceparent`` header on the record) is ignored: the header is passed on as it came, nothing is derived
from it, and the record is enriched like any other. Versions above ``00`` are read as the specification asks
(the first four fields; more only after a ``-``) and written back as ``00``.

Pure functions, no third-party import: the encoder calls :func:`propagate` on every record that has headers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import NamedTuple

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?")
_TRACESTATE_MEMBER = re.compile(
    r"([a-z0-9][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
    r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])"
)
MAX_TRACESTATE_MEMBERS = 32
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_OWS = b" \t"


class TraceParent(NamedTuple):
    """A valid ``traceparent``: ids as lower-case hex (as written in the header), flags as an int."""

    trace_id: str
    span_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)

    def header(self) -> bytes:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}".encode()


def _match(value: bytes | str | None) -> re.Match[bytes] | None:
    """The fields of a valid traceparent (version, trace id, parent id, flags, rest), else None; never raises."""
    if value is None:
        return None
    if isinstance(value, str):
        if not value.isascii():
            return None
        value = value.encode("ascii")
    elif not isinstance(value, bytes):
        try:
            value = bytes(value)
        except (TypeError, ValueError):
            return None
    match = _TRACEPARENT.fullmatch(value.strip(_OWS))
    if match is None:
        return None
    version, trace_id, span_id, _flags, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest is not None):
        return None  # version 00 has exactly four fields; ff is forbidden
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return match


def parse_traceparent(value: bytes | str | None) -> TraceParent | None:
    """The traceparent in ``value``, or None when it is not a valid one (never raises)."""
    match = _match(value)
    if match is None:
        return None
    return TraceParent(match.group(2).decode(), match.group(3).decode(), int(match.group(4), 16))


def _span_bits() -> int:
    """64 random bits, never all zeros (as OpenTelemetry's SDK makes span ids: ``random.getrandbits``)."""
    return random.getrandbits(64) or 1


def new_span_id() -> str:
    """16 lower-case hex digits, never all zeros."""
    return f"{_span_bits():016x}"


def child_of(parent: TraceParent) -> TraceParent:
    """The same trace and flags, a new span id."""
    return TraceParent(parent.trace_id, new_span_id(), parent.flags)


def find_traceparent(headers: Sequence[tuple[str, bytes | None]] | None) -> TraceParent | None:
    """The record's trace context: its one valid ``traceparent`` header, else None (absent, invalid, repeated)."""
    found: bytes | None = None
    seen = False
    for name, value in headers or ():
        if name == TRACEPARENT:
            if seen:
                return None  # two traceparent headers: which one is meant is unknown
            seen, found = True, value
    return parse_traceparent(found) if seen else None


def find_tracestate(headers: Sequence[tuple[str, bytes | None]] | None) -> str | None:
    """The record's ``tracestate`` (several headers joined with ``,``, as the specification combines them)."""
    parts = [value for name, value in headers or () if name == TRACESTATE and value]
    if not parts:
        return None
    try:
        return b",".join(parts).decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_tracestate(value: str | None) -> list[tuple[str, str]] | None:
    """The ``key=value`` members of a ``tracestate`` (in order, empty members skipped), or None when any member
    is malformed, a key repeats or there are more than 32 (the specification then discards the whole of it)."""
    if value is None:
        return None
    pairs: list[tuple[str, str]] = []
    keys: set[str] = set()
    for member in value.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _TRACESTATE_MEMBER.fullmatch(member)
        if match is None or match.group(1) in keys:
            return None
        keys.add(match.group(1))
        pairs.append((match.group(1), match.group(2)))
    return pairs if len(pairs) <= MAX_TRACESTATE_MEMBERS else None


def propagate(headers: list[tuple[str, bytes]]) -> bytes | None:
    """Rewrite the one valid ``traceparent`` in ``headers`` (an output record's, in place) to a child: same
    trace id and flags, a new span id; ``tracestate`` and the rest are left as they are. The child header written,
    or None (no traceparent, an invalid one, or several: ``headers`` unchanged)."""
    at = -1
    for i, (name, _value) in enumerate(headers):
        if name == TRACEPARENT:
            if at >= 0:
                return None
            at = i
    if at < 0:
        return None
    match = _match(headers[at][1])
    if match is None:
        return None
    child = b"00-%b-%016x-%b" % (match.group(2), _span_bits(), match.group(4))
    headers[at] = (TRACEPARENT, child)
    return child
