"""The encoder writes the child traceparent: an output carries its input's trace id with a new span id, the same
tracestate; an input without one, or with an invalid one, keeps its headers as they came."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.stream.helpers import Rec, item
from worker.stream.encode import Encoder
from worker.tracing.context import parse_traceparent

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
META = {"id": "m", "revision": "r1"}


def _encode(*header_lists: list[tuple[str, bytes]]) -> list[dict[str, list[bytes]]]:
    items = []
    for n, headers in enumerate(header_lists):
        it = item(n)
        it.record = Rec(offset=n, headers=headers)
        items.append(it)
    enc = Encoder(labels=["NEGATIVE", "POSITIVE"], model_meta=META, output_topic="{topic}.sentiment")
    outs = enc.encode(items, np.full((len(items), 2), 0.5, dtype=np.float32))
    found = []
    for out in outs:
        by_name: dict[str, list[bytes]] = {}
        for name, value in out.headers:
            by_name.setdefault(name, []).append(value)
        found.append(by_name)
    return found


def test_an_output_carries_the_same_trace_with_a_new_span_id_and_the_same_tracestate() -> None:
    traced, plain, invalid, twice, mended = _encode(
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode()), ("tracestate", b"congo=t61rcWkgMzE"), ("a", b"1")],
        [("a", b"1")],
        [("traceparent", b"00-xyz-01"), ("tracestate", b"congo=t61rcWkgMzE")],
        [("traceparent", f"00-{TRACE}-{SPAN}-01".encode())] * 2,
        [("traceparent", f"00-{TRACE}-{SPAN}-00".encode()), ("nothing", None)],  # type: ignore[list-item]
    )
    (child,) = traced["traceparent"]
    parsed = parse_traceparent(child)
    assert parsed is not None and parsed.trace_id == TRACE and parsed.span_id != SPAN and parsed.sampled
    assert traced["tracestate"] == [b"congo=t61rcWkgMzE"] and traced["a"] == [b"1"]
    assert "traceparent" not in plain
    assert invalid["traceparent"] == [b"00-xyz-01"] and invalid["tracestate"] == [b"congo=t61rcWkgMzE"]
    assert twice["traceparent"] == [f"00-{TRACE}-{SPAN}-01".encode()] * 2  # ambiguous: left as it came
    (child,) = mended["traceparent"]  # a record whose other headers were mended still gets its child
    parsed = parse_traceparent(child)
    assert parsed is not None and parsed.trace_id == TRACE and parsed.span_id != SPAN and not parsed.sampled
    assert mended["nothing"] == [b""]
