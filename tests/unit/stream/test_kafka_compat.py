"""worker.stream.kafka.kafka_compat: the version gate, loud failures on missing internals, real objects (no broker)."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import kafka
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.coordinator.consumer import ConsumerCoordinator
from kafka.errors import KafkaTimeoutError
from kafka.net.selector import NetworkSelector
from kafka.producer.record_accumulator import RecordAccumulator
from kafka.producer.transaction_manager import TransactionManager

from worker.settings import load_settings
from worker.stream.kafka import kafka_compat
from worker.stream.kafka.kafka_compat import KafkaCompatError
from worker.stream.sink import Sink
from worker.stream.source import Source

pytestmark = pytest.mark.unit

NO_BROKER = "127.0.0.1:1"  # nothing listens; with api_version given, kafka-python doesn't bootstrap at construction


@pytest.fixture
def producer() -> Iterator[KafkaProducer]:
    real = KafkaProducer(bootstrap_servers=NO_BROKER, api_version=(3, 0), enable_idempotence=True)
    yield real
    real.close(timeout=0)


@pytest.fixture
def consumer() -> Iterator[KafkaConsumer]:
    real = KafkaConsumer(bootstrap_servers=NO_BROKER, api_version=(3, 0), group_id="g", enable_auto_commit=False)
    yield real
    real.close(autocommit=False, timeout_ms=0)


# -- the version gate ---------------------------------------------------------------------------------------
def test_the_installed_kafka_python_is_the_supported_one() -> None:
    kafka_compat.check_version(kafka.__version__)
    kafka_compat.check_classes()


@pytest.mark.parametrize("version", ["3.0.0", "3.0.12", "3.0.99rc1"])
def test_any_3_0_release_is_accepted(version: str) -> None:
    kafka_compat.check_version(version)


@pytest.mark.parametrize("version", ["3.1.0", "2.2.15", "4.0.0", "3", "dev"])
def test_another_version_is_rejected_naming_installed_and_supported(version: str) -> None:
    with pytest.raises(KafkaCompatError) as raised:
        kafka_compat.check_version(version)
    assert f"kafka-python {version} is installed" in str(raised.value)
    assert "3.0.x" in str(raised.value)


def test_importing_it_under_another_kafka_python_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "__version__", "3.1.0")
    # a copy of the module, so the imported one (and its KafkaCompatError) stays as it is for the other tests
    spec = importlib.util.spec_from_file_location("kafka_compat_copy", kafka_compat.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(RuntimeError, match=r"kafka-python 3\.1\.0 is installed.*3\.0\.x") as raised:
        spec.loader.exec_module(module)
    assert type(raised.value).__name__ == "KafkaCompatError"


def test_a_private_method_gone_from_a_class_fails_the_class_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(ConsumerCoordinator, "_commit_offsets_sync_async")
    with pytest.raises(KafkaCompatError, match=r"ConsumerCoordinator\._commit_offsets_sync_async.*installed is"):
        kafka_compat.check_classes()


def test_a_constructor_that_no_longer_sets_an_attribute_fails_the_class_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def __init__(self: KafkaProducer, **configs: object) -> None:
        self._transaction_manager = None
        self._record_accumulator = None  # e.g. renamed by an upgrade

    monkeypatch.setattr(KafkaProducer, "__init__", __init__)
    with pytest.raises(KafkaCompatError, match=r"KafkaProducer\.__init__ no longer sets _accumulator"):
        kafka_compat.check_classes()


# -- missing internals: a clear error, never a silent default ----------------------------------------------
def test_a_producer_without_the_transaction_manager_attribute_raises_instead_of_saying_not_failed() -> None:
    moved = SimpleNamespace(_txn_manager=None, _accumulator=SimpleNamespace(abort_batches=lambda exc: None))
    with pytest.raises(KafkaCompatError, match=r"no attribute '_transaction_manager'.*kafka-python 3\.0\.x"):
        kafka_compat.producer_failed(moved)
    with pytest.raises(KafkaCompatError):
        kafka_compat.check_producer(moved)


def test_a_transaction_manager_without_has_fatal_error_raises() -> None:
    with pytest.raises(KafkaCompatError, match="has_fatal_error"):
        kafka_compat.producer_failed(SimpleNamespace(_transaction_manager=SimpleNamespace()))


def test_a_producer_without_the_accumulator_raises_instead_of_skipping_the_abort() -> None:
    with pytest.raises(KafkaCompatError, match="_accumulator"):
        kafka_compat.abort_pending_batches(SimpleNamespace(_transaction_manager=None), KafkaTimeoutError("x"))


def test_the_sinks_producer_failed_check_is_loud_too() -> None:
    moved = SimpleNamespace(close=lambda timeout=None: None)
    sink = Sink(moved, dlq_topic="{topic}.dlq", worker="w", on_done=lambda r, o: None, on_fatal=print)
    try:
        with pytest.raises(KafkaCompatError):
            sink.producer_failed()
    finally:
        sink.close(0.1)


def test_a_consumer_without_the_coordinator_raises() -> None:
    moved = SimpleNamespace(_group_coordinator=None)
    with pytest.raises(KafkaCompatError, match="_coordinator"):
        kafka_compat.coordinator_known(moved)
    with pytest.raises(KafkaCompatError, match="_coordinator"):
        kafka_compat.io_sleep(moved, 0.01)

    async def commit(offsets: object, timeout_ms: object) -> None: ...

    no_loop = SimpleNamespace(
        _coordinator=SimpleNamespace(coordinator_unknown=lambda: True, _commit_offsets_sync_async=commit)
    )
    with pytest.raises(KafkaCompatError, match="no attribute '_net'"):
        kafka_compat.check_consumer(no_loop)
    with pytest.raises(KafkaCompatError, match="no attribute '_net'"):
        kafka_compat.io_sleep(no_loop, 0.01)


def test_the_source_checks_its_consumer_up_front_not_at_the_first_rebalance() -> None:
    settings = load_settings(bootstrap_servers=NO_BROKER, input_topics="in")
    with pytest.raises(KafkaCompatError, match="_coordinator"):
        consumer = SimpleNamespace(subscribe=lambda **kw: None)
        Source(settings.kafka, settings.input, handler=None, consumer=consumer)  # type: ignore[arg-type]


def test_broker_reachable_does_not_hide_a_compat_error_as_unreachable(consumer: KafkaConsumer) -> None:
    settings = load_settings(bootstrap_servers=NO_BROKER, input_topics="in")
    source = Source(settings.kafka, settings.input, handler=None, consumer=consumer)  # type: ignore[arg-type]
    assert source.broker_reachable() is False  # no broker: the coordinator is unknown
    source.consumer = SimpleNamespace()
    with pytest.raises(KafkaCompatError):
        source.broker_reachable()


# -- the happy path on real kafka-python objects -------------------------------------------------------------
def test_a_real_idempotent_producer_passes_and_reports_its_fatal_state(producer: KafkaProducer) -> None:
    kafka_compat.check_producer(producer)
    assert kafka_compat.producer_failed(producer) is False
    producer._transaction_manager.transition_to_fatal_error(KafkaTimeoutError("lost the producer id"))
    assert kafka_compat.producer_failed(producer) is True
    sink = Sink(producer, dlq_topic="{topic}.dlq", worker="w", on_done=lambda r, o: None, on_fatal=print)
    try:
        assert sink.producer_failed()
    finally:
        sink.close(0.1)


def test_a_producer_without_idempotence_has_no_fatal_state() -> None:
    real = KafkaProducer(bootstrap_servers=NO_BROKER, api_version=(3, 0), enable_idempotence=False)
    try:
        kafka_compat.check_producer(real)
        assert kafka_compat.producer_failed(real) is False
    finally:
        real.close(timeout=0)


def test_aborting_with_nothing_pending_is_harmless(producer: KafkaProducer) -> None:
    kafka_compat.abort_pending_batches(producer, KafkaTimeoutError("producer closed"))
    producer.close(timeout=0)


def test_a_real_consumer_passes_and_knows_no_coordinator_without_a_broker(consumer: KafkaConsumer) -> None:
    kafka_compat.check_consumer(consumer)
    assert kafka_compat.coordinator_known(consumer) is False
    assert hasattr(kafka_compat.io_sleep(consumer, 0.01), "__await__")


# -- the seam stays the only one ---------------------------------------------------------------------------
def _kafka_private_names() -> set[str]:
    """kafka-python's private attributes: those its client constructors set, and its classes' private members."""
    clients = (KafkaConsumer, KafkaProducer, KafkaAdminClient)
    names = {n for cls in clients for n in cls.__init__.__code__.co_names}
    inner = (ConsumerCoordinator, TransactionManager, RecordAccumulator, NetworkSelector)
    names |= {n for cls in (*clients, *inner) for n in dir(cls)}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_worker_module_but_kafka_compat_touches_kafka_python_internals() -> None:
    private = _kafka_private_names()
    worker = Path(kafka_compat.__file__).resolve().parents[2]
    offenders = []
    for path in sorted(worker.rglob("*.py")):
        if path.name == "kafka_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in private:
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue  # the module's own attributes
            elif not (  # getattr(producer, "_accumulator", None) and the like
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and any(isinstance(arg, ast.Constant) and arg.value in private for arg in node.args[1:2])
            ):
                continue
            offenders.append(f"{path.relative_to(worker.parent)}:{node.lineno}: {ast.unparse(node)}")
    assert not offenders, f"kafka-python internals outside worker/stream/kafka/kafka_compat.py: {offenders}"
