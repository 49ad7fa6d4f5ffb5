"""The [otel] extra: pinned in pyproject.toml as worker/tracing lists it, installed by `make install`."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest

from tests.support.blocked_imports import REPO
from worker.tracing.setup import OTEL_EXTRA, OTEL_PACKAGES

pytestmark = pytest.mark.unit


def test_otel_extra_pins_what_the_code_lists() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    otel = project["optional-dependencies"][OTEL_EXTRA]
    assert {re.split(r"==", req)[0].lower() for req in otel} == set(OTEL_PACKAGES)
    assert all("==" in req for req in otel), "exact pins"
    assert len({req.split("==")[1] for req in otel}) == 1, "api, sdk and exporter of one release"
    assert OTEL_EXTRA in (REPO / "Makefile").read_text().split("-e '.[", 1)[1].split("]", 1)[0].split(",")


def test_importing_the_worker_does_not_import_opentelemetry() -> None:
    code = "import sys, worker.tracing.context\nprint(any(m.startswith('opentelemetry.sdk') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
