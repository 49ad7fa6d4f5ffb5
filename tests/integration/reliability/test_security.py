"""Security of the running worker (real process, real broker, real exported model).

- Secrets never reach the logs or the HTTP endpoints, at debug level, on the normal path, the dead-letter path,
  and the authentication-failure path (SASL PLAIN against the local broker, which runs without auth and refuses it).
- The model is loaded only after its sha256 matches the export manifest: a tampered ONNX file stops the worker
  before it joins the group; a manifest pointing outside the model dir is refused.
- The run path never unpickles: the worker runs end to end with every pickle loader disabled and an audit hook on
  ``pickle.find_class``; torch, transformers and optimum are never imported.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.ports import free_port
from tests.support.feeds import group_ids, message
from tests.support.http import get
from tests.support.kafka_utils import consume_all, create_topic, produce_values
from tests.support.waits import wait_for
from tests.support.worker_process import REPO_ROOT, WorkerProcess, worker_env

pytestmark = pytest.mark.integration

SASL_SECRET = "sasl-Pa55w0rd-5ecret-7c1"
SSL_SECRET = "ssl-key-Pa55phrase-5ecret-9e2"


def _leaks(text: str) -> list[str]:
    return [secret for secret in (SASL_SECRET, SSL_SECRET) if secret in text]


def test_secrets_never_reach_logs_or_endpoints(broker, topic_name, tiny_onnx_dir, tmp_path) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    produce_values(bootstrap, topic_name, [(b"k", message(i)) for i in range(50)] + [(b"k", b"{broken")])
    port = free_port()
    secrets = {"sasl_username": "svc-sentiment", "sasl_password": SASL_SECRET, "ssl_password": SSL_SECRET}
    env = worker_env(
        bootstrap, topic_name, group_ids(1, "secret")[0], tiny_onnx_dir, log_level="debug", metrics_port=port, **secrets
    )
    worker = WorkerProcess(env, tmp_path / "plaintext.log").start()
    try:
        out = consume_all(bootstrap, f"{topic_name}.sentiment", 50, timeout_s=90)
        dlq = consume_all(bootstrap, f"{topic_name}.dlq", 1, timeout_s=30)
        pages = ""
        for page in ("metrics", "healthz", "readyz"):
            status, text = get(port, f"/{page}")
            assert status == 200, (page, status, text)
            pages += text
        cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().decode(errors="replace")
    finally:
        rc = worker.stop(60)
    assert len(out) == 50 and len(dlq) == 1 and rc == 0

    # Authentication failure path: SASL PLAIN against a broker without SASL (it refuses the mechanism).
    sasl_env = worker_env(
        bootstrap,
        topic_name,
        group_ids(1, "sasl")[0],
        tiny_onnx_dir,
        log_level="debug",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        **secrets,
    )
    failing = WorkerProcess(sasl_env, tmp_path / "sasl.log").start()
    try:
        wait_for(lambda: "UnsupportedSaslMechanism" in failing.log_text() or not failing.alive(), 90, 0.5, "auth error")
        time.sleep(3)  # a few retries' worth of logs
    finally:
        failing.signal(signal.SIGKILL)
        failing.wait(30)
    logs = {path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")}
    print(
        f"\nsecrets: log bytes scanned={ {k: len(v) for k, v in logs.items()} } endpoint bytes={len(pages)} "
        f"leaks={ {k: _leaks(v) for k, v in logs.items()} }"
    )
    assert "UnsupportedSaslMechanism" in logs["sasl.log"], "the SASL path was not exercised"
    for name, text in logs.items():
        assert not _leaks(text), f"secret in {name}"
    assert not _leaks(pages) and not _leaks(cmdline)
    assert '"sasl_password": "**********"' in logs["plaintext.log"], "the settings line should show it masked"


def _run_until_exit(env: dict[str, str], log: Path, timeout: float = 90) -> tuple[int, str]:
    worker = WorkerProcess(env, log).start()
    try:
        rc = worker.wait(timeout)
    finally:
        if worker.alive():
            worker.kill()
    return rc, worker.log_text()


def test_tampered_model_file_refuses_to_start(broker, topic_name, tiny_onnx_dir, tmp_path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, model_dir)
    onnx = model_dir / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the weights
    onnx.write_bytes(bytes(data))
    create_topic(broker.bootstrap, topic_name, 1)
    env = worker_env(broker.bootstrap, topic_name, group_ids(1, "tamper")[0], model_dir)
    started = time.monotonic()
    rc, log = _run_until_exit(env, tmp_path / "worker.log")
    print(f"\ntampered model: rc={rc} exit_s={time.monotonic() - started:.1f}")
    assert rc != 0
    assert "ModelIntegrityError" in log and "does not match the manifest" in log
    assert '"event": "worker_started"' not in log, "it must not consume anything"


def test_manifest_cannot_point_the_model_outside_its_dir(tiny_onnx_dir, tmp_path) -> None:
    from worker.model.runtime import ModelIntegrityError, SentimentModel

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_onnx_dir, model_dir)
    (model_dir / "model.onnx").rename(tmp_path / "elsewhere.onnx")
    manifest_path = model_dir / "sentiment-manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx_file"] = "../elsewhere.onnx"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="outside"):
        SentimentModel.load(model_dir, device="cpu")
    manifest["onnx_file"] = str(tmp_path / "elsewhere.onnx")  # an absolute path, too
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="outside"):
        SentimentModel.load(model_dir, device="cpu")


def test_run_path_never_unpickles_nor_imports_torch(broker, topic_name, tiny_onnx_dir, tmp_path) -> None:
    bootstrap = broker.bootstrap
    create_topic(bootstrap, topic_name, 2)
    count = 200
    produce_values(bootstrap, topic_name, [(b"k", message(i)) for i in range(count)])
    env = worker_env(bootstrap, topic_name, group_ids(1, "nopickle")[0], tiny_onnx_dir)
    env["NO_PICKLE_EXPECT"] = str(count)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.integration.reliability.no_pickle_run"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("NO_PICKLE_REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1].removeprefix("NO_PICKLE_REPORT "))
    print(f"\nno-pickle run: {report}")
    assert report["rc"] == 0 and report["outputs"] >= count
    assert report["refused"] == [], "something tried to unpickle in the run path"
    assert not report["torch"] and not report["transformers"] and not report["optimum"]
