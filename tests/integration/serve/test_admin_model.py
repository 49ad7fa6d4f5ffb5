"""``POST /admin/model`` and SIGHUP in ``serve``: the HTTP-only server reloads its model like the streaming worker
(README "Rolling out a model"), with real exports behind a symlink the test points elsewhere.

- without ``http_api_key`` the admin route is off (403); with it, no or a wrong key gets 401;
- with the key: nothing changed → 200 ``unchanged``; a new export → 200 ``swapped`` (``/info`` and ``/predict``
  use it); a corrupt one → 409 ``refused`` (the serving model stays); a body naming another model swaps to it;
- ``sentiment-worker serve`` as a process: SIGHUP swaps too, and the process keeps answering.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from devtools.ports import free_port
from tests.integration.serve.helpers import ServerThread, predict, request, serve_settings
from tests.support.metrics import metric
from tests.support.model_variants import point
from tests.support.waits import wait_for
from tests.support.worker_process import REPO_ROOT
from worker.model.manifest import read_manifest

pytestmark = pytest.mark.integration

SECRET = "admin-key-31-not-real"
AUTH = {"Authorization": f"Bearer {SECRET}"}


def _sha(exported: Path) -> str:
    return str(read_manifest(exported)["onnx_sha256"])


def _admin(port: int, body: object = None, headers: dict[str, str] | None = None):
    return request(port, "POST", "/admin/model", body, headers=headers, timeout=60)


def test_the_admin_route_is_off_without_an_api_key(tiny_onnx_dir: Path) -> None:
    with ServerThread(serve_settings(tiny_onnx_dir), tiny_onnx_dir) as server:
        answer = _admin(server.port, headers=AUTH)
        print(answer)
        assert answer.status == 403 and answer.json()["error_type"] == "forbidden"
        assert predict(server.port, {"inputs": "fine"}).status == 200


def test_admin_reload_needs_the_key_and_swaps_refuses_or_does_nothing(
    tiny_onnx_dir: Path, tiny_variant_dir: Path, tiny_corrupt_dir: Path, tmp_path: Path
) -> None:
    link = tmp_path / "model"
    point(link, tiny_onnx_dir)
    with ServerThread(serve_settings(link, http_api_key=SECRET), link) as server:
        port = server.port
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": SECRET}):
            assert _admin(port, headers=headers).status == 401
        unchanged = _admin(port, headers=AUTH)
        print("nothing changed:", unchanged.json())
        assert unchanged.status == 200 and unchanged.json()["outcome"] == "unchanged"

        assert server.server.servers is not None and server.server.servers.service is not None
        first = weakref.ref(server.server.servers.service.model)
        point(link, tiny_variant_dir)
        swapped = _admin(port, headers=AUTH)
        print("new export:", swapped.json())
        gc.collect()
        assert first() is None, "the old model (its ONNX Runtime session) is released once nothing uses it"
        assert swapped.status == 200 and swapped.json()["outcome"] == "swapped"
        assert swapped.json()["sha256"] == _sha(tiny_variant_dir) == swapped.json()["serving_sha256"]
        info = request(port, "GET", "/info", headers=AUTH).json()
        assert info["onnx_sha256"] == _sha(tiny_variant_dir)
        answer = predict(port, {"inputs": ["good great", "awful bad"]}, headers=AUTH)
        assert answer.status == 200 and [row[0]["label"] for row in answer.json()] == ["POSITIVE", "NEGATIVE"]

        point(link, tiny_corrupt_dir)
        refused = _admin(port, headers=AUTH)
        print("corrupt export:", refused.json())
        assert refused.status == 409 and refused.json()["error_type"] == "refused"
        assert refused.json()["reason"] == "integrity" and refused.json()["serving_sha256"] == _sha(tiny_variant_dir)
        assert predict(port, {"inputs": "fine"}, headers=AUTH).status == 200

        back = _admin(port, {"model": str(tiny_onnx_dir)}, headers=AUTH)
        assert back.status == 200 and back.json()["outcome"] == "swapped"
        assert back.json()["serving_sha256"] == _sha(tiny_onnx_dir)
        assert _admin(port, {"model": 3}, headers=AUTH).status == 422
        assert _admin(port, {"modle": "x"}, headers=AUTH).status == 422

        text = request(port, "GET", "/metrics").body.decode()
        assert metric(text, "sentiment_model_swaps_total") == 2
        assert metric(text, "sentiment_model_swap_refusals_total", reason="integrity") == 1
        assert metric(text, "sentiment_model_reload_requests_total", trigger="admin") == 4


def test_serve_swaps_on_sighup(tiny_onnx_dir: Path, tiny_variant_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "model"
    point(link, tiny_onnx_dir)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTIMENT_")}
    env.update(SENTIMENT_MODEL=str(link), SENTIMENT_DEVICE="cpu", SENTIMENT_HTTP_PORT=str(port),
               SENTIMENT_HTTP_HOST="127.0.0.1", SENTIMENT_LOG_FORMAT="json", SENTIMENT_THREADS="1")  # fmt: skip
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker", "serve"], env=env, cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for(lambda: _status(port) == 200, 90, what="/health 200")
        point(link, tiny_variant_dir)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _info_sha(port) == _sha(tiny_variant_dir), 30, what="the new model in /info")
        assert proc.poll() is None and predict(port, {"inputs": "good"}).status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    logged = log_path.read_text()
    print([line[:160] for line in logged.splitlines() if "model_swapped" in line])
    assert rc == 0 and '"model_swapped"' in logged


def _status(port: int) -> int | None:
    try:
        return request(port, "GET", "/health", timeout=2).status
    except OSError:
        return None


def _info_sha(port: int) -> str | None:
    answer = request(port, "GET", "/info", timeout=5)
    return answer.json().get("onnx_sha256") if answer.status == 200 else None
