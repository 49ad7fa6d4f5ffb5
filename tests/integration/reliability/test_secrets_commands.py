"""Secrets never reach a log at debug level, in every command that connects (besides ``run``: test_security.py).

kafka-python's ``KafkaAdminClient`` logs its whole configuration at debug level, SASL password included; the
worker registers its secret settings with the log renderer, which masks them in every line, whoever wrote it.
``bench`` is checked the same way in tests/integration/test_bench.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from devtools.ports import free_port
from tests.support.worker_process import REPO_ROOT

pytestmark = pytest.mark.integration

SASL_SECRET = "sasl-Cmd-Pa55w0rd-4f1"
SSL_SECRET = "ssl-Cmd-Pa55phrase-8b2"


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update({f"SENTIMENT_{k.upper()}": v for k, v in settings.items()})
    env.update(SENTIMENT_LOG_LEVEL="debug", SENTIMENT_LOG_FORMAT="json", SENTIMENT_SSL_PASSWORD=SSL_SECRET)
    return env


def _produce(env: dict[str, str], topic: str, count: int) -> subprocess.CompletedProcess[str]:
    args = ["produce", "--topic", topic, "--partitions", "2", "--count", str(count)]
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180
    )


def _leaks(text: str) -> list[str]:
    return [s for s in (SASL_SECRET, SSL_SECRET) if s in text]


def test_produce_with_sasl_at_debug_masks_the_admin_and_producer_configs(broker, topic_name) -> None:
    """SASL PLAIN against the local broker (no SASL): the admin client logs its config, then fails to connect."""
    env = _env(
        bootstrap_servers=broker.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=SASL_SECRET,
    )
    proc = _produce(env, topic_name, 3)
    text = proc.stdout + proc.stderr
    print(f"\nproduce (SASL, debug): rc={proc.returncode} log bytes={len(text)} leaks={_leaks(text)}")
    assert "sasl_plain_password" in text, "the admin client's configuration dump was not exercised"
    assert not _leaks(text), text[-3000:]


def test_produce_and_broker_at_debug_never_print_secrets(broker, topic_name) -> None:
    env = _env(bootstrap_servers=broker.bootstrap, sasl_password=SASL_SECRET)
    proc = _produce(env, topic_name, 20)
    produce_text = proc.stdout + proc.stderr
    assert proc.returncode == 0, produce_text[-3000:]

    port = free_port()
    tool = subprocess.Popen(
        [sys.executable, "-m", "worker", "broker", "--port", str(port)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)
    finally:
        tool.terminate()
        broker_text, _ = tool.communicate(timeout=30)
    print(f"\nproduce/broker (debug): log bytes={len(produce_text)}/{len(broker_text)}")
    assert f"127.0.0.1:{port}" in broker_text, broker_text[-2000:]
    assert not _leaks(produce_text) and not _leaks(broker_text)
