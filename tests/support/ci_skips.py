"""Under CI a skip may not hide coverage (a pytest plugin, loaded from tests/conftest.py).

When the environment variable ``CI`` is set (``.ci/run`` sets it), a test or module that skips fails instead,
unless :data:`ALLOWED` names it with the reason it gives: the few tests whose skip says what the machine *is*
(a GPU or none), not what it lacks by accident. CI installs everything else a test needs (``.ci/run``, the
``dev`` extra), so any other skip there is a broken set-up that would otherwise leave CI green. Outside CI skips
stay skips (a developer without chromium still gets a useful run).
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# test id (path::function, parameters left out) -> text its skip reason must contain.
ALLOWED: dict[str, str] = {
    # One of each pair runs: the CUDA test where ONNX Runtime's CUDA provider works, the CPU one elsewhere.
    "tests/integration/model/test_model_cli.py::test_classify_device_cuda_runs_on_the_gpu": (
        "CUDA execution provider does not work here"
    ),
    "tests/integration/model/test_model_cli.py::test_classify_device_cuda_fails_where_cuda_does_not_work": (
        "CUDA works here"
    ),
    # What a machine without a GPU does: not testable on a machine with one.
    "tests/integration/model/test_runtime.py::test_cuda_demanded_without_gpu_fails_fast": "this machine has a GPU",
    "tests/integration/model/test_runtime.py::test_auto_without_gpu_uses_cpu_with_warning": "this machine has a GPU",
    "tests/integration/model/test_runtime.py::test_auto_probe_falls_back_when_cuda_session_fails": (
        "this machine has a GPU"
    ),
}


def under_ci() -> bool:
    return bool(os.environ.get("CI"))


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(nodeid: str, reason: str) -> bool:
    """Is a skip of ``nodeid`` (parameters ignored) with ``reason`` on the allow-list?"""
    expected = ALLOWED.get(nodeid.split("[", 1)[0])
    return expected is not None and expected in reason


def _fail(report: pytest.TestReport | pytest.CollectReport, reason: str) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"CI is set, so this skip fails (it would hide coverage): {reason}\n"
        "Install what the test needs in .ci/run (or the dev extra), or, if the skip says what this machine is "
        "(e.g. no GPU), add it to ALLOWED in tests/support/ci_skips.py."
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    assert isinstance(report, pytest.TestReport)
    if under_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report)
        if not allowed(report.nodeid, reason):
            _fail(report, reason)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, object, object]:
    """A whole module skipped at import (``pytest.importorskip``, ``pytest.skip(allow_module_level=True)``)."""
    report = yield
    assert isinstance(report, pytest.CollectReport)
    if under_ci() and report.skipped:
        reason = _reason(report)
        if not allowed(report.nodeid, reason):
            _fail(report, reason)
    return report
