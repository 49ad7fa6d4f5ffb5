"""``sentiment-worker serve`` over real HTTP (uvicorn) with a real exported ONNX model: TEI-compatible /predict,
labels equal to ``classify``, 64 concurrent clients batched together, every bad input a clear 4xx, auth, 429/503."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.integration.serve.helpers import ServerThread, predict, request, serve_settings
from tests.support.metrics import metric
from worker.cli import main as cli_main
from worker.model.runtime import SentimentModel

pytestmark = pytest.mark.integration

TEXTS = ["I loved it, wonderful staff", "awful, rude and slow", "it was fine i guess", "great food!!", "never again"]
SECRET = "http-key-Zq81-not-real"


def _classify(capsys: pytest.CaptureFixture[str], model_dir: Path, texts: list[str]) -> list[dict]:
    capsys.readouterr()
    assert cli_main(["classify", "--model", str(model_dir), "--device", "cpu", "--json", *texts]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_predict_matches_classify_and_documents_itself(tiny_onnx_dir: Path, capsys: pytest.CaptureFixture) -> None:
    expected = _classify(capsys, tiny_onnx_dir, TEXTS)
    with ServerThread(serve_settings(tiny_onnx_dir), tiny_onnx_dir) as server:
        one = predict(server.port, {"inputs": TEXTS[0]})
        assert one.status == 200, one
        scores = one.json()
        assert [s["label"] for s in scores] == sorted(expected[0]["scores"], key=lambda k: -expected[0]["scores"][k])
        batch = predict(server.port, {"inputs": TEXTS}).json()
        assert len(batch) == len(TEXTS)
        for got, want in zip(batch, expected, strict=True):
            assert got[0]["label"] == want["label"]
            assert {s["label"]: round(s["score"], 6) for s in got} == pytest.approx(want["scores"], abs=2e-6)
            assert [s["score"] for s in got] == sorted((s["score"] for s in got), reverse=True)
        top = predict(server.port, {"inputs": TEXTS[:2], "parameters": {"top_k": 1}}).json()
        assert [len(r) for r in top] == [1, 1] and top[1][0]["label"] == expected[1]["label"]
        raw = predict(server.port, {"inputs": TEXTS[1], "raw_scores": True}).json()
        assert abs(raw[0]["score"] - raw[1]["score"]) > 0 and raw[0]["label"] == expected[1]["label"]

        info = request(server.port, "GET", "/info").json()
        model = SentimentModel.load(tiny_onnx_dir, device="cpu", warmup=False)
        assert info["onnx_sha256"] == model.sha256 and info["provider"] == "CPUExecutionProvider"
        assert info["max_input_length"] == 128 and info["max_batch_requests"] == 64 and info["precision"] == "fp32"
        assert info["model_type"]["classifier"]["id2label"] == {"0": "NEGATIVE", "1": "POSITIVE"}
        assert request(server.port, "GET", "/health").status == 200
        assert request(server.port, "GET", "/readyz").json()["ready"] is True
        assert request(server.port, "GET", "/healthz").json()["alive"] is True
        spec = request(server.port, "GET", "/openapi.json").json()
        body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/PredictRequest"}
        assert "inputs" in spec["components"]["schemas"]["PredictRequest"]["properties"]
        assert {"/info", "/health"} <= set(spec["paths"])


def test_64_concurrent_clients_are_answered_correctly_and_batched_together(tiny_onnx_dir: Path, monkeypatch) -> None:
    model = SentimentModel.load(tiny_onnx_dir, device="cpu", warmup=False)
    texts = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(64 * 3)]
    want = {t: p.label for t, p in zip(texts, model.predict(texts), strict=True)}
    real = SentimentModel.infer_ids

    def like_a_real_model(self, ids, **kwargs):  # the tiny model takes ~1 ms: give each call 20 ms, like a real one
        time.sleep(0.02)
        return real(self, ids, **kwargs)

    monkeypatch.setattr(SentimentModel, "infer_ids", like_a_real_model)
    settings = serve_settings(tiny_onnx_dir, threads=1, max_batch_size=64)
    with ServerThread(settings, tiny_onnx_dir) as server:
        barrier = threading.Barrier(64)

        def client(n: int) -> list[tuple[str, int, str]]:
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            barrier.wait()
            out = []
            for text in texts[n * 3 : n * 3 + 3]:  # three requests per client, on one keep-alive connection
                answer = predict(server.port, {"inputs": text}, conn=conn)
                out.append((text, answer.status, answer.json()[0]["label"] if answer.status == 200 else ""))
            conn.close()
            return out

        with ThreadPoolExecutor(64) as pool:
            results = [r for rs in pool.map(client, range(64)) for r in rs]
        assert len(results) == 192
        assert all(status == 200 for _, status, _ in results), [r for r in results if r[1] != 200][:3]
        assert all(label == want[text] for text, _, label in results)
        text = request(server.port, "GET", "/metrics").body.decode()
    batches = metric(text, "sentiment_batch_size_count")
    up_to_16 = metric(text, "sentiment_batch_size_bucket", le="16.0")
    inputs = metric(text, "sentiment_batch_size_sum")
    print(f"\n64 clients: {int(inputs)} inputs in {int(batches)} model batches ({int(batches - up_to_16)} of > 16)")
    assert inputs >= 192
    assert batches <= inputs / 4, "concurrent requests must share model calls"
    assert batches - up_to_16 >= 1, "some model calls carried more than 16 requests"
    assert metric(text, "sentiment_http_requests_total", route="/predict", code="200") == 192


def _raw_exchange(port: int, head: bytes, body_parts: list[bytes] = (), wait_s: float = 2.0) -> bytes:
    """Send ``head`` (and ``body_parts``), return whatever comes back within ``wait_s``."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server answered and closed: the rest of the body was never read
                break
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return data


def test_every_bad_input_gets_a_clear_4xx_and_the_server_goes_on(tiny_onnx_dir: Path) -> None:
    settings = serve_settings(tiny_onnx_dir, http_max_inputs=8, http_max_body_bytes=4096, max_length=16)
    with ServerThread(settings, tiny_onnx_dir) as server:
        port = server.port
        cases = [
            (b"{not json", 400, "validation"),
            (b"\xff\xfe\x00", 400, "validation"),
            (b"[" * 3000, 400, "validation"),
            (json.dumps([1]).encode(), 422, "validation"),
            (json.dumps({"inputs": 5}).encode(), 422, "validation"),
            (json.dumps({"inputs": [["nested"]]}).encode(), 422, "validation"),
            (json.dumps({"inputs": ["ok", None]}).encode(), 422, "validation"),
            (json.dumps({"inputs": []}).encode(), 400, "empty"),
            (json.dumps({"inputs": ""}).encode(), 400, "empty"),
            (json.dumps({"inputs": ["x"] * 9}).encode(), 413, "validation"),
            (json.dumps({"inputs": "long " * 50, "truncate": False}).encode(), 413, "validation"),
            (json.dumps({"inputs": "x", "raw_scores": "yes"}).encode(), 422, "validation"),
            (b'{"inputs": "\\ud800"}', 422, "validation"),
            (json.dumps({"inputs": "x" * 5000}).encode(), 413, "validation"),  # body over 4096 bytes
        ]
        for raw, status, error_type in cases:
            answer = predict(port, None, raw=raw)
            assert answer.status == status, (raw[:40], answer)
            assert answer.json()["error_type"] == error_type and answer.json()["error"], answer

        truncated = predict(port, {"inputs": "long " * 50})  # over 16 tokens, truncate by default: classified
        assert truncated.status == 200 and len(truncated.json()) == 2
        assert request(port, "GET", "/predict").status == 405
        missing = request(port, "GET", "/nowhere")
        assert missing.status == 404 and missing.json()["error_type"] == "not_found"

        # a 10 MB Content-Length: 413 before the body is sent (never read whole)
        head = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n"
        )
        started = time.monotonic()
        reply = _raw_exchange(port, head)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert time.monotonic() - started < 2.5 and b'"error_type":"validation"' in reply
        # a chunked body that grows past the limit: 413 as soon as it does
        chunked = (
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        parts = [b"%x\r\n%s\r\n" % (1024, b"a" * 1024) for _ in range(64)]
        assert _raw_exchange(port, chunked, parts).startswith(b"HTTP/1.1 413")

        assert request(port, "GET", "/health").status == 200
        assert predict(port, {"inputs": "still fine"}).status == 200
        text = request(port, "GET", "/metrics").body.decode()
        assert metric(text, "sentiment_http_requests_total", code="500") == 0


def test_api_key_guards_predict_and_info_only(tiny_onnx_dir: Path) -> None:
    with ServerThread(serve_settings(tiny_onnx_dir, http_api_key=SECRET), tiny_onnx_dir) as server:
        port = server.port
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
            answer = predict(port, {"inputs": "x"}, headers=headers)
            assert answer.status == 401 and answer.json()["error_type"] == "unauthorized"
            assert answer.headers["www-authenticate"] == "Bearer"
        assert predict(port, {"inputs": "x"}, headers={"Authorization": f"Bearer {SECRET}"}).status == 200
        assert predict(port, {"inputs": "x"}, headers={"authorization": f"bearer {SECRET}"}).status == 200
        assert request(port, "GET", "/info").status == 401
        info = request(port, "GET", "/info", headers={"Authorization": f"Bearer {SECRET}"})
        assert info.status == 200 and info.json()["auth"] is True
        for path in ("/health", "/healthz", "/readyz", "/metrics"):
            answer = request(port, "GET", path)
            assert answer.status == 200 and SECRET.encode() not in answer.body
        assert SECRET not in json.dumps(info.json())
    with ServerThread(serve_settings(tiny_onnx_dir), tiny_onnx_dir) as server:  # off: no header needed
        assert predict(server.port, {"inputs": "x"}).status == 200


def test_backpressure_429_and_timeout_503_with_retry_after(tiny_onnx_dir: Path, monkeypatch) -> None:
    real = SentimentModel.infer_ids
    delay = {"s": 0.0}

    def slow(self, ids, **kwargs):
        time.sleep(delay["s"])
        return real(self, ids, **kwargs)

    monkeypatch.setattr(SentimentModel, "infer_ids", slow)
    settings = serve_settings(tiny_onnx_dir, http_max_queued=4, http_timeout_s=0.5, max_batch_size=2)
    with ServerThread(settings, tiny_onnx_dir) as server:
        delay["s"] = 0.3
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: predict(server.port, {"inputs": f"text {i}"}), range(16)))
        statuses = sorted(a.status for a in answers)
        print(f"\n16 requests, 4 admitted at most, 0.3 s per model call: {statuses}")
        assert 429 in statuses and 200 in statuses
        assert set(statuses) <= {200, 429, 503}
        for answer in answers:
            if answer.status != 200:
                assert answer.headers["retry-after"] == "1" and answer.json()["error_type"] == "overloaded"
        delay["s"] = 1.0
        late = predict(server.port, {"inputs": "slow"})
        assert late.status == 503 and late.headers["retry-after"] and "http_timeout_s" in late.json()["error"]
        delay["s"] = 0.0
        time.sleep(1.2)  # the timed-out input is still answered by the stage, then released
        assert predict(server.port, {"inputs": "fast again"}).status == 200
        assert request(server.port, "GET", "/health").json()["queued_inputs"] == 0
