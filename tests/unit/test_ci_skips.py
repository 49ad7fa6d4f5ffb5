"""Under CI a skip fails unless tests/support/ci_skips.py allows it (a real pytest run, in this process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.ci_skips import ALLOWED, allowed

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]

SKIPPING = """
import pytest

def test_skips_inside():
    pytest.skip("chromium not found")

@pytest.mark.skipif(True, reason="lz4 is installed")
def test_skipif_marker():
    pass

@pytest.fixture
def needs_tool():
    pytest.skip("tool missing")

def test_fixture_skips(needs_tool):
    pass

def test_passes():
    pass
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: bool, **files: str) -> pytest.RunResult:
    if ci:
        monkeypatch.setenv("CI", "1")
    else:
        monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(**files)
    return pytester.runpytest("-p", "tests.support.ci_skips", "-p", "no:cacheprovider", "-rA")


def test_under_ci_every_skip_fails_with_its_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _run(pytester, monkeypatch, True, test_x=SKIPPING)
    # a skip in a test's body fails it; one at setup (a fixture, a skipif marker) is an error: both fail the run
    result.assert_outcomes(passed=1, failed=1, errors=2)
    for reason in ("chromium not found", "lz4 is installed", "tool missing"):
        result.stdout.fnmatch_lines([f"*CI is set, so this skip fails (it would hide coverage): {reason}*"])


def test_without_ci_skips_stay_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(pytester, monkeypatch, False, test_x=SKIPPING).assert_outcomes(passed=1, skipped=3)


def test_under_ci_a_module_level_skip_fails(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    module = 'import pytest\npytest.importorskip("no_such_module_here")\n\ndef test_a():\n    pass\n'
    result = _run(pytester, monkeypatch, True, test_mod=module)
    assert result.ret != 0
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI is set, so this skip fails*no_such_module_here*"])


def test_the_allow_list_needs_the_test_and_its_reason() -> None:
    nodeid, reason = next(iter(ALLOWED.items()))
    assert allowed(nodeid, f"Skipped: {reason}")
    assert allowed(f"{nodeid}[param-1]", reason), "parameters are ignored"
    assert not allowed(nodeid, "chromium not found"), "an allowed test skipped for another reason"
    assert not allowed("tests/unit/test_other.py::test_x", reason), "the same reason from another test"


def test_every_allowed_test_exists() -> None:
    for nodeid in ALLOWED:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (REPO / path).read_text(), nodeid
