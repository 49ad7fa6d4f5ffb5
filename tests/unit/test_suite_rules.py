"""Rules of the test suite itself: no test can pass on any exception at all, and the long files run first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]
# pytest.raises(Exception), pytest.raises((ValueError, Exception)), pytest.raises(BaseException, match=...)
BROAD = re.compile(r"raises\(\s*\(?[^)]*\b(?:Base)?Exception\b\s*[,)]")


def test_no_test_expects_just_any_exception() -> None:
    found = [
        f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if BROAD.search(line) and path != Path(__file__).resolve()
    ]
    assert not found, "name the exception the code raises (and match its message):\n" + "\n".join(found)


def test_the_rule_sees_what_it_forbids() -> None:
    forbidden = ["with pytest.raises(Exception):", "pytest.raises(Exception, match='x')"]
    forbidden += ["raises((ValueError, Exception))", "with pytest.raises(BaseException) as info:"]
    for line in forbidden:
        assert BROAD.search(line), line
    for line in ("with pytest.raises(ValueError):", "pytest.raises(ExportError, match='x')", "raises(MyException)"):
        assert not BROAD.search(line), line


def test_files_with_slow_tests_run_first_then_integration_then_unit(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    slow: s\n    integration: i\n    unit: u\n")
    pytester.makepyfile(
        test_a_unit="import pytest\npytestmark = pytest.mark.unit\ndef test_1(): pass\ndef test_2(): pass\n",
        test_b_integration="import pytest\npytestmark = pytest.mark.integration\ndef test_1(): pass\n",
        test_c_mixed=(
            "import pytest\npytestmark = pytest.mark.integration\ndef test_1(): pass\n"
            "@pytest.mark.slow\ndef test_2(): pass\ndef test_3(): pass\n"
        ),
    )
    result = pytester.runpytest("-p", "tests.support.ordering", "-p", "no:cacheprovider", "--collect-only", "-q")
    ids = [line for line in result.stdout.lines if "::" in line]
    assert ids == [
        "test_c_mixed.py::test_1",
        "test_c_mixed.py::test_2",
        "test_c_mixed.py::test_3",
        "test_b_integration.py::test_1",
        "test_a_unit.py::test_1",
        "test_a_unit.py::test_2",
    ], result.stdout.lines
