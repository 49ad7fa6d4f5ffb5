"""A hot swap inside the inference stage (worker/stream/common/swap.py, infer.py): the switch happens between two model
calls, each handed-on batch carries the model that scored all of it, records tokenised by the old tokenizer are
tokenised again, an idle stage is woken, and the encoder writes each batch's own model meta."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from worker.stream.batcher import InferQueue
from worker.stream.common.stats import RunStats
from worker.stream.common.swap import ModelSlot
from worker.stream.common.types import Item, Scorer
from worker.stream.encode import Encoder
from worker.stream.infer import InferStage

from .helpers import FakeModel, item

pytestmark = pytest.mark.unit


class Tagged(FakeModel):
    """A fake model that tags its calls, with its own tokenizer (``vocab``: ids are ``[code] * len(text)``)."""

    def __init__(self, name: str, vocab: str = "v1", code: int = 1) -> None:
        super().__init__()
        self.name, self.vocab, self.code, self.sha256 = name, vocab, code, name * 64
        self.seen: list[list[list[int]]] = []
        self.during_call: Any = None  # called inside the next model call (a loader offering meanwhile)

    def tokenize(self, texts: Sequence[str]) -> tuple[list[list[int]], list[bool]]:
        return [[self.code] * len(t) for t in texts], [False] * len(texts)

    def infer_ids(self, ids: Sequence[Sequence[int]], *, chunk_size: int | None = None) -> Any:
        self.seen.append([list(seq) for seq in ids])
        if self.during_call is not None:
            self.during_call, call = None, self.during_call
            call()
        return super().infer_ids(ids, chunk_size=chunk_size)

    def model_meta(self) -> dict[str, Any]:
        return {"id": self.name, "onnx_sha256": self.sha256}


def _queue(size: int = 4) -> InferQueue:
    return InferQueue(max_batch_size=size, max_wait_s=1.0)


def _stage(slot: ModelSlot, inbox: InferQueue, outbox: queue.Queue) -> threading.Thread:
    stage = InferStage(slot.model, inbox, outbox, chunk_size=8, stats=RunStats(), on_failed=lambda it, error: None,
                       slot=slot)  # fmt: skip
    thread = threading.Thread(target=stage.run, args=(threading.Event(),), daemon=True)
    thread.start()
    return thread


def _items(start: int, n: int, vocab: str = "v1") -> list[Item]:
    out = [item(i, tokens=3) for i in range(start, start + n)]
    for it in out:
        it.text, it.vocab = "abc", vocab
    return out


def test_the_switch_happens_between_model_calls_and_each_batch_names_its_model() -> None:
    old, new = Tagged("a"), Tagged("b")
    slot = ModelSlot(old)
    switched: list[tuple[str, str]] = []
    old.during_call = lambda: slot.offer(new, lambda o, n: switched.append((o.name, n.name)))
    inbox = _queue()
    outbox: queue.Queue = queue.Queue()
    for start in range(0, 16, 4):
        inbox.put(_items(start, 4))
    inbox.end()
    thread = _stage(slot, inbox, outbox)
    handed: list[tuple[list[int], str]] = []
    while (out := outbox.get(timeout=5)) is not None:
        items, probs, scorer = out
        assert len(items) == len(probs)
        handed.append(([it.record.offset for it in items], scorer.meta["id"]))
    thread.join(5)
    print(handed)
    assert [model for _, model in handed] == ["a", "b", "b", "b"], "the batch in the model when offered: old"
    assert [o for offsets, _ in handed for o in offsets] == list(range(16)), "every record once, in order"
    assert switched == [("a", "b")] and slot.model is new and slot.swaps == 1
    assert len(old.seen) == 1 and len(new.seen) == 3


def test_records_tokenised_by_the_old_tokenizer_are_tokenised_again() -> None:
    old, new = Tagged("a", vocab="v1", code=1), Tagged("b", vocab="v2", code=7)
    slot = ModelSlot(old)
    slot.offer(new)
    inbox = _queue()
    inbox.put(_items(0, 2, vocab="v1") + _items(2, 1, vocab="v2") + _items(3, 1, vocab=""))
    inbox.end()
    outbox: queue.Queue = queue.Queue()
    _stage(slot, inbox, outbox).join(5)
    assert new.seen == [[[7, 7, 7], [7, 7, 7], [0, 1, 2], [0, 1, 2]]], "v1 ids redone; v2 and untagged kept"


def test_an_idle_stage_is_woken_to_switch() -> None:
    old, new = Tagged("a"), Tagged("b")
    slot = ModelSlot(old)
    inbox = _queue()
    outbox: queue.Queue = queue.Queue()
    thread = _stage(slot, inbox, outbox)
    done = threading.Event()
    slot.offer(new, lambda o, n: done.set())
    assert not done.wait(0.3), "an idle stage waits for a batch"
    inbox.wake()
    assert done.wait(5) and slot.model is new and old.calls == [] and new.calls == []
    inbox.end()
    thread.join(5)
    assert outbox.get_nowait() is None, "an empty batch hands nothing on"


def test_a_newer_offer_replaces_one_not_taken_and_withdraw_takes_it_back() -> None:
    slot = ModelSlot(Tagged("a"))
    slot.offer(Tagged("b"))
    slot.offer(Tagged("c"))
    assert slot.pending and slot.take().name == "c" and slot.take() is None
    slot.offer(Tagged("d"))
    assert slot.withdraw().name == "d" and not slot.pending and slot.model.name == "c"
    ids, truncated, vocab = slot.tokenize(["xy"])
    assert (ids, truncated, vocab) == ([[1, 1]], [False], "v1")


def test_the_encoder_writes_the_model_of_each_batch() -> None:
    enc = Encoder(labels=["NEGATIVE", "POSITIVE"], model_meta={"id": "default"}, output_topic="{topic}.s")
    probs = np.array([[0.2, 0.8]], dtype=np.float32)
    a = Scorer(("NEGATIVE", "POSITIVE"), {"id": "m", "revision": "r1", "onnx_sha256": "a" * 64})
    b = Scorer(("POSITIVE", "NEGATIVE"), {"id": "m", "revision": "r2", "onnx_sha256": "b" * 64})
    for scorer, label in ((a, "POSITIVE"), (b, "NEGATIVE"), (None, "POSITIVE")):
        (out,) = enc.encode([item(0)], probs, scorer)
        value = json.loads(out.value)
        meta = value["sentiment_meta"]["model"]
        assert value["sentiment"]["label"] == label == out.label
        assert meta == (scorer.meta if scorer else {"id": "default"})
        assert dict(out.headers)["x-sentiment-model-revision"] == (scorer.meta["revision"].encode() if scorer else b"")
