"""The ``/predict`` contract without a web framework: request validation, scores, TEI's error shape.

Compatible with Text Embeddings Inference's classifier route (``POST /predict``: ``inputs`` a string or a list of
strings, ``truncate``, ``raw_scores``; every label with its score, best first) and, where it fits, with the Hugging
Face Inference API's text-classification shape (``parameters.top_k``, ``parameters.function_to_apply``). Errors are
``{"error": ..., "error_type": ...}`` with TEI's status codes: 400 ``empty``, 413 ``validation`` (too many inputs, a
text over the token limit with ``truncate`` false, a body over the limit), 422 ``validation`` (wrong types), 429
``overloaded``, 503 ``unhealthy``, 500 ``backend``.

One difference from TEI: a list of two strings is a batch of two inputs here (TEI reads it as a sentence pair; this
model classifies single texts).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

Function = Literal["softmax", "sigmoid", "none"]


class ApiError(Exception):
    """An answer other than 200: status, TEI ``error_type`` and a message for the client."""

    def __init__(self, status: int, error_type: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, str]:
        return {"error": self.message, "error_type": self.error_type}

    def headers(self) -> dict[str, str]:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return headers


# ---- request / response models (also the OpenAPI schema) ---------------------------------------------------------
class Parameters(BaseModel):
    """The Hugging Face Inference API's text-classification parameters."""

    model_config = ConfigDict(extra="ignore")
    top_k: StrictInt | None = Field(default=None, ge=1, description="Return only the k best labels (default: all).")
    function_to_apply: Function | None = Field(
        default=None, description="softmax (default), sigmoid (of each logit) or none (the raw logits)."
    )


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    inputs: StrictStr | list[StrictStr] = Field(description="A text, or a list of texts (one result list per text).")
    truncate: StrictBool | None = Field(
        default=None,
        description="Classify the start of a text over the token limit; false: answer 413 instead. Default: true "
        "unless the worker's text_overflow is 'reject'.",
    )
    truncation_direction: Literal["right", "Right"] | None = Field(
        default=None, description="Only 'right' (keep the start) is supported."
    )
    raw_scores: StrictBool = Field(default=False, description="The raw logits instead of the softmax (TEI).")
    parameters: Parameters | None = None


class LabelScore(BaseModel):
    label: str
    score: float


class ErrorBody(BaseModel):
    error: str
    error_type: str


@dataclass(frozen=True, slots=True)
class PredictCall:
    """A validated request."""

    texts: list[str]
    single: bool  # inputs was one string: answer one list, not a list of lists
    truncate: bool
    function: Function
    top_k: int | None


def parse_body(body: bytes) -> Any:
    """JSON of the request body; 400 if it isn't JSON."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "validation", f"the body is not valid JSON: {str(exc)[:200]}") from None


def parse_predict(data: Any, *, max_inputs: int, default_truncate: bool, max_text_chars: int) -> PredictCall:
    """Validate a decoded ``/predict`` body; raises :class:`ApiError` (4xx) with one clear message."""
    if not isinstance(data, dict):
        raise ApiError(422, "validation", 'the body must be a JSON object like {"inputs": "some text"}')
    if "inputs" not in data:
        raise ApiError(422, "validation", "`inputs` is required: a string or a list of strings")
    _check_inputs(data["inputs"])
    try:
        request = PredictRequest.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation", _validation_message(exc)) from None
    single = isinstance(request.inputs, str)
    texts = [request.inputs] if isinstance(request.inputs, str) else list(request.inputs)
    if not texts:
        raise ApiError(400, "empty", "`inputs` cannot be empty")
    if len(texts) > max_inputs:
        raise ApiError(
            413, "validation", f"batch size {len(texts)} > maximum allowed batch size {max_inputs} (http_max_inputs)"
        )
    truncate = default_truncate if request.truncate is None else request.truncate
    params = request.parameters or Parameters()
    function: Function = params.function_to_apply or ("none" if request.raw_scores else "softmax")
    if request.raw_scores and function != "none":
        raise ApiError(422, "validation", "raw_scores is true but parameters.function_to_apply is not 'none'")
    checked = [_check_text(i, text, truncate, max_text_chars, single) for i, text in enumerate(texts)]
    return PredictCall(checked, single, truncate, function, params.top_k)


def parse_reload(data: Any) -> dict[str, str | None]:
    """The body of ``POST /admin/model``: empty, or ``{"model": "<hub id or dir>", "revision": "<rev>"}``."""
    if data is None or data == {}:
        return {"model": None, "revision": None}
    if not isinstance(data, dict) or set(data) - {"model", "revision"}:
        raise ApiError(422, "validation", 'the body must be empty or {"model": "...", "revision": "..."}')
    for key in ("model", "revision"):
        if data.get(key) is not None and (not isinstance(data[key], str) or not data[key].strip()):
            raise ApiError(422, "validation", f"`{key}` must be a non-empty string")
    return {"model": data.get("model"), "revision": data.get("revision")}


def _check_inputs(inputs: Any) -> None:
    if isinstance(inputs, str):
        return
    if not isinstance(inputs, list):
        raise ApiError(422, "validation", f"`inputs` must be a string or a list of strings, not {_kind(inputs)}")
    for i, value in enumerate(inputs):
        if not isinstance(value, str):
            nested = " (nested lists are not supported)" if isinstance(value, list) else ""
            raise ApiError(422, "validation", f"`inputs[{i}]` must be a string, not {_kind(value)}{nested}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _where(i: int, single: bool) -> str:
    return "`inputs`" if single else f"`inputs[{i}]`"


def _check_text(i: int, text: str, truncate: bool, max_text_chars: int, single: bool) -> str:
    if not text.strip():
        raise ApiError(400, "empty", f"{_where(i, single)} is empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "validation", f"{_where(i, single)} holds a lone surrogate (not valid Unicode)") from None
    if len(text) > max_text_chars:
        if not truncate:
            raise ApiError(
                413,
                "validation",
                f"{_where(i, single)} has {len(text)} characters, more than max_text_chars ({max_text_chars}); "
                "send truncate: true to classify its start",
            )
        return text[:max_text_chars]
    return text


def check_tokens(truncated: Sequence[bool], call: PredictCall, max_length: int) -> None:
    """413 for a text over the token limit when the request doesn't allow truncation."""
    if call.truncate:
        return
    for i, cut in enumerate(truncated):
        if cut:
            raise ApiError(
                413,
                "validation",
                f"{_where(i, call.single)} is longer than the model's limit of {max_length} tokens; "
                "send truncate: true to classify its start",
            )


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"`{loc}`: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts)


# ---- answers ---------------------------------------------------------------------------------------------------
def label_scores(
    labels: Sequence[str], probs: np.ndarray, logits: np.ndarray | None, function: Function, top_k: int | None
) -> list[dict[str, Any]]:
    """Every label (or the ``top_k`` best) with its score, best first."""
    if function == "softmax":
        values = np.asarray(probs, dtype=np.float64)
    else:
        raw = np.asarray(logits if logits is not None else np.log(np.clip(probs, 1e-30, 1.0)), dtype=np.float64)
        values = raw if function == "none" else 1.0 / (1.0 + np.exp(-raw))
    order = np.argsort(-values, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": _finite(values[i])} for i in order.tolist()]


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0
