"""orjson's fast path in decode gives the standard library's result, or leaves the record to the standard library."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.stream.decode import _fast_loads

pytestmark = pytest.mark.unit

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


@settings(max_examples=400, deadline=None)
@given(values, st.booleans())
def test_the_fast_path_equals_the_standard_library_or_steps_aside(value: object, ascii_only: bool) -> None:
    raw = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    fast = _fast_loads(raw)
    if fast is not None:
        assert _same(fast, json.loads(raw))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 123456789012345678901234567890}',  # orjson would make it a float
        b'{"a": -9223372036854775809}',
        b'{"a": 1e400}',  # stdlib path: out of range
        b'{"a": NaN}',
        b'{"a": "\\ud800"}',  # a lone surrogate: stdlib path (the text check rejects it)
        b"\xef\xbb\xbf{}",
        b'{"a": "\xff"}',  # not UTF-8
    ],
)
def test_what_orjson_would_get_wrong_or_refuses_goes_to_the_standard_library(raw: bytes) -> None:
    assert _fast_loads(raw) is None
