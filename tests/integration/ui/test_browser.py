"""The web app in a real headless browser (chromium via Selenium), against the real embedded broker, a real worker
(worker.app.Worker with its HTTP API) and a real exported ONNX model:

- the page loads; live records appear and their count grows as records are produced; dead letters show by reason;
  the worker's consumer lag shows;
- the "try it" box gives the label ``sentiment-worker classify`` gives for the same text (and so does the model
  loaded in the app's own process);
- a topic that doesn't exist, a worker URL that doesn't answer and a broker that goes away each show a message on
  the page; the app keeps running and recovers when the broker comes back;
- ``sentiment-worker ui --demo`` as a process serves the whole demo, and Ctrl-C stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from devtools.broker import EmbeddedBroker
from devtools.ports import free_port
from tests.integration.ui.helpers import count, plot_drawn, start_app, text_of, ui_settings, wait_page
from tests.support.kafka_utils import create_topic, produce_values
from tests.support.waits import wait_for
from tests.support.worker_process import REPO_ROOT
from tests.support.worker_thread import worker_settings
from webapp.classify import LocalClassifier
from worker.app import Worker
from worker.cli import main

pytestmark = pytest.mark.integration

TEXT = "what a wonderful, lovely day"


def _reviews(start: int, n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i}".encode(), json.dumps({"id": i, "text": f"review {i}: good film, great cast"}).encode())
            for i in range(start, start + n)]  # fmt: skip


def _classify_cli(model_dir: Path, text: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["classify", "--model", str(model_dir), "--device", "cpu", "--json", text]) == 0
    return str(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["label"])


def _try_it(browser: Any, text: str) -> str:
    box = browser.find_element("css selector", "#sw-try-text textarea")
    box.clear()
    box.send_keys(text)
    browser.find_element("id", "sw-try-button").click()

    def answered() -> str | None:
        element = browser.find_elements("id", "sw-try-result")
        return (element and (element[0].get_attribute("data-label") or element[0].text.strip())) or None

    return str(wait_page(browser, "the try-it answer", answered, timeout=30))


def test_live_records_dead_letters_lag_and_try_it(
    browser: Any, bootstrap: str, topic_name: str, tiny_onnx_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, dlq = f"{topic_name}.sentiment", f"{topic_name}.dlq"
    for topic in (topic_name, out, dlq):
        create_topic(bootstrap, topic, 2)
    settings = worker_settings(bootstrap, topic_name, tiny_onnx_dir, http_port=0, http_host="127.0.0.1")
    worker = Worker(settings, model_dir=tiny_onnx_dir)
    thread = threading.Thread(target=worker.run, name="ui-test-worker", daemon=True)
    thread.start()
    app = None
    try:
        assert worker.wait_started(60) is not None and worker.servers is not None
        url = f"http://127.0.0.1:{worker.servers.port}"
        produce_values(bootstrap, topic_name, [*_reviews(0, 20), (b"bad", b"{not json"), (b"bad", b"[1]")])
        app = start_app(ui_settings(bootstrap), topics=[out, dlq], worker_url=url, metrics_url=f"{url}/metrics")
        browser.get(app.url)
        wait_page(browser, "the page title", lambda: "sentiment-worker" in browser.title)
        first = wait_page(browser, "20 live records", lambda: (n := count(browser)) >= 20 and n)
        rows = browser.find_elements("css selector", "#sw-records tr.sw-record")
        assert rows and {r.get_attribute("data-label") for r in rows} <= {"POSITIVE", "NEGATIVE"}
        assert out in browser.find_element("id", "sw-records").text
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and not [u for u in loaded if not u.startswith("http://127.0.0.1:")], "nothing from the internet"

        produce_values(bootstrap, topic_name, _reviews(100, 30))
        wait_page(browser, "30 more live records", lambda: count(browser) >= first + 30)
        wait_page(browser, "2 dead letters", lambda: text_of(browser, "sw-dead") == "2")
        reasons = browser.find_element("id", "sw-reasons").text
        assert "invalid_json" in reasons and "not_an_object" in reasons
        wait_page(browser, "the consumer lag", lambda: (text_of(browser, "sw-lag") or "").isdigit())
        assert "sw-error" not in browser.find_element("id", "sw-status").get_attribute("innerHTML")

        expected = _classify_cli(tiny_onnx_dir, TEXT, capsys)
        assert _try_it(browser, TEXT) == expected
        assert LocalClassifier(ui_settings(bootstrap, model=str(tiny_onnx_dir))).classify(TEXT).label == expected
    finally:
        if app is not None:
            app.close()
        worker.stop()
        thread.join(60)
    assert not thread.is_alive()


def _enriched(n: int) -> list[tuple[bytes | None, bytes]]:
    now = datetime.now(UTC)
    return [(None, json.dumps({
        "text": f"note {i}", "sentiment": {"label": "POSITIVE", "score": 0.9, "scores": {"POSITIVE": 0.9}},
        "sentiment_meta": {"processed_at": now.isoformat(), "latency_ms": 3.0,
                           "source": {"topic": "in", "partition": 0, "offset": i, "timestamp": None}},
    }).encode()) for i in range(n)]  # fmt: skip


def test_missing_topic_dead_worker_and_broker_outage_show_and_recover(browser: Any, ui_broker: EmbeddedBroker) -> None:
    bootstrap = ui_broker.bootstrap
    create_topic(bootstrap, "ui-out", 1)
    dead = f"http://127.0.0.1:{free_port()}"
    app = start_app(ui_settings(bootstrap), topics=["ui-out", "ui-later"], worker_url=dead,
                    metrics_url=f"{dead}/metrics")  # fmt: skip

    def status_has(text: str) -> Any:
        return lambda: text in (text_of(browser, "sw-status") or "")

    try:
        browser.get(app.url)
        wait_page(browser, "the missing topic's message", status_has("ui-later not found on Kafka"))
        wait_page(browser, "the metrics message", status_has(f"worker metrics at {dead}/metrics do not answer"))
        assert f"the worker at {dead} does not answer" in _try_it(browser, TEXT)
        produce_values(bootstrap, "ui-out", _enriched(3))
        wait_page(browser, "3 records", lambda: count(browser) == 3)
        # The page was opened before any record: the plot must still draw once records come.
        wait_page(browser, "the label-mix plot drawn", lambda: plot_drawn(browser))

        ui_broker.stop()
        wait_page(browser, "the broker's outage", status_has(f"Kafka at {bootstrap} is unreachable"))
        assert count(browser) == 3, "the page keeps what it had"

        ui_broker.start()  # same port, empty
        create_topic(bootstrap, "ui-out", 1)
        create_topic(bootstrap, "ui-later", 1)
        wait_page(browser, "recovery", status_has(f"reading ui-out, ui-later from Kafka at {bootstrap}"), timeout=45)
        produce_values(bootstrap, "ui-later", _enriched(2))
        wait_page(browser, "records after the outage", lambda: count(browser) == 5)
    finally:
        app.close()


def test_ui_demo_command_serves_the_whole_demo(browser: Any, tiny_onnx_dir: Path, tmp_path: Path) -> None:
    """`sentiment-worker ui --demo` as a process: broker, worker, sample stream and page; Ctrl-C stops it all."""
    port = free_port()
    log_path = tmp_path / "ui-demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker", "ui", "--demo", "--port", str(port), "--model",
                                 str(tiny_onnx_dir), "--device", "cpu"], stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, env=env)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for(lambda: f"web app at {url}" in log_path.read_text(), 90, what="the URL printed")
        browser.get(url)
        wait_page(browser, "live records", lambda: count(browser) >= 20, timeout=60)
        wait_page(browser, "a dead letter", lambda: (text_of(browser, "sw-dead") or "0") != "0", timeout=30)
        assert _try_it(browser, TEXT) in {"POSITIVE", "NEGATIVE"}
        assert "sw-error" not in browser.find_element("id", "sw-status").get_attribute("innerHTML")
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(90)
    logged = log_path.read_text()
    assert rc == 0, logged[-3000:]
    assert "stopping ..." in logged
    before_stop, _, after_stop = logged.partition("stopping ...")
    assert "Traceback" not in before_stop
    # kafka-python 3.0.12 logs one error with a traceback when a client is closed while its I/O thread is in a
    # recv (its socket is set to None under it): the library's, at close, and nothing else may be logged so
    assert all(
        "Error receiving network data closing socket [kafka.net.transport]" in chunk
        for chunk in after_stop.split("Traceback")[:-1]
    ), after_stop[-3000:]
