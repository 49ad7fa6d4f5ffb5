"""The load generator's message streams (no broker)."""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time

import pytest

from devtools import loadgen
from worker.cli import broker_cmds

pytestmark = pytest.mark.unit


def _values(messages: list[tuple[bytes | None, bytes]]) -> list[dict[str, object]]:
    return [json.loads(value) for _, value in messages]


def _stable(messages: list[tuple[bytes | None, bytes]]) -> list[tuple[bytes | None, object, object, object]]:
    """Everything but sent_at (wall clock)."""
    return [
        (key, value["id"], value["text"], value["seq"])
        for (key, _), value in zip(messages, _values(messages), strict=True)
    ]


def test_same_seed_same_messages_and_different_seed_differs() -> None:
    a = list(loadgen.generate_messages(50, seed=42, length="mixed", keys=4))
    b = list(loadgen.generate_messages(50, seed=42, length="mixed", keys=4))
    c = list(loadgen.generate_messages(50, seed=43, length="mixed", keys=4))
    assert _stable(a) == _stable(b)
    assert [v["text"] for v in _values(a)] != [v["text"] for v in _values(c)]
    assert {v["id"] for v in _values(a)}.isdisjoint({v["id"] for v in _values(c)})


def test_json_message_shape() -> None:
    before = time.time_ns() // 1_000_000
    messages = list(loadgen.generate_messages(20, seed=1))
    after = time.time_ns() // 1_000_000
    values = _values(messages)
    assert all(key is None for key, _ in messages)
    assert [v["seq"] for v in values] == list(range(20))
    assert len({v["id"] for v in values}) == 20
    for value in values:
        assert set(value) == {"id", "text", "seq", "sent_at"}
        assert isinstance(value["text"], str) and value["text"].strip()
        assert before <= value["sent_at"] <= after  # type: ignore[operator]


def test_text_format_and_custom_text_field() -> None:
    texts = list(loadgen.generate_messages(5, seed=3, fmt="text"))
    assert all(not value.startswith(b"{") for _, value in texts)
    custom = _values(list(loadgen.generate_messages(5, seed=3, text_field="body")))
    assert all("body" in v and "text" not in v for v in custom)
    assert [v["body"] for v in custom] == [value.decode() for _, value in texts]


def test_keys_cycle() -> None:
    keys = [key for key, _ in loadgen.generate_messages(10, seed=0, keys=3)]
    assert keys == [f"key-{i % 3}".encode() for i in range(10)]


def test_endless_stream() -> None:
    assert len(list(itertools.islice(loadgen.generate_messages(None, seed=0), 1234))) == 1234


def _word_counts(length: loadgen.Length, n: int = 400) -> list[int]:
    gen = loadgen.TextGenerator(seed=5)
    return [len(gen.text(length).split()) for _ in range(n)]


def test_length_distributions() -> None:
    tweets, reviews = _word_counts("tweet"), _word_counts("review")
    assert 15 <= statistics.mean(tweets) <= 40
    assert max(tweets) < 80
    assert statistics.mean(reviews) >= 2.5 * statistics.mean(tweets)
    assert 70 <= statistics.mean(reviews) <= 140
    mixed = _word_counts("mixed")
    assert min(mixed) < 40 < max(mixed)  # both kinds appear
    assert statistics.mean(tweets) < statistics.mean(mixed) < statistics.mean(reviews)


def test_texts_carry_both_polarities() -> None:
    gen = loadgen.TextGenerator(seed=11)
    texts = [gen.tweet() for _ in range(200)]
    has_pos = [any(w in t for w in loadgen.POSITIVE_ADJECTIVES + loadgen.POSITIVE_PHRASES) for t in texts]
    has_neg = [any(w in t for w in loadgen.NEGATIVE_ADJECTIVES + loadgen.NEGATIVE_PHRASES) for t in texts]
    assert sum(p and not n for p, n in zip(has_pos, has_neg, strict=True)) > 40
    assert sum(n and not p for p, n in zip(has_pos, has_neg, strict=True)) > 40
    assert len(set(texts)) > 190  # varied


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="length"):
        list(loadgen.generate_messages(1, length="novel"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fmt"):
        list(loadgen.generate_messages(1, fmt="xml"))  # type: ignore[arg-type]


def test_file_messages_json() -> None:
    lines = ['{"id": "a", "text": "as is", "n": 1}\n', "plain\n", "\n", "   \n", "[1, 2]\n", "{broken\n"]
    messages = list(loadgen.file_messages(lines, keys=2, id_prefix="run"))
    assert [k for k, _ in messages] == [b"key-0", b"key-1", b"key-0", b"key-1"]
    values = [json.loads(v) for _, v in messages]
    assert values[0] == {"id": "a", "text": "as is", "n": 1}
    assert values[1] == {"id": "run-1", "text": "plain"}
    assert values[2] == {"id": "run-2", "text": "[1, 2]"}  # JSON but not an object: wrapped
    assert values[3] == {"id": "run-3", "text": "{broken"}


def test_file_messages_text_and_count_cycles() -> None:
    messages = list(loadgen.file_messages(["a\n", "b\n"], count=5, fmt="text"))
    assert [v for _, v in messages] == [b"a", b"b", b"a", b"b", b"a"]
    assert all(k is None for k, _ in messages)
    assert list(loadgen.file_messages([], count=3)) == []


def test_produce_stats_summary() -> None:
    stats = loadgen.ProduceStats(sent=90, failed=10, bytes=1000, seconds=2.0, errors=["KafkaTimeoutError: x"])
    assert stats.msgs_per_s == pytest.approx(50.0)
    text = stats.summary("topic-a")
    assert "sent 90 messages" in text and "topic-a" in text and "10 failed" in text
    assert loadgen.ProduceStats().msgs_per_s == 0.0


def test_cli_flags_parse() -> None:
    parser = argparse.ArgumentParser()
    broker_cmds.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["produce", "--topic", "t", "--count", "5", "--rate", "10", "--keys", "3", "--length", "review"]
    )
    assert (args.topic, args.count, args.rate, args.keys, args.length, args.fmt) == ("t", 5, 10.0, 3, "review", "json")
    assert args.func is broker_cmds.cmd_produce
    assert parser.parse_args(["broker", "--port", "19092"]).port == 19092
