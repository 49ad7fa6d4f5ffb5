"""The /predict contract without a server: validation (a clear 4xx for every bad input), scores, error shape."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from worker.serve.api import ApiError, PredictRequest, check_tokens, label_scores, parse_body, parse_predict

pytestmark = pytest.mark.unit


def _parse(data: Any, *, max_inputs: int = 4, truncate: bool = True, max_chars: int = 100) -> Any:
    return parse_predict(data, max_inputs=max_inputs, default_truncate=truncate, max_text_chars=max_chars)


def _error(data: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        _parse(data, **kwargs)
    return info.value


def test_a_string_is_one_input_a_list_is_a_batch() -> None:
    one = _parse({"inputs": "good"})
    assert one.texts == ["good"] and one.single and one.truncate and one.function == "softmax"
    many = _parse({"inputs": ["a", "b"], "truncate": False, "options": {"wait_for_model": True}})
    assert many.texts == ["a", "b"] and not many.single and not many.truncate


def test_hugging_face_parameters_and_tei_raw_scores() -> None:
    call = _parse({"inputs": "x", "parameters": {"top_k": 1, "function_to_apply": "sigmoid"}})
    assert call.top_k == 1 and call.function == "sigmoid"
    assert _parse({"inputs": "x", "raw_scores": True}).function == "none"
    assert _error({"inputs": "x", "raw_scores": True, "parameters": {"function_to_apply": "softmax"}}).status == 422


@pytest.mark.parametrize(
    ("data", "status", "error_type", "says"),
    [
        ([1, 2], 422, "validation", "JSON object"),
        ("text", 422, "validation", "JSON object"),
        ({"text": "x"}, 422, "validation", "`inputs` is required"),
        ({"inputs": 3}, 422, "validation", "not a number"),
        ({"inputs": None}, 422, "validation", "not null"),
        ({"inputs": {"a": 1}}, 422, "validation", "not an object"),
        ({"inputs": [["a"]]}, 422, "validation", "nested lists"),
        ({"inputs": ["a", 5]}, 422, "validation", "`inputs[1]`"),
        ({"inputs": []}, 400, "empty", "cannot be empty"),
        ({"inputs": "   "}, 400, "empty", "is empty"),
        ({"inputs": ["a", ""]}, 400, "empty", "`inputs[1]` is empty"),
        ({"inputs": ["a"] * 5}, 413, "validation", "batch size 5 > maximum allowed batch size 4"),
        ({"inputs": "\ud800"}, 422, "validation", "lone surrogate"),
        ({"inputs": "x", "truncate": "yes"}, 422, "validation", "truncate"),
        ({"inputs": "x", "parameters": {"top_k": 0}}, 422, "validation", "top_k"),
        ({"inputs": "x", "parameters": {"function_to_apply": "relu"}}, 422, "validation", "function_to_apply"),
        ({"inputs": "x", "truncation_direction": "left"}, 422, "validation", "truncation_direction"),
        ({"inputs": "x" * 101, "truncate": False}, 413, "validation", "max_text_chars"),
    ],
)
def test_bad_input_gets_a_clear_4xx(data: Any, status: int, error_type: str, says: str) -> None:
    error = _error(data)
    assert (error.status, error.error_type) == (status, error_type)
    assert says in error.message
    assert error.body() == {"error": error.message, "error_type": error_type}


def test_invalid_json_is_400_and_deep_nesting_does_not_crash() -> None:
    for body in (b"{bad", b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(ApiError) as info:
            parse_body(body)
        assert info.value.status == 400
    assert parse_body(b'{"inputs": "x"}') == {"inputs": "x"}


def test_long_texts_are_cut_to_max_text_chars_when_truncating() -> None:
    assert _parse({"inputs": "y" * 150}).texts == ["y" * 100]


def test_token_overflow_is_413_only_without_truncation() -> None:
    call = _parse({"inputs": ["a", "b"], "truncate": False})
    check_tokens([False, False], call, 128)
    with pytest.raises(ApiError) as info:
        check_tokens([False, True], call, 128)
    assert info.value.status == 413 and "`inputs[1]`" in info.value.message and "128 tokens" in info.value.message
    check_tokens([True], _parse({"inputs": "a"}), 128)  # truncation allowed: no error


def test_scores_every_label_best_first_and_the_functions() -> None:
    labels = ["NEGATIVE", "POSITIVE"]
    logits = np.array([-1.0, 2.0], dtype=np.float32)
    probs = np.exp(logits) / np.exp(logits).sum()
    soft = label_scores(labels, probs, logits, "softmax", None)
    assert [s["label"] for s in soft] == ["POSITIVE", "NEGATIVE"]
    assert sum(s["score"] for s in soft) == pytest.approx(1.0)
    assert label_scores(labels, probs, logits, "none", None) == [
        {"label": "POSITIVE", "score": pytest.approx(2.0)},
        {"label": "NEGATIVE", "score": pytest.approx(-1.0)},
    ]
    sig = label_scores(labels, probs, logits, "sigmoid", 1)
    assert sig == [{"label": "POSITIVE", "score": pytest.approx(1 / (1 + np.exp(-2.0)))}]


def test_error_headers_and_openapi_schema() -> None:
    assert ApiError(429, "overloaded", "busy", retry_after=1).headers() == {"Retry-After": "1"}
    assert ApiError(401, "unauthorized", "key").headers() == {"WWW-Authenticate": "Bearer"}
    schema = PredictRequest.model_json_schema()
    assert {"inputs", "truncate", "raw_scores", "parameters"} <= set(schema["properties"])
