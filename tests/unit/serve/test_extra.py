"""The [http] extra: pinned in pyproject.toml as worker/serve/front.py lists it; without it the core install still
runs (the CLI imports, ``metrics_port`` falls back to the dependency-free server) and asking for the API names the
extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest

from tests.support.blocked_imports import REPO
from worker.serve.front import HTTP_PACKAGES

pytestmark = pytest.mark.unit

BLOCK = """
import sys


class _NoHttpExtra:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("fastapi", "starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None


sys.meta_path.insert(0, _NoHttpExtra())
"""


def test_http_extra_pins_what_the_code_lists_and_core_does_not() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    http = project["optional-dependencies"]["http"]
    assert {re.split(r"==", req)[0].lower() for req in http} == set(HTTP_PACKAGES)
    assert all("==" in req for req in http), "exact pins"
    assert not {re.split(r"[=<>\[ ;]", r)[0].lower() for r in project["dependencies"]} & set(HTTP_PACKAGES)
    assert "http" in (REPO / "Makefile").read_text().split("-e '.[", 1)[1].split("]", 1)[0].split(",")


def test_without_the_extra_the_core_runs_and_the_api_names_the_extra() -> None:
    code = (
        BLOCK
        + """
import json, urllib.request
from worker.cli import build_parser
build_parser()
import worker.app, worker.serve.service
from worker.health import HealthState
from worker.metrics import WorkerMetrics
from worker.model.errors import ExtraNotInstalledError
from worker.serve.front import Servers
from worker.settings import load_settings

def servers_for(s, mode, http_port):
    return Servers(s.http, s.observability, WorkerMetrics(), HealthState(), mode=mode, http_port=http_port,
                   input=s.input, batching=s.batching)

servers = servers_for(load_settings(metrics_port=0), "run", None).start()
status = urllib.request.urlopen(f"http://127.0.0.1:{servers.metrics_port}/healthz", timeout=5).status
servers.stop()
try:
    servers_for(load_settings(), "serve", 0).start()
    message = ""
except ExtraNotInstalledError as exc:
    message = str(exc)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("fastapi", "starlette", "uvicorn"))
print(json.dumps({"status": status, "message": message, "loaded": loaded}))
"""
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["status"] == 200
    assert "pip install 'sentiment-worker[http]'" in out["message"]
    assert out["loaded"] == []
