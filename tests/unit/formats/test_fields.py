"""JSON Pointer / dotted paths, joined text fields, and where the result goes (copy and slim)."""

from __future__ import annotations

import pytest

from worker.formats.fields import FieldError, FieldPath, TextFields, parse_path
from worker.formats.output import OutputShape

pytestmark = pytest.mark.unit

RECORD = {
    "data": {"review": {"title": "Nice", "body": "Great battery life."}},
    "a/b": {"c~d": "escaped"},
    "items": [{"text": "first"}, {"text": "second"}],
    "n": 3,
    "0": "zero",
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("/data/review/body", "Great battery life."),
        ("data.review.body", "Great battery life."),
        ("/a~1b/c~0d", "escaped"),  # RFC 6901: ~1 is '/', ~0 is '~'
        ("/items/1/text", "second"),
        ("items.0.text", "first"),
        ("n", 3),
        ("/0", "zero"),  # on an object a number is a name
    ],
)
def test_pointer_and_dotted_paths_find_the_value(path: str, value: object) -> None:
    assert FieldPath(path).get(RECORD) == value


@pytest.mark.parametrize(
    ("path", "missing", "message"),
    [
        ("/data/review/rating", True, "'/data/review/rating' is missing"),
        ("data.user.name", True, "'data.user' is missing"),
        ("/items/5/text", True, "array of 2"),
        ("n.value", False, "'n' is int, not an object"),
        ("/data/review/body/x", False, "is str, not an object"),
    ],
)
def test_a_path_that_cannot_be_followed_says_where(path: str, missing: bool, message: str) -> None:
    with pytest.raises(FieldError) as caught:
        FieldPath(path).get(RECORD)
    assert caught.value.missing is missing
    assert message in str(caught.value)


@pytest.mark.parametrize("bad", ["", "/", "a..b", ".a", "a.", "/a~2b", "/a~"])
def test_malformed_paths_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_path(bad)


def test_a_plain_name_is_the_fast_case_and_a_path_is_not() -> None:
    assert TextFields("text").fast_name == "text"
    assert TextFields("/text").fast_name == "text"  # a one-part pointer is a top-level name too
    assert TextFields("review.body").fast_name is None
    assert TextFields("title,body").fast_name is None


def test_several_fields_are_joined_in_order_with_the_separator() -> None:
    fields = TextFields("/data/review/title, data.review.body", separator=" — ")
    assert fields.text(RECORD) == "Nice — Great battery life."
    assert TextFields(["/data/review/title", "/data/review/body"]).text(RECORD) == "Nice Great battery life."


def test_joined_fields_each_must_be_a_string_and_be_there() -> None:
    with pytest.raises(FieldError) as missing:
        TextFields("data.review.title,data.review.summary").text(RECORD)
    assert missing.value.missing
    with pytest.raises(FieldError) as wrong:
        TextFields("data.review.title,n").text(RECORD)
    assert not wrong.value.missing and "'n' is int, not a string" in str(wrong.value)


def test_put_copies_the_objects_on_the_way_and_makes_missing_ones() -> None:
    record = {"data": {"review": {"body": "x"}}, "other": {"k": 1}}
    out = dict(record)
    FieldPath("/data/analysis/sentiment").put(out, {"label": "POSITIVE"})
    assert out["data"]["analysis"] == {"sentiment": {"label": "POSITIVE"}}
    assert out["data"]["review"] == {"body": "x"}
    assert record == {"data": {"review": {"body": "x"}}, "other": {"k": 1}}, "the input's objects are not changed"
    with pytest.raises(FieldError, match=r"'data\.review\.body' is str"):
        FieldPath("data.review.body.sentiment").put(dict(record), 1)


SENTIMENT = {"label": "POSITIVE", "score": 0.9, "scores": {"NEGATIVE": 0.1, "POSITIVE": 0.9}}
META = {"schema_version": 1}


def test_copy_mode_places_result_and_meta_side_by_side() -> None:
    payload = {"id": 7, "data": {"body": "b"}}
    top = OutputShape().place(payload, b"k", SENTIMENT, META)
    assert top == {"id": 7, "data": {"body": "b"}, "sentiment": SENTIMENT, "sentiment_meta": META}
    nested = OutputShape("/data/enrichment/tone").place(payload, b"k", SENTIMENT, META)
    assert nested["data"] == {"body": "b", "enrichment": {"tone": SENTIMENT, "tone_meta": META}}
    assert payload == {"id": 7, "data": {"body": "b"}}
    assert OutputShape("tone").name == "tone" and OutputShape("a.b").name is None


def test_slim_mode_keeps_the_key_the_id_fields_and_the_result_only() -> None:
    shape = OutputShape("sentiment", "slim", ["/data/review/id", "tenant", "missing.field"])
    payload = {"tenant": "t1", "data": {"review": {"id": "r9", "body": "long text " * 50}}, "extra": [1, 2]}
    out = shape.place(payload, b"user-\xff", SENTIMENT, META)
    assert out == {
        "key": "user-\\xff",
        "tenant": "t1",
        "data": {"review": {"id": "r9"}},
        "sentiment": SENTIMENT,
        "sentiment_meta": META,
    }
    assert shape.place(payload, None, SENTIMENT, META)["key"] is None
    assert shape.name is None, "slim never takes the copy fast path"
