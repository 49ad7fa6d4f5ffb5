"""The model slot: the model the inference stage runs, and a validated candidate waiting to replace it.

A hot swap (``worker/rollout/``) loads and checks a new model beside the serving one, then :meth:`ModelSlot.offer`
hands it over. The inference stage calls :meth:`ModelSlot.take` between two model calls (a batch boundary), so every
batch, and so every record, is scored by exactly one complete model, and the stage's order (per partition: input
order) is unchanged: the records before the switch were all scored by the old model, the ones after it by the new
one. Nothing is drained or paused, the consumer keeps its group membership.

The poll loop tokenises through :meth:`ModelSlot.tokenize`, which tags the ids with the tokenizer that made them
(the model's ``vocab``); the stage re-tokenises the records tokenised before a switch that changed the tokenizer.

Below the stages (shared): it imports none of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from worker.observability import get_logger
from worker.stream.common.ports import Model
from worker.stream.common.types import Scorer

log = get_logger(__name__)

Switched = Callable[[Model, Model], None]  # (old model, new model), called on the thread that switched


def scorer_of(model: Model) -> Scorer:
    """What the encoder writes of the model that scored a batch: its labels and meta."""
    return Scorer(tuple(model.labels), dict(model.model_meta()))


class ModelSlot:
    """The serving model (:attr:`model`, :attr:`scorer`) and at most one candidate offered to replace it."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.scorer = scorer_of(model)
        self.swaps = 0
        self._offered: tuple[Model, Switched | None] | None = None
        self._lock = threading.Lock()

    def offer(self, model: Model, on_switched: Switched | None = None) -> None:
        """Switch to ``model`` at the stage's next batch boundary (a candidate offered before and not taken yet is
        dropped: the newer one wins). ``on_switched(old, new)`` runs once it is in use."""
        with self._lock:
            superseded = self._offered
            self._offered = (model, on_switched)
        if superseded is not None:
            log.warning("model_candidate_superseded", sha256=superseded[0].sha256)

    @property
    def pending(self) -> bool:
        with self._lock:
            return self._offered is not None

    def withdraw(self) -> Model | None:
        """Take back the candidate not switched to yet (the stage is gone); it, or None."""
        with self._lock:
            offered, self._offered = self._offered, None
        return None if offered is None else offered[0]

    def take(self) -> Model | None:
        """Called by whoever runs the model, between two model calls: switch to the offered candidate if there is
        one; the new model (or None)."""
        if self._offered is None:  # the common case, no lock
            return None
        with self._lock:
            offered, self._offered = self._offered, None
        if offered is None:
            return None
        model, on_switched = offered
        old, self.model, self.scorer = self.model, model, scorer_of(model)
        self.swaps += 1
        if on_switched is not None:
            try:
                on_switched(old, model)
            except Exception as exc:  # reporting must never stop the stage
                log.warning("model_switch_callback_failed", error=repr(exc))
        return model

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool], str]:
        """Token ids and truncation flags by the serving model's tokenizer, and that tokenizer's ``vocab``."""
        model = self.model
        ids, truncated = model.tokenize(texts)
        return ids, truncated, model.vocab
