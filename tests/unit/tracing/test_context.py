"""W3C traceparent/tracestate: parsing, the child an output carries, invalid values ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.tracing.context import (
    TRACEPARENT,
    TraceParent,
    child_of,
    find_traceparent,
    find_tracestate,
    new_span_id,
    parse_traceparent,
    parse_tracestate,
    propagate,
)

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_traceparent_is_parsed() -> None:
    parent = parse_traceparent(VALID.encode())
    assert parent == TraceParent(TRACE, SPAN, 1)
    assert parent.sampled and parent.header() == VALID.encode()
    assert parse_traceparent(VALID) == parent  # str too
    assert parse_traceparent(f" {VALID}\t".encode()) == parent  # optional whitespace around it
    unsampled = parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode())
    assert unsampled is not None and not unsampled.sampled


def test_a_future_version_is_read_by_its_first_four_fields_and_written_as_00() -> None:
    parent = parse_traceparent(f"01-{TRACE}-{SPAN}-03-extra-stuff".encode())
    assert parent == TraceParent(TRACE, SPAN, 3)
    assert parent.header().startswith(b"00-")
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01".encode()) == TraceParent(TRACE, SPAN, 1)


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        b"garbage",
        f"00-{TRACE}-{SPAN}".encode(),  # three fields
        f"00-{TRACE.upper()}-{SPAN}-01".encode(),  # upper case
        f"00-{TRACE[:-1]}-{SPAN}-01".encode(),  # 31 hex digits
        f"00-{TRACE}-{SPAN}0-01".encode(),  # 17 hex digits
        f"00-{'0' * 32}-{SPAN}-01".encode(),  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01".encode(),  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01".encode(),  # forbidden version
        f"00-{TRACE}-{SPAN}-01-extra".encode(),  # version 00 has exactly four fields
        f"01-{TRACE}-{SPAN}-01extra".encode(),  # a future version's extra fields follow a '-'
        f"0g-{TRACE}-{SPAN}-01".encode(),
        f"00_{TRACE}_{SPAN}_01".encode(),
        b"\xff\xfe" + VALID.encode(),  # not ASCII
        "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",  # non-ASCII str
        VALID.encode() * 2,
    ],
)
def test_invalid_traceparents_are_none(value: bytes | str | None) -> None:
    assert parse_traceparent(value) is None


@given(st.binary(max_size=80))
def test_parsing_never_raises(value: bytes) -> None:
    parsed = parse_traceparent(value)
    if parsed is not None:  # then it round-trips
        assert parse_traceparent(parsed.header()) == parsed


def test_a_child_keeps_trace_id_and_flags_with_a_new_span_id() -> None:
    parent = TraceParent(TRACE, SPAN, 1)
    children = {child_of(parent).span_id for _ in range(1000)}
    assert len(children) == 1000 and SPAN not in children
    child = child_of(parent)
    assert (child.trace_id, child.flags) == (TRACE, 1)
    assert parse_traceparent(child.header()) == child
    ids = [new_span_id() for _ in range(200)]
    assert all(len(i) == 16 and int(i, 16) != 0 and i == i.lower() for i in ids)


def test_propagate_rewrites_only_the_traceparent_and_keeps_tracestate() -> None:
    headers = [("a", b"1"), (TRACEPARENT, VALID.encode()), ("tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")]
    child = propagate(headers)
    assert child is not None
    assert headers[0] == ("a", b"1") and headers[2] == ("tracestate", b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    name, value = headers[1]
    written = parse_traceparent(value)
    assert name == TRACEPARENT and value == child and written is not None
    assert written.trace_id == TRACE and written.span_id != SPAN and written.flags == 1
    future = [(TRACEPARENT, f"01-{TRACE}-{SPAN}-03-more".encode())]  # a later version: written as 00
    assert propagate(future) == future[0][1] and future[0][1].startswith(f"00-{TRACE}-".encode())
    assert future[0][1].endswith(b"-03") and len(future[0][1]) == 55


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [("other", b"x")],
        [(TRACEPARENT, b"not-a-traceparent"), ("tracestate", b"a=b")],
        [(TRACEPARENT, VALID.encode()), (TRACEPARENT, VALID.encode())],  # two: ambiguous
        [("Traceparent", VALID.encode())],  # Kafka header names are case-sensitive
        [(TRACEPARENT, b"")],
    ],
)
def test_propagate_leaves_headers_without_one_valid_traceparent_as_they_are(headers: list) -> None:
    before = list(headers)
    assert propagate(headers) is None
    assert headers == before


def test_find_traceparent_and_tracestate() -> None:
    headers = [("tracestate", b"a=1"), (TRACEPARENT, VALID.encode()), ("tracestate", b"b=2"), ("x", None)]
    assert find_traceparent(headers) == TraceParent(TRACE, SPAN, 1)
    assert find_tracestate(headers) == "a=1,b=2"
    assert find_traceparent(None) is None and find_tracestate(None) is None
    assert find_traceparent([(TRACEPARENT, None)]) is None
    assert find_traceparent([(TRACEPARENT, VALID.encode())] * 2) is None
    assert find_tracestate([("tracestate", b"\xff=1")]) is None


def test_tracestate_members() -> None:
    assert parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,,") == [
        ("congo", "t61rcWkgMzE"),
        ("rojo", "00f067aa0ba902b7"),
    ]
    assert parse_tracestate("tenant@vendor=x") == [("tenant@vendor", "x")]
    assert parse_tracestate(None) is None
    for bad in ("Upper=1", "a", "a=", "a=1,a=2", "=1", ",".join(f"k{i}=v" for i in range(33))):
        assert parse_tracestate(bad) is None, bad
