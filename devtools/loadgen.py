"""Load generator: realistic sample messages (or lines of a file) sent to a Kafka topic at a steady rate.

Generated messages come from a seeded generator built on word and phrase lists in this module (no
downloaded data): tweet-like texts (~25 words) and review-like texts (~100 words), positive, negative and
mixed. In JSON format each value is ``{"id", "text", "seq", "sent_at"}`` (``sent_at`` in epoch ms, taken
when the message is generated, i.e. just before it is sent); in text format the value is the bare text.
The same seed gives the same keys, ids and texts.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from worker.observability import get_logger

log = get_logger(__name__)

Length = Literal["tweet", "review", "mixed"]
Format = Literal["json", "text"]
Message = tuple[bytes | None, bytes]
LENGTHS: tuple[str, ...] = ("tweet", "review", "mixed")
MIXED_REVIEW_SHARE = 0.3  # share of review-like texts when length="mixed"

# ---- word and phrase lists ------------------------------------------------------------------------------
# fmt: off
SUBJECTS = (
    "the new phone", "this laptop", "the battery", "the customer service", "the hotel", "our room",
    "the movie", "the sequel", "the soundtrack", "the delivery", "the app", "the latest update",
    "the coffee", "this restaurant", "the pizza", "the staff", "the checkout process", "the camera",
    "these headphones", "the game", "the ending", "the keyboard", "the screen", "the support team",
    "this blender", "the flight", "the train", "the book", "the price", "the packaging", "the concert",
    "the show", "the mattress", "this vacuum", "the subscription", "the new menu", "the gym",
)
POSITIVE_ADJECTIVES = (
    "amazing", "great", "excellent", "fantastic", "wonderful", "brilliant", "superb", "lovely", "perfect",
    "delightful", "impressive", "solid", "reliable", "fast", "friendly", "beautiful", "comfortable",
    "charming", "outstanding", "smooth", "good", "fun", "helpful", "stunning",
)
NEGATIVE_ADJECTIVES = (
    "terrible", "awful", "disappointing", "horrible", "useless", "slow", "rude", "broken", "overpriced",
    "boring", "annoying", "cheap", "flimsy", "noisy", "dirty", "frustrating", "mediocre", "painful",
    "unreliable", "bland", "confusing", "poor", "bad", "buggy",
)
INTENSIFIERS = (
    "really", "very", "absolutely", "incredibly", "so", "truly", "pretty", "quite", "extremely",
    "surprisingly", "genuinely", "honestly",
)
POSITIVE_PHRASES = (
    "works like a charm", "exceeded my expectations", "was worth every penny", "made my day",
    "is exactly what I needed", "keeps getting better", "blew me away", "did not disappoint",
    "is the best I have tried in years", "arrived early and well packed", "was a pleasure to use",
    "put a smile on my face", "is a real game changer", "runs all day without a problem",
)
NEGATIVE_PHRASES = (
    "stopped working after a week", "was a complete waste of money", "keeps crashing", "never showed up",
    "fell apart almost immediately", "made the whole evening miserable", "is not worth the price",
    "took forever to arrive", "left me completely cold", "broke on the first day",
    "was nothing like the pictures", "gave me a headache", "drains the battery in a few hours",
    "ruined an otherwise nice weekend",
)
OPENERS = (
    "Honestly,", "Just tried it:", "Wow,", "Okay so", "Update:", "Quick review:", "Well,", "Ugh,",
    "Not gonna lie,", "So far", "After a month,", "Day two and", "Finally!", "Hmm,", "PSA:",
)
DETAILS = (
    "I ordered it on Monday and it arrived on Thursday",
    "we went there for my sister's birthday last weekend",
    "I have been using it every day for about three weeks now",
    "my partner picked it after reading a lot of reviews online",
    "we watched it on a rainy Sunday afternoon with the kids",
    "I bought it to replace the one I had for five years",
    "the place was busy but we got a table after twenty minutes",
    "I called them twice and sent an email before anyone replied",
    "it comes in three colours and I went with the dark grey one",
    "we stayed for four nights in a room facing the street",
    "I mostly use it for work calls and the occasional movie",
    "the setup took about ten minutes including the software update",
    "we booked it through the website and paid at the desk",
    "I read the first half on the plane and finished it at home",
)
POSITIVE_CLOSERS = (
    "Would recommend.", "Five stars.", "Highly recommended!", "Will buy again.", "Love it!",
    "Can't wait for the next one.", "Ten out of ten.", "Definitely going back.",
)
NEGATIVE_CLOSERS = (
    "Never again.", "One star.", "Avoid.", "Returning it tomorrow.", "Very disappointed.",
    "Save your money.", "Not recommended.", "What a letdown.",
)
MIXED_CLOSERS = (
    "Three stars.", "Mixed feelings.", "It's okay, I guess.", "Could be better.", "Not bad, not great.",
    "Worth it on sale.",
)
POSITIVE_VERBS = ("love", "adore", "really like", "enjoy", "can't stop using", "recommend")
NEGATIVE_VERBS = ("hate", "regret buying", "can't stand", "am done with", "would avoid", "dislike")
CONNECTORS = ("but", "although", "however", "even though", "on the other hand", "that said,")
HASHTAGS = ("#fail", "#love", "#review", "#mondays", "#happy", "#annoyed", "#tech", "#foodie", "#travel")
EMOJI = (":)", ":(", "😍", "😡", "🙄", "👍", "👎", "🔥")
# fmt: on


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class TextGenerator:
    """Seeded generator of English tweet-like and review-like texts with a sentiment polarity."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)

    # ---- sentence builders ----------------------------------------------------------------------------
    def _clause(self, positive: bool) -> str:
        rng = self.rng
        subject = rng.choice(SUBJECTS)
        adjectives = POSITIVE_ADJECTIVES if positive else NEGATIVE_ADJECTIVES
        form = rng.randrange(5)
        if form == 0:
            return f"{subject} is {rng.choice(INTENSIFIERS)} {rng.choice(adjectives)}"
        if form == 1:
            return f"{subject} {rng.choice(POSITIVE_PHRASES if positive else NEGATIVE_PHRASES)}"
        if form == 2:
            verb = rng.choice(POSITIVE_VERBS if positive else NEGATIVE_VERBS)
            return f"I {verb} {subject}, it is {rng.choice(adjectives)} and {rng.choice(adjectives)}"
        if form == 3:
            first, second = rng.sample(adjectives, 2)
            return f"{subject} was {first}, {second} and {rng.choice(INTENSIFIERS)} {rng.choice(adjectives)}"
        phrase = rng.choice(POSITIVE_PHRASES if positive else NEGATIVE_PHRASES)
        return f"{subject} {phrase} and the rest is {rng.choice(INTENSIFIERS)} {rng.choice(adjectives)}"

    def _sentence(self, positive: bool) -> str:
        return _cap(self._clause(positive)) + self.rng.choice((".", ".", "!", "!!"))

    def _mixed_sentence(self, positive_first: bool) -> str:
        rng = self.rng
        connector = rng.choice(CONNECTORS)
        return f"{_cap(self._clause(positive_first))}, {connector} {self._clause(not positive_first)}."

    def _closer(self, polarity: str) -> str:
        closers = {"positive": POSITIVE_CLOSERS, "negative": NEGATIVE_CLOSERS}.get(polarity, MIXED_CLOSERS)
        return self.rng.choice(closers)

    # ---- texts ----------------------------------------------------------------------------------------
    def polarity(self) -> str:
        return self.rng.choices(("positive", "negative", "mixed"), weights=(0.42, 0.42, 0.16))[0]

    def tweet(self, polarity: str | None = None) -> str:
        """About 25 words: opener, one or two sentiment sentences, sometimes a detail, closer, tags."""
        rng = self.rng
        polarity = polarity or self.polarity()
        positive = polarity == "positive" if polarity != "mixed" else rng.random() < 0.5
        parts: list[str] = []
        if polarity == "mixed":
            parts.append(self._mixed_sentence(positive))
        else:
            parts.append(self._sentence(positive))
            if rng.random() < 0.65:
                parts.append(self._sentence(positive))
        if rng.random() < 0.5:
            opener = rng.choice(OPENERS)
            first = parts[0]
            if not opener.endswith(("!", ":")) and not first.startswith("I "):
                first = first[:1].lower() + first[1:]
            parts[0] = f"{opener} {first}"
        if rng.random() < 0.35:
            parts.append(_cap(rng.choice(DETAILS)) + ".")
        if rng.random() < 0.7:
            parts.append(self._closer(polarity))
        if rng.random() < 0.4:
            parts.extend(rng.sample(HASHTAGS, rng.randint(1, 2)))
        if rng.random() < 0.25:
            parts.append(rng.choice(EMOJI))
        return " ".join(parts)

    def review(self, polarity: str | None = None) -> str:
        """About 100 words: several detail and sentiment sentences, a turn for mixed reviews, a closer."""
        rng = self.rng
        polarity = polarity or self.polarity()
        positive = polarity == "positive" if polarity != "mixed" else rng.random() < 0.5
        sentences: list[str] = []
        details = rng.sample(DETAILS, rng.randint(3, 4))
        sentences.append(_cap(details[0]) + ".")
        for _ in range(rng.randint(4, 7)):
            sentences.append(self._sentence(positive))
        for detail in details[1:]:
            sentences.insert(rng.randint(1, len(sentences)), _cap(detail) + ".")
        if polarity == "mixed":
            sentences.append(self._mixed_sentence(not positive))
            sentences.append(self._sentence(not positive))
        elif rng.random() < 0.3:
            sentences.append(self._mixed_sentence(positive))
        sentences.append(self._closer(polarity))
        return " ".join(sentences)

    def text(self, length: Length = "tweet") -> str:
        if length == "tweet":
            return self.tweet()
        if length == "review":
            return self.review()
        if length == "mixed":
            return self.review() if self.rng.random() < MIXED_REVIEW_SHARE else self.tweet()
        raise ValueError(f"length must be one of {LENGTHS}, not {length!r}")


# ---- message streams --------------------------------------------------------------------------------------
def _key(i: int, keys: int | None) -> bytes | None:
    return f"key-{i % keys}".encode() if keys else None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def generate_messages(
    count: int | None,
    *,
    seed: int | None = None,
    length: Length = "tweet",
    keys: int | None = None,
    fmt: Format = "json",
    text_field: str = "text",
) -> Iterator[Message]:
    """Yield ``count`` (key, value) pairs of generated messages (``count=None``: endlessly).

    json values: ``{"id": <uuid from the seeded rng>, <text_field>: ..., "seq": n, "sent_at": <epoch ms>}``;
    text values: the bare UTF-8 text. Key ``key-<n % keys>`` when ``keys`` is set, else None.
    """
    if length not in LENGTHS:
        raise ValueError(f"length must be one of {LENGTHS}, not {length!r}")
    if keys is not None and keys < 0:
        raise ValueError("keys must be >= 0")
    generator = TextGenerator(seed)
    id_rng = random.Random(generator.rng.getrandbits(64))
    counter = itertools.count() if count is None else range(count)
    for n in counter:
        text = generator.text(length)
        message_id = str(uuid.UUID(int=id_rng.getrandbits(128), version=4))
        if fmt == "json":
            obj = {"id": message_id, text_field: text, "seq": n, "sent_at": _now_ms()}
            value = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        elif fmt == "text":
            value = text.encode()
        else:
            raise ValueError(f"fmt must be 'json' or 'text', not {fmt!r}")
        yield _key(n, keys), value


def file_messages(
    lines: Iterable[str],
    *,
    count: int | None = None,
    keys: int | None = None,
    fmt: Format = "json",
    text_field: str = "text",
    id_prefix: str | None = None,
) -> Iterator[Message]:
    """Messages from lines of text (blank lines skipped).

    json format: a line holding a JSON object is sent as-is; any other line becomes
    ``{"id": "<prefix>-<n>", <text_field>: line}``. text format: each line as UTF-8.
    ``count=None`` sends each line once; a ``count`` stops there, cycling through the lines if needed.
    """
    prefix = id_prefix or uuid.uuid4().hex[:12]
    cleaned = (line.rstrip("\r\n") for line in lines)
    source: Iterator[str] = (line for line in cleaned if line.strip())
    if count is not None:
        cached = list(source)
        if not cached:
            return
        source = itertools.islice(itertools.cycle(cached), count)
    for n, line in enumerate(source):
        if fmt == "text":
            value = line.encode()
        elif fmt == "json":
            value = _json_line(line, f"{prefix}-{n}", text_field)
        else:
            raise ValueError(f"fmt must be 'json' or 'text', not {fmt!r}")
        yield _key(n, keys), value


def _json_line(line: str, message_id: str, text_field: str) -> bytes:
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return stripped.encode()
    return json.dumps({"id": message_id, text_field: line}, ensure_ascii=False, separators=(",", ":")).encode()


def read_lines(path: Path | str) -> Iterator[str]:
    """Lines of a file (``-`` = stdin), lazily."""
    if str(path) == "-":
        yield from sys.stdin
        return
    with Path(path).open(encoding="utf-8") as fh:
        yield from fh


# ---- producing --------------------------------------------------------------------------------------------
@dataclass
class ProduceStats:
    """Outcome of :func:`produce`: delivered and failed sends, value bytes, wall seconds (send to flush)."""

    sent: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few delivery errors

    @property
    def attempted(self) -> int:
        return self.sent + self.failed

    @property
    def msgs_per_s(self) -> float:
        return self.attempted / self.seconds if self.seconds > 0 else 0.0

    def summary(self, topic: str) -> str:
        text = (
            f"sent {self.sent} messages ({self.bytes} bytes) to {topic} in {self.seconds:.2f} s "
            f"({self.msgs_per_s:.0f} msgs/s)"
        )
        return text + (f"; {self.failed} failed: {self.errors[0]}" if self.failed else "")


DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 5,
    "client_id": "sentiment-worker-loadgen",
}


class _Progress:
    """tqdm on a TTY stderr, else a log line every ``interval_s``."""

    def __init__(self, enabled: bool, total: int | None, interval_s: float = 5.0) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.interval_s = interval_s
        self.total = total
        self.next_log = time.monotonic() + interval_s
        self.start = time.monotonic()
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="msg", file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        now = time.monotonic()
        if now >= self.next_log:
            self.next_log = now + self.interval_s
            elapsed = now - self.start
            log.info("produce_progress", sent=done, total=self.total, msgs_per_s=round(done / elapsed, 1))

    def close(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.close()


def produce(
    bootstrap: str | list[str],
    topic: str,
    messages: Iterable[Message],
    *,
    rate: float = 0,
    producer_config: dict[str, Any] | None = None,
    progress: bool = False,
    total: int | None = None,
) -> ProduceStats:
    """Send (key, value) pairs to ``topic``; ``rate`` msgs/s (0 = as fast as possible); flush at the end.

    The rate follows a monotonic schedule (message n is due at start + n / rate), so pauses never
    accumulate drift. ``producer_config`` overrides the defaults (acks=all, linger 5 ms). ``progress``
    shows tqdm on a TTY stderr, else logs a line every 5 s; ``total`` is only for the progress display.
    """
    from kafka import KafkaProducer

    if rate < 0:
        raise ValueError("rate must be >= 0")
    config = {**DEFAULT_PRODUCER_CONFIG, "bootstrap_servers": bootstrap, **(producer_config or {})}
    producer = KafkaProducer(**config)
    stats = ProduceStats()

    def on_success(size: int, _metadata: Any) -> None:  # kafka-python calls fn(*args, value)
        stats.sent += 1
        stats.bytes += size

    def on_error(exc: BaseException) -> None:
        stats.failed += 1
        if len(stats.errors) < 5:
            stats.errors.append(f"{type(exc).__name__}: {exc}")

    bar = _Progress(progress, total)
    n = 0
    start = time.monotonic()
    try:
        for n, (key, value) in enumerate(messages, start=1):
            if rate > 0:
                delay = start + (n - 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            future = producer.send(topic, key=key, value=value)
            future.add_callback(on_success, len(value))
            future.add_errback(on_error)
            bar.update(n)
        producer.flush()
    finally:
        stats.seconds = time.monotonic() - start
        bar.close(n)
        producer.close()
    log.info(
        "produce_done",
        topic=topic,
        sent=stats.sent,
        failed=stats.failed,
        seconds=round(stats.seconds, 3),
        msgs_per_s=round(stats.msgs_per_s, 1),
    )
    return stats
