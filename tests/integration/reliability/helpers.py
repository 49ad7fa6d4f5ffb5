"""Helpers for the reliability tests: the worker as a real process, a continuous keyed feed, an output reader.

Everything here talks to the real embedded broker (Tansu) with kafka-python; nothing is mocked. Tansu quirks
are handled here, in tests only: ``end_offsets()`` is never trusted (on Tansu it returns the last batch's base
offset + 1; the reader uses the fetch high-water mark), and group timings use short session timeouts (Tansu holds
a new group's first JoinGroup for about half the session timeout).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaTimeoutError

from tests.support.kafka_utils import SAFER_GROUP_CONFIG, create_topic
from worker.stream import kafka_compat

REPO_ROOT = Path(__file__).resolve().parents[3]
CLK_TCK = os.sysconf("SC_CLK_TCK")
WORDS = [
    *("good", "great", "awful", "bad", "movie", "service", "food", "fine", "terrible", "love", "hate", "the"),
    *("a", "plot", "acting", "staff", "price", "delivery", "quality", "never", "best", "worst", "really"),
    *("very", "not", "slow", "nice", "boring"),
]


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def text_for(i: int) -> str:
    rng = random.Random(i)
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14)))


def message(i: int, **extra: Any) -> bytes:
    return json.dumps({"id": i, "text": text_for(i), **extra}).encode()


# ---- the worker as a process ---------------------------------------------------------------------------------
def worker_env(bootstrap: str, topic: str, group: str, model_dir: Path | str, **settings: Any) -> dict[str, str]:
    """Environment for ``python -m worker run``: SENTIMENT_* settings (inherited ones dropped), JSON logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    base: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topics": topic,
        "group_id": group,
        "model": str(model_dir),
        "device": "cpu",
        "threads": 1,  # two cores shared with the broker, the test and other jobs
        "log_format": "json",
        "log_interval_s": 5,
        **SAFER_GROUP_CONFIG,
    }
    base.update(settings)
    env.update({f"SENTIMENT_{k.upper()}": str(v) for k, v in base.items() if v is not None})
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """``python -m <module> run`` (the real CLI) as a child process, JSON logs to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, module: str = "worker", args: Iterable[str] = ("run",)):
        self.env = env
        self.log_path = Path(log_path)
        self.module = module
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self._log: Any = None

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL and reap."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait(30)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is not None and self._log is not None:
                self._log.close()
                self._log = None

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, wait; SIGKILL if it doesn't exit in time (then the test fails on the return code)."""
        if not self.alive():
            return self.wait(1)
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    # -- logs ------------------------------------------------------------------------------------------------
    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def wait_event(self, name: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        def seen() -> list[dict[str, Any]] | None:
            if not self.alive():
                raise AssertionError(f"worker exited ({self.proc.poll() if self.proc else None}) before {name!r}")
            found = self.events(name)
            return found if len(found) >= count else None

        return wait_for(seen, timeout, 0.1, f"{count}x {name!r} in {self.log_path.name}")

    # -- resources (Linux /proc) --------------------------------------------------------------------------
    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def status_kib(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def peak_rss_mib(self) -> float:
        return self.status_kib("VmHWM") / 1024

    def rss_mib(self) -> float:
        return self.status_kib("VmRSS") / 1024


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


# ---- a continuous keyed feed ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Feeder(threading.Thread):
    """Produce ``count`` keyed JSON messages (ids ``start``..) at about ``rate`` per second, in chunks.

    Keys are drawn with a seeded RNG; the ids of one key rise, so per-key order is checkable downstream.
    ``keys[id]`` and ``placed[id] = (partition, offset)`` record what was acknowledged. :meth:`stop` ends it
    early (what is still unacknowledged is dropped).
    """

    bootstrap: str
    topic: str
    count: int
    rate: float
    seed: int = 5
    n_keys: int = 100
    start_id: int = 0
    chunk: int = 25
    value_for: Callable[[int], bytes] = message
    keys: dict[int, bytes] = field(default_factory=dict)
    placed: dict[int, tuple[int, int]] = field(default_factory=dict)
    error: BaseException | None = None
    flush_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, name=f"feeder-{self.topic}", daemon=True)
        self._halt = threading.Event()

    def stop(self, timeout: float = 30) -> None:
        self._halt.set()
        self.join(timeout)

    def run(self) -> None:
        rng = random.Random(self.seed)
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=10)
        try:
            started = time.monotonic()
            sent = 0
            while sent < self.count and not self._halt.is_set():
                futures = []
                for i in range(self.start_id + sent, self.start_id + min(self.count, sent + self.chunk)):
                    key = f"key-{rng.randrange(self.n_keys)}".encode()
                    self.keys[i] = key
                    futures.append((i, producer.send(self.topic, key=key, value=self.value_for(i))))
                producer.flush(timeout=self.flush_timeout_s)
                for i, future in futures:
                    meta = future.get(timeout=30)
                    self.placed[i] = (meta.partition, meta.offset)
                sent += len(futures)
                if self.rate > 0:
                    ahead = started + sent / self.rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            if self._halt.is_set() or self.error:  # give up on what is unacknowledged (close() raises otherwise)
                kafka_compat.abort_pending_batches(producer, KafkaTimeoutError("feeder stopped"))
                producer.close(timeout=0)
            else:
                producer.close()


# ---- a continuous reader of output topics ---------------------------------------------------------------------
@dataclass
class Seen:
    index: int  # arrival order over all partitions
    at: float  # monotonic time the reader got it
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    def json(self) -> dict[str, Any]:
        return json.loads(self.value or b"null")


class OutputReader(threading.Thread):
    """Reads every partition of ``topic`` from the beginning (no group) into ``records``, continuously.

    ``lag`` is the fetch high-water mark minus the position, summed over partitions (Tansu's ``end_offsets()``
    is wrong; the high-water mark of fetch responses is right), refreshed after every poll.
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, **consumer_config: Any) -> None:
        super().__init__(name=f"reader-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.consumer_config = consumer_config
        self.records: list[Seen] = []
        self.lock = threading.Lock()
        self.lag: int | None = None
        self.last_poll_started = 0.0
        self.last_poll_ended = 0.0
        self._stop_event = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "fetch_max_wait_ms": 50,
            **self.consumer_config,
        }
        try:
            consumer = KafkaConsumer(**config)
        except BaseException as exc:
            self.error = exc
            return
        try:
            tps = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._stop_event.is_set():
                started = time.monotonic()
                batch = consumer.poll(timeout_ms=100)
                now = time.monotonic()
                with self.lock:
                    for tp in sorted(batch):
                        for rec in batch[tp]:
                            self.records.append(
                                Seen(
                                    len(self.records),
                                    now,
                                    rec.partition,
                                    rec.offset,
                                    rec.key,
                                    rec.value,
                                    list(rec.headers or []),
                                )
                            )
                    lag: int | None = 0
                    for tp in tps:
                        high = consumer.highwater(tp)
                        if high is None:  # no fetch response for it yet
                            lag = None
                            break
                        lag += max(0, high - consumer.position(tp))
                    self.lag = lag
                    self.last_poll_started = started
                    self.last_poll_ended = now
        except BaseException as exc:
            self.error = exc
        finally:
            consumer.close()

    def __len__(self) -> int:
        with self.lock:
            return len(self.records)

    def snapshot(self) -> list[Seen]:
        with self.lock:
            return list(self.records)

    def caught_up_since(self, moment: float) -> bool:
        """A poll that started after ``moment`` found nothing left to read."""
        with self.lock:
            return self.last_poll_started > moment and self.lag == 0

    def wait_caught_up(self, moment: float, timeout: float = 60) -> int:
        """Wait until everything written before ``moment`` has been read; returns the record count."""
        wait_for(lambda: self.caught_up_since(moment), timeout, 0.05, f"reader of {self.topic} to catch up")
        return len(self)

    def wait_count(self, count: int, timeout: float) -> int:
        wait_for(lambda: len(self) >= count, timeout, 0.2, f"{count} records on {self.topic} (have {len(self)})")
        return len(self)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


def group_ids(count: int, prefix: str) -> list[str]:
    tag = os.urandom(4).hex()
    return [f"{prefix}-{tag}-{i}" for i in range(count)]


def create_input_and_output(bootstrap: str, topic: str, partitions: int) -> str:
    """Create the input topic and the worker's output topic (``<topic>.sentiment``); returns the output topic."""
    create_topic(bootstrap, topic, partitions)
    return create_topic(bootstrap, f"{topic}.sentiment", partitions)
