"""Broker fixtures (a pytest plugin, loaded by tests/conftest.py).

- ``broker``: one embedded Tansu broker for the whole session (``broker.bootstrap`` is ``127.0.0.1:P``).
  Tests share it, so use ``topic_name`` (unique per test) and unique group ids.
- ``fresh_broker``: a broker of its own for a test that stops or restarts it.
- ``topic_name``: a unique, valid topic name for the test (not created; see kafka_utils.create_topic).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from devtools.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture
def fresh_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as embedded:
        yield embedded


@pytest.fixture
def bootstrap(broker: EmbeddedBroker) -> str:
    return broker.bootstrap


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-.")[:60] or "topic"
    return f"t-{base}-{uuid.uuid4().hex[:8]}"
