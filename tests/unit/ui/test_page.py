"""The page's fragments, the "try it" clients and the lag reader on plain data (no browser, no Kafka)."""

from __future__ import annotations

import json
import re
import threading
import tomllib
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.support.blocked_imports import REPO
from webapp.classify import ClassifyError, HttpClassifier, Verdict, classify_text
from webapp.data import LiveRecord, LiveStats
from webapp.feed import LagFeed, Status
from webapp.page import (
    UI_PACKAGES,
    mix_frame,
    records_html,
    render,
    stats_html,
    status_html,
    try_it_html,
    verdict_html,
)
from worker.cli import build_parser, main
from worker.serve.front import HTTP_PACKAGES

pytestmark = pytest.mark.unit


def _stats() -> LiveStats:
    stats = LiveStats()
    stats.add(LiveRecord("out", 1, 9, "<b>bold</b> & good", "POSITIVE", 0.9, 100.0, 30.0, 4.0))
    stats.add_dead_letter("invalid_json")
    return stats


def test_fragments_carry_the_ids_and_escape_the_text() -> None:
    snap = _stats().snapshot(101.0)
    status, stats, frame, records, reasons, lags = render(snap, [Status(False, "Kafka <down>", 0.0)], None, None, 101.0)
    assert 'class="sw-error"' in status and "Kafka &lt;down&gt;" in status
    assert re.search(r'id="sw-count">1<', stats) and re.search(r'id="sw-dead">1<', stats)
    assert re.search(r'id="sw-lag">–<', stats) and re.search(r'id="sw-e2e-p50">30.0 ms<', stats)
    assert 'data-label="POSITIVE"' in records and "&lt;b&gt;bold&lt;/b&gt; &amp; good" in records
    assert "out/1@9" in records and 'data-reason="invalid_json"' in reasons
    assert "--metrics-url" in lags
    assert list(frame.columns) == ["time", "label", "records"]
    assert frame.to_dict("records") == [{"time": datetime(1970, 1, 1, 0, 1, 41), "label": "POSITIVE", "records": 0}]


def test_the_plot_is_left_alone_before_any_record_and_shows_buckets_after() -> None:
    keep = object()
    assert render(LiveStats().snapshot(50.0), [], None, None, 50.0, unchanged=keep)[2] is keep
    stats = LiveStats(bucket_s=2.0)
    for t in (10.5, 11.0, 12.2):
        stats.add(LiveRecord("o", 0, 0, "t", "NEGATIVE", 0.8, t, None, None))
    frame = mix_frame(stats.snapshot(14.5), 14.5)
    assert frame is not None
    assert [(r["time"].second, r["records"]) for r in frame.to_dict("records")] == [(10, 2), (12, 1)]


def test_lag_card_sums_partitions() -> None:
    assert re.search(r'id="sw-lag">17<', stats_html(_stats().snapshot(101.0), {("a", 0): 12, ("a", 1): 5}))
    assert "no enriched records yet" in records_html(LiveStats().snapshot(0.0))
    assert status_html([Status(True, "ok", 0.0)]).count('class="sw-ok"') == 1


def test_verdicts_and_errors() -> None:
    verdict = Verdict("NEGATIVE", 0.8, {"NEGATIVE": 0.8, "POSITIVE": 0.2}, via="here")
    assert 'data-label="NEGATIVE"' in verdict_html(verdict)
    assert 'data-label=""' in verdict_html(None, "broken") and "broken" in verdict_html(None, "broken")

    def fail(_text: str) -> Verdict:
        raise ClassifyError("the worker at X does not answer")

    assert "does not answer" in try_it_html(fail, "hi")
    with pytest.raises(ClassifyError, match="type a text"):
        classify_text(HttpClassifier("http://127.0.0.1:9"), "   ")


class _Tei(BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, bytes]]] = []
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization", ""),
                          "body": self.rfile.read(length).decode()})  # fmt: skip
        status, body = self.answers.pop(0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tei() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Tei)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Tei.answers, _Tei.seen = [], []
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_http_classifier_speaks_tei_predict(tei: str) -> None:
    ranked = [{"label": "POSITIVE", "score": 0.7}, {"label": "NEGATIVE", "score": 0.3}]
    _Tei.answers = [(200, json.dumps(ranked).encode()), (413, b'{"error": "too long", "error_type": "validation"}'),
                    (200, b"<html>")]  # fmt: skip
    client = HttpClassifier(tei + "/", api_key="k")
    assert client.classify("nice") == Verdict("POSITIVE", 0.7, {"POSITIVE": 0.7, "NEGATIVE": 0.3},
                                              via=f"worker HTTP API at {tei}")  # fmt: skip
    assert _Tei.seen[0] == {"path": "/predict", "auth": "Bearer k", "body": '{"inputs": "nice"}'}
    with pytest.raises(ClassifyError, match="HTTP 413: too long"):
        client.classify("x" * 10)
    with pytest.raises(ClassifyError, match="not JSON"):
        client.classify("x")


def test_http_classifier_names_a_worker_that_does_not_answer() -> None:
    from devtools.ports import free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ClassifyError, match=f"the worker at {url} does not answer"):
        HttpClassifier(url, timeout_s=2).classify("hello")


def test_lag_feed_says_when_metrics_fail_and_recovers() -> None:
    answers: list[str | Exception] = [OSError("connection refused"), "<html>nope</html>",
                                      'sentiment_consumer_lag{topic="t",partition="0"} 4\n']  # fmt: skip

    def fetch(_url: str, _timeout: float) -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    feed = LagFeed("http://w/metrics", fetch=fetch)
    feed.poll_once()
    assert not feed.status.ok and "do not answer (OSError: connection refused)" in feed.status.message
    assert feed.lags is None
    feed.poll_once()
    assert not feed.status.ok and "not Prometheus text" in feed.status.message
    feed.poll_once()
    assert feed.status.ok and feed.lags == {("t", 0): 4}


def test_ui_command_flags() -> None:
    args = build_parser().parse_args(
        [
            "ui",
            "--bootstrap",
            "k:9092",
            "--topics",
            "a.sentiment, a.dlq",
            "--worker-url",
            "http://w:8080",
            "--port",
            "0",
        ]
    )
    assert args.setting_bootstrap_servers == "k:9092" and args.topics == "a.sentiment, a.dlq"
    assert args.worker_url == "http://w:8080" and args.port == 0 and not args.demo
    assert build_parser().parse_args(["ui", "--demo", "--host", "0.0.0.0"]).demo


def test_ui_without_topics_or_demo_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ui", "--bootstrap-servers", "k:9092"]) == 2
    assert "--topics" in capsys.readouterr().err


def test_ui_extra_is_http_plus_what_the_code_lists() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ui = project["optional-dependencies"]["ui"]
    assert "sentiment-worker[http]" in ui
    assert {req.split("==")[0].lower() for req in ui if "==" in req} == set(UI_PACKAGES)
    assert not set(UI_PACKAGES) & set(HTTP_PACKAGES)
    assert "ui" in (REPO / "Makefile").read_text().split("-e '.[", 1)[1].split("]", 1)[0].split(",")


def test_without_gradio_the_cli_imports_and_ui_names_the_extra() -> None:
    from tests.support.blocked_imports import run_without_extras

    code = """
sys.meta_path.insert(0, type("B", (), {"find_spec": lambda self, name, path=None, target=None: (_ for _ in ()).throw(
    ModuleNotFoundError("No module named %r (blocked)" % name, name=name)) if name.partition(".")[0] == "gradio"
    else None})())
from worker.cli import main
sys.exit(main(["ui", "--topics", "a", "--bootstrap-servers", "127.0.0.1:9"]))
"""
    done = run_without_extras(code, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "[ui]" in done.stderr and "sentiment-worker[ui]" in done.stderr and "Traceback" not in done.stderr


def test_the_demo_stream_mixes_in_malformed_records_and_stops_on_request() -> None:
    from devtools.demo_stack import BAD_RECORDS, until, with_bad_records

    good = [(f"k{i}".encode(), b'{"text": "fine"}') for i in range(10)]
    mixed = list(with_bad_records(iter(good), 4))
    assert [v for _, v in mixed] == [good[0][1]] * 3 + [BAD_RECORDS[0]] + [good[0][1]] * 3 + [BAD_RECORDS[1]] + [
        good[0][1]
    ] * 2
    assert [k for k, _ in mixed] == [k for k, _ in good]  # keys kept
    assert list(with_bad_records(iter(good), 0)) == good
    stop = threading.Event()
    taken = []
    for message in until(stop, iter(good)):
        taken.append(message)
        if len(taken) == 3:
            stop.set()
    assert taken == good[:3]


def test_a_port_in_use_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        rc = main(["ui", "--topics", "a", "--bootstrap-servers", "127.0.0.1:9", "--port", str(port),
                   "--log-level", "error"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("sentiment-worker ui: ") and "Traceback" not in err
