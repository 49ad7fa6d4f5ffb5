"""The "try it" box: classify one text with the worker's model.

- :class:`HttpClassifier`: through a worker's HTTP API (``POST {url}/predict``, TEI's classifier route; every label
  with its score, best first), with the worker's bearer key when one is set.
- :class:`LocalClassifier`: the model loaded in this process as ``sentiment-worker classify`` loads it
  (``worker.model.resolve.resolve_model`` + ``worker.model.loading.load_model``), on first use.

Both return a :class:`Verdict` or raise :class:`ClassifyError` with a message for the page.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from worker.settings import Inference

if TYPE_CHECKING:
    from worker.model.runtime import SentimentModel


class ClassifyError(RuntimeError):
    """The text could not be classified; the message says why, for the page."""


@dataclass(frozen=True)
class Verdict:
    label: str
    score: float
    scores: dict[str, float]
    via: str  # where the answer came from


class Classifier(Protocol):
    def classify(self, text: str) -> Verdict: ...


class HttpClassifier:
    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def classify(self, text: str) -> Verdict:
        body = json.dumps({"inputs": text}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(f"{self.url}/predict", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                data = json.loads(answer.read())
        except urllib.error.HTTPError as exc:
            raise ClassifyError(f"the worker at {self.url} answered HTTP {exc.code}: {_error_text(exc)}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ClassifyError(f"the worker at {self.url} does not answer ({str(reason)[:200]})") from None
        except ValueError:
            raise ClassifyError(f"the worker at {self.url} answered something that is not JSON") from None
        try:
            ranked = [(str(item["label"]), float(item["score"])) for item in data]
        except (TypeError, KeyError, ValueError):
            raise ClassifyError(f"unexpected answer from {self.url}/predict: {str(data)[:200]}") from None
        if not ranked:
            raise ClassifyError(f"the worker at {self.url} returned no labels")
        return Verdict(ranked[0][0], ranked[0][1], dict(ranked), via=f"worker HTTP API at {self.url}")


def _error_text(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read()).get("error", ""))[:200]
    except Exception:
        return exc.reason if isinstance(exc.reason, str) else ""


class LocalClassifier:
    """The configured model, resolved and loaded on the first :meth:`classify` (once; a failure is retried)."""

    def __init__(self, inference: Inference) -> None:
        self.settings = inference  # the model section
        self._model: SentimentModel | None = None
        self._lock = threading.Lock()

    def _load(self) -> SentimentModel:
        with self._lock:
            if self._model is None:
                from worker.model.loading import load_model
                from worker.model.resolve import resolve_model

                try:
                    self._model = load_model(resolve_model(self.settings), self.settings)
                except Exception as exc:
                    raise ClassifyError(f"the model {self.settings.model} could not be loaded: {exc}") from None
            return self._model

    def classify(self, text: str) -> Verdict:
        model = self._load()
        prediction = model.predict([text])[0]
        return Verdict(prediction.label, prediction.score, dict(prediction.scores), via=f"local model {model.path}")


def classify_text(classifier: Classifier, text: str) -> Verdict:
    """Validate ``text`` (not blank) and classify it."""
    if not text or not text.strip():
        raise ClassifyError("type a text to classify")
    return classifier.classify(text)
