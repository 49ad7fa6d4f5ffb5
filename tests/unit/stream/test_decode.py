import json

import pytest

from worker.records import ErrorType
from worker.stream.decode import Decoder

from .helpers import Rec

pytestmark = pytest.mark.unit


def fake_tokenize(texts):
    ids = [[101, *[len(w) for w in t.split()], 102] for t in texts]
    return [x[:8] for x in ids], [len(x) > 8 for x in ids]


def decoder(**kw) -> Decoder:
    args = dict(
        input_format="json",
        text_field="text",
        max_message_bytes=1000,
        max_text_chars=50,
        text_overflow="truncate",
        tokenize=fake_tokenize,
    )
    args.update(kw)
    return Decoder(**args)


CASES = [
    (None, ErrorType.EMPTY_VALUE),
    (b"", ErrorType.EMPTY_VALUE),
    (b"x" * 1001, ErrorType.TOO_LARGE),
    (b"\xff\xfe{", ErrorType.INVALID_UTF8),
    (b"{not json", ErrorType.INVALID_JSON),
    (b'{"text": NaN}', ErrorType.INVALID_JSON),
    (b'["a"]', ErrorType.NOT_AN_OBJECT),
    (b'"just a string"', ErrorType.NOT_AN_OBJECT),
    (b'{"body": "x"}', ErrorType.MISSING_TEXT),
    (b'{"text": null}', ErrorType.INVALID_TEXT),
    (b'{"text": 5}', ErrorType.INVALID_TEXT),
    (b'{"text": "   "}', ErrorType.INVALID_TEXT),
    (b'{"text": "\\ud800 lone"}', ErrorType.INVALID_TEXT),
]


@pytest.mark.parametrize(("value", "reason"), CASES)
def test_bad_input_is_rejected_with_reason(value, reason) -> None:
    items, rejected = decoder().decode([Rec(value=value)])
    assert items == []
    assert [r.error_type for r in rejected] == [reason]
    assert rejected[0].message


def test_deep_nesting_beyond_recursion_limit() -> None:
    value = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    _, rejected = decoder(max_message_bytes=10**7).decode([Rec(value=value)])
    assert rejected[0].error_type is ErrorType.INVALID_JSON


def test_valid_records_keep_payload_order_and_get_ids() -> None:
    recs = [Rec(offset=i, value=json.dumps({"text": f"word {'x' * i}", "id": i}).encode()) for i in range(3)]
    recs.insert(1, Rec(offset=99, value=b"bad"))
    items, rejected = decoder().decode(recs, received=5.0)
    assert [it.record.offset for it in items] == [0, 1, 2]
    assert [it.payload["id"] for it in items] == [0, 1, 2]
    assert items[2].ids == [101, 4, 2, 102]
    assert all(it.received == 5.0 for it in items)
    assert [r.record.offset for r in rejected] == [99]


def test_text_format_and_control_characters() -> None:
    items, rejected = decoder(input_format="text").decode([Rec(value="caf\u00e9 \x00\x07 ok".encode())])
    assert rejected == []
    assert items[0].payload == {"text": "caf\u00e9 \x00\x07 ok"}


def test_custom_text_field() -> None:
    items, _ = decoder(text_field="body").decode([Rec(value=b'{"body": "hi there"}')])
    assert items[0].text == "hi there"


def test_truncate_vs_reject_long_texts() -> None:
    long_chars = json.dumps({"text": "a " * 40}).encode()  # 80 chars > 50
    long_tokens = json.dumps({"text": "a b c d e f g h i j"}).encode()  # 12 tokens > 8
    items, rejected = decoder().decode([Rec(value=long_chars), Rec(value=long_tokens)])
    assert rejected == [] and all(it.truncated for it in items)
    assert len(items[0].text) == 50
    items, rejected = decoder(text_overflow="reject").decode([Rec(value=long_chars), Rec(value=long_tokens)])
    assert items == [] and [r.error_type for r in rejected] == [ErrorType.TOO_LONG, ErrorType.TOO_LONG]


def test_tokenizer_failure_isolates_the_bad_text() -> None:
    def tokenize(texts):
        if any("boom" in t for t in texts):
            raise RuntimeError("tokenizer exploded")
        return fake_tokenize(texts)

    recs = [Rec(offset=0, value=b'{"text": "fine"}'), Rec(offset=1, value=b'{"text": "boom"}')]
    items, rejected = decoder(tokenize=tokenize).decode(recs)
    assert [it.record.offset for it in items] == [0]
    assert rejected[0].error_type is ErrorType.INVALID_TEXT and rejected[0].record.offset == 1
