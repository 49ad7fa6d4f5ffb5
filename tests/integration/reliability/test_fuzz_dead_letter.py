"""Bad input: ≥ 10,000 malformed or hostile records mixed with valid ones, through the real worker process.

A seeded generator (``hostile_inputs``) makes each case with the outcome the worker must reach: enriched (valid)
or dead-lettered with one specific reason. Cases: invalid UTF-8 (incl. UTF-8-encoded surrogates), invalid JSON
(truncated, trailing garbage, single quotes, NaN, raw control characters, a BOM, numbers that overflow to
infinity, integers with too many digits), JSON that is not an object, a missing / null / empty / blank /
non-string text field, JSON-escaped lone surrogates, 10 MB texts, JSON nested 50,000 deep, huge keys and huge
headers, null and empty values; valid ones with control characters, emoji, deep-but-fine nesting, long texts
(truncated), big keys/headers under the limit. And records kafka-python's producer refuses, written by a second
client (``tests/support/second_client.py``): null header values, empty and duplicate header names, header names
that are not UTF-8, hundreds of headers, empty keys, neither key nor value, key-only records with null headers, a
BOM before the JSON; their output or dead letter must carry the headers as written back (null values empty, names
escaped) and the ``*-headers-mended`` header that says so.

Also: a record that makes the real ONNX Runtime session fail (a model wrapper maps a marker text to a token id
outside the vocabulary; the Gather node then raises): its batch is split until the record is isolated, it is
dead-lettered as ``inference_failed`` and every other record of the batch is enriched, in order.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.support.feeds import OutputReader, group_ids
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.second_client import as_written, expected_mended, produce_any, produce_raw_header_names
from tests.support.waits import wait_for
from tests.support.worker_process import WorkerProcess, worker_env
from tests.support.worker_thread import WorkerThread, worker_settings
from worker.model.runtime import SentimentModel
from worker.records import HEADER_HEADERS_MENDED, DeadLetter, ErrorType

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEED = 5005
N_INVALID = 10_500
N_VALID = 3_500
N_SECOND_CLIENT = 1_500  # records only another client can produce, on top (a third of them valid)
MAX_MESSAGE_BYTES = 1_048_576  # the default
MB = 1024 * 1024
BIG_FETCH = {"max_partition_fetch_bytes": 32 * MB, "fetch_max_bytes": 64 * MB}
WORDS = ["good", "bad", "great", "awful", "movie", "plot", "the", "a", "service", "food", "never", "fine", "love"]


@dataclass
class Case:
    kind: str
    value: bytes | None
    expected: ErrorType | None  # None: enriched
    key: bytes | None = None
    headers: list[tuple[str | bytes, bytes | None]] | None = None
    id: int | None = None
    client: str = "kafka-python"  # or "any" (confluent-kafka), "raw" (header names as raw bytes)


def _text(rng: random.Random, n: int = 0) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n or rng.randint(1, 12)))


def _obj(i: int, text: object, **extra: object) -> dict:
    return {"id": i, "text": text, **extra}


def _dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def hostile_inputs(seed: int, n_invalid: int, n_valid: int, n_second: int = 0) -> list[Case]:
    """Seeded, shuffled cases; every valid case has a unique ``id``; the heavy cases are few."""
    rng = random.Random(seed)
    cases: list[Case] = []
    ids = iter(range(10**9))

    def bad(kind: str, value: bytes | None, reason: ErrorType, **kw: object) -> None:
        cases.append(Case(kind, value, reason, **kw))

    # -- heavy ones, a handful each
    for _ in range(3):
        bad("text_10mb", _dumps(_obj(-1, "a" * (10 * MB))), ErrorType.TOO_LARGE)
    for _ in range(3):
        bad("key_2mb", _dumps(_obj(-1, _text(rng))), ErrorType.TOO_LARGE, key=b"K" * (2 * MB))
    for _ in range(3):
        bad("headers_1.5mb", _dumps(_obj(-1, _text(rng))), ErrorType.TOO_LARGE, headers=[("h", b"H" * 50_000)] * 30)
    for _ in range(3):
        bad("nested_50k", f'{{"text": "ok", "n": {_nested(50_000)}}}'.encode(), ErrorType.INVALID_JSON)
    # -- the bulk: cheap hostile records
    E = ErrorType
    makers: list[tuple[str, ErrorType, Callable[[], bytes | None]]] = [
        # 0xff never occurs in UTF-8 (the random tail may or may not be valid on its own)
        ("invalid_utf8", E.INVALID_UTF8, lambda: b"\xff" + rng.randbytes(rng.randint(0, 40))),
        ("utf8_in_json", E.INVALID_UTF8, lambda: b'{"text": "caf\xe9 \xff"}'),
        ("utf8_surrogate", E.INVALID_UTF8, lambda: b'{"text": "\xed\xa0\x80"}'),
        ("truncated_json", E.INVALID_JSON, lambda: _dumps(_obj(0, _text(rng)))[: rng.randint(1, 10)]),
        ("trailing_garbage", E.INVALID_JSON, lambda: _dumps(_obj(0, _text(rng))) + b" }"),
        ("single_quotes", E.INVALID_JSON, lambda: b"{'text': 'hi'}"),
        ("nan", E.INVALID_JSON, lambda: b'{"text": "x", "score": NaN}'),
        ("raw_control_char", E.INVALID_JSON, lambda: b'{"text": "a' + bytes([rng.randrange(0, 32)]) + b'b"}'),
        ("bom", E.INVALID_JSON, lambda: b"\xef\xbb\xbf" + _dumps(_obj(0, "x"))),
        ("float_overflow", E.INVALID_JSON, lambda: b'{"text": "x", "v": 1e%d}' % rng.randint(309, 99999)),
        ("int_too_long", E.INVALID_JSON, lambda: b'{"text": "x", "v": ' + b"9" * 5000 + b"}"),
        ("not_object", E.NOT_AN_OBJECT, lambda: rng.choice([b"[1, 2]", b'"text"', b"42", b"null", b'[{"text": 1}]'])),
        ("missing_text", E.MISSING_TEXT, lambda: _dumps({"body": _text(rng), "id": 1})),
        ("null_text", E.INVALID_TEXT, lambda: b'{"text": null}'),
        ("non_string_text", E.INVALID_TEXT, lambda: _dumps({"text": rng.choice([1, 2.5, True, [], ["a"], {"a": 1}])})),
        ("empty_text", E.INVALID_TEXT, lambda: _dumps({"text": rng.choice(["", " ", "\n\t ", "\u2003\u3000"])})),
        ("lone_surrogate", E.INVALID_TEXT, lambda: b'{"text": "ok \\ud83d then"}'),
        ("empty_value", E.EMPTY_VALUE, lambda: b""),
        ("null_value", E.EMPTY_VALUE, lambda: None),
    ]
    while len(cases) < n_invalid:
        kind, reason, make = rng.choice(makers)
        value = make()
        key = rng.choice([None, b"k", rng.randbytes(16)])
        if value is None:  # a tombstone needs a key
            key = key or b"tombstone"
        bad(kind, value, reason, key=key)

    # -- valid ones
    def good(kind: str, text: str, **kw: object) -> None:
        i = next(ids)
        extra = kw.pop("extra", {})
        cases.append(Case(kind, _dumps(_obj(i, text, **extra)), None, id=i, **kw))

    good("long_text_truncated", "good " * 30_000)  # 150 KB, over max_text_chars: classified on its start
    good("big_key_under_limit", _text(rng), key=b"K" * 300_000)
    good("big_headers_under_limit", _text(rng), headers=[("h", b"H" * 20_000)] * 10)
    good("nested_fine", _text(rng), extra={"n": json.loads(_nested(50))})
    good_makers = [
        ("plain", lambda: _text(rng)),
        ("control_escaped", lambda: _text(rng) + "\u0000\u0007\u001b[31m" + _text(rng)),
        ("unicode", lambda: rng.choice(["😀 good", "très bien", "שלום good", "好 great", "\u200b bad"])),
        ("whitespace_around", lambda: "  \n" + _text(rng) + "\t "),
    ]
    while len(cases) < n_invalid + n_valid:
        kind, make = rng.choice(good_makers)
        good(kind, make(), key=rng.choice([None, f"key-{rng.randrange(50)}".encode()]))
    cases.extend(second_client_cases(rng, n_second, ids))
    rng.shuffle(cases)
    return cases


def second_client_cases(rng: random.Random, n: int, ids) -> list[Case]:
    """Records kafka-python's producer refuses; a third valid (enriched), the rest dead-lettered."""
    E = ErrorType

    def odd_headers() -> list[tuple[str | bytes, bytes | None]]:
        pool: list[tuple[str | bytes, bytes | None]] = [("", b"e"), ("dup", b"1"), ("dup", None), ("n", None)]
        return [*rng.sample(pool, rng.randint(1, len(pool))), ("trace", rng.randbytes(8))]

    def raw_names() -> list[tuple[str | bytes, bytes | None]]:
        return [(rng.choice([b"\xff", b"caf\xe9", b"\xc3", b"ok-\xfe\xff"]), b"v"), ("ok", b"1")]

    def many() -> list[tuple[str | bytes, bytes | None]]:
        return [(f"h{i}", None if rng.random() < 0.05 else b"x") for i in range(rng.randint(100, 500))]

    cases: list[Case] = []
    for _ in range(3):  # heavy: 1.5 MB of headers, some null
        cases.append(
            Case(
                "null_headers_1.5mb",
                _dumps(_obj(-1, "x")),
                E.TOO_LARGE,
                b"k",
                [("h", b"H" * 100_000), ("n", None)] * 15,
                client="any",
            )
        )
    invalid = [
        ("null_key_null_value", lambda: (None, None, [], E.EMPTY_VALUE, "any")),
        ("null_key_null_value_odd_headers", lambda: (None, None, odd_headers(), E.EMPTY_VALUE, "any")),
        ("key_only_odd_headers", lambda: (rng.choice([b"", b"k"]), None, odd_headers(), E.EMPTY_VALUE, "any")),
        (
            "bom_odd_headers",
            lambda: (b"", b"\xef\xbb\xbf" + _dumps(_obj(0, "x")), odd_headers(), E.INVALID_JSON, "any"),
        ),
        ("raw_name_bad_utf8", lambda: (None, b"\xff" + rng.randbytes(4), raw_names(), E.INVALID_UTF8, "raw")),
        ("many_headers_missing_text", lambda: (b"k", _dumps({"body": "x"}), many(), E.MISSING_TEXT, "any")),
    ]
    valid = [
        ("odd_headers", lambda: (rng.choice([None, b"", b"k"]), odd_headers(), "any")),
        ("raw_header_names", lambda: (rng.choice([None, b"", b"k"]), raw_names(), "raw")),
        ("hundreds_of_headers", lambda: (b"k", many(), "any")),
    ]
    while len(cases) < n:
        if rng.random() < 1 / 3:
            kind, make_valid = rng.choice(valid)
            key, headers, client = make_valid()
            i = next(ids)
            cases.append(Case(kind, _dumps(_obj(i, _text(rng))), None, key, headers, i, client))
        else:
            kind, make = rng.choice(invalid)
            key, value, headers, reason, client = make()
            cases.append(Case(kind, value, reason, key, headers, None, client))
    return cases


def _produce(bootstrap: str, topic: str, items) -> list[tuple[int, int]]:
    metas = produce_values(bootstrap, topic, items, producer_config={"max_request_size": 32 * MB})
    return [(m.partition, m.offset) for m in metas]


def _headers_as_expected(case: Case, headers, prefix: str) -> bool:
    """The input's headers as written back, and the mended header saying what was changed (second client only)."""
    mended = dict(headers).get(HEADER_HEADERS_MENDED if prefix == "x-sentiment-" else "x-dlq-headers-mended")
    expected = expected_mended(case.headers)
    kept = [(k, v) for k, v in headers if not k.startswith(prefix)]
    return kept == as_written(case.headers) and mended == (None if expected is None else expected.encode())


def _sources(records) -> list[tuple[int, int]]:
    sources = (json.loads(r.value)["sentiment_meta"]["source"] for r in records)
    return [(src["partition"], src["offset"]) for src in sources]


def test_fuzzed_hostile_input_is_dead_lettered_with_its_reason_and_valid_input_enriched(
    broker, topic_name, tiny_onnx_dir, tmp_path
) -> None:
    started = time.monotonic()
    cases = hostile_inputs(SEED, N_INVALID, N_VALID, N_SECOND_CLIENT)
    bootstrap = broker.bootstrap
    out_topic, dlq_topic = f"{topic_name}.sentiment", f"{topic_name}.dlq"
    for topic in (topic_name, out_topic, dlq_topic):
        create_topic(bootstrap, topic, 4)
    (group,) = group_ids(1, "fuzz")
    env = worker_env(bootstrap, topic_name, group, tiny_onnx_dir, max_message_bytes=MAX_MESSAGE_BYTES)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    outputs = OutputReader(bootstrap, out_topic, 4, **BIG_FETCH)
    dlq = OutputReader(bootstrap, dlq_topic, 4, **BIG_FETCH)
    outputs.start()
    dlq.start()
    n_valid = sum(1 for c in cases if c.expected is None)
    try:
        worker.wait_event("partitions_assigned", 90)
        baseline_rss = worker.rss_mib()
        placed: dict[tuple[int, int], Case] = {}
        for start in range(0, len(cases), 500):
            chunk = cases[start : start + 500]
            for client, produce in (
                ("kafka-python", _produce),
                ("any", produce_any),
                ("raw", produce_raw_header_names),
            ):
                part = [c for c in chunk if c.client == client]
                if part:
                    where = produce(bootstrap, topic_name, [(c.key, c.value, c.headers, None) for c in part])
                    placed.update(dict(zip(where, part, strict=True)))
            assert worker.alive(), worker.log_text()[-3000:]
        wait_for(lambda: len(outputs) >= n_valid and len(dlq) >= len(cases) - n_valid, 300, 1.0, "all outcomes")
        time.sleep(1.0)  # anything extra (a duplicate) would show up now
        alive = worker.alive()
        peak_rss = worker.peak_rss_mib()
        rc = worker.stop(60)
    finally:
        if worker.alive():
            worker.kill()
        outputs.stop()
        dlq.stop()
    elapsed = time.monotonic() - started

    enriched = outputs.snapshot()
    dead = dlq.snapshot()
    wrong: list[str] = []
    seen: Counter[tuple[int, int]] = Counter()
    for rec, src in zip(enriched, _sources(enriched), strict=True):
        seen[src] += 1
        case = placed[src]
        if case.expected is not None:
            wrong.append(f"{case.kind}: enriched, expected {case.expected.value}")
        elif json.loads(rec.value)["id"] != case.id or rec.key != case.key:
            wrong.append(f"{case.kind}: output does not match its input")
        elif case.client != "kafka-python" and not _headers_as_expected(case, rec.headers, "x-sentiment-"):
            wrong.append(f"{case.kind}: output headers are not the input's as written back")
    reasons: Counter[str] = Counter()
    for rec in dead:
        envelope = DeadLetter.from_headers(rec.headers)
        src = (envelope.source_partition, envelope.source_offset)
        seen[src] += 1
        case = placed[src]
        reasons[envelope.error_type.value] += 1
        if case.expected != envelope.error_type:
            wrong.append(f"{case.kind}: dead-lettered as {envelope.error_type.value}, expected {case.expected}")
        elif not envelope.error_message:
            wrong.append(f"{case.kind}: no error message")
        elif case.client != "kafka-python" and not (
            _headers_as_expected(case, rec.headers, "x-dlq-")
            and rec.key == case.key
            and rec.value == (b"" if envelope.value_null else case.value)
            and envelope.value_null == (case.key is None and case.value is None)
        ):
            wrong.append(f"{case.kind}: dead letter differs from its input as written back")
    missing = [placed[src].kind for src in placed if src not in seen]
    twice = [placed[src].kind for src, n in seen.items() if n > 1]
    kinds = Counter(c.kind for c in cases)
    second_client = sum(1 for c in cases if c.client != "kafka-python")
    print(
        f"\nfuzz summary: inputs={len(cases)} invalid={len(cases) - n_valid} valid={n_valid} kinds={len(kinds)} "
        f"second_client={second_client} "
        f"enriched={len(enriched)} dead_lettered={len(dead)} reasons={dict(reasons)} wrong={len(wrong)} "
        f"missing={len(missing)} duplicated={len(twice)} worker_alive={alive} rc={rc} "
        f"rss_baseline_mib={baseline_rss:.0f} peak_rss_mib={peak_rss:.0f} wall_s={elapsed:.0f}"
    )
    assert len(cases) - n_valid >= 10_000
    assert alive and rc == 0, worker.log_text()[-3000:]
    assert not wrong, Counter(wrong).most_common(10)
    assert not missing, Counter(missing)
    assert not twice, Counter(twice)
    # bounded memory: ~100 MiB at rest; 10 MB records, 2 MB keys and the consumer's fetch buffer (fetch_max_bytes,
    # 50 MiB) add a few copies of a record at a time, never the stream
    assert peak_rss < 512, f"peak RSS {peak_rss:.0f} MiB"


# ---- a record that makes inference fail ---------------------------------------------------------------------
POISON = "☠ poison ☠"


@pytest.fixture(scope="module")
def poisoned_model(tiny_onnx_dir) -> SentimentModel:
    """The real exported model; texts containing POISON get a token id outside the vocabulary (as a corrupted
    tokenizer or model file could produce), so the real ONNX Runtime session fails on the Gather node."""
    model = SentimentModel.load(tiny_onnx_dir, device="cpu")
    real_tokenize, real_infer = model.tokenize, model.infer_ids
    model.calls = []  # type: ignore[attr-defined]

    def tokenize(texts):
        ids, truncated = real_tokenize(texts)
        return [[seq[0], 10**6, seq[-1]] if POISON in t else seq for t, seq in zip(texts, ids, strict=True)], truncated

    def infer_ids(ids, **kwargs):
        model.calls.append(len(ids))  # type: ignore[attr-defined]
        return real_infer(ids, **kwargs)

    model.tokenize = tokenize  # type: ignore[method-assign]
    model.infer_ids = infer_ids  # type: ignore[method-assign]
    return model


def test_inference_failure_splits_the_batch_isolates_the_record_and_processes_the_rest(
    broker, topic_name, tiny_onnx_dir, poisoned_model
) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 1)
    total, poison_at = 640, {100, 333, 334, 600}
    items = [
        (b"k", _dumps(_obj(i, POISON if i in poison_at else f"message {i} is good")), [("n", str(i).encode())])
        for i in range(total)
    ]
    produce_values(bootstrap, topic_name, items)  # one partition: big batches, order checkable
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, max_batch_size=64, max_wait_ms=200)
    worker = WorkerThread(settings, poisoned_model).start()
    try:
        out = consume_all(bootstrap, f"{topic_name}.sentiment", total - len(poison_at), timeout_s=90, settle_s=0.5)
        dead = consume_all(bootstrap, f"{topic_name}.dlq", len(poison_at), timeout_s=30, settle_s=0.5)
        assert worker.alive
    finally:
        rc = worker.stop()
    ids = [json.loads(r.value)["id"] for r in out]
    envelopes = [DeadLetter.from_headers(r.headers) for r in dead]
    calls = poisoned_model.calls  # type: ignore[attr-defined]
    print(
        f"\ninference failure: records={total} poison={len(poison_at)} enriched={len(ids)} "
        f"dead_lettered={len(dead)} model_calls={len(calls)} (largest {max(calls)}, singles {calls.count(1)}) "
        f"reasons={Counter(e.error_type.value for e in envelopes)}"
    )
    assert rc == 0
    assert ids == [i for i in range(total) if i not in poison_at], "the rest, exactly once and in order"
    assert sorted(int(dict(r.headers)["n"]) for r in dead) == sorted(poison_at)
    assert all(e.error_type == ErrorType.INFERENCE_FAILED for e in envelopes)
    assert all("Gather" in e.error_message or "out of" in e.error_message for e in envelopes), envelopes[0]
