from __future__ import annotations

from dataclasses import dataclass, field

from worker.stream.decode import Item


@dataclass
class Rec:
    """A stand-in for kafka-python's ConsumerRecord (unit tests only)."""

    topic: str = "in"
    partition: int = 0
    offset: int = 0
    timestamp: int | None = 1_700_000_000_000
    key: bytes | None = b"k"
    value: bytes | None = b'{"text": "hello"}'
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def item(offset: int = 0, tokens: int = 5, partition: int = 0) -> Item:
    return Item(
        record=Rec(offset=offset, partition=partition),
        payload={"text": "x"},
        text="x",
        received=0.0,
        ids=list(range(tokens)),
    )
