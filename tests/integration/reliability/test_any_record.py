"""No record stops the worker: every record a Kafka client may produce is enriched or dead-lettered.

A second client (confluent-kafka; kafka-python's record builder for raw header names) writes what kafka-python's
own producer refuses: null header values, empty and duplicate header names, header names that are not UTF-8,
hundreds of headers, large headers, empty keys, records with neither key nor value, key-only records, values
with a UTF-8 byte-order mark. The real worker process (``python -m worker run``) consumes them mixed with ordinary
records: each lands once on the output or the dead-letter topic, as expected, with the ``x-sentiment-*`` /
``x-dlq-*`` header that says what had to be changed; the worker never exits and logs no error; the committed
offsets reach the end.

(The other side, a cluster that refuses the worker, is in ``tests/unit/stream/test_write_failures.py``: the
embedded broker has no authorisation, and topics that can't exist are caught before consuming.)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from tests.support.feeds import OutputReader, group_ids
from tests.support.kafka_utils import committed_offsets, create_topic
from tests.support.second_client import as_written, expected_mended, produce_any, produce_raw_header_names
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from worker.records import HEADER_HEADERS_MENDED, DeadLetter, ErrorType

pytestmark = [pytest.mark.integration, pytest.mark.slow]

E = ErrorType
PARTITIONS = 4
BIG_FETCH = {"max_partition_fetch_bytes": 16 * 1024 * 1024, "fetch_max_bytes": 64 * 1024 * 1024}
BOM = b"\xef\xbb\xbf"


@dataclass
class Kind:
    name: str
    key: bytes | None
    value: bytes | None  # for enriched kinds: the JSON value gets the record's id added
    headers: list[tuple[str | bytes, bytes | None]] = field(default_factory=list)
    expected: ErrorType | None = None  # None: enriched
    mended: str | None = None  # the x-sentiment-/x-dlq-headers-mended header expected
    raw_names: bool = False  # header names given as bytes: produced with kafka-python's record builder


def _json(text: str = "a good movie") -> bytes:
    return json.dumps({"text": text}).encode()


def kinds() -> list[Kind]:
    many = [(f"h{i}", None if i % 50 == 0 else str(i).encode()) for i in range(400)]
    return [
        Kind("plain", b"k", _json()),
        Kind("null_header_value", b"k", _json(), [("trace", b"1"), ("nothing", None)], mended="null_value=1"),
        Kind("empty_header_name", b"k", _json(), [("", b"e"), ("", None)], mended="null_value=1"),
        Kind("duplicate_header_names", None, _json(), [("d", b"1"), ("d", b"2"), ("d", None)], mended="null_value=1"),
        Kind("header_name_not_utf8", b"k", _json(), [(b"\xff\xfe", b"v"), ("ok", b"1")], None, "key_not_utf8=1", True),
        Kind("header_name_latin1", None, _json(), [(b"caf\xe9", b"v")], None, "key_not_utf8=1", True),
        Kind("hundreds_of_headers", b"k", _json(), many, mended="null_value=8"),
        Kind("large_headers", b"k", _json(), [("big", b"H" * 100_000)] * 8),  # 800 KB, under max_message_bytes
        Kind("empty_key", b"", _json()),
        Kind("empty_key_null_header", b"", _json(), [("n", None)], mended="null_value=1"),
        # dead-lettered
        Kind("null_key_null_value", None, None, expected=E.EMPTY_VALUE),
        Kind("null_key_null_value_null_header", None, None, [("n", None)], E.EMPTY_VALUE, "null_value=1"),
        Kind("key_only", b"k", None, expected=E.EMPTY_VALUE),
        Kind("empty_key_only", b"", None, expected=E.EMPTY_VALUE),
        Kind("empty_value", None, b"", expected=E.EMPTY_VALUE),
        Kind("utf8_bom_json", b"k", BOM + _json(), expected=E.INVALID_JSON),
        Kind("not_utf8_name_bad_json", b"k", b"{nope", [(b"\xff", b"v")], E.INVALID_JSON, "key_not_utf8=1", True),
        Kind("null_header_bad_utf8", None, b"\xff\xfe", [("n", None)], E.INVALID_UTF8, "null_value=1"),
        Kind("huge_headers", b"k", _json(), [("big", b"H" * 100_000), ("n", None)] * 15, E.TOO_LARGE, "null_value=15"),
    ]


def _value(kind: Kind, ident: int) -> bytes | None:
    if kind.expected is None and kind.value is not None:
        return json.dumps({**json.loads(kind.value), "id": ident}).encode()
    return kind.value


def test_every_record_a_client_may_produce_is_enriched_or_dead_lettered_and_the_worker_goes_on(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    started = time.monotonic()
    assert all(k.mended == expected_mended(k.headers) for k in kinds()), "the helper the fuzz test uses agrees"
    bootstrap = broker.bootstrap
    out_topic, dlq_topic = f"{topic_name}.sentiment", f"{topic_name}.dlq"
    for topic in (topic_name, out_topic, dlq_topic):
        create_topic(bootstrap, topic, PARTITIONS)
    (group,) = group_ids(1, "any-record")
    worker = WorkerProcess(worker_env(bootstrap, topic_name, group, tiny_onnx_dir), tmp_path / "worker.log").start()
    outputs = OutputReader(bootstrap, out_topic, PARTITIONS, **BIG_FETCH)
    dlq = OutputReader(bootstrap, dlq_topic, PARTITIONS, **BIG_FETCH)
    outputs.start()
    dlq.start()
    # every kind 3 times on every partition, between ordinary records, so a record that broke a fetch would
    # hold back its neighbours
    plan: list[tuple[Kind, int, int]] = []  # kind, id, partition
    ident = 0
    for partition in range(PARTITIONS):
        for _ in range(3):
            for kind in kinds():
                for k in (Kind("filler", b"f", _json("fine service")), kind):
                    plan.append((k, ident, partition))
                    ident += 1
    placed: dict[tuple[int, int], tuple[Kind, int]] = {}
    try:
        worker.wait_event("partitions_assigned", 90)
        for raw in (False, True):
            chosen = [(k, i, p) for k, i, p in plan if k.raw_names == raw]
            items = [(k.key, _value(k, i), k.headers, p) for k, i, p in chosen]
            where = (produce_raw_header_names if raw else produce_any)(bootstrap, topic_name, items)
            placed.update({pos: (k, i) for pos, (k, i, _p) in zip(where, chosen, strict=True)})
            assert worker.alive(), worker.log_text()[-3000:]
        n_dead = sum(1 for k, _ in placed.values() if k.expected is not None)
        n_enriched = len(placed) - n_dead
        wait_for(lambda: len(outputs) >= n_enriched and len(dlq) >= n_dead, 180, 0.5, "every record's outcome")
        end = Counter(p for p, _ in placed)
        ends = {p: max(o for q, o in placed if q == p) + 1 for p in end}
        committed = wait_for(
            lambda: (c := committed_offsets(bootstrap, group, topic_name)) == ends and c, 30, 0.5, "commits at end"
        )
        time.sleep(1.0)  # a duplicate would show up now
        alive = worker.alive()
        rc = worker.stop(60)
    finally:
        if worker.alive():
            worker.kill()
        outputs.stop()
        dlq.stop()

    wrong: list[str] = []
    seen: Counter[tuple[int, int]] = Counter()
    for rec in outputs.snapshot():
        src = json.loads(rec.value)["sentiment_meta"]["source"]
        pos = (src["partition"], src["offset"])
        seen[pos] += 1
        kind, i = placed[pos]
        headers = [(k, v) for k, v in rec.headers if not k.startswith("x-sentiment-")]
        mended = dict(rec.headers).get(HEADER_HEADERS_MENDED)
        if kind.expected is not None:
            wrong.append(f"{kind.name}: enriched, expected {kind.expected.value}")
        elif json.loads(rec.value)["id"] != i or rec.key != kind.key or headers != as_written(kind.headers):
            wrong.append(f"{kind.name}: output key/value/headers differ from the input's")
        elif mended != (None if kind.mended is None else kind.mended.encode()):
            wrong.append(f"{kind.name}: {HEADER_HEADERS_MENDED}={mended!r}, expected {kind.mended!r}")
    for rec in dlq.snapshot():
        envelope = DeadLetter.from_headers(rec.headers)
        pos = (envelope.source_partition, envelope.source_offset)
        seen[pos] += 1
        kind, i = placed[pos]
        headers = [(k, v) for k, v in rec.headers if not k.startswith("x-dlq-")]
        value_null = kind.key is None and kind.value is None
        if kind.expected != envelope.error_type:
            wrong.append(f"{kind.name}: dead-lettered as {envelope.error_type.value}, expected {kind.expected}")
        elif (
            rec.key != kind.key
            or rec.value != (b"" if value_null else kind.value)
            or headers != as_written(kind.headers)
        ):
            wrong.append(f"{kind.name}: dead letter key/value/headers differ from the input's")
        elif envelope.headers_mended != kind.mended or envelope.value_null != value_null:
            wrong.append(f"{kind.name}: mended={envelope.headers_mended!r} value_null={envelope.value_null}")
    missing = Counter(placed[pos][0].name for pos in placed if pos not in seen)
    twice = Counter(placed[pos][0].name for pos, n in seen.items() if n > 1)
    fatal = [e for e in worker.events() if e.get("level") == "error"]
    print(
        f"\nany record: records={len(placed)} kinds={len(kinds())} enriched={len(outputs.snapshot())} "
        f"dead_lettered={len(dlq.snapshot())} wrong={len(wrong)} missing={sum(missing.values())} "
        f"duplicated={sum(twice.values())} error_logs={len(fatal)} worker_alive={alive} rc={rc} "
        f"committed={dict(sorted(committed.items()))} wall_s={time.monotonic() - started:.0f}"
    )
    assert alive and rc == 0, worker.log_text()[-3000:]
    assert not wrong, Counter(wrong).most_common(10)
    assert not missing and not twice, (missing, twice)
    assert not fatal, fatal[:3]
